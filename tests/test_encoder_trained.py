"""The trained default models, served by the real server and called through the client.

cache:default-rm (Bradley-Terry RM on HH-RLHF) and cache:default-prm (token-classification PRM
on PRMBench) are trained by `make install` (python -m rewardsvc.prepare). Each is served here with
the stanza its trainer wrote (its rewardsvc.yaml), so the test also checks that the trainers and
the scorers agree on the config format. The examples are from the held-out splits those models
never trained on (tests/data/encoder/NOTE.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from encoder_models import read_jsonl
from rewardsvc.client import RewardClient
from rewardsvc.config import parse_config
from rewardsvc.model_refs import cache_dir
from rewardsvc.scorers.render import hh_prompt_response
from rewardsvc.service import ScoringService
from rewardsvc.types import Item
from support import ServerProcess

pytestmark = pytest.mark.slow


def checkpoint_stanza(name: str) -> dict[str, Any]:
    """The scorer stanza the trainer wrote beside cache:NAME."""
    path = cache_dir() / "models" / name / "rewardsvc.yaml"
    if not path.exists():
        pytest.skip(f"cache:{name} is not prepared ({path} missing): run `make install` "
                    "(python -m rewardsvc.prepare trains it)")
    [stanza] = (yaml.safe_load(path.read_text())["scorers"]).values()
    return stanza


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    rm = checkpoint_stanza("default-rm")
    prm = checkpoint_stanza("default-prm")
    # The stanza's model is the directory it was trained into; name it as the cache does.
    return {"scorers": {
        "rm": {**rm, "model": "cache:default-rm", "device": "cpu"},
        "prm": {**prm, "model": "cache:default-prm", "device": "cpu"},
        "math": {"type": "math", "workers": 1},
        "math-gated-prm": {"type": "composite", "mode": "gated", "outcome": {"scorer": "math"},
                           "process": {"scorer": "prm", "weight": 0.5}},
    }}


@pytest.fixture(scope="module")
def client(config: dict[str, Any]) -> Iterator[RewardClient]:
    with ServerProcess(config, preimported=True) as srv, RewardClient(srv.address) as c:
        yield c


def hh_pairs() -> list[tuple[Item, Item]]:
    pairs = []
    for i, row in enumerate(read_jsonl("hh-rlhf-heldout-200.jsonl")):
        sides = []
        for side in ("chosen", "rejected"):
            prompt, response = hh_prompt_response(row[side])
            sides.append(Item(id=f"{i}-{side}", prompt=prompt, response=response))
        pairs.append((sides[0], sides[1]))
    return pairs


def test_rm_prefers_chosen_on_held_out_pairs(client: RewardClient, config: dict[str, Any]) -> None:
    pairs = hh_pairs()
    items = [it for pair in pairs for it in pair]
    results = client.score("rm", items)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    scores = {r.id: r.score for r in results}
    wins = sum(scores[c.id] > scores[r.id] for c, r in pairs)
    # 112 of 200 is where a one-sided binomial test against a coin flip reaches p < 0.05. (The
    # default RM is a 60-step CPU run: ~0.6 held-out accuracy; two training runs scored 119 and 124.)
    assert wins >= 112, f"the trained RM prefers the chosen response in only {wins} of {len(pairs)} held-out pairs"

    # The served scores are the in-process scores of the same scorer and config.
    async def in_process() -> list[float]:
        async with ScoringService(parse_config({"scorers": {"rm": config["scorers"]["rm"]}})) as svc:
            return [r.score for r in await svc.score("rm", items[:8])]

    assert [scores[it.id] for it in items[:8]] == pytest.approx(asyncio.run(in_process()), abs=1e-4)


def prm_rows() -> list[dict[str, Any]]:
    return read_jsonl("prmbench-heldout-32.jsonl")


def test_prm_step_scores_on_held_out_processes(client: RewardClient) -> None:
    rows = prm_rows()
    items = []
    for i, row in enumerate(rows):
        items.append(Item(id=f"{i}-orig", prompt=row["question"], steps=row["original_process"]))
        items.append(Item(id=f"{i}-mod", prompt=row["question"], steps=row["modified_process"]))
    results = client.score("prm", items)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    for it, r in zip(items, results):
        assert len(r.step_scores) == len(it.steps)
        assert all(0.0 <= p <= 1.0 for p in r.step_scores)
        assert r.score == pytest.approx(min(r.step_scores))
    # Steps PRMBench marks as errors get lower p(good) on average than the steps it marks valid.
    good, bad = [], []
    for row, r in zip(rows, results[1::2]):
        errors = set(row["error_steps"])
        for k, p in enumerate(r.step_scores, start=1):
            (bad if k in errors else good).append(p)
    mean_good, mean_bad = sum(good) / len(good), sum(bad) / len(bad)
    assert mean_bad < mean_good, f"mean p(good) on error steps {mean_bad:.3f} vs valid steps {mean_good:.3f}"
    # The all-correct original process outscores (min aggregation) its modified, erroneous version:
    # 21 of 32 is where a one-sided binomial test against a coin flip reaches p < 0.05.
    wins = sum(o.score > m.score for o, m in zip(results[0::2], results[1::2]))
    assert wins >= 21, f"the original process beats the erroneous one in only {wins} of {len(rows)} problems"


def test_response_split_on_newlines_equals_explicit_steps(client: RewardClient) -> None:
    row = prm_rows()[0]
    explicit = Item(id="steps", prompt=row["question"], steps=row["modified_process"])
    split = Item(id="split", prompt=row["question"], response="\n".join(row["modified_process"]))
    a, b = client.score("prm", [explicit, split])
    assert a.step_scores == pytest.approx(b.step_scores, abs=1e-5)


def test_math_gated_prm_through_the_server(client: RewardClient) -> None:
    question = "A farmer has 3 boxes with 4 apples each. How many apples does he have?"

    def item(i: str, answer: str) -> dict[str, Any]:
        steps = ["Each box has 4 apples and there are 3 boxes.", f"3 * 4 = {answer}.",
                 f"The answer is \\boxed{{{answer}}}."]
        return {"id": i, "prompt": question, "response": "\n".join(steps), "steps": steps, "reference": "12"}

    items = [item("right", "12"), item("wrong", "13")]
    prm = client.score("prm", items)
    gated = client.score("math-gated-prm", items)
    assert gated[0].details["correct"] is True and gated[1].details["correct"] is False
    assert gated[0].score == pytest.approx(1.0 + 0.5 * prm[0].score, abs=1e-5)
    assert gated[0].step_scores == pytest.approx(prm[0].step_scores, abs=1e-5)
    assert gated[1].score == 0.0 and gated[1].step_scores == []
    assert json.loads(json.dumps(gated[0].details))  # details survive the wire as plain JSON
