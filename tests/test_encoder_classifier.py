"""The classifier scorer in-process: cross-request batching equals single-item scoring, order is kept,
normalisation, chat messages, config errors, cancelled calls dropped.

Random-init head on the real MiniLM backbone: batching and plumbing only, no claim of quality.
"""

from __future__ import annotations

import asyncio

import pytest

from encoder_models import minilm_dir, read_jsonl
from rewardsvc.config import parse_config
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.render import hh_prompt_response
from rewardsvc.service import ScoringService
from rewardsvc.types import Item, Message

pytestmark = pytest.mark.slow

ATOL = 1e-4


def hh_items(n: int) -> list[Item]:
    items = []
    for i, row in enumerate(read_jsonl("hh-rlhf-sample.jsonl")[:n]):
        for side in ("chosen", "rejected"):
            prompt, response = hh_prompt_response(row[side])
            items.append(Item(id=f"{i}-{side}", prompt=prompt, response=response))
    return items


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def config() -> dict:
    model = str(minilm_dir("sequence", 1))
    return {"scorers": {
        # No padding bound: batches mix lengths, which is what the equality checks exercise.
        "rm": {"type": "classifier", "model": model, "device": "cpu", "max_length": 64,
               "batching": {"max_wait_ms": 20, "min_fill_ratio": 0.0}},
        "rm-norm": {"type": "classifier", "model": model, "device": "cpu", "max_length": 64,
                    "normalize_mean": 0.5, "normalize_std": 4.0},
    }}


def test_concurrent_requests_share_batches_and_equal_single_scores(config: dict) -> None:
    items = hh_items(6)

    async def main():
        async with ScoringService(parse_config(config)) as svc:
            single = [(await svc.score("rm", [it]))[0] for it in items]
            batcher = svc.get("rm").batcher
            before = batcher.stats.batches
            padded, real = batcher.stats.padded_tokens, batcher.stats.real_tokens
            # Four callers at once, each with its own slice, as RL workers would.
            chunks = [items[i::4] for i in range(4)]
            together = await asyncio.gather(*(svc.score("rm", c) for c in chunks))
            padding = (batcher.stats.padded_tokens - padded) - (batcher.stats.real_tokens - real)
            return single, chunks, together, batcher.stats.batches - before, padding

    single, chunks, together, batches, padding = run(main())
    assert padding > 0, "the shared batches had no padding to test"
    by_id = {r.id: r.score for r in single}
    assert len(set(round(v, 6) for v in by_id.values())) == len(items)
    for chunk, results in zip(chunks, together):
        assert [r.id for r in results] == [it.id for it in chunk]  # input order kept
        assert [r.score for r in results] == pytest.approx([by_id[it.id] for it in chunk], abs=ATOL)
        assert all(r.ok and r.details["tokens"] <= 64 for r in results)
    assert batches < len(items), f"{len(items)} items from 4 concurrent calls took {batches} forward passes"


def test_normalisation_and_text_vs_messages(config: dict) -> None:
    prompt = "How do I boil an egg?"
    response = "Put it in boiling water for about eight minutes."
    as_text = Item(id="t", prompt=prompt, response=response)
    as_messages = Item(id="m", prompt=[Message("user", prompt)], response=[Message("assistant", response)])

    async def main():
        async with ScoringService(parse_config(config)) as svc:
            raw = await svc.score("rm", [as_text, as_messages])
            norm = await svc.score("rm-norm", [as_text])
            off = await svc.score("rm-norm", [as_text], {"normalize": False})
            return raw, norm, off

    raw, norm, off = run(main())
    assert raw[0].score == pytest.approx(raw[1].score, abs=ATOL)
    assert norm[0].score == pytest.approx((raw[0].score - 0.5) / 4.0, abs=ATOL)
    assert norm[0].details["raw_score"] == pytest.approx(raw[0].score, abs=ATOL)
    assert off[0].score == pytest.approx(raw[0].score, abs=ATOL)


def test_cancelled_call_is_dropped_from_the_queue(config: dict) -> None:
    items = hh_items(12) * 2
    cfg = {"scorers": {"rm": {**config["scorers"]["rm"], "batching": {"max_batch_size": 1, "max_wait_ms": 0}}}}

    async def main():
        async with ScoringService(parse_config(cfg)) as svc:
            batcher = svc.get("rm").batcher
            task = asyncio.create_task(svc.score("rm", items))
            while batcher.stats.batches < 1:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.3)  # let the batcher loop notice; the work in flight may finish
            after_cancel = batcher.stats.items
            # The scorer still serves new calls.
            ok = await svc.score("rm", items[:2])
            return after_cancel, batcher.queue_depth, ok

    after_cancel, depth, ok = run(main())
    assert after_cancel < len(items) // 2, f"{after_cancel} of {len(items)} items were computed after the cancel"
    assert depth == 0
    assert all(r.ok for r in ok)


@pytest.mark.parametrize("stanza,match", [
    ({"model": ""}, "model"),
    ({"normalize_mean": 1.0}, "both"),
    ({"normalize_mean": 0.0, "normalize_std": 0.0}, "normalize_std"),
    ({"model": "/nonexistent/rm"}, "not found"),
])
def test_config_errors_say_what_to_fix(config: dict, stanza: dict, match: str) -> None:
    cfg = {"scorers": {"rm": {**config["scorers"]["rm"], **stanza}}}

    async def main():
        async with ScoringService(parse_config(cfg)):
            pass

    with pytest.raises(ConfigError, match=match):
        run(main())


def test_a_two_label_model_is_not_served_as_a_reward_model() -> None:
    cfg = {"scorers": {"rm": {"type": "classifier", "model": str(minilm_dir("sequence", 2)), "device": "cpu"}}}

    async def main():
        async with ScoringService(parse_config(cfg)):
            pass

    with pytest.raises(ConfigError, match="num_labels=2"):
        run(main())
