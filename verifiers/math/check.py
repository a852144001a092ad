"""Equivalence check of two answers with math-verify (sympy); runs inside a worker process.

math-verify's own timeouts use SIGALRM, which only works in a process's main thread: that is why
this runs in `verifiers.math.worker`, never in the server process.
"""

from __future__ import annotations

from typing import Any


def _wrap(answer: str) -> str:
    # Boxing makes math-verify read the string as LaTeX first, then as a plain expression.
    return answer if "\\boxed" in answer else "\\boxed{" + answer + "}"


def check(gold: str, pred: str, timeout_s: int) -> dict[str, Any]:
    """{"verdict": "correct" | "incorrect" | "error", "reason": ...}. Never str()s parsed objects:
    printing a huge sympy number can hang outside any timeout."""
    from math_verify import parse, verify

    t = max(1, int(timeout_s))
    gold_parsed = parse(_wrap(gold), parsing_timeout=t)
    if not gold_parsed:
        return {"verdict": "error", "reason": "could not parse the reference answer"}
    pred_parsed = parse(_wrap(pred), parsing_timeout=t)
    if not pred_parsed:
        return {"verdict": "incorrect", "reason": "could not parse the extracted answer"}
    ok = verify(gold_parsed, pred_parsed, timeout_seconds=t)
    return {"verdict": "correct" if ok else "incorrect", "reason": "equivalent" if ok else "not equivalent"}
