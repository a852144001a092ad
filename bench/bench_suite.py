"""`make test` today against the suite it replaced: one machine, one run, side by side.

Three timings, each with the busy CPU time of the whole machine from /proc/stat (which also counts the
servers, sandboxes and Ray daemons the tests start, and any other load: run it on a quiet machine):

  then           the suite at --baseline-commit, run the way its Makefile ran it (one pytest process), from a
                 git worktree of that commit with this checkout's .venv. The default commit is the tree as
                 it was when `make test` took about 7 minutes (issue 13, "One clear house").
  same tests     those tests as they are named today (files and tests renamed since are mapped below),
                 under today's `make test` runner (xdist, shared servers, the model-server zygote)
  make test      today's whole suite

Usage: python bench/bench_suite.py [--baseline-commit C] [--skip-then] [--logs DIR]
Needs `make install` first; takes about 15 minutes on the 2-core development machine. Writes its section of
bench/RESULTS.md (not with --skip-then: without the first row there is nothing to compare with).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import write_section

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
BASELINE_COMMIT = "2beb8d1"  # the parent of the first "One clear house" commit (bfaa0c0)

# Test files renamed since the baseline: a test there is the same test under the new file name.
RENAMED_FILES = {
    "tests/test_code_judge.py": "tests/test_code_harness.py",  # the sandbox's judge is its harness now
    "tests/test_encoder_backend.py": "tests/test_pooling_backend.py",
}
# Tests renamed or rewritten since the baseline: what covers each today.
RENAMED_TESTS = {
    "tests/test_code_scorer.py::test_tests_that_hang_the_judge_hit_the_parents_backstop":
        ["tests/test_code_scorer.py::test_tests_that_hang_the_harness_hit_the_parents_backstop"],
    "tests/test_causal_backend.py::test_greedy_generation_batched_equals_single":
        ["tests/test_causal_backend.py::test_greedy_generation_batched_equals_single_and_is_the_argmax"],
    "tests/test_ray_serve.py::test_sigterm_deletes_the_application":
        ["tests/test_ray_serve.py::test_sigterm_deletes_the_application_and_stops_the_ray_it_started"],
    # One test of each adapter then; today each trainer's call shapes have their own tests.
    "tests/test_integrations.py::test_trl_reward_func_standard_and_conversational":
        ["tests/test_integrations.py::test_trl_standard_format_with_reference_column_and_logs",
         "tests/test_integrations.py::test_trl_conversational_forms_are_scored_or_item_errors_never_a_failed_batch"],
    "tests/test_integrations.py::test_verl_compute_score_single_and_batched":
        ["tests/test_integrations.py::test_verl_compute_score_as_each_manager_calls_it"],
}


@dataclass
class Timing:
    name: str
    what: str
    wall_s: float
    busy_cpu_s: float
    summary: str


def busy_jiffies() -> tuple[int, float]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return user + nice + system + irq + softirq, time.monotonic()


def timed(name: str, what: str, cmd: list[str], cwd: Path, logs: Path) -> Timing:
    log = logs / f"{name.replace(' ', '-')}.log"
    print(f"== {name}: {' '.join(cmd)} (in {cwd}; output in {log})", file=sys.stderr, flush=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    (b0, t0) = busy_jiffies()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    (b1, t1) = busy_jiffies()
    log.write_text(proc.stdout + proc.stderr)
    tail = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
    summary = next((ln for ln in reversed(proc.stdout.splitlines()) if re.search(r"\d+ (passed|failed)", ln)),
                   tail[0]).strip("= ")
    if proc.returncode != 0:
        print(f"   {name} exited {proc.returncode}: the timing is kept; what failed is in {log}", file=sys.stderr)
    return Timing(name, what, t1 - t0, (b1 - b0) / os.sysconf("SC_CLK_TCK"), summary)


def collected(cwd: Path) -> list[str]:
    out = subprocess.run([str(PYTHON), "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q"],
                         cwd=cwd, capture_output=True, text=True, check=True).stdout
    return [ln.strip() for ln in out.splitlines() if "::" in ln]


def mapped(then: list[str], now: list[str]) -> list[str]:
    """Today's ids of the baseline's tests; fails naming any test it cannot place."""
    now_set = set(now)
    by_function: dict[str, list[str]] = {}
    for node in now:
        by_function.setdefault(node.split("[")[0], []).append(node)
    out: list[str] = []
    lost: list[str] = []
    for node in then:
        path, test = node.split("::", 1)
        moved = f"{RENAMED_FILES.get(path, path)}::{test}"
        if moved in now_set:
            out.append(moved)
        elif node in RENAMED_TESTS:
            out += RENAMED_TESTS[node]
        elif "[" in moved and moved.split("[")[0] in by_function:
            # A parameter whose id is spelled differently now (pytest's escaping of bytes, say): the first
            # parameter of that test that no other baseline test took stands for it.
            free = [n for n in by_function[moved.split("[")[0]] if n not in out and n not in then]
            if free:
                out.append(free[0])
            else:
                lost.append(node)
        else:
            lost.append(node)
    if lost:
        raise SystemExit(f"cannot place {len(lost)} baseline tests today (add them to RENAMED_TESTS): {lost}")
    missing = [n for n in out if n not in now_set]
    if missing:
        raise SystemExit(f"RENAMED_TESTS names tests that do not exist today: {missing}")
    # In today's collection order: a file's tests may rely on it (test_ray_serve's SIGTERM test goes last).
    position = {node: i for i, node in enumerate(now)}
    return sorted(set(out), key=position.__getitem__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-commit", default=BASELINE_COMMIT)
    parser.add_argument("--skip-then", action="store_true", help="do not run the baseline suite itself")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()) / "rewardsvc-bench-suite-logs",
                        help="each run's whole output, and the list of the same tests, go here (default: %(default)s)")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    if not PYTHON.exists():
        raise SystemExit(f"{PYTHON} is missing: run `make install` first")

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="rewardsvc-bench-suite-"))
    tree = work / "then"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), args.baseline_commit],
                   check=True)
    timings: list[Timing] = []
    try:
        then_ids = collected(tree)
        now_ids = collected(REPO)
        same = mapped(then_ids, now_ids)
        same_file = args.logs / "same-tests.txt"
        same_file.write_text("\n".join(same) + "\n")
        print(f"{len(then_ids)} tests then; {len(same)} today's ids of them; {len(now_ids)} today",
              file=sys.stderr)
        if not args.skip_then:
            what = f"the suite at {args.baseline_commit}, one pytest process ({len(then_ids)} tests)"
            timings.append(timed("then", what, [str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider"], tree,
                                 args.logs))
        timings.append(timed("same tests", f"those tests today, `make test` runner ({len(same)} tests)",
                             ["make", "test", f"PYTEST_ARGS=@{same_file}"], REPO, args.logs))
        timings.append(timed("make test", f"today's whole suite ({len(now_ids)} tests)", ["make", "test"], REPO,
                             args.logs))
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(work, ignore_errors=True)

    table = report(timings, args.baseline_commit, load_before)
    print(table)
    if not args.skip_then:
        write_section("Test suite: make test today vs the suite before issue 13 (bench_suite.py)",
                      "python bench/bench_suite.py", HOW + "\n\n" + table)


HOW = """Three runs back to back on one machine. *then*: the suite at the commit before issue 13's first change,
run as its Makefile ran it (one pytest process), from a git worktree with today's .venv. *same tests*: those
tests under today's names (renamed files and tests are mapped in the script) run by today's `make test`
(three xdist workers, servers shared per module, model servers forked from one process that imported torch,
cut models for plumbing tests). *make test*: today's whole suite. Busy CPU counts every process on the
machine (/proc/stat): the servers, sandboxes and Ray daemons the tests start."""


def report(timings: list[Timing], baseline: str, load_before: float) -> str:
    base = timings[0]
    lines = [f"Load average before: {load_before:.2f}; baseline commit {baseline}.", "",
             "| run | what | wall | busy CPU (all processes) | wall / first row | result |",
             "|---|---|---|---|---|---|"]
    for t in timings:
        lines.append(f"| {t.name} | {t.what} | {t.wall_s:.1f} s | {t.busy_cpu_s:.0f} CPU-s | "
                     f"{t.wall_s / base.wall_s:.2f} | {t.summary} |")
    by_name = {t.name: t for t in timings}
    if {"then", "same tests"} <= set(by_name):
        then, same = by_name["then"], by_name["same tests"]
        lines += ["", f"The same tests: **{then.wall_s / same.wall_s:.1f}x** less wall time and "
                      f"**{then.busy_cpu_s / same.busy_cpu_s:.1f}x** less CPU than before."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
