"""The implicit-PRM trainer (PRIME): a short real run whose checkpoint the `implicit_prm` scorer
serves with the rewards the trainer computed (its frozen-trunk shortcut must equal two full models'
log-ratio).

Those equalities hold for any weights, so the run trains SmolLM2-135M-Instruct cut to its first 2
layers (tests/causal_support.py: real weights, the same tokenizer and chat template; the top layer
trains, the bottom one is the frozen trunk), not the full 30-layer model the trainer defaults to.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from causal_support import smollm_layers

DATA = Path(__file__).parent / "data" / "trainers" / "gsm8k-judge-16.jsonl"


@pytest.mark.slow
@pytest.mark.timeout(1200)  # SmolLM2 forwards on 2 shared cores
def test_implicit_prm_run_is_served_with_the_rewards_it_trained(tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    from rewardsvc.config import parse_config
    from rewardsvc.service import ScoringService
    from rewardsvc.trainers.cli import main
    from rewardsvc.trainers.examples import read_jsonl
    from rewardsvc.trainers.implicit_prm import BASE_MODEL, ImplicitPRMConfig, ImplicitPRMTask, encode_example
    from rewardsvc.types import Item

    out = tmp_path / "iprm"
    base = smollm_layers(2)
    # A large learning rate so two steps move the top layer visibly away from the reference.
    assert main(["implicit_prm", "--model", base, "--train-file", str(DATA), "--eval-fraction", "0.25",
                 "--output-dir", str(out), "--train-layers", "1", "--batch-size", "4", "--max-steps", "2",
                 "--learning-rate", "1e-3", "--progress", "false", "--plot", "false"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["eval_correct"] + summary["eval_incorrect"] == summary["eval_examples"] > 0
    assert 0.0 <= summary["eval_auroc_min"] <= 1.0 and 0.0 <= summary["eval_auroc_sum"] <= 1.0
    stanza = yaml.safe_load((out / "rewardsvc.yaml").read_text())["scorers"]["implicit_prm"]
    # The reference is the policy's starting point (by default SmolLM2-135M-Instruct), beta PRIME's.
    assert stanza["reference_model"] == base and stanza["beta"] == 0.05
    assert ImplicitPRMConfig.model == BASE_MODEL == "bundled:smollm2-135m-instruct"

    rows = read_jsonl(DATA)[:3]
    # The trainer's view: frozen-trunk states of the reference, the trained top layer on them.
    cfg = ImplicitPRMConfig(model=base, output_dir=str(tmp_path / "unused"), train_file=str(DATA), train_layers=1)
    task = ImplicitPRMTask(cfg)
    task.tokenizer = AutoTokenizer.from_pretrained(out)
    task.train, task.eval = [], [encode_example(task.tokenizer, r, "\n", f"row{i}") for i, r in enumerate(rows)]
    model = task.load_model(out).eval()  # a checkpoint: the reference is loaded on its own
    with torch.no_grad():
        ratio = task.token_logratio(model, task.collate(task.eval))
    expected = [0.05 * float(r.sum()) for r in ratio]
    assert max(abs(x) for x in expected) > 1e-3, "training did not move the policy"
    assert max(expected) - min(expected) > 0.01, expected  # well past the tolerance below: the comparison can fail

    async def serve() -> list:
        async with ScoringService(parse_config({"scorers": {"implicit_prm": stanza}})) as svc:
            return await svc.score("implicit_prm", [Item(id=str(i), prompt=r["prompt"], response=r["response"])
                                                    for i, r in enumerate(rows)])

    results = asyncio.run(serve())
    for r, exp, ex in zip(results, expected, task.eval):
        assert r.ok, r.error
        assert len(r.step_scores) == ex.steps
        assert r.score == pytest.approx(exp, abs=2e-3)
