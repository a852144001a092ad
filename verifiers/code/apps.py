"""APPS-style tests, as veRL's and PRIME's code data carry them, in the code scorer's own styles.

`{"inputs": [...], "outputs": [...], "fn_name"?: "f"}` (APPS, TACO, CodeContests as preprocessed
by veRL/PRIME) is judged as veRL 0.9.1's `prime_code` judges it
(`verl/utils/reward_score/prime_code/testing_util.py`, `run_test`):
- The program runs after prime_code's prelude (`from math import *`, `from typing import *`, ...), so
  code that leans on those implicit imports (`List[int]` annotations, a bare `Counter`) runs here too.
- Without `fn_name`, each test is a stdin/stdout case (a list input or output is joined by "\n"),
  compared as prime_code compares (`compare: apps` in the harness's stdio_cases.py).
- With `fn_name`, each test is an assert calling `Solution().<fn_name>` when the program has a
  top-level `Solution`, else `<fn_name>`, with the arguments one JSON value per input line (or an
  input that is already a list of arguments, as raw APPS stores them), and prime_code's match:
  equal, or equal to the first element of a list expected value, tuples compared as lists, JSON's
  string dict keys turned back into ints.
Deliberate differences: every test counts (prime_code's partial credit stops at 10), a call-based
problem gets partial credit too (prime_code's per-test rerun drops `fn_name`), and a program must
exit with status 0 (prime_code swallows `sys.exit(n)`).
"""

from __future__ import annotations

import json
import math
from typing import Any

# prime_code's prelude, verbatim (testing_util.py run_test, `sol = ...`).
PRELUDE = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\nfrom heapq import *\n"
    "from bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\nfrom statistics import *\n"
    "from itertools import *\nfrom functools import *\nfrom operator import *\nfrom io import *\nfrom sys import *\n"
    "from json import *\nfrom builtins import *\nfrom typing import *\nimport string\nimport re\nimport datetime\n"
    "import collections\nimport heapq\nimport bisect\nimport copy\nimport math\nimport random\nimport statistics\n"
    "import itertools\nimport functools\nimport operator\nimport io\nimport sys\nimport json\n"
    "sys.setrecursionlimit(6*10**5)\n"
)
HELP = ('APPS tests are {"inputs": [...], "outputs": [...]} (stdin/stdout) or with "fn_name": "<function>" '
        "(call-based: each input one JSON argument per line, each output a JSON value)")


def is_apps(data: dict[str, Any]) -> bool:
    return "inputs" in data or "outputs" in data


def parse_apps(data: dict[str, Any]) -> tuple[str, list[dict[str, str]], list[str]]:
    """("cases", cases, []) or ("asserts", [], asserts); raises ValueError saying what is wrong."""
    unknown = set(data) - {"inputs", "outputs", "fn_name", "timeout_s", "memory_mb"}
    if unknown:
        raise ValueError(f"reference has unknown key(s) {sorted(unknown)} beside inputs/outputs; {HELP}")
    inputs, outputs = data.get("inputs"), data.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or not inputs:
        raise ValueError(f'reference "inputs" and "outputs" must be non-empty lists; {HELP}')
    if len(inputs) != len(outputs):
        raise ValueError(f'reference has {len(inputs)} "inputs" but {len(outputs)} "outputs"; one output per input')
    fn_name = data.get("fn_name")
    if fn_name is None:
        return "cases", [{"input": _joined(x, f"inputs[{i}]"), "output": _joined(y, f"outputs[{i}]")}
                         for i, (x, y) in enumerate(zip(inputs, outputs))], []
    if not isinstance(fn_name, str) or not fn_name.isidentifier():
        raise ValueError(f'reference "fn_name" must be a Python identifier, got {fn_name!r}')
    return "asserts", [], [_call_test(i, fn_name, x, y) for i, (x, y) in enumerate(zip(inputs, outputs))]


def _joined(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    raise ValueError(f'reference {where} must be a string or a list of lines (stdin/stdout tests)')


def _call_test(index: int, fn_name: str, raw_in: Any, raw_out: Any) -> str:
    try:
        args = [json.loads(line) for line in raw_in.split("\n")] if isinstance(raw_in, str) else raw_in
        expected = json.loads(raw_out) if isinstance(raw_out, str) else raw_out
    except ValueError as exc:
        raise ValueError(f"reference test {index}: not JSON ({exc}); {HELP}") from None
    if not isinstance(args, list):
        raise ValueError(f"reference inputs[{index}] must be JSON lines or a list of arguments")
    # JSON forces dictionaries to have string keys; prime_code undoes it (assuming a singleton list).
    try:
        if isinstance(args[0], dict):
            args = [{int(k): v for k, v in args[0].items()}]
    except (ValueError, IndexError):
        pass
    try:
        if isinstance(expected, dict):
            expected = [{int(k): v for k, v in expected.items()}]
    except ValueError:
        pass
    try:
        if isinstance(expected[0], dict):
            expected = [{int(k): v for k, v in expected[0].items()}]
    except (ValueError, IndexError, KeyError, TypeError):
        pass
    shown = ", ".join(_literal(a) for a in args)
    title = f"# test {index}: {fn_name}({shown[:120]}{'...' if len(shown) > 120 else ''})"
    return (
        f"{title}\n"
        "try:\n    _apps_self\nexcept NameError:\n"
        "    try:\n        _apps_self = Solution()\n    except NameError:\n        _apps_self = None\n"
        f"_apps_exp = {_literal(expected)}\n"
        f"_apps_out = (getattr(_apps_self, {fn_name!r}) if _apps_self is not None else {fn_name})"
        f"(*{_literal(args)})\n"
        "if isinstance(_apps_out, tuple):\n    _apps_out = list(_apps_out)\n"
        "_apps_ok = _apps_out == _apps_exp\n"
        "if isinstance(_apps_exp, list) and _apps_exp:\n    _apps_ok = _apps_ok or _apps_out == _apps_exp[0]\n"
        "try:\n    if isinstance(_apps_out[0], tuple):\n"
        "        _apps_ok = _apps_ok or [list(x) for x in _apps_out] == _apps_exp[0]\n"
        "except Exception:\n    pass\n"
        "assert _apps_ok is True, f'expected {_apps_exp!r:.200}, got {_apps_out!r:.200}'\n"
    )


def _literal(value: Any) -> str:
    """Python source for a JSON value (repr, but with inf/nan spelled so they evaluate)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)
