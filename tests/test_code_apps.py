"""APPS-style tests in the code scorer, judged as veRL 0.9.1's prime_code judges them: each program
and its tests are scored by the code scorer (real sandbox) and by prime_code itself
(`verl.utils.reward_score.default_compute_score("apps", ...)`, the released source), and must agree.
The cases probe prime_code's output comparison (stripping, blank lines, float tolerance), its
prelude, and the call-based match rule; the documented differences are tested as differences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from code_support import InProcessService
from trainer_sources import trainer_source

from rewardsvc.types import ErrorCode

pytestmark = pytest.mark.slow  # a code sandbox, and veRL's prime_code in a process of its own


def stdin(program: str, outputs: list[str], inputs: list[str] | None = None) -> tuple[str, dict]:
    return f"```python\n{program}\n```", {"inputs": inputs or ["\n"] * len(outputs), "outputs": outputs}


def call(program: str, inputs: list, outputs: list, fn: str = "f") -> tuple[str, dict]:
    return f"```python\n{program}\n```", {"inputs": inputs, "outputs": outputs, "fn_name": fn}


AGREE = {  # name -> (response, ground truth); both judges give the same score
    "trailing spaces": stdin("print('a ')\nprint('b')", ["a\nb\n"]),
    "blank line between": stdin("print('a')\nprint()\nprint('b')", ["a\nb\n"]),
    "two spaces are not one": stdin("print('a  b')", ["a b\n"]),
    "one line is not two": stdin("print(1, 2)", ["1\n2\n"]),
    "float within allclose": stdin("print(0.33333333)", ["0.333333333\n"]),
    "float outside allclose": stdin("print(0.3334)", ["0.3333\n"]),
    "integers exactly": stdin("print('007')", ["7\n"]),
    "-5 is -5.0": stdin("print(-5)", ["-5.0\n"]),
    "prelude: sqrt without import": stdin("print(int(sqrt(16)))", ["4\n"]),
    "runtime error": stdin("print(1)\nraise ValueError", ["1\n"]),
    "call: tuple result is a list": call("def f(a):\n    return (a, a)", ["1"], ["[1, 1]"]),
    "call: expected wrapped in a list": call("def f(a):\n    return a", ["1"], ["[1]"]),
    "call: JSON string keys are ints": call("def f(a):\n    return {1: a}", ["2"], ['{"1": 2}']),
    "call: wrong answer": call("def f(a, b):\n    return a - b", ["1\n2", "3\n4"], ["3", "7"]),
    "call: Solution method": call("class Solution:\n    def f(self, xs: List[int]) -> int:\n        return max(xs)",
                                  ["[1, 5, 2]", "[0]"], ["5", "0"]),
}


@pytest.fixture(scope="module")
def scorer() -> InProcessService:
    svc = InProcessService({"scorers": {"code": {"type": "code", "workers": 2}}})
    yield svc
    svc.close()


# gc paused: collections during veRL's imports, then in each case's fork (prime_code forks per case) walking
# the whole inherited heap, were ~40% of this short-lived process's CPU.
PRIME_CODE = """
import gc; gc.disable()
import json, sys
from verl.utils.reward_score import default_compute_score
cases = json.loads(sys.stdin.read())
print(json.dumps([float(default_compute_score("apps", r, json.dumps(g))) for r, g in cases]))
"""

PARTIAL_CALL = call("def f(a):\n    return 1", ["1", "2"], ["1", "9"])
EXIT_ONE = stdin("print(3)\nimport sys\nsys.exit(1)", ["3\n"])
RAW_LISTS = call("def f(a, b):\n    return a + b", [[1, 2], [3, 4]], [[3], [7]])  # raw APPS: arguments as lists
LIST_OUTPUT = stdin("print(1)\nprint(2)", [["1", "2"]])  # an output given as its lines
DIFFERENT = [PARTIAL_CALL, EXIT_ONE, RAW_LISTS, LIST_OUTPUT]


@pytest.fixture(scope="module")
def prime_code() -> dict[str, float]:
    """veRL's own verdict on every case of this file, by name (the differences by index), from one fresh
    process: importing veRL takes ~6 CPU-s, and prime_code forks per test, which must not happen in a
    process whose threads (the in-process sandbox pool's) may hold locks."""
    names = [*AGREE, *(str(i) for i in range(len(DIFFERENT)))]
    cases = [*AGREE.values(), *DIFFERENT]
    env = {**os.environ, "PYTHONPATH": str(trainer_source())}
    out = subprocess.run([sys.executable, "-c", PRIME_CODE], input=json.dumps(cases), capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(zip(names, json.loads(out.stdout.strip().splitlines()[-1]), strict=True))


def test_apps_tests_score_as_prime_code_scores_them(scorer, prime_code) -> None:
    names = list(AGREE)
    ours = scorer.score([{"id": n, "response": AGREE[n][0], "reference": json.dumps(AGREE[n][1])} for n in names])
    assert [r.error for r in ours] == [None] * len(names)
    theirs = {n: prime_code[n] for n in names}
    assert {r.id: r.score for r in ours} == theirs
    assert 0 < sum(theirs.values()) < len(names)  # passes and failures both: the comparison can fail


def test_documented_differences_from_prime_code(scorer, prime_code) -> None:
    ours = scorer.score([{"id": str(i), "response": r, "reference": json.dumps(g)}
                         for i, (r, g) in enumerate(DIFFERENT)])
    assert [r.score for r in ours] == [0.5, 0.0, 1.0, 1.0]
    # prime_code: a call-based problem's partial credit reruns tests without fn_name (all or
    # nothing); sys.exit(n) is swallowed; raw list inputs crash its parser, list outputs its
    # truncation of the expected text.
    assert [prime_code[str(i)] for i in range(len(DIFFERENT))] == [0.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize(("reference", "message"), [
    ({"inputs": ["1"], "outputs": []}, "1 \"inputs\" but 0 \"outputs\""),
    ({"inputs": [], "outputs": []}, "must be non-empty lists"),
    ({"inputs": ["x"], "outputs": ["1"], "fn_name": "f"}, "test 0: not JSON"),
    ({"inputs": ["1"], "outputs": ["1"], "fn_name": "not a name"}, "must be a Python identifier"),
    ({"inputs": ["1"], "outputs": ["1"], "extra": 1}, "unknown key(s) ['extra']"),
])
def test_bad_apps_references_are_item_errors(scorer, reference: dict, message: str) -> None:
    (result,) = scorer.score([{"id": "x", "response": "print(1)", "reference": json.dumps(reference)}])
    assert result.error is not None and result.error.code == ErrorCode.INVALID_ITEM
    assert message in result.error.message
