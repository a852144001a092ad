"""The code scorer's item parsing: the program from the response, the tests from the reference."""

from __future__ import annotations

import json

import pytest

from rewardsvc.verifiers.code.extract import extract_program, fenced_blocks, parse_reference


def test_last_python_block_wins_over_earlier_and_untagged_blocks() -> None:
    text = ("First try:\n```python\ndef f(): return 1\n```\nOutput:\n```\n1\n```\n"
            "Better:\n```py\ndef f(): return 2\n```\nand a shell line\n```bash\nls\n```\n")
    assert extract_program(text) == "def f(): return 2\n"


def test_untagged_block_is_used_when_no_block_is_tagged_python() -> None:
    assert extract_program("Here:\n```\nx = 1\n```\n") == "x = 1\n"


def test_raw_text_when_there_is_no_fence() -> None:
    body = "    return a + b\n"
    assert extract_program(body) == body


def test_unclosed_fence_runs_to_the_end_and_tildes_work() -> None:
    assert extract_program("```python\ndef f():\n    return 3\n") == "def f():\n    return 3\n"
    assert extract_program("~~~python\nx = 2\n~~~\n") == "x = 2\n"


def test_fence_inside_code_needs_its_own_line_to_close() -> None:
    blocks = fenced_blocks("````python\ns = '```'\nprint(s)\n````\n")
    assert blocks == [("python", "s = '```'\nprint(s)\n")]


def test_reference_styles_parse() -> None:
    check = parse_reference(json.dumps({"test": "def check(c):\n    assert c(1) == 2\n", "entry_point": " inc "}))
    assert (check.style, check.entry_point) == ("check", "inc")
    asserts = parse_reference(json.dumps({"asserts": ["assert f(1) == 2"], "timeout_s": 3, "memory_mb": 256}))
    assert (asserts.style, asserts.timeout_s, asserts.memory_mb) == ("asserts", 3.0, 256)
    cases = parse_reference(json.dumps({"cases": [{"input": "1 2", "output": "3"}, {"output": "x"}]}))
    assert cases.cases == [{"input": "1 2", "output": "3"}, {"input": "", "output": "x"}]
    with_prompt = parse_reference(json.dumps({"test": "def check(c): pass", "entry_point": "f",
                                              "prompt": "def helper():\n    return 1\n"}))
    assert with_prompt.payload()["statement"] == "def helper():\n    return 1\n"
    assert with_prompt.size > len("def check(c): pass")


@pytest.mark.parametrize("reference, fragment", [
    (None, "needs tests"),
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"asserts": ["assert 1"], "cases": [{"output": "1"}]}), "exactly one"),
    (json.dumps({"test": "def check(c): pass"}), "entry_point"),
    (json.dumps({"test": "def check(c): pass", "entry_point": "a b"}), "entry_point"),
    (json.dumps({"asserts": []}), "non-empty list"),
    (json.dumps({"asserts": [1]}), "non-empty list"),
    (json.dumps({"cases": [{"in": "1", "output": "1"}]}), "cases"),
    (json.dumps({"asserts": ["assert 1"], "timeout_s": -1}), "timeout_s"),
    (json.dumps({"asserts": ["assert 1"], "memory_mb": 1}), "memory_mb"),
    (json.dumps({"asserts": ["assert 1"], "extra": 1}), "unknown key"),
    (json.dumps({"asserts": ["assert 1"], "prompt": ["def f(): pass"]}), "prompt"),
    (json.dumps({"cases": [{"output": "1"}], "prompt": "def f(): pass"}), "prompt"),
])
def test_bad_references_say_what_is_wrong(reference: str | None, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_reference(reference)
