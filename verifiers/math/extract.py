"""Final-answer extraction from a model response: \\boxed{}, ####, "the answer is", last number.

Each extractor finds the answer's span in the text (the confidence scorer reads the tokens there)
and `extract_answer` its text. Every scan is linear in the text and runs in C (str methods, regex
on a bounded tail, numpy): hostile text (megabytes, floods of unclosed braces) costs what reading
it costs. Callers in a server still run extraction off the event loop: linear is not free.
"""

from __future__ import annotations

import re

import numpy as np

EXTRACTORS = ("boxed", "hash", "answer_is", "last_number")

Span = tuple[int, int]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
# No two neighbouring parts can match the same text, so a failing attempt backtracks over each
# character once (`\s*[:\s]*` here made a run of newlines quadratic).
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)[:\s]*(.+?)(?:\.\s|\.$|\n|$)", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_RUN = re.compile(r"[\d,./-]*")  # the characters _NUMBER's matches are made of
_ANSWER_IS_TAIL = 4000  # "the answer is" and the last number are looked for near the end only
_NUMBER_TAIL = 2000


def boxed_span(text: str) -> Span | None:
    """The contents of the last \\boxed{...} or \\fbox{...} with balanced braces, stripped. An
    unclosed box is skipped for an earlier one; `\\boxed 5` (no brace, as LaTeX allows) gives the
    next token."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    t = _Scan(text)
    ends = np.sort(np.concatenate([t.starts("\\boxed") + 6, t.starts("\\fbox") + 5]))
    first = t.next_non_space()[ends]  # where `{` or the token would be
    brace = first < t.n
    brace[brace] = t.codes[first[brace]] == ord("{")
    ok = np.zeros(len(ends), dtype=bool)
    ok[brace] = t.closes(first[brace])
    spaced = ~brace & (ends < t.n)
    spaced[spaced] = t.codes[ends[spaced]] == ord(" ")
    ok |= spaced & (first < np.minimum(t.n, ends + 200))
    hits = np.flatnonzero(ok)
    if not len(hits):
        return None
    k = int(hits[-1])
    if brace[k]:
        i = int(first[k])
        return _strip(text, (i + 1, t.closing(i)))
    end = int(ends[k])
    word = re.match(r"\s+(\S+)", text[end : end + 200])
    assert word is not None
    return _strip(text, (end + word.start(1), end + word.end(1)), "", "$.")


def hash_span(text: str) -> Span | None:
    """GSM8K style: whatever follows the last `####`, up to the end of its line."""
    k = text.rfind("####")
    if k == -1:
        return None
    start, _ = _strip(text, (k + 4, len(text)))
    end = text.find("\n", start)
    return _strip(text, (start, len(text) if end == -1 else end))


def answer_is_span(text: str) -> Span | None:
    """'The answer is X' / 'Final answer: X' (the last such phrase)."""
    start = max(0, len(text) - _ANSWER_IS_TAIL)
    # Every match holds "answer" as IGNORECASE reads it; casefold() maps each character IGNORECASE
    # equates with a letter of it (the long s too) to that letter. Most responses say no "answer":
    # one C pass instead of trying the pattern at every position.
    if "answer" not in text[start:].casefold():
        return None
    matches = list(_ANSWER_IS.finditer(text, start))
    if not matches:
        return None
    span = _strip(text, matches[-1].span(1))
    return _strip(text, span, "$ ", ".")


def last_number_span(text: str) -> Span | None:
    start = max(0, len(text) - _NUMBER_TAIL)
    # Every match of _NUMBER holds a digit and lies inside one run of the characters it is made of,
    # and matching inside a run does not depend on the text before it: so the last match is the
    # last one in the run around the last digit. That run is found from the end (a reversed copy,
    # in C) instead of trying the pattern at every position of the tail.
    back = text[start:][::-1]
    digit = _DIGIT.search(back)
    if digit is None:
        return None
    run_start = start + len(back) - _run_end(back, digit.start())
    run_end = _run_end(text, start + len(back) - 1 - digit.start())
    matches = list(_NUMBER.finditer(text, run_start, run_end))
    return matches[-1].span() if matches else None


def _run_end(text: str, pos: int) -> int:
    match = _RUN.match(text, pos)
    assert match is not None  # `*`: it matches the empty string too
    return match.end()


_SPANS = {"boxed": boxed_span, "hash": hash_span, "answer_is": answer_is_span, "last_number": last_number_span}


def answer_span(text: str, order: tuple[str, ...] | list[str] = EXTRACTORS) -> tuple[int, int, str] | None:
    """(start, end, extractor name) of the final answer, by the first extractor in `order` that
    finds a non-empty one."""
    for name in order:
        try:
            find = _SPANS[name]
        except KeyError:
            raise ValueError(f"unknown extractor {name[:40]!r}; choose from {list(EXTRACTORS)}") from None
        span = find(text)
        if span is not None and span[1] > span[0]:
            return span[0], span[1], name
    return None


def extract_answer(text: str, order: tuple[str, ...] | list[str] = EXTRACTORS) -> tuple[str | None, str | None]:
    """(answer, extractor name) using the first extractor in `order` that finds something."""
    found = answer_span(text, order)
    if found is None:
        return None, None
    start, end, name = found
    answer = text[start:end]
    return (answer.replace(",", "") if name == "last_number" else answer), name


def last_boxed(text: str) -> str | None:
    """Contents of the last closed \\boxed{...} or \\fbox{...} (see boxed_span), or None."""
    span = boxed_span(text)
    return None if span is None else text[span[0] : span[1]]


def reference_answer(reference: str) -> str:
    """The gold answer from a reference: a bare answer, a GSM8K solution (`#### 42`) or a boxed one."""
    for find in (hash_span, boxed_span):
        span = find(reference)
        if span is not None and span[1] > span[0]:
            return reference[span[0] : span[1]]
    return reference.strip()


def _strip(text: str, span: Span, both: str | None = None, right: str = "") -> Span:
    """`span` without the characters `both` (default whitespace) at either end and `right` at the
    end: the span of text[a:b].strip(both).rstrip(right)."""
    a, b = span
    piece = text[a:b]
    kept = piece.lstrip(both)
    a += len(piece) - len(kept)
    kept = kept.rstrip(both)
    if right:
        kept = kept.rstrip(right)
    return a, a + len(kept)


class _Scan:
    """A text as an array of code points, and what the boxed extractor asks of every position,
    computed once with numpy: every question about every box is then a vector lookup. A flood of
    unclosed `\\boxed{` used to rescan to the end once per box (quadratic: 5,000 boxes held the
    server for seconds)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        self.n = len(self.codes)
        step = (self.codes == ord("{")).astype(np.int32)
        step -= self.codes == ord("}")
        self.depth = np.cumsum(step, dtype=np.int32)  # brace depth after each character
        # The lowest depth from each position on: a '{' closes iff the depth later drops below its own.
        self.lowest_after = np.minimum.accumulate(self.depth[::-1])[::-1]

    def starts(self, needle: str) -> np.ndarray:
        """Start of every occurrence of `needle` (which can't overlap itself)."""
        # str.find in C: a handful of calls for a handful of boxes, and linear for a flood.
        found, k = [], self.text.find(needle)
        while k != -1:
            found.append(k)
            k = self.text.find(needle, k + len(needle))
        return np.array(found, dtype=np.intp)

    def closes(self, opens: np.ndarray) -> np.ndarray:
        """For each '{' position in `opens`: does it ever close?"""
        out = np.zeros(len(opens), dtype=bool)
        inner = opens + 1 < self.n
        out[inner] = self.lowest_after[opens[inner] + 1] < self.depth[opens[inner]]
        return out

    def closing(self, i: int) -> int:
        """Index of the '}' closing the '{' at `i` (which closes)."""
        # Depth moves one step at a time, so the first position below the depth inside is the '}'.
        return i + 1 + int(np.argmax(self.depth[i + 1 :] < self.depth[i]))

    def next_non_space(self) -> np.ndarray:
        """For each position (and len(text)), the first position at or after it that is not
        whitespace as `re`'s \\s means it (len(text) if none)."""
        index = np.arange(self.n + 1, dtype=np.intp)
        # A table lookup, not np.isin (which sorts): this was most of the extractor's time on short texts.
        low = self.codes < len(_IS_WHITESPACE)
        space = np.zeros(self.n, dtype=bool)
        space[low] = _IS_WHITESPACE[self.codes[low]]
        index[:-1][space] = self.n
        return np.minimum.accumulate(index[::-1])[::-1]


#: Every character `re`'s \\s and str.isspace() call whitespace (Unicode's, not only ASCII's);
#: tests/test_math_extract.py checks it against str.isspace.
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
              "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_IS_WHITESPACE = np.zeros(max(map(ord, WHITESPACE)) + 1, dtype=bool)
_IS_WHITESPACE[[ord(c) for c in WHITESPACE]] = True
