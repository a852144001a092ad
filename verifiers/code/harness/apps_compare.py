"""prime_code's stdin/stdout verdict, for APPS-style tests (`"compare": "apps"` in a cases payload).

veRL 0.9.1, verl/utils/reward_score/prime_code/testing_util.py, run_test's standard-input branch: a
case passes when the output equals the expected text after stripping, line by line after
stripping, with empty lines dropped, or when every line is a number within numpy.allclose's
tolerance (lines that are all digits must match exactly). Its later set-of-tokens comparison
never changes a verdict (its result is overwritten), so it is not here.
"""

from __future__ import annotations

import math


def apps_match(got: str, want: str) -> bool:
    output = got.splitlines()
    if "\n".join(output).strip() == want.strip():
        return True
    if "\n".join(o.strip() for o in output).strip() == want.strip():
        return True
    if output == [want]:
        return True
    expected = [x.strip() for x in want.split("\n") if x]
    if output == expected:
        return True
    output = [o for o in output if o]
    if output == expected:
        return True
    if len(output) != len(expected) or all(o.isdigit() and e.isdigit() for o, e in zip(output, expected)):
        return False
    try:
        pairs = [(float(o), float(e)) for o, e in zip(output, expected)]
    except ValueError:
        return False
    return all(_allclose(a, b) for a, b in pairs)


def _allclose(a: float, b: float) -> bool:
    """numpy.allclose for one pair (rtol 1e-5, atol 1e-8; infinities equal only to themselves)."""
    if math.isfinite(a) and math.isfinite(b):
        return abs(a - b) <= 1e-8 + 1e-5 * abs(b)
    return a == b
