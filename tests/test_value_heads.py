"""HL-Gauss and the other value heads of the rm and prm trainers (trainers/hl_gauss.py,
trainers/value_heads.py): the target distribution, and short real runs whose checkpoints are
served as trained.

Served-as-trained holds for any weights, so the runs train all-MiniLM-L6-v2 cut to its first 2
layers (tests/encoder_models.py: real weights and tokenizer), and check that the scores they compare
differ across items."""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import math
from pathlib import Path

import pytest
from encoder_models import minilm_layers

if importlib.util.find_spec("torch") is None:
    pytest.skip("the value heads need torch", allow_module_level=True)
# torch itself is imported in the tests: every xdist worker imports every test file at collection, and
# only one runs these (tests/test_suite_lanes.py).

DATA = Path(__file__).parent / "data" / "trainers"
PRMBENCH = DATA / "prmbench-train-24.jsonl"
MATH500 = Path(__file__).resolve().parents[1] / "bench" / "data" / "eval" / "math500-cot-bon8-100.jsonl.gz"


def test_hl_gauss_targets_are_a_smoothed_bump_around_the_value() -> None:
    import torch

    from rewardsvc.trainers import hl_gauss
    from rewardsvc.trainers.hl_gauss import Bins

    bins = Bins(0.0, 1.0, 10)
    t = hl_gauss.targets(torch.tensor([0.55, 0.0, 7.0]), bins)
    assert torch.allclose(t.sum(-1), torch.ones(3))
    # 0.55 is bin 5's centre: with sigma = 0.75 bin widths the bin holds P(|z| < 0.5 / 0.75) of the mass.
    central = math.erf(0.5 / 0.75 / math.sqrt(2))
    assert t[0, 5].item() == pytest.approx(central, rel=0.02)
    assert t[0, 4].item() == pytest.approx(t[0, 6].item(), rel=1e-4)  # symmetric
    assert t[1].argmax().item() == 0 and torch.allclose(t[2], hl_gauss.targets(torch.tensor([1.0]), bins)[0])
    # The expected centre under the target distribution is the value (away from the edges).
    assert hl_gauss.predict(torch.log(t[:1] + 1e-9), bins).item() == pytest.approx(0.55, abs=1e-3)
    # Cross-entropy against its own targets is smallest at the targets.
    logits = torch.log(t[:1] + 1e-9)
    y = torch.tensor([0.55])
    assert hl_gauss.loss(logits, y, bins) < hl_gauss.loss(torch.zeros(1, 10), y, bins)
    with pytest.raises(ValueError):
        Bins(1.0, 1.0, 10)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_an_hl_gauss_prm_is_served_as_trained(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from rewardsvc.config import parse_config
    from rewardsvc.service import ScoringService
    from rewardsvc.trainers.cli import main
    from rewardsvc.trainers.examples import read_jsonl, step_examples
    from rewardsvc.trainers.prm import encode_step_windows, load_prm, solution_probabilities, step_probabilities
    from rewardsvc.types import Item

    out = tmp_path / "prm"
    assert main(["prm", "--model", minilm_layers(), "--train-file", str(PRMBENCH), "--eval-fraction", "0.25",
                 "--output-dir", str(out), "--max-length", "128", "--batch-size", "4", "--max-steps", "3",
                 "--loss", "hl_gauss", "--hl-gauss-bins", "11", "--progress", "false", "--plot", "false"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert 0.0 <= summary["eval_step_auroc"] <= 1.0
    model = load_prm(out, "hl_gauss").eval()
    assert model.config.num_labels == 11 and model.config.hl_gauss["count"] == 11
    examples = [ex for r in read_jsonl(PRMBENCH)[:2] for ex in step_examples(r)]
    tok = AutoTokenizer.from_pretrained(out)
    encoded = [e for k, ex in enumerate(examples) for e in encode_step_windows(tok, ex, "\n", 128, k)]
    expected, _ = solution_probabilities(step_probabilities(model, encoded, tok.pad_token_id, "cpu", 4096,
                                                            head="hl_gauss"), encoded, len(examples))
    flat = [p for exp in expected for p in exp]
    assert max(flat) - min(flat) > 1e-3, flat  # steps score differently: the comparison below can fail

    async def serve() -> list:
        config = parse_config({"scorers": {"prm": {"type": "prm", "model": str(out), "max_length": 128}}})
        async with ScoringService(config) as svc:
            return await svc.score("prm", [Item(id=str(i), prompt=ex.prompt, steps=ex.steps)
                                           for i, ex in enumerate(examples)])

    for r, exp in zip(asyncio.run(serve()), expected):
        assert r.ok, r.error
        assert r.step_scores == pytest.approx(exp, abs=1e-5)
        assert all(0.0 <= p <= 1.0 for p in r.step_scores)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("loss", ["mse", "hl_gauss"])
def test_rm_regression_on_scalar_targets(tmp_path: Path, loss: str) -> None:
    from rewardsvc.trainers.cli import main

    data = tmp_path / "rows.jsonl"
    with gzip.open(MATH500, "rt") as f, data.open("w") as out:
        for line, _ in zip(f, range(6)):
            r = json.loads(line)
            for resp, s in list(zip(r["code"], r["pred_score"]))[:4]:
                out.write(json.dumps({"prompt": r["question"], "response": resp, "target": s[0]}) + "\n")
    run = tmp_path / "rm"
    assert main(["rm", "--model", minilm_layers(), "--loss", loss, "--train-file", str(data), "--eval-fraction", "0.34",
                 "--output-dir", str(run), "--max-length", "64", "--batch-size", "4", "--max-steps", "2",
                 "--learning-rate", "1e-3", "--hl-gauss-bins", "11", "--progress", "false", "--plot", "false"]) == 0
    summary = json.loads((run / "results.json").read_text())
    assert summary["eval_examples"] == 8 and -1.0 <= summary["eval_spearman"] <= 1.0
    config = json.loads((run / "config.json").read_text())
    low, high = config["target_range"]
    assert low < high
    assert config.get("hl_gauss", {}).get("count") == (11 if loss == "hl_gauss" else None)

    # Served by the classifier scorer in target units, as the trainer predicts.
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardsvc.config import parse_config
    from rewardsvc.scorers.render import encode_conversation
    from rewardsvc.service import ScoringService
    from rewardsvc.trainers import value_heads
    from rewardsvc.types import Item

    # One response from each of three problems (two responses of one problem can share their last 64 tokens).
    rows = [json.loads(line) for line in data.read_text().splitlines()[::4][:3]]
    tok = AutoTokenizer.from_pretrained(run)
    model = value_heads.load_value_head(AutoModelForSequenceClassification, run, loss, 11).eval()
    expected = []
    with torch.no_grad():
        for r in rows:
            ids = torch.tensor([encode_conversation(tok, r["prompt"], r["response"], 64).ids])
            v = value_heads.predict(model(input_ids=ids).logits, loss, config.get("hl_gauss"))[0].item()
            expected.append(low + v * (high - low))
    assert max(expected) - min(expected) > 1e-3, expected  # items score differently: the comparison can fail

    async def serve() -> list:
        stanza = json.loads(json.dumps(__import__("yaml").safe_load((run / "rewardsvc.yaml").read_text())))
        async with ScoringService(parse_config(stanza)) as svc:
            return await svc.score("rm", [Item(id=str(i), prompt=r["prompt"], response=r["response"])
                                          for i, r in enumerate(rows)])

    served = asyncio.run(serve())
    assert [r.score for r in served] == pytest.approx(expected, abs=1e-4)
    assert all(low <= r.score <= high for r in served)
