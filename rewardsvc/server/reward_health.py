"""Reward-health telemetry: signs in the rewards that an RL run has stopped learning or is hacking.

The zero-reward barrier (no rollout of a group is ever right) and reward hacking show in the
rewards before they show in the loss. Per response and per scorer:
  flat groups      groups (items sharing a group_id, at least two scored) whose rewards are all
                   equal: GRPO's group-normalised advantage is zero for every member
  all-zero groups  flat groups at reward 0
  verdicts         counts of `details.verdict` (math: correct / incorrect / no_answer / ...)
  item errors      items answered with an error
  length corr.     Pearson correlation of score with response length (characters): a reward
                   that grows with length alone is a known hack
`reward_health` computes them for one response; `HealthWindows` keeps the recent ones per scorer
(bounded) for the /metrics gauges.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rewardsvc.types import Item, Result

if TYPE_CHECKING:
    from rewardsvc.v1 import reward_pb2 as pb

# Verdict label values per scorer on /metrics: more than this many distinct ones count as "other",
# so a scorer that puts free text in `verdict` can't blow up the metric's cardinality.
MAX_VERDICTS = 32
MAX_VERDICT_CHARS = 40


@dataclass
class RewardHealth:
    groups: int = 0
    flat_groups: int = 0
    all_zero_groups: int = 0
    scored_items: int = 0
    error_items: int = 0
    score_mean: float = 0.0
    score_std: float = 0.0
    score_min: float = 0.0
    score_max: float = 0.0
    verdicts: dict[str, int] = field(default_factory=dict)
    length_correlation: float | None = None


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson r, or None when undefined (fewer than 3 points, or a constant side)."""
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def group_flags(items: Sequence[Item], results: Sequence[Result]) -> list[tuple[bool, bool]]:
    """(flat, all zero) for each group_id with at least two scored items."""
    groups: dict[str, list[float]] = {}
    for item, res in zip(items, results):
        if item.group_id and res.error is None and math.isfinite(res.score):
            groups.setdefault(item.group_id, []).append(res.score)
    out = []
    for scores in groups.values():
        if len(scores) < 2:
            continue
        flat = max(scores) - min(scores) <= 1e-9 * max(1.0, abs(scores[0]))
        out.append((flat, flat and all(s == 0 for s in scores)))
    return out


#: Per item: (score, response length in characters), None for an item answered with an error; items
#: with a non-finite score are left out.
Samples = list[tuple[float, float] | None]


def item_samples(items: Sequence[Item], results: Sequence[Result]) -> Samples:
    out: Samples = []
    for item, res in zip(items, results):
        if res.error is not None:
            out.append(None)
        elif math.isfinite(res.score):
            out.append((res.score, float(len(item.response_text))))
    return out


def reward_health(items: Sequence[Item], results: Sequence[Result]) -> RewardHealth:
    """The telemetry of one response (items and their results, in order)."""
    return summarise(group_flags(items, results), item_samples(items, results), results)


def summarise(flags: list[tuple[bool, bool]], samples: Samples, results: Sequence[Result]) -> RewardHealth:
    """reward_health from its parts (the /metrics path keeps the parts for its windows too)."""
    health = RewardHealth()
    health.groups = len(flags)
    health.flat_groups = sum(f for f, _ in flags)
    health.all_zero_groups = sum(z for _, z in flags)
    ok = [s for s in samples if s is not None]
    health.error_items = len(samples) - len(ok)
    scores = [s for s, _ in ok]
    lengths = [n for _, n in ok]
    for res in results:
        if res.error is not None or not math.isfinite(res.score):
            continue
        verdict = res.details.get("verdict")
        if isinstance(verdict, str):
            v = verdict[:MAX_VERDICT_CHARS]
            health.verdicts[v] = health.verdicts.get(v, 0) + 1
    health.scored_items = len(scores)
    if scores:
        n = len(scores)
        mean = sum(scores) / n
        health.score_mean = mean
        health.score_std = math.sqrt(sum((s - mean) ** 2 for s in scores) / n)
        health.score_min, health.score_max = min(scores), max(scores)
    health.length_correlation = pearson(scores, lengths)
    return health


class HealthWindows:
    """The last `groups` groups and `items` items per scorer: the /metrics fractions and the
    length correlation describe the recent rollouts, not the server's whole life."""

    def __init__(self, groups: int = 1000, items: int = 4096) -> None:
        self.group_window = groups
        self.item_window = items
        self.groups: dict[str, deque[tuple[bool, bool]]] = {}
        self.items: dict[str, deque[tuple[float, float] | None]] = {}  # (score, length), None = error

    def add(self, scorer: str, flags: list[tuple[bool, bool]], samples: Samples) -> None:
        """One response's group flags (group_flags) and item samples (item_samples)."""
        self.groups.setdefault(scorer, deque(maxlen=self.group_window)).extend(flags)
        self.items.setdefault(scorer, deque(maxlen=self.item_window)).extend(samples)

    def gauges(self, scorer: str) -> dict[str, float]:
        # Called from the /metrics thread while the event loop appends: copy first (atomic in C).
        out: dict[str, float] = {}
        g = list(self.groups.get(scorer) or ())
        if g:
            out["flat_group_fraction"] = sum(f for f, _ in g) / len(g)
            out["all_zero_group_fraction"] = sum(z for _, z in g) / len(g)
        w = list(self.items.get(scorer) or ())
        if w:
            ok = [x for x in w if x is not None]
            out["item_error_fraction"] = (len(w) - len(ok)) / len(w)
            r = pearson([s for s, _ in ok], [n for _, n in ok])
            if r is not None:
                out["length_correlation"] = r
        return out


def health_to_pb(health: RewardHealth) -> pb.RewardHealth:
    from rewardsvc.v1 import reward_pb2 as pb

    msg = pb.RewardHealth(
        groups=health.groups, flat_groups=health.flat_groups, all_zero_groups=health.all_zero_groups,
        scored_items=health.scored_items, error_items=health.error_items, score_mean=health.score_mean,
        score_std=health.score_std, score_min=health.score_min, score_max=health.score_max,
        verdicts=health.verdicts,
    )
    if health.length_correlation is not None:
        msg.length_correlation = health.length_correlation
    return msg
