"""The harness's report as the parent reads it, and what the parent saw of the run (RunOutcome).

The report is trusted only when it starts with the harness's ready mark and carries this run's nonce.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

# The harness writes this byte first: an empty results pipe means the harness never started.
READY_MARK = b"+"
REPORT_LIMIT = 64 << 20


@dataclass
class RunOutcome:
    """What the parent knows after a run: the trusted report (or why there is none) and what it saw."""

    report: dict[str, Any] | None = None
    killed: str | None = None  # "timeout" | "output_limit" | "report_limit" when the parent ended the run
    harness_started: bool = False
    problem: str = ""  # why there is no valid report
    exit_code: int | None = None
    stdout_tail: bytes = b""
    stderr_tail: bytes = b""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    wall_s: float = 0.0
    memory_peak_bytes: int | None = None
    oom_kills: int = 0
    sandbox_died: str = ""  # the slot's zygote died during the run: not the program's doing, unless OOM


def read_report(data: bytes, nonce: str, outcome: RunOutcome) -> None:
    """Fill `outcome.report` from the results pipe's bytes, or `outcome.problem` with why not."""
    outcome.harness_started = data.startswith(READY_MARK)
    if not outcome.harness_started:
        outcome.problem = "the harness did not start"
        return
    body = data[len(READY_MARK):]
    if not body:
        outcome.problem = "the sandbox ended without a report (the program killed the harness?)"
        return
    try:
        report = json.loads(body)
    except ValueError:
        outcome.problem = "the harness's report is incomplete (the harness was killed while writing it?)"
        return
    if not isinstance(report, dict) or not secrets.compare_digest(str(report.get("nonce", "")), nonce):
        outcome.problem = "the report does not carry this run's nonce"
        return
    outcome.report = report
