"""Equivalence check of two answers with math-verify (sympy); runs inside a worker process.

math-verify's own timeouts use SIGALRM, which only works in a process's main thread: that is why
this runs in `rewardsvc.verifiers.math.worker`, never in the server process.
"""

from __future__ import annotations

import time
from typing import Any


def _wrap(answer: str) -> str:
    # Boxing makes math-verify read the string as LaTeX first, then as a plain expression.
    return answer if "\\boxed" in answer else "\\boxed{" + answer + "}"


def check(gold: str, pred: str, timeout_s: int) -> dict[str, Any]:
    """{"verdict": "correct" | "incorrect" | "error", "reason": ...}. Never str()s parsed objects:
    printing a huge sympy number can hang outside any timeout."""
    from math_verify import parse, verify

    t = max(1, int(timeout_s))
    # math-verify returns False/[] when its own alarm fires; timing tells that apart from a real
    # "not equivalent", so callers see `timeout` rather than a confident `incorrect`.
    fired = 0.95 * t
    t0 = time.monotonic()
    gold_parsed = parse(_wrap(gold), parsing_timeout=t)
    if not gold_parsed:
        if time.monotonic() - t0 >= fired:
            return {"verdict": "timeout", "reason": f"parsing the reference ran past {t}s"}
        return {"verdict": "error", "reason": "could not parse the reference answer"}
    t0 = time.monotonic()
    pred_parsed = parse(_wrap(pred), parsing_timeout=t)
    if not pred_parsed:
        if time.monotonic() - t0 >= fired:
            return {"verdict": "timeout", "reason": f"parsing the answer ran past {t}s"}
        return {"verdict": "incorrect", "reason": "could not parse the extracted answer"}
    t0 = time.monotonic()
    ok = verify(gold_parsed, pred_parsed, timeout_seconds=t)
    if not ok and time.monotonic() - t0 >= fired:
        return {"verdict": "timeout", "reason": f"the equivalence check ran past {t}s"}
    return {"verdict": "correct" if ok else "incorrect", "reason": "equivalent" if ok else "not equivalent"}
