"""The prm scorer: one step score per step in all three checkpoint formats, batched == single with
left and right padding, aggregation formulas, invalid items.

Random-init heads on real backbones (MiniLM; SmolLM2 cut to its first two layers, `smollm_layers(2)`,
for the step_tag format, whose +/- tokens it reads with its own LM head): shapes and batching only,
which hold for any weights.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from causal_support import smollm_layers
from encoder_models import minilm_dir, read_jsonl

from rewardsvc.config import parse_config
from rewardsvc.errors import InvalidOptionsError
from rewardsvc.scorers.prm import aggregate
from rewardsvc.service import ScoringService
from rewardsvc.types import ErrorCode, Item

ATOL = 1e-4
LOGIT_TOL = 1e-3  # on a step score's log-odds: the raw logit difference it came from


def log_odds(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def prm_items(n: int, max_steps: int = 4) -> list[Item]:
    items = []
    for i, row in enumerate(read_jsonl("prmbench-sample.jsonl")[:n]):
        # Different step counts per item, so batches mix lengths.
        steps = row["modified_process"][: 1 + i % max_steps]
        items.append(Item(id=str(i), prompt=row["question"], steps=steps))
    return items


def test_aggregations_on_hand_computed_values() -> None:
    p = [0.9, 0.2, 0.6]
    assert aggregate(p, "min") == 0.2
    assert aggregate(p, "last") == 0.6
    assert aggregate(p, "product") == pytest.approx(0.108)
    assert aggregate(p, "mean") == pytest.approx(1.7 / 3)
    # PURE min-form: r = 2p - 1 = [0.8, -0.6, 0.2]; w = softmax(-r / 0.1) = softmax([-8, 6, -2]).
    e = [math.exp(-8), math.exp(6), math.exp(-2)]
    expected = (0.8 * e[0] - 0.6 * e[1] + 0.2 * e[2]) / sum(e)
    assert aggregate(p, "pure", 0.1) == pytest.approx(expected)
    assert aggregate(p, "pure", 0.1) == pytest.approx(-0.6, abs=0.01)  # ~ the min of r
    assert aggregate(p, "pure", 100.0) == pytest.approx(sum(2 * x - 1 for x in p) / 3, abs=0.01)  # ~ the mean
    assert aggregate([1.0] * 400, "pure", 0.01) == pytest.approx(1.0)  # no overflow at tiny T
    with pytest.raises(ValueError):
        aggregate(p, "median")


def score(config: dict, name: str, batches: list[list[Item]], options: dict | None = None) -> list[list]:
    """Each batch scored concurrently on one service (so the batcher mixes them)."""

    async def main():
        async with ScoringService(parse_config(config)) as svc:
            return await asyncio.gather(*(svc.score(name, b, options) for b in batches))

    return asyncio.run(main())


def check_batched_equals_single(config: dict, items: list[Item]) -> list:
    """Each item alone, then all in one padded batch: the same step scores."""
    stanza = config["scorers"]["prm"]
    # No padding bound, so the batch mixes lengths (padding is what this checks).
    config = {"scorers": {"prm": {**stanza, "batching": {**stanza.get("batching", {}), "min_fill_ratio": 0.0}}}}

    async def main():
        async with ScoringService(parse_config(config)) as svc:
            singles = [(await svc.score("prm", [it]))[0] for it in items]
            stats = svc.get("prm").batcher.stats
            padded, real = stats.padded_tokens, stats.real_tokens
            batched = await svc.score("prm", items)
            return singles, batched, stats.padded_tokens - padded, stats.real_tokens - real

    singles, batched, padded, real = asyncio.run(main())
    assert padded > real, "the batch had no padding: the items were all one length"
    for it, b, s in zip(items, batched, singles):
        assert b.ok, b.error
        assert b.id == it.id
        assert len(b.step_scores) == len(it.steps)
        assert all(0.0 <= x <= 1.0 for x in b.step_scores)
        assert b.step_scores == pytest.approx(s.step_scores, abs=ATOL)
        # Also in log-odds: a head that puts every p near 0 or 1 (the cut SmolLM2 reading +/-) still differs there.
        assert [log_odds(x) for x in b.step_scores] == pytest.approx([log_odds(x) for x in s.step_scores],
                                                                      abs=LOGIT_TOL)
        assert b.score == pytest.approx(min(b.step_scores))
    every = [log_odds(x) for s in singles for x in s.step_scores]
    assert max(every) - min(every) > 100 * LOGIT_TOL, every  # by far more than the tolerance: a bug would show
    return batched


@pytest.mark.slow
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_token_classification_format(padding_side: str) -> None:
    cfg = {"scorers": {"prm": {"type": "prm", "model": str(minilm_dir("token", 2)), "device": "cpu",
                               "padding_side": padding_side, "max_length": 256,
                               "batching": {"max_wait_ms": 20}}}}
    check_batched_equals_single(cfg, prm_items(6))


@pytest.mark.slow
def test_step_token_format() -> None:
    cfg = {"scorers": {"prm": {"type": "prm", "model": str(minilm_dir("token", 2, "[unused0]")),
                               "format": "step_token", "step_tag": "[unused0]", "device": "cpu",
                               "max_length": 256}}}
    check_batched_equals_single(cfg, prm_items(5))


@pytest.mark.slow
def test_step_tag_format_on_a_causal_lm() -> None:
    cfg = {"scorers": {"prm": {"type": "prm", "model": smollm_layers(2), "format": "step_tag",
                               "positive_token": "+", "negative_token": "-", "device": "cpu",
                               "max_length": 160}}}
    items = [Item(id=str(i), prompt=it.prompt, steps=[s[:80] for s in it.steps])
             for i, it in enumerate(prm_items(3, 3))]
    check_batched_equals_single(cfg, items)


@pytest.mark.slow
def test_response_split_on_the_separator_and_invalid_items() -> None:
    cfg = {"scorers": {"prm": {"type": "prm", "model": str(minilm_dir("token", 2)), "device": "cpu",
                               "max_length": 48, "step_separator": "\n\n"}}}
    steps = ["First, 2 + 3 = 5.", "Then 5 * 4 = 20.", "So the answer is 20."]
    items = [
        Item(id="steps", prompt="What is (2+3)*4?", steps=steps),
        Item(id="split", prompt="What is (2+3)*4?", response="\n\n".join(steps) + "\n\n"),
        Item(id="empty", prompt="What is (2+3)*4?", response=" \n\n "),
        Item(id="long", prompt="q", steps=["a long step with many words in it"] * 12),
    ]
    [results] = score(cfg, "prm", [items])
    assert [r.id for r in results] == ["steps", "split", "empty", "long"]
    assert results[0].step_scores == pytest.approx(results[1].step_scores, abs=ATOL)
    assert len(results[1].step_scores) == 3
    assert results[2].error.code == ErrorCode.INVALID_ITEM and "no steps" in results[2].error.message
    # Past max_length, token_classification scores in step-preserving windows: every step gets a score.
    assert results[3].ok and len(results[3].step_scores) == 12 and results[3].details["windows"] > 1

    # A bad option is the request's fault, not the items': INVALID_ARGUMENT on the wire.
    for bad in ({"aggregation": "median"}, {"aggregation": "pure", "pure_temperature": 0}):
        with pytest.raises(InvalidOptionsError, match=r"median|pure_temperature must be > 0"):
            score(cfg, "prm", [items[:1]], bad)


@pytest.mark.slow
def test_aggregation_option_overrides_the_config() -> None:
    cfg = {"scorers": {"prm": {"type": "prm", "model": str(minilm_dir("token", 2)), "device": "cpu",
                               "aggregation": "mean"}}}
    item = Item(id="x", prompt="What is 6*7?", steps=["6*7 = 42", "The answer is 42", "Done"])

    async def main():
        async with ScoringService(parse_config(cfg)) as svc:
            out = {}
            for how in ("", "min", "last", "product", "pure"):
                out[how or "config"] = (await svc.score("prm", [item], {"aggregation": how}))[0]
            return out

    out = asyncio.run(main())
    p = out["config"].step_scores
    assert out["config"].score == pytest.approx(sum(p) / 3)
    assert out["min"].score == pytest.approx(min(p))
    assert out["last"].score == pytest.approx(p[-1])
    assert out["product"].score == pytest.approx(math.prod(p))
    assert out["pure"].score == pytest.approx(aggregate(p, "pure", 0.1))
    assert out["pure"].details["aggregation"] == "pure"
