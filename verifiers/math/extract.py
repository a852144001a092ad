"""Final-answer extraction from a model response: \\boxed{}, ####, "the answer is", last number.

Pure string scanning, linear in the input, safe on hostile text (unclosed braces, megabytes).
"""

from __future__ import annotations

import re

EXTRACTORS = ("boxed", "hash", "answer_is", "last_number")

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*[:\s]*(.+?)(?:\.\s|\.$|\n|$)", re.IGNORECASE
)


def last_boxed(text: str) -> str | None:
    """Contents of the last \\boxed{...} or \\fbox{...} with balanced braces, or None."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    while start != -1:
        i = text.find("{", start)
        # `\boxed 5` (no brace) is accepted by LaTeX; take the next token.
        prefix_end = start + (6 if text.startswith("\\boxed", start) else 5)
        if i == -1 or text[prefix_end:i].strip():
            m = re.match(r"\s+(\S+)", text[prefix_end:prefix_end + 200])
            if m and text[prefix_end:prefix_end + 1] == " ":
                return m.group(1).rstrip("$.")
        else:
            j = _closing_brace(text, i)
            if j is not None:
                return text[i + 1 : j].strip()
        # unclosed: try an earlier one
        start = max(text.rfind("\\boxed", 0, start), text.rfind("\\fbox", 0, start))
    return None


def _closing_brace(text: str, i: int) -> int | None:
    """Index of the brace closing the one at `i`, or None if it never closes."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j
    return None


def last_boxed_span(text: str) -> tuple[int, int] | None:
    """(start, end) of the non-blank contents of the last closed \\boxed{...}, for scorers that
    need the answer's position (token confidence), not just its text."""
    start = text.rfind("\\boxed{")
    while start != -1:
        i = start + len("\\boxed{") - 1
        j = _closing_brace(text, i)
        if j is not None:
            return (i + 1, j) if text[i + 1 : j].strip() else None
        start = text.rfind("\\boxed{", 0, start)
    return None


def after_hashes(text: str) -> str | None:
    """GSM8K style: whatever follows the last `####` on its line."""
    k = text.rfind("####")
    if k == -1:
        return None
    line = text[k + 4 :].strip().split("\n", 1)[0].strip()
    return line or None


def answer_is(text: str) -> str | None:
    """'The answer is X' / 'Final answer: X' (the last such phrase)."""
    tail = text[-4000:]
    matches = list(_ANSWER_IS.finditer(tail))
    if not matches:
        return None
    ans = matches[-1].group(1).strip().strip("$ ").rstrip(".")
    return ans or None


def last_number(text: str) -> str | None:
    matches = _NUMBER.findall(text[-2000:])
    return matches[-1].replace(",", "") if matches else None


_FUNCS = {"boxed": last_boxed, "hash": after_hashes, "answer_is": answer_is, "last_number": last_number}


def extract_answer(text: str, order: tuple[str, ...] | list[str] = EXTRACTORS) -> tuple[str | None, str | None]:
    """(answer, extractor name) using the first extractor in `order` that finds something."""
    for name in order:
        try:
            fn = _FUNCS[name]
        except KeyError:
            raise ValueError(f"unknown extractor {name!r}; choose from {list(EXTRACTORS)}") from None
        ans = fn(text)
        if ans:
            return ans, name
    return None, None


def reference_answer(reference: str) -> str:
    """The gold answer from a reference: a bare answer, a GSM8K solution (`#### 42`) or a boxed one."""
    for fn in (after_hashes, last_boxed):
        ans = fn(reference)
        if ans:
            return ans
    return reference.strip()
