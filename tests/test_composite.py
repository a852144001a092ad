"""The composite scorer: weighted sum, outcome-gated process reward, z-score within group_id,
bounded shaping, per-item error propagation, config errors.

Components are real hosted scorers: the math verifier (exact 0/1 rewards, so formulas can be
computed by hand) and a classifier/PRM on MiniLM with random-init heads (their scores are read
back from the components themselves; no claim of quality).
"""

from __future__ import annotations

import asyncio
import math

import pytest

from encoder_models import minilm_dir
from rewardsvc.config import parse_config
from rewardsvc.errors import ConfigError
from rewardsvc.service import ScoringService
from rewardsvc.types import ErrorCode, Item

pytestmark = pytest.mark.slow


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def math_item(i: int, answer: str, reference: str = "12", group: str | None = None) -> Item:
    steps = ["There are 3 boxes with 4 apples each.", f"3 * 4 = {answer}.", f"The answer is \\boxed{{{answer}}}."]
    return Item(id=str(i), prompt="3 boxes hold 4 apples each. How many apples?", response="\n".join(steps),
                reference=reference, steps=steps, group_id=group)


BASE = {
    "math": {"type": "math", "workers": 1},
    "rm": {"type": "classifier", "device": "cpu", "max_length": 64},
    "prm": {"type": "prm", "device": "cpu", "max_length": 128},
}


@pytest.fixture(scope="module")
def config() -> dict:
    scorers = {k: dict(v) for k, v in BASE.items()}
    scorers["rm"]["model"] = str(minilm_dir("sequence", 1))
    scorers["prm"]["model"] = str(minilm_dir("token", 2))
    scorers.update({
        "sum": {"type": "composite", "components": [{"scorer": "math", "weight": 2.0}, {"scorer": "rm", "weight": 0.5}]},
        "gated": {"type": "composite", "mode": "gated", "outcome": {"scorer": "math"},
                  "process": {"scorer": "prm", "weight": 0.5, "options": {"aggregation": "mean"}}},
        "z": {"type": "composite", "mode": "zscore", "components": [{"scorer": "math"}]},
        "shape-fixed": {"type": "composite", "mode": "shaping", "components": [{"scorer": "math"}],
                        "center": 0.5, "temperature": 0.25},
        "shape-group": {"type": "composite", "mode": "shaping", "components": [{"scorer": "math"}]},
        "shape-ref": {"type": "composite", "mode": "shaping", "components": [{"scorer": "rm"}],
                      "center": "reference", "temperature": 0.01},
        "nested": {"type": "composite", "components": [{"scorer": "z", "weight": -1.0}, {"scorer": "math"}]},
    })
    return {"scorers": scorers}


@pytest.fixture(scope="module")
def service(config: dict):
    """One started service and a loop to drive it, shared by the module's tests."""
    loop = asyncio.new_event_loop()
    svc = ScoringService(parse_config(config))
    loop.run_until_complete(svc.start())
    yield lambda name, items, options=None: loop.run_until_complete(svc.score(name, items, options)), svc
    loop.run_until_complete(svc.close())
    loop.close()


def test_weighted_sum(service) -> None:
    call, _ = service
    items = [math_item(0, "12"), math_item(1, "13"), math_item(2, "12")]
    m = [r.score for r in call("math", items)]
    rm = [r.score for r in call("rm", items)]
    out = call("sum", items)
    assert m == [1.0, 0.0, 1.0]
    assert [r.score for r in out] == pytest.approx([2 * a + 0.5 * b for a, b in zip(m, rm)], abs=1e-5)
    assert out[1].details["components"]["math"] == 0.0


def test_gated_process_counts_only_where_correct(service) -> None:
    call, svc = service
    items = [math_item(0, "12"), math_item(1, "13"), math_item(2, "12"), math_item(3, "7")]
    prm = call("prm", items, {"aggregation": "mean"})
    stats = svc.get("prm").batcher.stats
    before = stats.items
    out = call("gated", items)
    # Items 0 and 2 are the same work (dedupe): one PRM input for the correct items, none for the others.
    assert stats.items - before == 1, "the PRM should run on the correct items only"
    for it, p, r in zip(items, prm, out):
        correct = it.id in ("0", "2")
        assert r.details["correct"] is correct
        expected = 1.0 + 0.5 * p.score if correct else 0.0
        assert r.score == pytest.approx(expected, abs=1e-5)
        assert r.step_scores == (pytest.approx(p.step_scores, abs=1e-5) if correct else [])


def test_zscore_within_group(service) -> None:
    call, _ = service
    answers = [("a", "12"), ("a", "13"), ("a", "13"), ("a", "12"), ("b", "12"), ("b", "12"), ("c", "5"),
               (None, "12"), (None, "9")]
    items = [math_item(i, ans, group=g) for i, (g, ans) in enumerate(answers)]
    out = [r.score for r in call("z", items)]
    # group a: [1, 0, 0, 1], mean 0.5, sample std sqrt(1/3); eps 1e-4
    za = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    assert out[:4] == pytest.approx([za, -za, -za, za])
    assert out[4:7] == [0.0, 0.0, 0.0]  # b: all equal; c: one item
    zn = 0.5 / (math.sqrt(0.5) + 1e-4)  # no group_id: [1, 0] normalised together
    assert out[7:] == pytest.approx([zn, -zn])


def test_shaping(service) -> None:
    call, _ = service
    items = [math_item(0, "12", group="g"), math_item(1, "13", group="g"), math_item(2, "13", group="g")]
    fixed = [r.score for r in call("shape-fixed", items)]
    assert fixed == pytest.approx([sigmoid(2.0), sigmoid(-2.0), sigmoid(-2.0)])
    group = [r.score for r in call("shape-group", items)]
    assert group == pytest.approx([sigmoid(2 / 3), sigmoid(-1 / 3), sigmoid(-1 / 3)])
    assert all(0 < s < 1 for s in fixed + group)

    # Centred on the reward of the item's reference response (Preference-As-Reward).
    pair = [math_item(0, "12"), math_item(1, "13")]
    pair[0].reference = "There are twelve apples."
    pair[1].reference = "3 boxes times 4 apples is 12 apples."
    rm = [r.score for r in call("rm", pair)]
    ref_scores = [r.score for r in call("rm", [Item(id="r", prompt=it.prompt, response=it.reference) for it in pair])]
    shaped = call("shape-ref", pair)
    assert [r.score for r in shaped] == pytest.approx([sigmoid((a - b) / 0.01) for a, b in zip(rm, ref_scores)], abs=1e-4)
    assert shaped[0].details["center"] == pytest.approx(ref_scores[0], abs=1e-5)


def test_nested_composite_and_component_errors(service) -> None:
    call, _ = service
    items = [math_item(0, "12", group="g"), math_item(1, "13", group="g"),
             Item(id="no-ref", prompt="q", response="\\boxed{1}")]
    z = call("z", items[:2])
    nested = call("nested", items)
    assert [r.score for r in nested[:2]] == pytest.approx([-z[0].score + 1.0, -z[1].score + 0.0])
    err = nested[2].error
    assert err is not None and err.code == ErrorCode.INVALID_ITEM and "component 'z'" in err.message
    shaped = call("shape-ref", [Item(id="x", prompt="q", response="r")])
    assert shaped[0].error.code == ErrorCode.INVALID_ITEM and "reference" in shaped[0].error.message


@pytest.mark.parametrize("stanza,match", [
    ({"components": [{"scorer": "nope"}]}, "not a scorer on this server"),
    ({"components": [{"scorer": "loop"}]}, "loop"),
    ({"mode": "gated", "outcome": {"scorer": "math"}}, "process"),
    ({"mode": "average", "components": [{"scorer": "math"}]}, "mode"),
    ({"components": [{"scorer": "math", "options": {"timeout": 3}}]}, "timeout"),
    ({"mode": "shaping", "components": [{"scorer": "math"}], "center": "median"}, "center"),
])
def test_config_errors(stanza: dict, match: str) -> None:
    # Found before any scorer starts: "math" fails the test if it starts (a model would load, workers spawn).
    cfg = {"scorers": {"loop": {"type": "composite", **stanza},
                       "math": {"type": "faulty_scorers:MathNeverStarted"}}}

    async def main():
        async with ScoringService(parse_config(cfg)):
            pass

    with pytest.raises(ConfigError, match=match):
        asyncio.run(main())
