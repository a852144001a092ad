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


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    import math_verify  # noqa: F401  (import before the ready line so the first check is fast)

    serve_jobs(handle)
