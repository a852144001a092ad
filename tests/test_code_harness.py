"""The in-sandbox harness's logic, in-process: program assembly, per-test split, and the value boundary.

The harness's safety rests on `frames.Decoder` yielding only exact builtin types and on program objects
comparing by identity; these tests pin that down without a sandbox.
"""

from __future__ import annotations

import collections
import enum
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verifiers" / "code" / "harness"))

import remote  # noqa: E402
import program  # noqa: E402
import frames  # noqa: E402

PLAIN = (int, float, str, bool, type(None), list, tuple, dict, set, frozenset, bytes, bytearray, complex)


def roundtrip(value: Any) -> Any:
    def no_handles(obj: Any) -> dict:
        return {"~": "h", "v": 7, "t": type(obj).__name__, "c": callable(obj)}

    return frames.Decoder(lambda ref: ("handle", ref.hid)).loads(frames.dumps(value, no_handles))


def exact_types(value: Any) -> bool:
    if type(value) in (list, tuple, set, frozenset):
        return all(exact_types(v) for v in value)
    if type(value) is dict:
        return all(exact_types(k) and exact_types(v) for k, v in value.items())
    return type(value) in PLAIN


class Point(NamedTuple):
    x: int
    y: int


class Color(enum.IntEnum):
    RED = 1


class Sneaky(str):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


@pytest.mark.parametrize("value", [
    0, -1, 10**50, 1.5, float("inf"), -0.0, "héllo \x00 \ud800", True, None, [1, [2, [3]]], (1, "a"),
    {"a": 1, (1, 2): [3], 4: {5}}, {1, 2}, frozenset({3}), b"\x00\xff", bytearray(b"ab"), 1 + 2j, [],
])
def test_plain_values_roundtrip_exactly(value: Any) -> None:
    back = roundtrip(value)
    assert back == value and type(back) is type(value) and exact_types(back)


def test_nan_roundtrips() -> None:
    assert math.isnan(roundtrip(float("nan")))


def test_subclasses_of_plain_types_arrive_as_their_base_type() -> None:
    back = roundtrip([Point(1, 2), Color.RED, collections.Counter("aab"), collections.OrderedDict(a=1),
                      Sneaky("x")])
    assert back == [(1, 2), 1, {"a": 2, "b": 1}, {"a": 1}, "x"]
    assert exact_types(back)
    assert back[4] != "y"  # the always-equal str subclass lost its __eq__ on the way


def test_other_objects_become_handles() -> None:
    assert roundtrip([object(), len]) == [("handle", 7), ("handle", 7)]


@pytest.mark.parametrize("frame", [
    b'{"~":"exec","v":1}', b'{"~":"dict","v":[[1]]}', b'{"~":"set","v":[[1]]}', b'{"~":"h","v":"x"}',
    b'{"~":"complex","v":["a",1]}', b"[1,2", b"[1] [2]", "[" * 100_000 + "]" * 100_000,
    b"9" * 200_000,
])
def test_decoder_rejects_malformed_or_hostile_frames(frame: bytes | str) -> None:
    data = frame.encode() if isinstance(frame, str) else frame
    before = sys.get_int_max_str_digits()
    frames.limit_int_digits()
    try:
        with pytest.raises(frames.WireError):
            frames.Decoder(lambda ref: ref).loads(data)
    finally:
        sys.set_int_max_str_digits(before)


def test_remote_objects_compare_by_identity_only() -> None:
    owner = object.__new__(remote.Link)
    a = remote.Remote(owner, 1, "E", False)
    b = remote.Remote(owner, 2, "E", False)
    assert a == a and a != b and not (a == 1) and not (1 == a) and a != "anything"
    assert {a: 1}[a] == 1 and hash(a) != hash(b)


def test_compose_program_humaneval_completion_and_full_definition() -> None:
    prompt = "from typing import List\n\ndef f(xs: List[int]) -> int:\n    \"\"\"doc\"\"\"\n"
    assert program.compose_program(prompt, "    return sum(xs)\n", "f") == prompt + "    return sum(xs)\n"
    full = "def f(xs):\n    return len(xs)\n"
    source = program.compose_program(prompt, full, "f")
    assert source.startswith("from typing import List") and source.endswith(full)
    # A chat-style prompt is not Python: the response stands alone.
    assert program.compose_program("Write f, please.", full, "f") == full


def test_defines_sees_defs_assignments_and_imports() -> None:
    assert program.defines("def g(): pass\ndef f(): pass", "f")
    assert program.defines("f = lambda: 1", "f")
    assert program.defines("from math import sqrt as f", "f")
    assert not program.defines("def g():\n    def f(): pass", "f")
    assert program.defines("def f(:\n  broken", "f")  # unparsable: a regex decides


def run_split(test_source: str, candidate: Any) -> tuple[list[str], list[tuple[bool, str | None]]]:
    tree = program._parse(test_source, "test.py")
    names = program.split_check(tree, test_source)
    recorder = program.Recorder(names)
    ns: dict[str, Any] = {"__harness__": recorder}
    exec(compile(tree, "test.py", "exec"), ns)
    ns["check"](candidate)
    return names, recorder.outcomes


def test_split_check_records_each_assert_and_keeps_going_after_a_failure() -> None:
    source = (
        "def check(candidate):\n"
        "    xs = [1, 2]\n"
        "    assert candidate(xs) == 3\n"
        "    assert True, 'filler'\n"
        "    assert candidate([]) == 1\n"
        "    for x in range(3):\n"
        "        assert candidate([x]) == x\n"
        "    assert candidate(None) == 0\n"
    )
    names, outcomes = run_split(source, lambda xs: sum(xs))
    assert names == ["assert candidate(xs) == 3", "assert candidate([]) == 1",
                     "for x in range(3):\n        assert candidate([x]) == x", "assert candidate(None) == 0"]
    assert [o[0] for o in outcomes] == [True, False, True, False]
    assert outcomes[1][1] == "AssertionError" and outcomes[3][1].startswith("TypeError")


def test_split_check_without_asserts_leaves_check_whole() -> None:
    tree = program._parse("def check(c):\n    helper(c)\n", "test.py")
    assert program.split_check(tree, "def check(c):\n    helper(c)\n") == []


def test_statement_code_finds_definitions_in_any_prompt_form() -> None:
    helper = "import math\n\ndef enc(s):\n    return s[::-1]\n\ndef dec(s):\n    \"\"\"Invert enc.\"\"\"\n"
    # Python as it is: kept verbatim (a completion continues it).
    assert program.statement_code(helper) == helper
    for text in (f"You are helpful.\n\nSolve:\n```python\n{helper}```\nThanks.",
                 f"Solve:\n  ~~~py\n  {helper.replace(chr(10), chr(10) + '  ')}~~~\n",
                 f"Complete the function below.\n\n{helper}\nKeep enc as it is."):
        code = program.statement_code(text)
        assert program.statement_names(code, "dec") == ({"math", "enc"}, {"dec"}), (text, code)
    # Prose that starts like code, other languages' blocks, example calls: not definitions.
    noise = ("from the list below pick one\n```bash\ndef x\n```\n```python\nprint(enc('a'))\nK = f(1)\nN = 3\n```")
    assert program.statement_code(noise).strip() == "N = 3"
    assert program.statement_code("Write a function that reverses a string.") == ""


def test_stubs_are_what_the_program_provides() -> None:
    source = ("def a():\n    \"\"\"doc\"\"\"\n\ndef b():\n    pass\n\ndef c():\n    ...\n\n"
              "def d():\n    raise NotImplementedError('todo')\n\nclass E:\n    x: int\n    def m(self):\n        pass\n\n"
              "def helper():\n    return 1\n\nclass Helper:\n    def m(self):\n        return 2\n")
    assert program.statement_names(source, "a") == ({"helper", "Helper"}, {"a", "b", "c", "d", "E"})


def test_referenced_and_prompt_names() -> None:
    tree = program._parse("def check(candidate):\n    assert math.fabs(poly(xs, candidate(xs))) < 1\n")
    assert {"math", "poly", "candidate", "xs"} <= program._referenced_names(tree)
    assert program._top_level_names("import math\ndef poly(xs, x): pass\nK = 1\n") == {"math", "poly", "K"}
    assert program._top_level_names("Not Python at all.") == set()
