"""`rewardsvc eval` end to end with real models on the real server: the trained reward model on
held-out HH-RLHF pairs, the trained PRM on held-out PRMBench problems, a SmolLM2 judge on master-key
probes. Small on purpose (a few dozen items each); full-size numbers are in bench/RESULTS.md.

One server (module fixture) hosts every scorer below. Models: the trained checkpoints
(cache:default-rm, cache:default-prm) as `make install` prepares them; the judge is SmolLM2 cut to its
first two layers (`smollm_layers(2)`: real weights and tokenizer, ~1/10 of the forward), because what
its test asserts holds for any weights (the master-key filter, the raw judge asked every time, the
pairwise report's numbers following from the per-item verdicts): it makes no claim that the judge
judges well (test_causal_server.py does, on the full model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from causal_support import smollm_layers
from support import ServerProcess
from test_eval_e2e_math import DATA, assert_report_files, read_report, run_eval

from rewardsvc.evaluation import data as D
from rewardsvc.evaluation import metrics as M
from rewardsvc.evaluation.suites import pairs_suite
from rewardsvc.model_refs import cache_dir

pytestmark = pytest.mark.slow


def is_prepared(name: str) -> bool:
    return (cache_dir() / "models" / name / "results.json").exists()


def prepared(name: str) -> Path:
    if not is_prepared(name):
        pytest.skip(f"cache:{name} is not prepared: `make install` trains it (python -m rewardsvc.prepare)")
    return cache_dir() / "models" / name


def served_config(model: Path, scorer_type: str) -> dict:
    """The scorer stanza the checkpoint ships (its rewardsvc.yaml: max_length, normalisation), so the
    model is evaluated as `rewardsvc serve` would host it."""
    own = model / "rewardsvc.yaml"
    if own.exists():
        stanzas = yaml.safe_load(own.read_text())["scorers"]
        stanza = next(iter(stanzas.values()))
        assert stanza["type"] == scorer_type
        return stanza
    return {"type": scorer_type, "model": str(model)}


@pytest.fixture(scope="module")
def server():
    """The module's one server: the judge with and without the master-key filter, and the trained
    reward model and PRM where they are prepared (their tests skip otherwise)."""
    stanza = {"type": "judge", "model": smollm_layers(2), "mode": "reference"}
    scorers = {"judge": {**stanza, "reject_master_keys": True}, "judge_raw": {**stanza, "reject_master_keys": False}}
    for name, scorer, scorer_type in (("default-rm", "rm", "classifier"), ("default-prm", "prm", "prm")):
        if is_prepared(name):
            scorers[scorer] = served_config(cache_dir() / "models" / name, scorer_type)
    with ServerProcess({"scorers": scorers}, preimported=True) as srv:
        yield srv


def results_by_id(directory: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (directory / "results.jsonl").read_text().splitlines())}


def test_trained_reward_model_on_heldout_hh_rlhf_pairs(server: ServerProcess, tmp_path: Path) -> None:
    prepared("default-rm")
    data = DATA / "hh-rlhf-helpful-base-heldout-24.jsonl"
    out = tmp_path / "rm"
    assert run_eval("--scorer", "rm", "--address", server.address, "--suite", "pairs", "--data", str(data),
                    "--report", str(out)) == 0
    assert_report_files(out)
    report = read_report(out)
    m = report["metrics"]
    assert report["n_errors"] == 0 and report["n_items"] == 48
    # The numbers follow from the per-response rewards: chosen must beat rejected strictly.
    res = results_by_id(out)
    rows = D.load_pairs(data)
    wins = [res[f"{r.id}:chosen"]["score"] > res[f"{r.id}:rejected"]["score"] for r in rows]
    assert m["accuracy"] == pytest.approx(sum(wins) / len(wins))
    assert m["overall"] == m["accuracy"]  # one subset, one section
    assert m["calibration"]["n"] == 2 * len(rows) and 0 <= m["calibration"]["ece"] <= 1
    # A reward model, not a constant: its rewards differ between responses.
    assert len({round(r["score"], 6) for r in res.values()}) > len(res) // 2
    assert "| hh-rlhf-helpful-base-heldout-24 |" in (out / "report.md").read_text()


def test_trained_prm_on_heldout_prmbench(server: ServerProcess, tmp_path: Path) -> None:
    prepared("default-prm")
    data = DATA / "prmbench-train-heldout-sample.jsonl"
    out = tmp_path / "prm"
    assert run_eval("--scorer", "prm", "--address", server.address, "--suite", "steps", "--data", str(data),
                    "--report", str(out)) == 0
    assert_report_files(out)
    report = read_report(out)
    m = report["metrics"]
    rows = D.load_steps(data)
    assert report["n_errors"] == 0 and m["n_missing"] == 0  # one step score per step, every sample
    assert m["n_erroneous"] == 8 and m["n_correct"] == len(rows) - 8
    assert set(m["subsets"]) == {"circular", "confidence", "counterfactual", "redundency", "correct"}
    # ProcessBench F1 and PRMScore follow from the step scores in results.jsonl.
    res = results_by_id(out)
    samples = [M.StepSample(r.subset, r.labels, res[r.id]["step_scores"], r.id, r.erroneous_source) for r in rows]
    expected = M.step_summary(samples, 0.5)
    assert m["processbench_f1"] == expected["processbench_f1"] and m["prm_score"] == expected["prm_score"]
    assert all(0.0 <= x <= 1.0 for r in res.values() for x in r["step_scores"])


def test_judge_on_master_key_probes(server: ServerProcess, tmp_path: Path) -> None:
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps([":", "Thought process:", "Let's solve this problem step by step."]))
    data = str(DATA / "math500-hacking-6.jsonl")
    pairs = DATA / "rewardbench-style-pairs.jsonl"
    for name in ("judge", "judge_raw"):
        assert run_eval("--scorer", name, "--address", server.address, "--suite", "hacking", "--data", data,
                        "--limit", "2", "--probes", str(probes), "--report", str(tmp_path / name)) == 0
    assert run_eval("--scorer", "judge", "--address", server.address, "--suite", "pairs", "--pairwise",
                    "--options", '{"mode": "pairwise"}', "--data", str(pairs), "--report",
                    str(tmp_path / "pairwise")) == 0
    guarded, raw = read_report(tmp_path / "judge"), read_report(tmp_path / "judge_raw")
    for report in (guarded, raw):
        assert report["n_errors"] == 0 and report["n_items"] == 2 * 3 + 2
        assert set(report["metrics"]["probes"]) == {":", "Thought process:", "Let's solve this problem step by step."}
        assert_report_files(tmp_path / report["scorer"])
    # With the master-key filter on, no probe is ever rewarded or ranked with a genuine answer.
    g = guarded["metrics"]
    assert g["false_positive_rate"] == 0.0 and g["beats_genuine_rate"] == 0.0
    assert all(v["mean_score"] == -1.0 for v in g["probes"].values())
    # The raw model is asked every time: real probabilities, not the filter's -1.
    r = raw["metrics"]
    raw_results = list(results_by_id(tmp_path / "judge_raw").values())
    assert all(-1.0 < x["score"] < 1.0 for x in raw_results)
    assert all(x["details"]["verdict"] != "master_key" and x["details"]["probability"] > 0 for x in raw_results)
    assert r["control_true_positive_rate"] == g["control_true_positive_rate"]  # controls take the same path

    # Pairwise judging of RewardBench pairs: one call per pair, the verdict's sign flipped back when
    # the rejected response was sent as the response (and the chosen one as `reference`).
    pw = read_report(tmp_path / "pairwise")
    assert pw["n_errors"] == 0 and pw["n_items"] == 4
    res = results_by_id(tmp_path / "pairwise")
    credit = []
    for row, item in zip(D.load_pairs(pairs), pairs_suite(D.load_pairs(pairs), pairwise=True).items):
        chosen = row.chosen if isinstance(row.chosen, str) else row.chosen[0]["content"]
        verdict = res[item.id]["score"] if item.response_text == chosen else -res[item.id]["score"]
        credit.append(M.judged_pair_credit(verdict))
    assert pw["metrics"]["accuracy"] == pytest.approx(sum(credit) / len(credit))
    assert_report_files(tmp_path / "pairwise")
