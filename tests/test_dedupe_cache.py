"""Dedupe and the result cache (rewardsvc/scorers/dedupe.py) through the real ScoringService.

Deduplication must be invisible in the results: GRPO-shaped GSM8K groups scored by the real math
scorer with and without it give identical results, item for item. The cache returns what was
computed, only for deterministic scorers and only for results that describe the item.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from pathlib import Path

import pytest

from rewardsvc.config import parse_config
from rewardsvc.service import ScoringService
from rewardsvc.types import Item, Message

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "bench" / "data" / "eval" / "gsm8k-test-model-solutions.jsonl.gz"
MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def gsm8k_groups(problems: int, group_size: int = 8) -> list[Item]:
    """`group_size` rollouts per problem, cycling through its 4 model solutions and the reference
    solution; each problem one group_id."""
    items = []
    with gzip.open(SOLUTIONS, "rt") as f:
        for p, line in zip(range(problems), f):
            row = json.loads(line)
            answer = re.search(r"A:\s*(.+)\s*$", row["ground_truth"]).group(1)
            texts = [row[m]["solution"] for m in MODELS] + [row["ground_truth"]]
            for k in range(group_size):
                items.append(Item(id=f"{p}-{k}", prompt=row["question"], response=texts[k % len(texts)],
                                  reference=answer, group_id=str(p)))
    return items


def service(server: dict, scorers: dict) -> ScoringService:
    return ScoringService(parse_config({"server": server, "scorers": scorers}, "test"))


async def _score_both(items: list[Item]) -> tuple[list, list, object]:
    math = {"math": {"type": "math", "workers": 1, "timeout_s": 10.0}}
    async with service({"dedupe": False}, math) as plain, service({"dedupe": True}, math) as deduped:
        base = await plain.score("math", items)
        fast, timing = await deduped.score_timed("math", items)
    return base, fast, timing


@pytest.mark.slow
def test_math_dedupe_gives_exactly_the_results_of_scoring_every_item() -> None:
    items = gsm8k_groups(6)
    # Items the extractor finds nothing in, and a repeated id, dedupe like the rest.
    items += [Item(id="none-1", response="no idea", reference="3"), Item(id="none-2", response="no clue", reference="3"),
              Item(id="0-0", response="so \\boxed{18}", reference="18")]
    base, fast, timing = asyncio.run(_score_both(items))
    assert [r.to_dict() for r in fast] == [r.to_dict() for r in base]
    verdicts = [r.details["verdict"] for r in base]
    assert {"correct", "incorrect", "no_answer"} <= set(verdicts)
    # 6 groups of 8 cycle through 5 solutions (at most 5 answers each), plus the two unanswered items.
    assert timing.deduplicated_items >= 6 * 3 + 1


def _run(coro):
    return asyncio.run(coro)


def test_dedupe_scores_each_distinct_item_once_and_copies_results() -> None:
    async def go() -> None:
        async with service({}, {"c": {"type": "counting_scorer:CountingScorer"}}) as svc:
            items = [Item(id=str(i), response=r) for i, r in enumerate(["aa", "b", "aa", "fail", "fail", "aa"])]
            results, timing = await svc.score_timed("c", items)
            assert svc.scorers["c"].scored == 3
            assert timing.deduplicated_items == 3 and timing.cache_hits == 0
            assert [r.id for r in results] == [str(i) for i in range(6)]
            assert [r.score for r in results] == [2.0, 1.0, 2.0, 0.0, 0.0, 2.0]
            assert [r.error is not None for r in results] == [False, False, False, True, True, False]
            # Copies are independent: changing one result's details leaves the others alone.
            results[0].details["chars"] = 99
            assert results[2].details["chars"] == 2
            # Chat messages and plain text render differently: not the same work.
            chat = [Item(id="a", response="hi"), Item(id="b", response=[Message("assistant", "hi")])]
            _, timing = await svc.score_timed("c", chat)
            assert timing.deduplicated_items == 0
    _run(go())


def test_dedupe_off_scores_every_item() -> None:
    async def go() -> None:
        async with service({"dedupe": False}, {"c": {"type": "counting_scorer:CountingScorer"}}) as svc:
            await svc.score("c", [Item(id=str(i), response="same") for i in range(4)])
            assert svc.scorers["c"].scored == 4
    _run(go())


def test_result_cache_hits_are_the_computed_results_and_stay_bounded() -> None:
    async def go() -> None:
        scorers = {"c": {"type": "counting_scorer:CountingScorer"},
                   "c2": {"type": "counting_scorer:CountingScorer", "offset": 10.0},
                   "s": {"type": "counting_scorer:SamplingScorer"}}
        async with service({"result_cache_items": 3}, scorers) as svc:
            items = [Item(id="x", response="abc"), Item(id="y", response="fail")]
            first, t1 = await svc.score_timed("c", items)
            again, t2 = await svc.score_timed("c", [Item(id="x2", response="abc"), Item(id="y2", response="fail")])
            assert (t1.cache_hits, t2.cache_hits) == (0, 1)  # the failed item is never kept
            assert svc.scorers["c"].scored == 3
            assert again[0].to_dict() == {**first[0].to_dict(), "id": "x2"}
            # Other options, another scorer config: other work.
            _, t3 = await svc.score_timed("c", [Item(id="x", response="abc")], {"bonus": 1.0})
            res, t4 = await svc.score_timed("c2", [Item(id="x", response="abc")])
            assert (t3.cache_hits, t4.cache_hits, res[0].score) == (0, 0, 13.0)
            # Stochastic scorers are never cached (but still deduplicated within a request).
            for _ in range(2):
                _, ts = await svc.score_timed("s", [Item(id="x", response="abc"), Item(id="y", response="abc")])
                assert (ts.cache_hits, ts.deduplicated_items) == (0, 1)
            assert svc.scorers["s"].scored == 2
            # LRU: at most 3 entries; the oldest goes first.
            for text in ("d", "e", "f"):
                await svc.score("c", [Item(id="z", response=text)])
            assert len(svc.result_cache) == 3
            _, t5 = await svc.score_timed("c", [Item(id="x", response="abc")])
            assert t5.cache_hits == 0
            assert svc.work["c"].cache_hits == 1 and svc.work["c"].cache_misses >= 6
    _run(go())


@pytest.mark.slow
def test_a_math_timeout_is_not_cached() -> None:
    async def go() -> None:
        math = {"math": {"type": "math", "workers": 1, "timeout_s": 1.0}}
        async with service({"result_cache_items": 100}, math) as svc:
            slow = [Item(id="t", response="\\boxed{100000000!}", reference="1")]
            fast = [Item(id="f", response="\\boxed{2}", reference="2")]
            for _ in range(2):
                (r,), t_slow = await svc.score_timed("math", slow)
                assert r.details["verdict"] == "timeout" and t_slow.cache_hits == 0
                (ok,), t_fast = await svc.score_timed("math", fast)
            assert ok.details["verdict"] == "correct" and t_fast.cache_hits == 1
    _run(go())


def test_the_math_extraction_memo_is_bounded_and_skips_long_texts() -> None:
    # The dedupe key and the check of each distinct item extract the same answer: the memo keeps the
    # last MEMO_ITEMS short responses' answers, never a long response (its text would be what it holds).
    from rewardsvc.scorers import math as math_scorer
    from rewardsvc.verifiers.math.extract import EXTRACTORS, extract_answer

    memo = math_scorer._extract_memo
    memo.cache_clear()
    order = list(EXTRACTORS)
    long_text = "x " * math_scorer.MEMO_CHARS + "so the answer is 12"
    assert math_scorer._extract(long_text, order) == extract_answer(long_text, order) == ("12", "answer_is")
    assert memo.cache_info().currsize == 0
    for n in range(math_scorer.MEMO_ITEMS + 10):
        assert math_scorer._extract(f"{n} apples #### {n}", order) == (str(n), "hash")
    assert memo.cache_info().currsize == memo.cache_info().maxsize == math_scorer.MEMO_ITEMS
    recent = math_scorer.MEMO_ITEMS + 5
    assert math_scorer._extract(f"{recent} apples #### {recent}", order) == (str(recent), "hash")
    assert memo.cache_info().hits == 1


def test_config_digest_is_kept_per_scorer_and_works_for_unhashable_plug_ins() -> None:
    from rewardsvc.scorers import dedupe
    from rewardsvc.scorers.base import Scorer

    class PlugIn(Scorer):
        __hash__ = None  # e.g. a dataclass-style __eq__ without __hash__

        async def score(self, items, options):
            return []

    class Hashable(PlugIn):
        __hash__ = object.__hash__

    unhashable, plain = object.__new__(PlugIn), object.__new__(Hashable)
    unhashable.config = plain.config = {"threshold": 0.5}
    assert dedupe.config_version(unhashable) == dedupe._digest(unhashable)
    first = dedupe.config_version(plain)
    plain.config = {"threshold": 0.9}  # never done by the server: shows the digest is computed once
    assert dedupe.config_version(plain) == first != dedupe._digest(plain)
