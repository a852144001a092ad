"""What the code scorer reads from an item: the program in the response and the tests in the reference."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from rewardsvc.verifiers.code import apps

# An opening fence line: up to 3 spaces, 3+ backticks or tildes, an optional language tag (CommonMark).
_OPENER = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n`]*")
_RUN = re.compile(r"`{3,}|~{3,}")
# What str.splitlines() breaks lines at besides "\n", mapped to "\n" one for one: positions keep, and
# the scan below is C regex work plus a few steps per fence-like line (a per-line Python loop took
# seconds on a few MB of newlines).
_OTHER_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
PYTHON_TAGS = frozenset({"python", "py", "python3", "py3", "pycon"})


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) of each fenced block, in order; an unclosed last fence runs to the end.
    A block closes at a line of nothing but at least as many of its fence characters."""
    if "```" not in text and "~~~" not in text:
        return []
    lines = _OTHER_BREAKS.sub("\n", text)
    search, rfind, find = _RUN.search, lines.rfind, lines.find
    blocks: list[tuple[str, str]] = []
    fence, tag, body = "", "", 0  # the open block, if `fence`
    pos = line_start = 0  # line_start: where the line holding `pos` starts
    while (run := search(lines, pos)) is not None:
        at = run.start()
        newline = rfind("\n", pos, at)
        start = line_start if newline < 0 else newline + 1
        end = find("\n", run.end())
        if end < 0:
            end = len(lines)
        pos = line_start = end + 1  # a line is looked at once, at its first run
        if at != start and not lines[start:at].isspace():
            continue  # text before the run: not a fence line
        if not fence:
            m = _OPENER.fullmatch(lines, start, end)
            if m is not None:
                fence, tag, body = m.group(1), m.group(2).lower(), _next_line(text, end)
            continue
        closing = lines[start:end].strip()
        if len(closing) >= len(fence) and closing.count(fence[0]) == len(closing):
            blocks.append((tag, text[body:start]))
            fence = ""
    if fence:
        blocks.append((tag, text[body:]))
    return blocks


def _next_line(text: str, line_end: int) -> int:
    """Where the line ending at `line_end` is followed by the next one ("\r\n" is one break)."""
    return line_end + (2 if text.startswith("\r\n", line_end) else 1)


def extract_program(response: str) -> str:
    """The last fenced python block (```python / ```py / untagged), else the raw response."""
    blocks = fenced_blocks(response)
    tagged = [body for tag, body in blocks if tag in PYTHON_TAGS]
    if tagged:
        return tagged[-1]
    untagged = [body for tag, body in blocks if not tag]
    if untagged:
        return untagged[-1]
    return response


@dataclass
class ItemTests:
    """The tests of one item, parsed from its `reference` JSON."""

    style: str  # "check" | "asserts" | "cases"
    test: str = ""
    entry_point: str = ""
    asserts: list[str] = field(default_factory=list)
    cases: list[dict[str, str]] = field(default_factory=list)
    timeout_s: float | None = None
    memory_mb: int | None = None
    # The problem statement's Python (HumanEval's `prompt`): the tests see its helpers, never the
    # program's copies of them. Without it, HumanEval style reads them from the item's prompt.
    statement: str = ""
    # APPS-style tests (apps.py): prime_code's prelude before the program, its stdout comparison.
    prelude: str = ""
    compare: str = ""

    def program(self, code: str) -> str:
        """The program the sandbox runs for `code` (the response's)."""
        return self.prelude + code

    def payload(self) -> dict[str, Any]:
        if self.style == "check":
            return {"style": "check", "test": self.test, "entry_point": self.entry_point, "statement": self.statement}
        if self.style == "asserts":
            return {"style": "asserts", "asserts": list(self.asserts), "statement": self.statement}
        return {"style": "cases", "cases": list(self.cases), **({"compare": self.compare} if self.compare else {})}

    @property
    def size(self) -> int:
        return (len(self.test) + len(self.statement) + sum(map(len, self.asserts))
                + sum(len(c["input"]) + len(c["output"]) for c in self.cases))


REFERENCE_HELP = (
    'reference must be a JSON object with one of: {"test": "<code defining check(candidate)>", '
    '"entry_point": "<function name>"}, {"asserts": ["assert f(1) == 2", ...]}, '
    '{"cases": [{"input": "...", "output": "..."}, ...]}, APPS {"inputs": [...], "outputs": [...], '
    '"fn_name"?: "f"}; optional "timeout_s" and "memory_mb", and for '
    'test/asserts "prompt": the problem statement\'s Python, whose helpers the tests use'
)


def parse_reference(reference: str | None) -> ItemTests:
    """Parse and validate an item's tests; raises ValueError saying what is wrong."""
    if reference is None or not reference.strip():
        raise ValueError(f"the code scorer needs tests in `reference`: {REFERENCE_HELP}")
    try:
        data = json.loads(reference)
    except ValueError as exc:
        raise ValueError(f"reference is not valid JSON ({exc}); {REFERENCE_HELP}") from None
    if not isinstance(data, dict):
        raise ValueError(REFERENCE_HELP)
    if apps.is_apps(data):
        style, cases, asserts = apps.parse_apps(data)
        spec = ItemTests(style=style, cases=cases, asserts=asserts, prelude=apps.PRELUDE,
                         compare="apps" if style == "cases" else "")
        _limits(spec, data)
        return spec
    styles = [k for k in ("test", "asserts", "cases") if k in data]
    if len(styles) != 1:
        raise ValueError(f"reference has {styles or 'none'} of test/asserts/cases; exactly one is needed. "
                         + REFERENCE_HELP)
    unknown = set(data) - {"test", "entry_point", "asserts", "cases", "timeout_s", "memory_mb", "prompt"}
    if unknown:
        raise ValueError(f"reference has unknown key(s) {sorted(unknown)}; {REFERENCE_HELP}")
    spec = ItemTests(style={"test": "check", "asserts": "asserts", "cases": "cases"}[styles[0]])
    if spec.style == "check":
        test, entry = data["test"], data.get("entry_point")
        if not isinstance(test, str) or not test.strip():
            raise ValueError('reference "test" must be non-empty Python code defining check(candidate)')
        if not isinstance(entry, str) or not entry.strip().isidentifier():
            raise ValueError('reference "test" needs "entry_point": the name of the function under test')
        spec.test, spec.entry_point = test, entry.strip()
    elif spec.style == "asserts":
        asserts = data["asserts"]
        if not isinstance(asserts, list) or not asserts or not all(isinstance(a, str) for a in asserts):
            raise ValueError('reference "asserts" must be a non-empty list of strings (one test each)')
        spec.asserts = list(asserts)
    else:
        cases = data["cases"]
        if not isinstance(cases, list) or not cases:
            raise ValueError('reference "cases" must be a non-empty list of {"input": ..., "output": ...}')
        for i, case in enumerate(cases):
            if not isinstance(case, dict) or not isinstance(case.get("output"), str) \
                    or not isinstance(case.get("input", ""), str) or set(case) - {"input", "output"}:
                raise ValueError(
                    f'reference "cases"[{i}] must be {{"input": "<stdin>", "output": "<expected stdout>"}}')
            spec.cases.append({"input": case.get("input", ""), "output": case["output"]})
    if "prompt" in data:
        statement = data["prompt"]
        if spec.style == "cases":
            raise ValueError(
                'reference "prompt" is for "test" and "asserts" tests (stdin/stdout cases call no helpers)')
        if not isinstance(statement, str):
            raise ValueError('reference "prompt" must be the problem statement\'s Python source, as a string')
        spec.statement = statement
    _limits(spec, data)
    return spec


def _limits(spec: ItemTests, data: dict[str, Any]) -> None:
    if "timeout_s" in data:
        t = data["timeout_s"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise ValueError('reference "timeout_s" must be a positive number of seconds')
        spec.timeout_s = float(t)
    if "memory_mb" in data:
        m = data["memory_mb"]
        if isinstance(m, bool) or not isinstance(m, int) or m < 32:
            raise ValueError('reference "memory_mb" must be an integer >= 32')
        spec.memory_mb = m
