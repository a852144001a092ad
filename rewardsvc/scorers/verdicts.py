"""Verdict parsers of the generative scorer: where a judge's verdict sits in its critique, and its value.

A `VerdictFormat` is configuration (a preset's, or a stanza's `formats: {MODE: {verdict: ...}}`):
a regular expression whose group 1 is the verdict, which of several matches counts, the value
scale, and words that stand for values. Parsing never raises: a critique without a usable verdict
gives a `Verdict` with a status saying why, and the scorer turns that into a defined result.

Statuses: ok; no_verdict (nothing matched, or the `answer_after` marker is missing: the reasoning
never ended); conflicting (`pick: only` and two different verdicts, as RM-R1's "[[A]] and [[B]]
both present" check); malformed (a match that is not a number or label, or the wrong count of
scores); out_of_range (outside `scale`); incomplete (step mode: fewer step verdicts than steps and
none of them wrong). The scorer adds truncated (the reasoning budget cut the critique off).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rewardsvc.dataclass_dict import option

PICKS = ("last", "first", "only")


@dataclass
class VerdictFormat:
    """Where the verdict is and what it means. Unset fields come from the preset, then the defaults."""

    pattern: str | None = option(None, "regular expression (Python re, DOTALL); group 1 is the verdict; "
                                       "start it with (?i) to ignore case")
    answer_after: str | None = option(None, "search only after the last occurrence of this marker, e.g. "
                                            "'</think>' (a verdict inside the reasoning does not count); "
                                            "no marker in the critique: no verdict")
    pick: Literal["last", "first", "only"] | None = option(
        None, "several matches: last (default) or first counts; only: two different verdicts are a conflict")
    scale: list[float] | None = option(None, "[lowest, highest] verdict value (default [1, 10])")
    labels: dict[str, float] | None = option(None, "verdict words and their values on the scale, e.g. "
                                                   "{correct: 1, incorrect: 0} (case-insensitive)")
    separator: str | None = option(None, "pairwise: one verdict holds both responses' scores split by this "
                                         "(DeepSeek-GRM: ',')")
    choices: list[str] | None = option(None, "pairwise: verdicts naming the first and the second response "
                                             "(default [A, B])")


DEFAULTS = VerdictFormat(pattern="", answer_after="", pick="last", scale=[1.0, 10.0], labels={}, separator="",
                         choices=["A", "B"])


def merge(override: Any, base: Any) -> Any:
    """A dataclass with each field of `override` that is set (not None), else `base`'s; nested
    dataclasses are merged field by field."""
    if override is None:
        return base
    if base is None:
        return override
    values = {}
    for f in dataclasses.fields(override):
        mine, theirs = getattr(override, f.name), getattr(base, f.name)
        if dataclasses.is_dataclass(mine) and dataclasses.is_dataclass(theirs):
            values[f.name] = merge(mine, theirs)
        else:
            values[f.name] = theirs if mine is None else mine
    return type(override)(**values)


def check_format(fmt: VerdictFormat) -> str | None:
    """Why a resolved format can't work, or None."""
    if not fmt.pattern:
        return "verdict.pattern is empty"
    try:
        compiled = re.compile(fmt.pattern, re.DOTALL)
    except re.error as exc:
        return f"verdict.pattern {fmt.pattern!r} is not a valid regular expression: {exc}"
    if compiled.groups < 1:
        return f"verdict.pattern {fmt.pattern!r} needs a group: group 1 is the verdict"
    if fmt.pick not in PICKS:
        return f"verdict.pick {fmt.pick!r}: use one of {list(PICKS)}"
    if not (fmt.scale and len(fmt.scale) == 2 and fmt.scale[0] < fmt.scale[1]):
        return f"verdict.scale {fmt.scale!r} must be [lowest, highest] with lowest < highest"
    if not (fmt.choices and len(fmt.choices) == 2 and fmt.choices[0].casefold() != fmt.choices[1].casefold()):
        return f"verdict.choices {fmt.choices!r} must be two different verdicts"
    return None


@dataclass
class Verdict:
    """A parsed verdict: `value` is set only when `status` is ok. Pointwise: a number on the scale;
    pairwise: the first response's margin in [-1, 1] (+1: it wins); step: p(correct) per step."""

    status: str
    value: Any = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _matches(text: str, fmt: VerdictFormat) -> list[str] | Verdict:
    if fmt.answer_after:
        at = text.rfind(fmt.answer_after)
        if at < 0:
            return Verdict("no_verdict", note=f"no {fmt.answer_after!r}: the reasoning did not end")
        text = text[at + len(fmt.answer_after):]
    found = [m.group(1) or "" for m in re.finditer(fmt.pattern or "", text, re.DOTALL)]
    if not found:
        return Verdict("no_verdict", note="no match for the verdict pattern")
    return found


def _value(raw: str, fmt: VerdictFormat) -> float | None:
    word = raw.strip().strip("*").strip()
    labels = {k.casefold(): v for k, v in (fmt.labels or {}).items()}
    if word.casefold() in labels:
        return float(labels[word.casefold()])
    try:
        return float(word)
    except ValueError:
        return None


def _pick(values: Sequence[Any], raws: Sequence[str], fmt: VerdictFormat) -> Verdict:
    """The counted value (None: the counted match is unreadable; the caller says malformed)."""
    if fmt.pick == "only":
        readable = {v for v in values if v is not None}
        if len(readable) > 1:
            return Verdict("conflicting", note=f"different verdicts {sorted(set(r.strip() for r in raws))}")
        return Verdict("ok", readable.pop() if readable else None)
    return Verdict("ok", values[0] if fmt.pick == "first" else values[-1])


def _in_scale(v: float, fmt: VerdictFormat) -> bool:
    lo, hi = fmt.scale or DEFAULTS.scale or [1.0, 10.0]
    return lo <= v <= hi


def parse_score(text: str, fmt: VerdictFormat) -> Verdict:
    """Pointwise / reference: one number on `scale` (or a label)."""
    found = _matches(text, fmt)
    if isinstance(found, Verdict):
        return found
    values = [_value(r, fmt) for r in found]
    picked = _pick(values, found, fmt)
    if not picked.ok:
        return picked
    if picked.value is None:
        raw = found[0] if fmt.pick == "first" else found[-1]
        return Verdict("malformed", note=f"verdict {raw.strip()!r} is not a number or one of the labels")
    if not _in_scale(picked.value, fmt):
        return Verdict("out_of_range", note=f"verdict {picked.value:g} is outside the scale {fmt.scale}")
    return picked


def parse_pair(text: str, fmt: VerdictFormat) -> Verdict:
    """Pairwise: a choice of the first or second response, or (with `separator`) both responses'
    scores; the value is the first response's margin: +1 / -1 for a choice, (s1 - s2) / range for scores."""
    found = _matches(text, fmt)
    if isinstance(found, Verdict):
        return found
    lo, hi = fmt.scale or [1.0, 10.0]
    first, second = [c.casefold() for c in fmt.choices or ["A", "B"]]
    values: list[float | None] = []
    for raw in found:
        if fmt.separator:
            parts = [_value(p, fmt) for p in raw.split(fmt.separator)]
            ok = len(parts) == 2 and all(p is not None and lo <= p <= hi for p in parts)
            values.append((parts[0] - parts[1]) / (hi - lo) if ok else None)  # type: ignore[operator]
        else:
            word = raw.strip().strip("*").strip().casefold()
            values.append(1.0 if word == first else -1.0 if word == second else None)
    picked = _pick(values, found, fmt)
    if picked.ok and picked.value is None:
        raw = found[0] if fmt.pick == "first" else found[-1]
        want = f"two scores in {fmt.scale} split by {fmt.separator!r}" if fmt.separator else f"one of {fmt.choices}"
        return Verdict("malformed", note=f"verdict {raw.strip()!r} is not {want}")
    return picked


def parse_steps(text: str, fmt: VerdictFormat, n_steps: int) -> Verdict:
    """Step mode: every match in order is the next step's verdict (matches that are not a number or
    label are skipped, as ThinkPRM keeps only correct/incorrect). Value: p(correct) per step, the
    verdict mapped from `scale` to [0, 1]. Critiques stop at the first wrong step (ThinkPRM's are
    trained so): steps after it without a verdict count as wrong. Fewer verdicts than steps and
    none wrong: incomplete."""
    found = _matches(text, fmt)
    if isinstance(found, Verdict):
        return found
    lo, hi = fmt.scale or [1.0, 10.0]
    ps = [(v - lo) / (hi - lo) for v in (_value(r, fmt) for r in found) if v is not None and lo <= v <= hi]
    if not ps:
        return Verdict("malformed", note=f"no step verdict is a number in {fmt.scale} or one of the labels")
    note = f"{len(ps) - n_steps} verdict(s) more than steps, ignored" if len(ps) > n_steps else ""
    ps = ps[:n_steps]
    if len(ps) < n_steps:
        if all(p >= 0.5 for p in ps):
            return Verdict("incomplete", note=f"{len(ps)} step verdict(s) for {n_steps} steps, none wrong")
        ps += [0.0] * (n_steps - len(ps))
        note = "steps after the first wrong one have no verdict: counted wrong"
    return Verdict("ok", ps, note)


def tail(text: str, chars: int = 300) -> str:
    """The end of a critique, for details: where its verdict should have been."""
    return text if len(text) <= chars else "..." + text[-chars:]
