"""From k judged samples to one item result: sample aggregation, meta-RM selection, score ranges.

Every mode's item score lies in [-1, 1], 0 meaning "can't tell":
  pointwise, reference  v = the samples' verdicts aggregated (on the format's scale [lo, hi]);
                        score = 2 (v - lo) / (hi - lo) - 1
  pairwise              each sample's margin for the item's response in [-1, 1] (a choice: +1 / -1; two
                        scores: their difference / (hi - lo)), from both orders; score = the aggregate
  step                  step_scores = p(step correct) per step, aggregated over samples, in [0, 1];
                        score = 2 a - 1 for a = the prm scorer's aggregate (min, last, product, mean),
                        or pure's value, which is in [-1, 1] already
Sample aggregation: mean, or vote (the most common verdict; pairwise votes on the margin's sign;
tied verdicts give their mean, so an A/B tie gives 0 and a correct/incorrect tie 0.5). The meta
filter keeps the k_meta samples a meta reward model scores highest (per order, pairwise), then
votes. `agreement` is the share of used samples agreeing with the most common verdict (step mode:
its mean over steps). No usable sample: score 0 and the reasons in details.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rewardsvc.scorers.prm import aggregate as aggregate_steps
from rewardsvc.scorers.verdicts import Verdict, tail

SAMPLE_AGGREGATIONS = ("mean", "vote", "meta")


@dataclass
class Judged:
    """One sample of the judge and what came of it."""

    verdict: Verdict
    text: str
    tokens: int
    order: str = ""  # pairwise: "AB" (the response shown first) or "BA"
    meta: float | None = None  # the meta reward model's score of this critique
    kept: bool = True  # false: dropped by the meta filter
    meta_error: str = ""  # why the meta reward model could not score it

    @property
    def usable(self) -> bool:
        return self.verdict.ok and self.kept

    def details(self, critique: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"verdict": self.verdict.value, "status": self.verdict.status, "tokens": self.tokens}
        if self.order:
            out["order"] = self.order
        if self.meta is not None:
            out["meta_score"] = self.meta
            out["kept"] = self.kept
        if self.meta_error:
            out["meta_error"] = self.meta_error
        if self.verdict.note:
            out["note"] = self.verdict.note
        if critique:
            out["critique"] = self.text
        elif not self.verdict.ok:
            out["tail"] = tail(self.text)
        return out


def combine(values: Sequence[float], how: str) -> tuple[float, float]:
    """(aggregate, agreement) of sample verdicts: mean, or vote (ties: the tied verdicts' mean)."""
    counts = Counter(values)
    top = max(counts.values())
    agreement = top / len(values)
    if how == "mean":
        return sum(values) / len(values), agreement
    modes = [v for v, c in counts.items() if c == top]
    return sum(modes) / len(modes), agreement


def select_by_meta(samples: Sequence[Judged], k_meta: int) -> None:
    """Keep the `k_meta` usable samples (per order) with the highest meta score; samples the meta
    reward model could not score are dropped."""
    for order in {s.order for s in samples}:
        ranked = sorted((s for s in samples if s.order == order and s.verdict.ok and s.meta is not None),
                        key=lambda s: s.meta, reverse=True)  # type: ignore[arg-type, return-value]
        keep = {id(s) for s in ranked[:k_meta]}
        for s in samples:
            if s.order == order and s.verdict.ok:
                s.kept = id(s) in keep


def no_usable(samples: Sequence[Judged]) -> dict[str, Any]:
    """Details for an item none of whose samples gave a usable verdict."""
    statuses = Counter(s.verdict.status if s.verdict.ok is False else "dropped" for s in samples)
    first = next((s for s in samples if not s.verdict.ok), samples[0] if samples else None)
    return {"verdict": "unparsed", "statuses": dict(statuses),
            "output_tail": tail(first.text) if first is not None else ""}


def pointwise_score(samples: Sequence[Judged], how: str, scale: Sequence[float]) -> tuple[float, dict[str, Any]]:
    used = [float(s.verdict.value) for s in samples if s.usable]
    if not used:
        return 0.0, no_usable(samples)
    lo, hi = scale
    value, agreement = combine(used, how)
    return 2 * (value - lo) / (hi - lo) - 1, {"verdict": value, "agreement": agreement, "used_samples": len(used)}


def pairwise_score(samples: Sequence[Judged], how: str) -> tuple[float, dict[str, Any]]:
    """Margins are the response's (the sample's first-position margin, negated for order BA)."""
    used = [s for s in samples if s.usable]
    if not used:
        return 0.0, no_usable(samples)
    margins = [float(s.verdict.value) if s.order == "AB" else -float(s.verdict.value) for s in used]
    signs = [float((m > 0) - (m < 0)) for m in margins]
    _, agreement = combine(signs, "vote")
    value = combine(margins, "mean")[0] if how == "mean" else combine(signs, "vote")[0]
    by_order = {o: [m for s, m in zip(used, margins) if s.order == o] for o in ("AB", "BA")}
    as_a = sum(by_order["AB"]) / len(by_order["AB"]) if by_order["AB"] else None
    as_b = sum(by_order["BA"]) / len(by_order["BA"]) if by_order["BA"] else None
    consistent = None if as_a is None or as_b is None else (as_a > 0) == (as_b > 0) and as_a != 0 and as_b != 0
    return value, {"verdict": value, "agreement": agreement, "used_samples": len(used), "as_a": as_a, "as_b": as_b,
                   "consistent": consistent}


def step_score(samples: Sequence[Judged], how: str, step_aggregation: str,
               pure_temperature: float) -> tuple[float, list[float], dict[str, Any]]:
    used = [list(s.verdict.value) for s in samples if s.usable]
    if not used:
        return 0.0, [], no_usable(samples)
    steps, agreements = [], []
    for j in range(len(used[0])):
        value, agreement = combine([row[j] for row in used], "mean" if how == "mean" else "vote")
        steps.append(value)
        agreements.append(agreement)
    agg = aggregate_steps(steps, step_aggregation, pure_temperature)
    score = agg if step_aggregation == "pure" else 2 * agg - 1
    first_wrong = next((j + 1 for j, p in enumerate(steps) if p < 0.5), None)
    return score, steps, {"agreement": sum(agreements) / len(agreements), "used_samples": len(used),
                          "step_aggregation": step_aggregation, "first_wrong_step": first_wrong}

