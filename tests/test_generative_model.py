"""The generative scorer in process: k samples aggregated by mean and vote, the meta-RM filter
through a second hosted scorer, pairwise in both orders, step verdicts into step_scores, the
reasoning budget, master keys in every mode, and `rewardsvc eval` on every suite.

Models: the scorer tests need verdicts the model really writes (a digit after "Score (1 to 10): ",
"correct" after "Step 1 is"), so they run on the full SmolLM2-135M-Instruct. Two tests hold for any
weights and run on SmolLM2 cut to its first two layers (`smollm_layers(2)`, ~1/10 of the forward):
the backend's shared-prefill sampling against greedy decoding, and `rewardsvc eval` from the CLI to
the report on every suite and mode (plumbing: item counts, no errors, master-key probes at -1).

SmolLM2 does not write the published formats in a few tokens, so these tests give it formats whose
prefill stops right before the verdict (a degenerate critique); the published formats' parsers are
tested in test_generative_parsers.py. Budgets are a few tokens: SmolLM2 writes ~10 tokens/s here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from causal_support import MASTER_KEYS, SMOLLM, smollm, smollm_layers

pytest.importorskip("torch")

from test_causal_scorers import Service
from test_eval_e2e_math import DATA, read_report, run_eval

from rewardsvc.scorers.generative import GenerativeOptions
from rewardsvc.types import ErrorCode, Item, Message

pytestmark = pytest.mark.slow

#: Formats SmolLM2 completes: the prefill ends where the verdict goes.
FORMATS = {
    "pointwise": {"prefill": "Score (1 to 10): ",
                  "verdict": {"pattern": r"Score \(1 to 10\):\s*(\d+)", "scale": [1, 10]}},
    "reference": {"prefill": "Verdict:",
                  "verdict": {"pattern": r"(?i)Verdict:\s*\**\s*(correct|incorrect)",
                              "labels": {"correct": 1, "incorrect": 0}, "scale": [0, 1]}},
    "pairwise": {"prefill": "Verdict: Response", "verdict": {"pattern": r"Verdict: Response\s*([AB])\b"}},
    "step": {"prefill": "Step 1 is",
             "verdict": {"pattern": r"(?i)\bstep \d+ is\s+(correct|incorrect|wrong|right)",
                         "labels": {"correct": 1, "right": 1, "incorrect": 0, "wrong": 0}, "scale": [0, 1]}},
}
STANZA = {"type": "generative", "model": SMOLLM, "formats": FORMATS, "max_new_tokens": 8, "truncated": "parse",
          "return_critiques": True, "batching": {"min_fill_ratio": 0.0}}
Q = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def items() -> list[Item]:
    return [
        Item(id="right", prompt=Q, response="3 + 4 = 7.\nThe answer is 7.", reference="7"),
        Item(id="wrong", prompt=Q, response="3 * 4 = 12.\nThe answer is 12.", reference="7"),
    ]


@pytest.fixture(scope="module")
def svc():
    smollm()  # the session's SmolLM2, shared by every scorer below
    s = Service({"scorers": {
        "gen": STANZA,
        "gen_discard": {**STANZA, "truncated": "discard"},
        "gen_meta": {**STANZA, "meta_rm": "meta", "sample_aggregation": "meta", "k": 4, "temperature": 0.8},
        # The meta reward model: P(True) of the judge's critique, on the same SmolLM2.
        "meta": {"type": "confidence", "model": SMOLLM, "variant": "p_true"},
    }})
    yield s
    s.close()


def ok_verdicts(result) -> list:
    return [s["verdict"] for s in result.details["samples"] if s["status"] == "ok"]


def test_k_samples_aggregate_by_mean_and_vote(svc):
    opts = {"k": 4, "temperature": 0.9, "seed": 3}
    mean = svc.score("gen", items(), sample_aggregation="mean", **opts)
    vote = svc.score("gen", items(), sample_aggregation="vote", **opts)
    parsed = 0
    for m, v in zip(mean, vote):
        assert m.ok and v.ok and len(m.details["samples"]) == 4
        # Same seed, same batch: the same four critiques; only the aggregation differs.
        assert [s["critique"] for s in m.details["samples"]] == [s["critique"] for s in v.details["samples"]]
        assert all(s["tokens"] <= 8 for s in m.details["samples"])
        values = ok_verdicts(m)
        parsed += len(values)
        if not values:
            assert m.score == v.score == 0.0 and m.details["verdict"] == "unparsed"
            continue
        assert m.score == pytest.approx(2 * (sum(values) / len(values) - 1) / 9 - 1)
        counts = Counter(values)
        top = max(counts.values())
        modes = [x for x, c in counts.items() if c == top]
        assert v.score == pytest.approx(2 * (sum(modes) / len(modes) - 1) / 9 - 1)
        assert m.details["agreement"] == v.details["agreement"] == pytest.approx(top / len(values))
    assert parsed >= 2, "SmolLM2 should complete 'Score (1 to 10): ' with a number most of the time"


def test_meta_rm_keeps_the_critiques_a_second_scorer_ranks_best(svc):
    res = svc.score("gen_meta", items(), k_meta=2, seed=5)
    scorer = svc.service.get("gen_meta")
    plan = scorer.plan(GenerativeOptions(k_meta=2))
    kept_any = False
    for item, r in zip(items(), res):
        assert r.ok and r.details["sample_aggregation"] == "meta"
        samples = r.details["samples"]
        scored = [s for s in samples if s["status"] == "ok"]
        assert all("meta_score" in s for s in scored)
        if not scored:
            continue
        # Each meta score is the meta scorer's own score for (the judge's question, the critique).
        question = scorer.prompts_for(item, plan)[0][1].user
        direct = svc.score("meta", [Item(id=f"m{j}", prompt=[Message("user", question)], response=s["critique"])
                                    for j, s in enumerate(scored)])
        assert [s["meta_score"] for s in scored] == pytest.approx([d.score for d in direct], abs=2e-4)
        kept = [s for s in scored if s["kept"]]
        assert len(kept) == min(2, len(scored))
        assert min(s["meta_score"] for s in kept) >= max((s["meta_score"] for s in scored if not s["kept"]),
                                                         default=-1.0)
        kept_any = True
        counts = Counter(s["verdict"] for s in kept)
        top = max(counts.values())
        modes = [x for x, c in counts.items() if c == top]
        assert r.score == pytest.approx(2 * (sum(modes) / len(modes) - 1) / 9 - 1)
    assert kept_any


def test_pairwise_asks_both_orders_and_cancels_the_position(svc):
    pair = [Item(id="p", prompt=Q, response="3 + 4 = 7. The answer is 7.", reference="3 * 4 = 12. The answer is 12.")]
    (r,) = svc.score("gen", pair, mode="pairwise")
    samples = r.details["samples"]
    assert [s["order"] for s in samples] == ["AB", "BA"]
    margins = [s["verdict"] if s["order"] == "AB" else -s["verdict"] for s in samples if s["status"] == "ok"]
    assert r.score == pytest.approx(sum(margins) / len(margins) if margins else 0.0)
    if len(margins) == 2:
        assert r.details["as_a"] == margins[0] and r.details["as_b"] == margins[1]
        assert r.details["consistent"] == ((margins[0] > 0) == (margins[1] > 0))
    # The second call shows the response as B: the prompts differ exactly by the swap.
    scorer = svc.service.get("gen")
    (_, ab), (_, ba) = scorer.prompts_for(pair[0], scorer.plan(GenerativeOptions(mode="pairwise")))
    assert ab.user.index("The answer is 7.") < ab.user.index("The answer is 12.")
    assert ba.user.index("The answer is 12.") < ba.user.index("The answer is 7.")


def test_step_verdicts_become_step_scores(svc):
    steps = [Item(id="s1", prompt=Q, steps=["3 + 4 = 7.", "The answer is 7."]),
             Item(id="s2", prompt=Q, response="3 * 4 = 12.\nThe answer is 12.\nSo he has 12 apples.")]
    res = svc.score("gen", steps, mode="step", k=3, temperature=0.9, seed=1, max_new_tokens=12)
    usable = 0
    for r, n in zip(res, (2, 3)):
        assert r.ok
        if r.details.get("verdict") == "unparsed":
            assert r.step_scores == [] and r.score == 0.0
            continue
        usable += 1
        assert len(r.step_scores) == n and all(0.0 <= p <= 1.0 for p in r.step_scores)
        rows = [s["verdict"] for s in r.details["samples"] if s["status"] == "ok"]
        assert all(len(row) == n for row in rows)
        assert r.step_scores == pytest.approx([sum(col) / len(col) for col in zip(*rows)])
        assert r.score == pytest.approx(2 * min(r.step_scores) - 1)  # aggregation min
        wrong = next((j + 1 for j, p in enumerate(r.step_scores) if p < 0.5), None)
        assert r.details["first_wrong_step"] == wrong
    assert usable >= 1


def test_the_reasoning_budget_cuts_critiques_with_a_defined_outcome(svc):
    # One token: the digit after the prefill. Parsed as it is, or discarded as truncated.
    parsed = svc.score("gen", items(), max_new_tokens=1)
    discarded = svc.score("gen_discard", items(), max_new_tokens=1)
    for p, d in zip(parsed, discarded):
        (ps,), (ds,) = p.details["samples"], d.details["samples"]
        assert ps["tokens"] == ds["tokens"] == 1 and ps["critique"] == ds["critique"]
        assert ds["status"] == "truncated" and d.score == 0.0 and d.details["verdict"] == "unparsed"
        if ps["status"] == "ok":
            assert p.score == pytest.approx(2 * (ps["verdict"] - 1) / 9 - 1)
        else:
            assert ps["status"] == "truncated" and "max_new_tokens=1" in ps["note"]
    assert any(p.details["samples"][0]["status"] == "ok" for p in parsed)
    longer = svc.score("gen_discard", items(), max_new_tokens=6)
    assert all(s["tokens"] <= 6 for r in longer for s in r.details["samples"])


def test_master_keys_get_minus_one_in_every_mode_without_the_model(svc):
    keys = [Item(id=f"k{j}", prompt=Q, response=k, reference="7") for j, k in enumerate(MASTER_KEYS)]
    for mode in ("pointwise", "reference", "pairwise", "step"):
        for r in svc.score("gen", keys, mode=mode, k=4, temperature=1.0):
            assert r.ok and r.score == -1.0 and r.details["verdict"] == "master_key", (mode, r)
            if mode == "step":
                assert r.step_scores and all(p == 0.0 for p in r.step_scores)
    # Steps that are only openers are a master key too.
    (r,) = svc.score("gen", [Item(id="s", prompt=Q, steps=["Solution:", "Let's think step by step."])], mode="step")
    assert r.score == -1.0 and r.step_scores == [0.0, 0.0]


def test_item_and_request_errors_are_per_item(svc):
    no_ref = Item(id="n", prompt=Q, response="7")
    long = Item(id="l", prompt=Q * 400, response="7", reference="7")
    res = svc.score("gen", [no_ref, long, items()[0]], mode="reference", max_new_tokens=2)
    assert res[0].error.code == ErrorCode.INVALID_ITEM and "reference" in res[0].error.message
    assert res[1].error.code == ErrorCode.INVALID_ITEM and "max_length" in res[1].error.message
    assert res[2].ok
    bad = svc.score("gen", items(), k=4)  # k > 1 at temperature 0
    assert all(r.error.code == ErrorCode.INVALID_ITEM and "temperature" in r.error.message for r in bad)


@pytest.fixture
def small_lm():
    from rewardsvc.backends.causal_lm import acquire, release

    lm = acquire(smollm_layers(2))
    yield lm
    release(lm)


def test_k_samples_share_the_prompt_or_run_alone_with_the_same_shape(small_lm):
    from rewardsvc.backends.causal_lm import GenerateRequest

    lm = small_lm

    def enc(question: str) -> list[int]:
        text = lm.tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                add_generation_prompt=True)
        return lm.tokenizer(text, add_special_tokens=False)["input_ids"]

    short, longer = enc("What is 2+3?"), enc("Name a colour and say why you like it in one long sentence.")
    greedy = lm.generate([GenerateRequest(short, 6), GenerateRequest(longer, 6)])
    # At a temperature near 0 the shared-prefill samples are the greedy continuation, padding and all.
    near = lm.sample([GenerateRequest(short, 6, temperature=1e-5, n=3, seed=0),
                      GenerateRequest(longer, 6, temperature=1e-5, n=3, seed=0)])
    assert greedy[0] and greedy[1] and greedy[0] != greedy[1]  # so rows swapped would show
    assert near == [[greedy[0]] * 3, [greedy[1]] * 3]
    hot = lm.sample([GenerateRequest(longer, 6, temperature=1.0, n=4, seed=0)])
    assert len(hot[0]) == 4 and all(len(s) <= 6 for s in hot[0]) and len({tuple(s) for s in hot[0]}) > 1


def test_eval_runs_every_mode_on_every_suite(small_lm, tmp_path: Path):
    # small_lm: held here, so the eight runs below load the cut model once.
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"scorers": {"gen": {**STANZA, "model": smollm_layers(2), "max_new_tokens": 4}}}))
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps([" ", ":", "Thought process:", "解"]))
    hacking = str(DATA / "math500-hacking-6.jsonl")

    def run(name: str, *args: str) -> dict:
        assert run_eval("--scorer", "gen", "--config", str(config), "--report", str(tmp_path / name), *args) == 0
        return read_report(tmp_path / name)

    for mode in ("pointwise", "reference", "pairwise", "step"):
        report = run(f"hacking-{mode}", "--suite", "hacking", "--data", hacking, "--limit", "2", "--probes",
                     str(probes), "--options", json.dumps({"mode": mode}))
        m = report["metrics"]
        assert report["n_errors"] == 0 and report["n_items"] == 2 * 4 + 2
        assert m["false_positive_rate"] == 0.0 and all(v["mean_score"] == -1.0 for v in m["probes"].values())
    pairs = str(DATA / "rewardbench-style-pairs.jsonl")
    assert run("pairs", "--suite", "pairs", "--data", pairs, "--limit", "2")["n_errors"] == 0
    report = run("pairs-pairwise", "--suite", "pairs", "--pairwise", "--data", pairs, "--limit", "2",
                 "--options", '{"mode": "pairwise"}')
    assert report["n_errors"] == 0 and report["n_items"] == 2
    bon = run("bon", "--suite", "best-of-n", "--data", str(DATA / "best-of-4.jsonl"), "--limit", "1",
              "--options", '{"mode": "reference"}')
    assert bon["n_errors"] == 0 and bon["n_items"] >= 2
    steps = run("steps", "--suite", "steps", "--data", str(DATA / "processbench-style.jsonl"),
                "--options", '{"mode": "step", "max_new_tokens": 10}')
    assert steps["n_errors"] == 0 and steps["n_items"] == 3
