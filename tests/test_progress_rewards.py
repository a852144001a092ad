"""Progress rewards (Rewarding Progress / PAV): A_t = V(prefix t) - V(prefix t-1), from the prm
scorer's step values (aggregation `progress`) and from any hosted scorer's value of each prefix
(composite mode `progress`), with optional thought units."""

from __future__ import annotations

import asyncio

import pytest
from encoder_models import read_jsonl

from rewardsvc.config import parse_config
from rewardsvc.scorers.progress_rewards import progress, thought_units, unit_values
from rewardsvc.service import ScoringService
from rewardsvc.types import ErrorCode, Item


def test_progress_and_thought_units_on_hand_computed_values() -> None:
    v = [0.9, 0.8, 0.2, 0.1, 0.7]
    assert progress(v, 0.5) == pytest.approx([0.4, -0.1, -0.6, -0.1, 0.6])
    assert sum(progress(v, 0.5)) == pytest.approx(v[-1] - 0.5)  # telescopes
    units = thought_units(v, 0.5)
    assert units == [(0, 1), (2, 3), (4, 4)]
    assert unit_values(v, units) == [0.8, 0.1, 0.7]
    assert thought_units([], 0.5) == [] and progress([], 0.0) == []


def run(config: dict, calls: list[tuple[str, list[Item], dict]]) -> list:
    async def main():
        async with ScoringService(parse_config(config)) as svc:
            return [await svc.score(name, items, options) for name, items, options in calls]

    return asyncio.run(main())


@pytest.mark.slow
def test_prm_progress_is_the_change_of_the_step_values() -> None:
    rows = read_jsonl("prmbench-sample.jsonl")[:4]
    items = [Item(id=str(i), prompt=r["question"], steps=r["modified_process"][:5]) for i, r in enumerate(rows)]
    config = {"scorers": {"prm": {"type": "prm", "model": "cache:default-prm", "aggregation": "min"}}}
    values, prog, thoughts = run(config, [
        ("prm", items, {"aggregation": "last"}),
        ("prm", items, {"aggregation": "progress", "progress_initial": 0.5}),
        ("prm", items, {"aggregation": "progress", "thoughts": True, "thought_threshold": 0.5}),
    ])
    for v, p, t in zip(values, prog, thoughts):
        assert p.ok and t.ok
        assert p.step_scores == pytest.approx(progress(v.step_scores, 0.5), abs=1e-6)
        assert p.score == pytest.approx(v.score - 0.5, abs=1e-6)
        units = [tuple(u) for u in t.details["thoughts"]]
        assert units == thought_units(v.step_scores, 0.5)
        assert t.step_scores == pytest.approx(progress(unit_values(v.step_scores, units), 0.5), abs=1e-6)
    # The trained PRM is not constant: some step changes the value by something.
    assert any(abs(a) > 1e-3 for p in prog for a in p.step_scores)


def test_composite_progress_scores_every_prefix_with_the_value_scorer() -> None:
    # The counting scorer's value of a prefix is its length in characters: V_t = len("\n".join(steps[:t])).
    config = {"scorers": {
        "length": {"type": "counting_scorer:CountingScorer"},
        "pav": {"type": "composite", "mode": "progress", "components": [{"scorer": "length", "weight": 0.5}],
                "initial_value": 1.0},
        "pav-thoughts": {"type": "composite", "mode": "progress", "components": [{"scorer": "length"}],
                         "thoughts": True, "thought_threshold": 6},
    }}
    items = [Item(id="a", steps=["ab", "cde", "f"]), Item(id="b", response="fail\n\nok"),
             Item(id="c", response="\n\n")]
    (a, b, c), (ta,) = run(config, [("pav", items, {}), ("pav-thoughts", items[:1], {})])
    assert a.details["values"] == [1.0, 3.0, 4.0]  # 0.5 * len: "ab", "ab\ncde", "ab\ncde\nf"
    assert a.step_scores == [0.0, 2.0, 1.0] and a.score == 3.0
    # A prefix the value scorer fails on fails the item, saying which prefix.
    assert b.error is not None and "prefix of 1 step(s)" in b.error.message
    assert c.error is not None and c.error.code == ErrorCode.INVALID_ITEM and "no steps" in c.error.message
    # Values 2, 6, 8: one thought below 6, one at or above it (ending at 8).
    assert ta.details["thoughts"] == [[0, 0], [1, 2]] and ta.step_scores == [2.0, 6.0]
