"""Answer extraction: each extractor on real-looking responses and on hostile text."""

import sys
import time

import pytest

from rewardsvc.verifiers.math.extract import WHITESPACE, extract_answer, last_boxed, reference_answer


@pytest.mark.parametrize(
    "text,answer,how",
    [
        ("so x = 3 and \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}", "boxed"),
        ("first \\boxed{1} then \\boxed{2}", "2", "boxed"),
        ("nested \\boxed{\\frac{a}{\\sqrt{b}}}", "\\frac{a}{\\sqrt{b}}", "boxed"),
        ("He pays 5+6 = 11\n#### 11", "11", "hash"),
        ("Thus, the answer is 42.", "42", "answer_is"),
        ("Final answer: $x = 5$", "x = 5", "answer_is"),
        ("We get 3 apples, then 1,250 more", "1250", "last_number"),
        ("\\fbox{7}", "7", "boxed"),
    ],
)
def test_extractors(text: str, answer: str, how: str) -> None:
    assert extract_answer(text) == (answer, how)


def test_no_answer() -> None:
    assert extract_answer("I do not know.") == (None, None)


def test_extractor_order_is_configurable() -> None:
    text = "The answer is 4.\n#### 5"
    assert extract_answer(text, ["answer_is", "hash"])[0] == "4"
    assert extract_answer(text, ["hash", "answer_is"])[0] == "5"
    with pytest.raises(ValueError, match="unknown extractor"):
        extract_answer(text, ["nope"])


def test_unclosed_boxed_falls_back_to_an_earlier_box() -> None:
    assert last_boxed("\\boxed{3} and then \\boxed{oops") == "3"


def test_hostile_text_is_linear_time() -> None:
    t0 = time.perf_counter()
    for text in ["\\boxed{" + "{" * 200_000, "\\boxed{" + "x" * 1_000_000, "#" * 1_000_000, "1" * 1_000_000]:
        extract_answer(text)
    # generous: quadratic behaviour on 1 MB would take minutes, not seconds
    assert time.perf_counter() - t0 < 30


def test_reference_forms() -> None:
    assert reference_answer("Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18") == "18"
    assert reference_answer("so it is \\boxed{\\pi}") == "\\pi"
    assert reference_answer(" 2\\sqrt{2} ") == "2\\sqrt{2}"


def test_the_whitespace_table_is_what_str_isspace_calls_whitespace() -> None:
    # The span scan skips whitespace with a lookup table; it must agree with re's \\s on every code point.
    assert set(WHITESPACE) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}


def _every_number_scan(text: str) -> tuple[int, int] | None:
    """The definition last_number_span implements from the end: the last match of a scan of the tail."""
    from rewardsvc.verifiers.math import extract

    matches = list(extract._NUMBER.finditer(text, max(0, len(text) - extract._NUMBER_TAIL)))
    return matches[-1].span() if matches else None


def _every_position_answer_is(text: str) -> tuple[int, int] | None:
    """The definition answer_is_span implements with a casefold() pre-check."""
    from rewardsvc.verifiers.math import extract

    matches = list(extract._ANSWER_IS.finditer(text, max(0, len(text) - extract._ANSWER_IS_TAIL)))
    if not matches:
        return None
    return extract._strip(text, extract._strip(text, matches[-1].span(1)), "$ ", ".")


def test_fast_scans_find_what_a_scan_of_every_position_finds() -> None:
    import random

    from conftest import DATA, read_jsonl
    from rewardsvc.verifiers.math.extract import answer_is_span, last_number_span

    rng = random.Random(0)
    # Digits, the characters numbers are made of, Unicode digits, the long s IGNORECASE reads as "s".
    alphabet = "0123456789-.,/ a\n\tx٣१ſANSWERanswer:is=$"
    texts = [row["answer"] for row in read_jsonl(DATA / "math" / "gsm8k-test-60.jsonl")]
    texts += [row["solution"] for row in read_jsonl(DATA / "math" / "math500-test-60.jsonl")]
    for _ in range(4000):
        text = "".join(rng.choices(alphabet, k=rng.choice([0, 1, 3, 10, 40, 2100, 4100])))
        if rng.random() < 0.2:
            text += rng.choice([" the answer is ", "Final ANſWER: ", " answer = "]) + text[:20]
        texts.append(text)
    for text in texts:
        assert last_number_span(text) == _every_number_scan(text), repr(text[-200:])
        assert answer_is_span(text) == _every_position_answer_is(text), repr(text[-200:])
