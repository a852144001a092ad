"""implicit_prm, confidence and judge scorers in-process: batched = single with left and right
padding, results in input order, concurrent calls sharing forward passes, the implicit-PRM formula
against a direct computation, and item errors.

Models: those checks hold for any weights, so they run on SmolLM2 cut to its first two layers
(`smollm_layers(2)`: real weights and tokenizer, ~1/10 of the forward), with the first layer alone
(`smollm_layers(1)`) as the implicit PRM's different reference model. The cut model puts most of the
judge's and CRew's probabilities near 0 (or 0.5), so the batched = single checks also compare the
raw log-probs each model returned for each request (`LogprobLog`), which differ between items by
far more than the tolerance. The one quality claim, that RLPR's reference probability prefers
reasoning that reaches the reference, uses the full SmolLM2-135M-Instruct in its own scorer.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict
from typing import Any

import pytest
from causal_support import MASTER_KEYS, SMOLLM, gsm8k_pairs, smollm, smollm_layers

pytest.importorskip("torch")

from rewardsvc.config import parse_config
from rewardsvc.service import ScoringService
from rewardsvc.types import ErrorCode, Item, Message

pytestmark = pytest.mark.slow
TOL = 2e-4


class Service:
    """A ScoringService on its own event loop, shared by the module's tests."""

    def __init__(self, config: dict) -> None:
        self.loop = asyncio.new_event_loop()
        self.service = ScoringService(parse_config(config))
        self.loop.run_until_complete(self.service.start())

    def score(self, name: str, items: list[Item], **options):
        return self.loop.run_until_complete(self.service.score(name, items, options))

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.run_until_complete(self.service.close())
        self.loop.close()


@pytest.fixture(scope="module")
def svc():
    # The cut-down policy and its (different) reference: the same tokenizer; any weights will do here.
    small, small_ref = smollm_layers(2), smollm_layers(1)
    scorers = {}
    for side in ("left", "right"):
        scorers[f"judge_{side}"] = {"type": "judge", "model": small, "padding_side": side}
        scorers[f"conf_{side}"] = {"type": "confidence", "model": small, "padding_side": side}
        scorers[f"iprm_{side}"] = {"type": "implicit_prm", "padding_side": side, "model": small,
                                   "reference_model": small_ref, "beta": 0.1}
    scorers["iprm_same"] = {"type": "implicit_prm", "model": small, "reference_model": small}
    scorers["judge_short"] = {"type": "judge", "model": small, "max_length": 100}
    for stanza in scorers.values():
        # No padding bound: batches mix lengths, which is what the batched == single checks exercise.
        stanza["batching"] = {"min_fill_ratio": 0.0}
    # Waits for four items however long the callers' text work takes: on a loaded machine the four
    # calls below reached judge_right's 5 ms window in two batches. Yes/no: its probabilities differ
    # between the items even on the cut-down model.
    scorers["judge_four"] = {"type": "judge", "model": small, "padding_side": "right", "reference_method": "yes_no",
                             "batching": {"min_fill_ratio": 0.0, "max_batch_size": 4, "max_wait_ms": 600_000}}
    s = Service({"scorers": scorers})
    yield s
    s.close()


class LogprobLog:
    """Every log-prob request the module's models answer, by its tokens, with the raw log-probs
    returned (targets, then candidates): what the scorers turn into probabilities."""

    def __init__(self, models: list[Any]) -> None:
        self.models = models
        self.seen: dict[tuple, list[list[float]]] = defaultdict(list)
        for k, lm in enumerate(models):
            lm.logprobs = self._recorder(k, lm.logprobs)

    def _recorder(self, k: int, inner: Any) -> Any:
        def logprobs(requests, *args, **kwargs):
            out = inner(requests, *args, **kwargs)
            for r, res in zip(requests, out):
                key = (k, tuple(r.context), tuple(r.target), tuple(r.candidates))
                self.seen[key].append(list(res.target) + list(res.candidates))
            return out
        return logprobs

    def close(self) -> None:
        for lm in self.models:
            del lm.logprobs  # the class's method again

    def assert_batched_equals_single(self, tol: float) -> None:
        """Each request was answered alike every time (alone, in left- and right-padded batches), and
        the requests' log-probs differ by much more than `tol` (so a padding bug would show)."""
        assert self.seen, "no log-prob request was made"
        for key, answers in self.seen.items():
            assert len(answers) >= 3, (key, answers)  # alone, batched left, batched right
            for a in answers[1:]:
                assert a == pytest.approx(answers[0], abs=tol)
        for k in {key[0] for key in self.seen}:
            firsts = [answers[0][0] for key, answers in self.seen.items() if key[0] == k]
            assert max(firsts) - min(firsts) > 100 * tol, firsts


@pytest.fixture
def logprob_log(svc):
    scorer = svc.service.get("iprm_left")
    log = LogprobLog([scorer.lm, scorer.reference])
    yield log
    log.close()


def _items() -> list[Item]:
    """Short real-ish items: a GRPO group of two (same prompt and group_id), two loners of other lengths."""
    q = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    return [
        Item(id="a", prompt=q, response="3 + 4 = 7\nThe answer is 7.", reference="7", group_id="g"),
        Item(id="b", prompt=q, response="He has 3 * 4 = 12 apples.\nThe answer is 12.", reference="7", group_id="g"),
        Item(id="c", prompt=[Message("user", "What is 10 - 4?")], response="10 - 4 = 6. #### 6", reference="6"),
        Item(id="d", prompt="Name a colour.", response="Blue. The answer is \\boxed{blue}.", reference="red"),
    ]


CASES = [
    ("judge", {"mode": "reference"}),
    ("judge", {"mode": "reference", "reference_method": "yes_no"}),
    ("judge", {"mode": "pairwise"}),
    ("judge", {"mode": "pointwise"}),
    ("conf", {"variant": "crew_mean"}),
    ("conf", {"variant": "crew_min"}),
    ("conf", {"variant": "p_true"}),
    ("conf", {"variant": "reference_prob"}),
    ("iprm", {}),
    ("iprm", {"granularity": "token", "aggregate": "min"}),
]


@pytest.mark.parametrize("scorer,options", CASES, ids=[f"{s}-{'-'.join(o.values()) or 'default'}" for s, o in CASES])
def test_batched_equals_single_with_left_and_right_padding(svc, logprob_log, scorer, options):
    items = _items()
    single = [svc.score(f"{scorer}_left", [it], **options)[0] for it in items]
    assert all(r.ok for r in single), [r.error for r in single]
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    for side in ("left", "right"):
        batched = svc.score(f"{scorer}_{side}", shuffled, **options)
        assert [r.id for r in batched] == [it.id for it in shuffled]  # input order kept
        by_id = {r.id: r for r in batched}
        for s in single:
            b = by_id[s.id]
            assert b.ok, b.error
            assert b.score == pytest.approx(s.score, abs=TOL), (side, s.id)
            assert b.step_scores == pytest.approx(s.step_scores, abs=TOL)
            assert b.details.get("judge_output") == s.details.get("judge_output")  # pointwise: the same text
    if options.get("mode") == "pointwise":
        # Generation, not log-probs: the judge's greedy texts (which the cut model does not rate) differ.
        assert len({r.details["judge_output"] for r in single}) > 1
    else:
        logprob_log.assert_batched_equals_single(TOL)
    if scorer == "iprm" or options.get("reference_method") == "yes_no" or options.get("variant") == "p_true":
        scores = [r.score for r in single]
        assert max(scores) - min(scores) > 100 * TOL, scores  # the scores themselves tell items apart
    if scorer == "conf":
        assert all(0.0 <= r.score <= 1.0 for r in single)
    if scorer == "judge":
        assert all(-1.0 <= r.score <= 1.0 for r in single)


def test_concurrent_calls_share_forward_passes(svc):
    scorer = svc.service.get("judge_four")
    items = _items()
    before = scorer.logprob_batcher.stats.batches

    async def four_callers():
        return await asyncio.gather(*(svc.service.score("judge_four", [it]) for it in items))

    together = [r[0] for r in svc.run(four_callers())]
    assert scorer.logprob_batcher.stats.batches - before == 1  # one forward pass for four requests
    alone = [svc.score("judge_right", [it], reference_method="yes_no")[0] for it in items]
    assert [r.score for r in together] == pytest.approx([r.score for r in alone], abs=TOL)
    assert max(r.score for r in alone) - min(r.score for r in alone) > 100 * TOL


def test_implicit_prm_policy_equal_to_reference_gives_zero(svc):
    items = [*_items(), Item(id="s", prompt="Add 2 and 2.", steps=["2 + 2 = 4", "So the sum is 4."])]
    for res in svc.score("iprm_same", items):
        assert res.ok, res.error
        assert res.score == 0.0
        assert res.step_scores and all(s == 0.0 for s in res.step_scores)
    res = svc.score("iprm_same", items[-1:])[0]
    assert len(res.step_scores) == 2 and res.details["steps"] == 2


def test_implicit_prm_matches_direct_computation(svc):
    """score = beta * sum_t (log pi - log pi_ref) from plain forwards of the two real models."""
    import torch

    scorer = svc.service.get("iprm_right")
    item = Item(id="s", prompt="Add 2 and 2.", steps=["2 + 2 = 4", "So the sum is 4.", "Done"])
    step = svc.score("iprm_right", [item])[0]
    token = svc.score("iprm_right", [item], granularity="token")[0]
    smallest = svc.score("iprm_right", [item], aggregate="min")[0]

    tok = scorer.tokenizer
    context = tok("Add 2 and 2.", add_special_tokens=False)["input_ids"]
    pieces = ["2 + 2 = 4\n", "So the sum is 4.\n", "Done"]
    target = [t for p in pieces for t in tok(p, add_special_tokens=False)["input_ids"]]
    ids = torch.tensor([context + target])
    with torch.no_grad():
        lp = [torch.log_softmax(m.model(ids).logits[0].float(), -1) for m in (scorer.lm, scorer.reference)]
    direct = sum(float(lp[0][len(context) - 1 + j, t] - lp[1][len(context) - 1 + j, t]) for j, t in enumerate(target))

    assert step.score == pytest.approx(0.1 * direct, abs=1e-4)
    assert abs(step.score) > 1e-3  # the perturbed reference really differs
    assert len(step.step_scores) == 3 and sum(step.step_scores) == pytest.approx(step.score, abs=1e-6)
    assert len(token.step_scores) == len(target) and token.score == pytest.approx(step.score, abs=1e-5)
    assert smallest.score == pytest.approx(min(step.step_scores), abs=1e-6)


def test_confidence_details_and_no_answer(svc):
    res = svc.score("conf_left", _items()[:1], variant="crew_min")[0]
    assert res.details["answer"] == "7" and res.score == pytest.approx(min(res.details["token_probs"]))
    none = svc.score("conf_left", [Item(id="x", prompt="Say hi.", response="Hello there!")])[0]
    assert none.ok and none.score == 0.0 and none.details["verdict"] == "no_answer"
    missing = svc.score("conf_left", [Item(id="y", prompt="Q", response="The answer is 3.")],
                        variant="reference_prob")[0]
    assert missing.error is not None and missing.error.code == ErrorCode.INVALID_ITEM


def test_reference_prob_prefers_reasoning_that_reaches_the_reference():
    """RLPR on real GSM8K solutions: the reference answer is likelier after correct reasoning (a quality
    claim: the full SmolLM2)."""
    smollm()  # the session's SmolLM2: loaded once for every module that needs the full model
    full = Service({"scorers": {"conf": {"type": "confidence", "model": SMOLLM, "variant": "reference_prob"}}})
    try:
        pairs = gsm8k_pairs()[:4]
        items = []
        for p in pairs:
            items.append(Item(id="c", prompt=p["question"], response=p["correct"], reference=p["reference"]))
            items.append(Item(id="w", prompt=p["question"], response=p["wrong"], reference=p["reference"]))
        res = full.score("conf", items)
    finally:
        full.close()
    assert all(r.ok and 0.0 <= r.score <= 1.0 for r in res)
    wins = sum(res[2 * k].score > res[2 * k + 1].score for k in range(len(pairs)))
    assert wins >= 3, [(round(res[2 * k].score, 3), round(res[2 * k + 1].score, 3)) for k in range(len(pairs))]


@pytest.mark.parametrize("mode", ["pointwise", "pairwise", "reference"])
def test_master_keys_get_minus_one_in_every_mode(svc, mode):
    q = gsm8k_pairs()[0]
    items = [Item(id=str(i), prompt=q["question"], response=k, reference=q["reference"])
             for i, k in enumerate(MASTER_KEYS)]
    res = svc.score("judge_left", items, mode=mode)
    assert [r.score for r in res] == [-1.0] * len(MASTER_KEYS)
    assert all(r.details["verdict"] == "master_key" for r in res)


def test_judge_item_errors(svc):
    no_ref = svc.score("judge_left", [Item(id="n", prompt="Q?", response="The answer is 4.")], mode="reference")[0]
    assert no_ref.error is not None and no_ref.error.code == ErrorCode.INVALID_ITEM
    assert "reference" in no_ref.error.message
    long = Item(id="l", prompt="Count: " + " ".join(map(str, range(100))), response="Done: 60.", reference="60")
    ok = Item(id="o", prompt="Hi", response="Ok 1.", reference="1")
    res = svc.score("judge_short", [long, ok], mode="reference")
    assert res[0].error is not None and "max_length" in res[0].error.message
    assert res[1].ok and -1.0 <= res[1].score <= 1.0


def test_rating_parser():
    from rewardsvc.scorers.judge import parse_rating

    cases = {"Rating: 7": 7, "Rating: [[8]]": 8, "I'd say 6/10.": 6, "Rating: **9** out of 10": 9,
             "score = 10": 10, "Rating: 3.5": 3, "Rating: 12 because": None, "Rating: none": None,
             "Rating: 0": None, "4 out of 10, maybe 7": 4}
    assert {t: parse_rating(t) for t in cases} == cases


def test_answer_span():
    from rewardsvc.scorers.confidence import answer_span

    def span(text):
        s = answer_span(text)
        return None if s is None else (text[s[0]:s[1]], s[2])

    assert span("so \\boxed{\\frac{1}{2}} done") == ("\\frac{1}{2}", "boxed")
    assert span("x = 3\n#### 1,234\n") == ("1,234", "hash")
    assert span("Thus the answer is 42.") == ("42", "answer_is")
    assert span("we get 5 then 17 apples") == ("17", "last_number")
    assert span("no digits here") is None
    assert span("\\boxed{unclosed " + "{" * 1000) is None
    assert span("\\boxed{7} then \\boxed{unclosed") == ("7", "boxed")


def test_response_steps_cover_the_text_exactly():
    from rewardsvc.scorers.implicit_prm import response_steps

    text = "\nStep one.\n\nStep two.\nStep three.\n"
    steps = response_steps(Item(response=text), "\n")
    assert "".join(steps) == text and len(steps) == 3
    assert response_steps(Item(steps=["a", "b"]), "\n") == ["a\n", "b"]


def test_master_key_detector_leaves_real_answers_alone():
    from rewardsvc.scorers.master_keys import master_key_reason

    assert all(master_key_reason(k) for k in MASTER_KEYS)
    for real in ["42", "Solution: 42", "The answer is 18.", "Yes", "Blue", "解：x = 3", "Thought process: 2+2=4",
                 "Let's solve this problem step by step. 3 + 4 = 7, so the answer is 7."]:
        assert master_key_reason(real) is None, real


def test_probabilities_are_probabilities():
    from rewardsvc.scorers.judge import _share

    assert _share([math.log(0.2), math.log(0.6)], 1) == pytest.approx(0.25)
