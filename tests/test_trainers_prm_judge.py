"""PRM and judge trainers: short real runs whose checkpoints the scorers host as written.

PRM: MiniLM on 24 PRMBench problems, served by the real server; the `prm` scorer's step scores must
equal the trainer's own step probabilities. Judge: SmolLM2-135M-Instruct's tokenizer and chat
template on GSM8K reference-guided verdicts; the loss covers the verdict tokens only, the inputs are
the judge scorer's, and the judge scorer (in-process: a second model process would double the
test's cost) reads the trained model's verdict probability exactly as the trainer computes it.

Every assertion on the trained models holds for any weights (the loss falls on the two rows the run
fits, served equals trained), so the runs train cut-down models with real weights and the real
tokenizers: MiniLM's first 2 layers (tests/encoder_models.py) and SmolLM2's first 2 layers
(tests/causal_support.py). That trained PRMs rank steps well is claimed with the full trained
cache:default-prm in tests/test_encoder_trained.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from causal_support import smollm_layers
from encoder_models import minilm_layers

from rewardsvc.trainers.examples import judge_example, read_jsonl, step_examples

DATA = Path(__file__).parent / "data" / "trainers"
PRMBENCH = DATA / "prmbench-train-24.jsonl"
JUDGE = DATA / "gsm8k-judge-16.jsonl"


@pytest.mark.slow
@pytest.mark.timeout(900)  # real training on 2 shared cores
def test_prm_run_reports_first_error_f1_and_its_checkpoint_is_served(tmp_path: Path) -> None:
    from support import ServerProcess
    from transformers import AutoTokenizer

    from rewardsvc.client import RewardClient
    from rewardsvc.trainers.cli import main
    from rewardsvc.trainers.prm import encode_step_windows, load_prm, solution_probabilities, step_probabilities
    from rewardsvc.types import Item

    out = tmp_path / "prm"
    assert main(["prm", "--model", minilm_layers(), "--train-file", str(PRMBENCH), "--eval-fraction", "0.25",
                 "--output-dir", str(out), "--max-length", "128", "--batch-size", "4", "--max-steps", "4",
                 "--progress", "false", "--plot", "false"]) == 0
    summary = json.loads((out / "results.json").read_text())
    for key in ("eval_first_error_f1", "eval_step_f1", "eval_step_f1_neg", "eval_prm_score"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["eval_solutions_with_error"] + summary["eval_solutions_correct"] == summary["eval_solutions"]
    config = yaml.safe_load((out / "rewardsvc.yaml").read_text())
    stanza = config["scorers"]["prm"]
    assert stanza == {"type": "prm", "model": str(out), "format": "token_classification", "step_separator": "\n",
                      "max_length": 128}

    rows = read_jsonl(PRMBENCH)[:3]
    examples = [ex for r in rows for ex in step_examples(r)]
    tok = AutoTokenizer.from_pretrained(out)
    # Every solution, windowed where it passes 128 tokens, as the trainer evaluates it.
    encoded = [e for k, ex in enumerate(examples) for e in encode_step_windows(tok, ex, "\n", 128, k)]
    windows = step_probabilities(load_prm(out).eval(), encoded, tok.pad_token_id, "cpu", 4096)
    expected, _ = solution_probabilities(windows, encoded, len(examples))
    assert len(encoded) > len(examples), "the test data needs a solution longer than 128 tokens"
    flat = [p for exp in expected for p in exp]
    assert max(flat) - min(flat) > 1e-3, flat  # steps score differently: the comparisons below can fail
    items = [Item(id=str(i), prompt=ex.prompt, steps=ex.steps) for i, ex in enumerate(examples)]
    # One item without `steps`: the server splits the response on the separator it was trained with.
    items.append(Item(id="joined", prompt=examples[0].prompt, response="\n".join(examples[0].steps)))
    with ServerProcess(config, preimported=True) as srv, RewardClient(srv.address) as client:
        results = client.score("prm", items)
    assert all(r.error is None for r in results), [r.error for r in results]
    for r, exp in zip(results, expected):
        assert len(r.step_scores) == len(exp)
        assert r.step_scores == pytest.approx(exp, abs=1e-5)
        assert r.score == pytest.approx(min(exp), abs=1e-5)  # the default aggregation
    assert results[-1].step_scores == pytest.approx(results[0].step_scores, abs=1e-5)


@pytest.fixture(scope="module")
def smollm_tokenizer() -> object:
    from transformers import AutoTokenizer

    from rewardsvc.backends.gguf import model_dir

    return AutoTokenizer.from_pretrained(model_dir("bundled:smollm2-135m-instruct"))


@pytest.mark.slow
def test_judge_inputs_are_the_scorers_and_only_the_verdict_is_learnt(smollm_tokenizer: object) -> None:
    from rewardsvc.scorers.judge import JudgeConfig as ScorerConfig
    from rewardsvc.scorers.judge import JudgeScorer
    from rewardsvc.trainers.judge import JudgeConfig, JudgePrompts, JudgeTask, encode_judge_examples

    tok = smollm_tokenizer
    prompts = JudgePrompts(tok, JudgeConfig())
    row = {**read_jsonl(JUDGE)[0], "critique": "The response subtracts only the eggs she eats."}
    ex = judge_example(row)
    (enc,) = encode_judge_examples(prompts, ex, 2048, swap_augment=True)
    assert enc.mode == "reference" and enc.positive is False  # the row's verdict is "no"

    # The scorer's own context for the same item (its tokenizer handle is all chat_parts needs).
    from rewardsvc.scorers.render import MARK

    scorer = JudgeScorer("judge", ScorerConfig())
    scorer.lm = SimpleNamespace(tokenizer=tok)
    cfg = ScorerConfig()
    head, tail = cfg.reference_template.split("{response}", 1)
    fill = {"prompt": ex.prompt, "reference": ex.reference}
    served = [t for p in scorer.chat_parts(head.format(**fill) + MARK + ex.responses[0] + tail.format(**fill))
              for t in p]
    assert enc.context == served
    assert tok.decode(enc.target).startswith("No\nThe response subtracts")
    assert enc.target[0] in scorer._first_ids(cfg.no_words)  # the token whose logit the scorer reads

    task = JudgeTask(JudgeConfig())
    task.tokenizer = tok
    batch = task.collate([enc, enc])
    labels = batch["labels"][0].tolist()
    assert labels[: len(enc.context)] == [-100] * len(enc.context)
    assert labels[len(enc.context):] == enc.target

    pair = judge_example({"prompt": "2+2?", "responses": ["4", "5"], "verdict": "A"})
    swapped = encode_judge_examples(prompts, pair, 2048, swap_augment=True)
    assert [tok.decode(e.target[:1]) for e in swapped] == ["A", "B"] and [e.positive for e in swapped] == [True, False]


@pytest.mark.slow
@pytest.mark.timeout(900)  # SmolLM2 steps on 2 shared cores
def test_judge_sft_lowers_the_verdict_loss_and_the_judge_scorer_reads_the_trained_model(tmp_path: Path) -> None:
    import asyncio

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardsvc.config import parse_config
    from rewardsvc.service import ScoringService
    from rewardsvc.trainers.cli import main
    from rewardsvc.trainers.judge import JudgeConfig, JudgePrompts, encode_judge_examples
    from rewardsvc.types import Item

    subset = tmp_path / "judge.jsonl"
    rows = read_jsonl(JUDGE)[:2]
    subset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "judge"
    # The 2-layer cut starts far from fluent (verdict loss ~37): a learning rate that moves it in two steps.
    assert main(["judge", "--model", smollm_layers(2), "--train-file", str(subset), "--eval-file", str(subset),
                 "--output-dir", str(out),
                 "--batch-size", "2", "--max-steps", "2", "--learning-rate", "3e-4", "--warmup-ratio", "0",
                 "--lr-scheduler", "constant", "--eval-on-start", "--progress", "false", "--plot", "false"]) == 0
    evals = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if "eval_loss" in ln]
    assert [e["step"] for e in evals] == [0, 2]
    assert evals[-1]["eval_loss"] < 0.8 * evals[0]["eval_loss"]  # the verdict tokens got likelier
    config = yaml.safe_load((out / "rewardsvc.yaml").read_text())
    assert config["scorers"]["judge"] == {"type": "judge", "model": str(out), "mode": "reference",
                                          "reference_method": "yes_no"}

    # The trained model's P(yes) at the verdict position, computed here from the training inputs...
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    prompts = JudgePrompts(tok, JudgeConfig())
    expected = []
    for row in rows:
        (enc,) = encode_judge_examples(prompts, judge_example(row), 4096, False)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([enc.context])).logits[0, -1]
        p = torch.softmax(logits.float(), -1)
        yes, no = float(p[enc.candidates[0]].sum()), float(p[enc.candidates[1]].sum())
        expected.append(yes / (yes + no))
    del model
    assert abs(expected[0] - expected[1]) > 1e-3, expected  # the rows differ: the comparison below can fail

    # ...is what the judge scorer serves from the checkpoint's own stanza.
    async def served() -> list:
        async with ScoringService(parse_config(config)) as service:
            return await service.score("judge", [Item(id=str(i), prompt=r["prompt"], response=r["response"],
                                                      reference=r["reference"]) for i, r in enumerate(rows)])

    results = asyncio.run(served())
    assert all(r.error is None for r in results), results
    assert [r.details["probability"] for r in results] == pytest.approx(expected, abs=1e-4)


@pytest.mark.slow
def test_judge_loss_reads_logits_only_where_it_learns_and_equals_the_full_computation(
        smollm_tokenizer: object) -> None:
    """The judge step's LM head runs only at positions some row learns from: the loss, the token
    accuracy and the eval verdict position are those of every position's logits; a model whose forward
    takes no `logits_to_keep` gets every position and the same loss."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from rewardsvc.trainers.judge import JudgeConfig, JudgePrompts, JudgeTask, encode_judge_examples, learnt_logits

    tok = smollm_tokenizer
    prompts = JudgePrompts(tok, JudgeConfig())
    rows = read_jsonl(JUDGE)[:3]
    encoded = [e for r in rows for e in encode_judge_examples(prompts, judge_example(r), 2048, False)]
    assert len({len(e.context) for e in encoded}) == 3  # three context lengths: the kept spans differ by row
    task = JudgeTask(JudgeConfig())
    task.tokenizer = tok
    batch = task.collate(encoded)
    model = AutoModelForCausalLM.from_pretrained(smollm_layers(2)).eval()

    with torch.no_grad():
        loss, metrics = task.loss(model, batch)
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        expected = F.cross_entropy(full.reshape(-1, full.shape[-1]), labels.reshape(-1), ignore_index=-100)
        keep = labels != -100
        accuracy = float((full.argmax(-1)[keep] == labels[keep]).float().mean())
        logits, kept_labels, column = learnt_logits(model, batch)

        class NoKeep(torch.nn.Module):  # a forward without logits_to_keep, like an older remote-code model
            def __init__(self) -> None:
                super().__init__()
                self.inner = model

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> object:
                return self.inner(input_ids=input_ids, attention_mask=attention_mask)

        fallback, _ = task.loss(NoKeep(), batch)

    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert metrics["token_accuracy"] == pytest.approx(accuracy)
    assert float(fallback) == pytest.approx(float(expected), rel=1e-5)
    assert logits.shape[1] < full.shape[1]  # fewer positions through the LM head than the batch has
    for row, e in enumerate(encoded):  # the verdict position the eval reads is among the kept ones
        assert torch.allclose(logits[row, column[len(e.context) - 1]], full[row, len(e.context) - 1], atol=1e-4)
        assert kept_labels[row, column[len(e.context) - 1]] == e.target[0]
