"""Turn one sandbox run (the harness's report plus what the parent saw) into a Result.

The parent decides: a pass needs a report carrying this run's nonce in which every test passed,
and no limit hit. Anything else (no report, a report without the nonce, the run killed) scores 0
for the tests that didn't pass, with a verdict saying why.
"""

from __future__ import annotations

import logging
from typing import Any

from rewardsvc.types import ErrorCode, Result
from rewardsvc.verifiers.code.report import RunOutcome

log = logging.getLogger(__name__)

VERDICTS = ("passed", "failed", "timeout", "memory", "output_limit", "runtime_error", "sandbox_error")


def clean_text(value: Any) -> Any:
    """Details must be valid UTF-8 (protobuf strings): lone surrogates from the program become '?'."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {clean_text(k): clean_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_text(v) for v in value]
    return value


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def make_result(item_id: str, outcome: RunOutcome, all_or_nothing: bool, limits_note: str) -> Result:
    report = outcome.report
    details: dict[str, Any] = {
        "stdout_tail": _text(outcome.stdout_tail),
        "stderr_tail": _text(outcome.stderr_tail),
        "time_s": round(outcome.wall_s, 3),
    }
    runner = (report or {}).get("runner") or {}
    if isinstance(runner, dict):
        if isinstance(runner.get("cpu_s"), (int, float)):
            details["cpu_s"] = runner["cpu_s"]
        if isinstance(runner.get("max_rss_kb"), int):
            details["memory_kb"] = runner["max_rss_kb"]
    memory_hit = outcome.oom_kills > 0 or bool((report or {}).get("memory_error"))

    if report is None:
        if outcome.sandbox_died and outcome.oom_kills == 0:
            msg = f"the sandbox failed during the run ({outcome.sandbox_died}); retry the item"
            return Result.failed(item_id, ErrorCode.INTERNAL, msg,
                                 **clean_text({**details, "verdict": "sandbox_error"}))
        if not outcome.harness_started and outcome.killed is None and not outcome.oom_kills:
            stderr = _text(outcome.stderr_tail).strip()
            msg = f"the sandbox failed to start (exit status {outcome.exit_code}): {stderr[-500:] or 'no output'}"
            return Result.failed(item_id, ErrorCode.INTERNAL, msg,
                                 **clean_text({**details, "verdict": "sandbox_error"}))
        if outcome.killed == "timeout":
            verdict, error = "timeout", f"the run exceeded its wall-clock limit ({limits_note})"
        elif outcome.killed == "output_limit":
            verdict, error = "output_limit", f"the program wrote more than the output limit ({limits_note})"
        elif memory_hit:
            verdict, error = "memory", f"the sandbox ran out of memory ({limits_note})"
        else:
            verdict, error = "runtime_error", outcome.problem or "the sandbox ended without a verdict"
        return Result(item_id, 0.0, details=clean_text({**details, "verdict": verdict, "error": error,
                                                        "tests_passed": 0, "tests_total": 0, "tests": []}))

    status = report.get("status")
    if status == "test_error":
        return Result.failed(item_id, ErrorCode.INVALID_ITEM, str(report.get("error", "the tests don't run")),
                             **clean_text(details))
    if status == "harness_error":
        trace = str(report.get("error", ""))
        if report.get("program_started") is True:
            # The program controls its process, its channel to the harness and its run's other
            # processes: a harness that fails after the program started may have been broken by it,
            # and a program that breaks the harness has failed (a None here would spare it the 0).
            log.warning("code harness failed on item %r after the program started (scored 0): %s",
                        item_id, trace[-3000:])
            last = trace.strip().splitlines()[-1:] or ["unknown error"]
            return Result(item_id, 0.0, details=clean_text({
                **details, "verdict": "runtime_error", "tests_passed": 0, "tests_total": 0, "tests": [],
                "error": f"the harness failed while running the program ({last[0][:500]}); a program "
                         "that breaks the harness fails"}))
        log.error("code harness failed on item %r: %s", item_id, trace[-3000:])
        return Result.failed(item_id, ErrorCode.INTERNAL, "the harness failed: " + trace[-1500:],
                             **clean_text({**details, "verdict": "sandbox_error"}))
    tests = [t for t in report.get("tests") or [] if isinstance(t, dict)]
    passed = sum(1 for t in tests if t.get("passed") is True)
    total = len(tests)
    abort = report.get("abort") if isinstance(report.get("abort"), dict) else None
    reason = abort.get("reason") if abort else None
    error = str(abort.get("detail", "")) if abort else str(report.get("error") or "")
    if total and passed == total and outcome.killed is None and status == "ok" and abort is None:
        verdict = "passed"
    elif outcome.killed == "output_limit" or reason == "output_limit":
        verdict = "output_limit"
        error = error or f"the program wrote more than the output limit ({limits_note})"
    elif outcome.oom_kills > 0:  # the kernel killed something of this run for memory: say so first
        verdict = "memory"
        error = f"the run exceeded its memory limit ({limits_note}); {error}".rstrip("; ")
    elif reason == "timeout" or outcome.killed == "timeout":
        verdict = "timeout"
    elif memory_hit:
        verdict = "memory"
        error = error or "MemoryError"
    elif status == "load_error" or reason in ("runner_died", "protocol"):
        verdict = "runtime_error"
    else:
        verdict = "failed"
    if verdict == "passed":
        score = 1.0
    elif all_or_nothing or not total or verdict == "output_limit":
        # An output flood breaks the run's rules as a whole, like a harness's "output limit exceeded".
        score = 0.0
    else:
        score = passed / total
    details.update(verdict=verdict, tests_passed=passed, tests_total=total,
                   tests=[{"name": str(t.get("name", "")), "passed": t.get("passed") is True,
                           **({"error": str(t["error"])} if t.get("error") else {})} for t in tests])
    if error and verdict != "passed":
        details["error"] = error
    return Result(item_id, score, details=clean_text(details))
