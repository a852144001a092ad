"""Equivalence check of two answers with math-verify (sympy); runs inside a worker process.

math-verify's own timeouts use SIGALRM, which only works in a process's main thread: that is why
this runs in `rewardsvc.verifiers.math.worker`, never in the server process.
"""

from __future__ import annotations

import re
import time
from typing import Any

#: An integer as plain ASCII digits (every GSM8K answer). math-verify parses `\\boxed{42}` to
#: `[Integer(42), "42"]` through its LaTeX grammar (ANTLR) and sympy's string parser: most of a
#: first-time check's cost. `_parse` builds that same list directly; tests/test_math_check.py holds
#: it equal to math-verify's own on every GSM8K answer and the edge cases (signs, leading zeros).
_PLAIN_INTEGER = re.compile(r"-?[0-9]{1,18}")


def _wrap(answer: str) -> str:
    # Boxing makes math-verify read the string as LaTeX first, then as a plain expression.
    return answer if "\\boxed" in answer else "\\boxed{" + answer + "}"


def _parse(answer: str, timeout_s: int) -> list[Any]:
    if _PLAIN_INTEGER.fullmatch(answer):
        from sympy import Integer

        return [Integer(int(answer)), answer]
    from math_verify import parse

    return parse(_wrap(answer), parsing_timeout=timeout_s)


def check(gold: str, pred: str, timeout_s: int) -> dict[str, Any]:
    """{"verdict": "correct" | "incorrect" | "error", "reason": ...}. Never str()s parsed objects:
    printing a huge sympy number can hang outside any timeout."""
    from math_verify import verify

    t = max(1, int(timeout_s))
    # math-verify returns False/[] when its own alarm fires; timing tells that apart from a real
    # "not equivalent", so callers see `timeout` rather than a confident `incorrect`.
    fired = 0.95 * t
    t0 = time.monotonic()
    gold_parsed = _parse(gold, t)
    if not gold_parsed:
        if time.monotonic() - t0 >= fired:
            return {"verdict": "timeout", "reason": f"parsing the reference ran past {t}s"}
        return {"verdict": "error", "reason": "could not parse the reference answer"}
    t0 = time.monotonic()
    pred_parsed = _parse(pred, t)
    if not pred_parsed:
        if time.monotonic() - t0 >= fired:
            return {"verdict": "timeout", "reason": f"parsing the answer ran past {t}s"}
        return {"verdict": "incorrect", "reason": "could not parse the extracted answer"}
    t0 = time.monotonic()
    ok = verify(gold_parsed, pred_parsed, timeout_seconds=t)
    if not ok and time.monotonic() - t0 >= fired:
        return {"verdict": "timeout", "reason": f"the equivalence check ran past {t}s"}
    return {"verdict": "correct" if ok else "incorrect", "reason": "equivalent" if ok else "not equivalent"}
