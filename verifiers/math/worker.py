"""Math check worker process: `python -m rewardsvc.verifiers.math.worker` (started by the math scorer's pool)."""

from __future__ import annotations

import sys
from typing import Any

from rewardsvc.verifiers.workerpool import serve_jobs


def handle(job: dict[str, Any]) -> dict[str, Any]:
    from rewardsvc.verifiers.math.check import check

    try:
        return check(job["gold"], job["pred"], job.get("timeout_s", 3))
    except BaseException as exc:  # math-verify's TimeoutException is a BaseException
        if isinstance(exc, KeyboardInterrupt):
            raise
        name = type(exc).__name__
        verdict = "timeout" if "Timeout" in name else "error"
        return {"verdict": verdict, "reason": f"{name} during the check"}


def prepare() -> None:
    """Before the ready line, here or once in the pool's fork server (its workers inherit it): sympy's
    deep recursion, the imports, and one check, which builds the parsers and caches math-verify makes
    on first use (~130 ms), so a worker's first check is as fast as its others."""
    sys.setrecursionlimit(10_000)
    from rewardsvc.verifiers.math.check import check

    check("\\frac{1}{2}", "The answer is $\\boxed{0.5}$.", 5)


if __name__ == "__main__":
    prepare()
    serve_jobs(handle)
