"""The math check's own parse of plain integers equals math-verify's, and so do the verdicts."""

from __future__ import annotations

import random

import pytest

from conftest import DATA, read_jsonl
from rewardsvc.verifiers.math.check import _PLAIN_INTEGER, _parse, _wrap, check
from rewardsvc.verifiers.math.extract import extract_answer

GSM8K = read_jsonl(DATA / "math" / "gsm8k-test-60.jsonl")


def _integers() -> list[str]:
    rng = random.Random(0)
    xs = {str(n) for n in range(-20, 130)}
    xs |= {"-0", "00", "007", "-007", "0000000000", "9" * 18, "-" + "9" * 18, "1" + "0" * 17}
    for _ in range(150):
        digits = str(rng.randint(0, 10 ** rng.randint(1, 18) - 1)).zfill(rng.randint(1, 4))[:18]
        xs.add(("-" if rng.random() < 0.3 else "") + digits)
    for row in GSM8K:  # the answers real GSM8K solutions end in
        xs.add(row["answer"].split("####")[-1].strip().replace(",", ""))
    return sorted(xs)


def test_plain_integers_parse_exactly_as_math_verify_parses_them() -> None:
    # sympy and math-verify are imported in the tests: every xdist worker imports every test file at
    # collection, and only one runs these (tests/test_suite_lanes.py).
    import sympy
    from math_verify import parse

    xs = _integers()
    assert all(_PLAIN_INTEGER.fullmatch(x) for x in xs)
    for x in xs:
        ours, theirs = _parse(x, 3), parse(_wrap(x), parsing_timeout=3)
        assert len(ours) == len(theirs) == 2, (x, theirs)
        assert sympy.srepr(ours[0]) == sympy.srepr(theirs[0]) and ours[1] == theirs[1], (x, ours, theirs)


@pytest.mark.parametrize("text", ["1.5", "0.5", "+5", "1,000", "٣", "１２", "5 ", "1e3", "1" * 19, "\\boxed{5}", "-"])
def test_anything_else_goes_to_math_verify(text: str) -> None:
    # Decimals are not plain integers (math-verify reads "0.5" as 1/2); nor are signs, separators,
    # non-ASCII digits, exponents, or numbers past 18 digits.
    assert not _PLAIN_INTEGER.fullmatch(text)


def test_verdicts_equal_math_verifys_on_gsm8k_answers() -> None:
    from math_verify import parse, verify

    golds = [row["answer"].split("####")[-1].strip().replace(",", "") for row in GSM8K]
    preds = [extract_answer(row["answer"])[0] or "" for row in GSM8K]
    pairs = [(g, p) for g, p in zip(golds, preds)] + [(g, str(int(g) + 1)) for g in golds]
    pairs += [(g, "-" + g) for g in golds[:10]] + [("0", "-0"), ("12", "012"), ("5", "5.0"), ("0.5", "1/2")]
    for gold, pred in pairs:
        ours = check(gold, pred, 3)["verdict"] == "correct"
        theirs = verify(parse(_wrap(gold), parsing_timeout=3), parse(_wrap(pred), parsing_timeout=3))
        assert ours == theirs, (gold, pred)
