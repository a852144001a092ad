"""Trainers: loss formulas, batching, metrics, the CLI, and real short training runs on real data.

The training runs here test mechanics that hold for any weights (the loss falls on pairs the run
fits, resume reaches the same weights, Ctrl-C saves a checkpoint, DDP, the checkpoint's layout and
that the server scores it as the trainer does), so they train all-MiniLM-L6-v2 cut to its first 2
layers (tests/encoder_models.py: real weights and tokenizer, ~1/3 of the compute) on HH-RLHF pairs
shipped in tests/data/trainers. That an RM trained this way ranks held-out pairs well is claimed
with the full model in tests/test_encoder_trained.py (cache:default-rm). One RM run is shared by the
tests that need a trained checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from encoder_models import minilm_layers

from rewardsvc.trainers.batches import make_batches
from rewardsvc.trainers.cli import parse_args
from rewardsvc.trainers.examples import first_error, read_jsonl, split_rows, step_examples
from rewardsvc.trainers.prm import process_metrics

DATA = Path(__file__).parent / "data" / "trainers"
HH = DATA / "hh-rlhf-helpful-base-48.jsonl"
PRMBENCH = DATA / "prmbench-train-24.jsonl"
JUDGE = DATA / "gsm8k-judge-16.jsonl"
REPO = Path(__file__).resolve().parents[1]


def rm_args(out: Path, **over: object) -> list[str]:
    """`rm` CLI arguments for a short run of the 2-layer MiniLM (any-weights mechanics only)."""
    args = {"model": minilm_layers(), "train-file": HH, "eval-file": HH, "output-dir": out, "max-length": 96,
            "batch-size": 8, "learning-rate": 1e-4, "warmup-ratio": 0.1, "max-steps": 12, "progress": "false",
            "plot": "false", "max-eval-examples": 8}
    args.update({k.replace("_", "-"): v for k, v in over.items()})
    return ["rm"] + [x for k, v in args.items() for x in (f"--{k}", str(v))]


def metrics_rows(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]


# ---- formulas and pure functions ---------------------------------------------------------------


def test_bt_loss_matches_the_formula_with_margin_and_centering() -> None:
    import torch

    from rewardsvc.trainers.rm import bt_loss

    rc, rr, m = torch.tensor([1.0, -0.5]), torch.tensor([0.2, 0.5]), torch.tensor([0.3, 0.0])
    expected = -sum(math.log(1 / (1 + math.exp(-(c - r - mm)))) for c, r, mm in [(1.0, 0.2, 0.3), (-0.5, 0.5, 0.0)]) / 2
    expected_center = expected + 0.01 * ((1.0 + 0.2) ** 2 + (-0.5 + 0.5) ** 2) / 2
    assert float(bt_loss(rc, rr, m)) == pytest.approx(expected, rel=1e-6)
    assert float(bt_loss(rc, rr, m, center=0.01)) == pytest.approx(expected_center, rel=1e-6)
    # Without a margin a wider gap always means a lower loss.
    assert float(bt_loss(rc + 1, rr)) < float(bt_loss(rc, rr))


def test_length_grouped_batches_are_full_deterministic_and_cut_padding() -> None:
    import random

    rng = random.Random(1)
    lengths = [rng.randint(5, 500) for _ in range(1000)]
    grouped = make_batches(lengths, 16, seed=3, group_by_length=True)
    plain = make_batches(lengths, 16, seed=3, group_by_length=False)
    for batches in (grouped, plain):
        seen = [i for b in batches for i in b]
        assert len(seen) == len(set(seen)) == 992  # 62 full batches; the short remainder is dropped
        assert all(len(b) == 16 for b in batches)
    assert grouped == make_batches(lengths, 16, seed=3, group_by_length=True)  # a resumed run sees the same order
    assert grouped != make_batches(lengths, 16, seed=4, group_by_length=True)

    def padded(batches: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    assert padded(grouped) < 0.7 * padded(plain)
    assert max(lengths[i] for i in grouped[0]) == max(lengths)  # the longest batch first: OOM shows at step 1


def test_process_metrics_follow_processbench_and_prmbench_formulas() -> None:
    labels = [[True, True, True], [True, False, True], [True, True, False], [True, True]]
    probs = [[0.9, 0.8, 0.7], [0.9, 0.2, 0.1], [0.9, 0.3, 0.2], [0.9, 0.95]]
    m = process_metrics(probs, labels)
    # first errors: truth [-1, 1, 2, -1]; predicted [-1, 1, 1, -1] -> acc_err 1/2, acc_corr 2/2
    assert m["eval_first_error_acc_err"] == 0.5 and m["eval_first_error_acc_corr"] == 1.0
    assert m["eval_first_error_f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    # steps: tp 7 (correct predicted correct), fn 2 (step 3 of #2, step 2 of #3), tn 2, fp 0
    assert m["eval_step_f1"] == pytest.approx(2 * 7 / (2 * 7 + 0 + 2))
    assert m["eval_step_f1_neg"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 0))
    assert m["eval_prm_score"] == pytest.approx((m["eval_step_f1"] + m["eval_step_f1_neg"]) / 2)
    assert first_error([True, True]) == -1 and first_error([True, False, False]) == 1
    # wrong steps score 0.2 (#2) and 0.2 (#3); of the 9 correct ones only #2's last (0.1) is below them
    assert m["eval_step_auroc"] == pytest.approx(16 / 18)
    # weakest steps: correct solutions 0.7, 0.9; erroneous 0.1, 0.2
    assert m["eval_solution_auroc"] == 1.0


def test_prmbench_rows_give_an_all_correct_and_a_labelled_solution() -> None:
    row = read_jsonl(PRMBENCH)[0]
    original, modified = step_examples(row)
    assert all(original.labels) and len(original.labels) == len(row["original_process"])
    wrong = [i + 1 for i, ok in enumerate(modified.labels) if not ok]
    assert wrong == sorted(row["error_steps"])  # 1-indexed in the data
    assert original.group == modified.group
    trl = step_examples({"prompt": "q", "completions": ["a", "b"], "labels": [True, False]})[0]
    assert trl.steps == ["a", "b"] and trl.labels == [True, False]
    with pytest.raises(ValueError, match="error_steps"):
        step_examples({**row, "error_steps": [99]})


def test_fixed_seed_split_is_stable_and_keeps_groups_together() -> None:
    rows = [{"g": i // 2, "i": i} for i in range(100)]
    a = split_rows(rows, 0.2, seed=7, key=lambda r: r["g"])
    assert a == split_rows(rows, 0.2, seed=7, key=lambda r: r["g"])
    train_groups, eval_groups = {r["g"] for r in a[0]}, {r["g"] for r in a[1]}
    assert not train_groups & eval_groups and len(eval_groups) == 10


def test_cli_flags_override_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "rm.yaml"
    cfg.write_text(f"train_file: {HH}\noutput_dir: {tmp_path}/out\nlearning_rate: 0.001\nbatch_size: 4\n")
    kind, config = parse_args(["rm", "--config", str(cfg), "--learning-rate", "2e-5", "--group-by-length", "false",
                               "--overwrite-output-dir"])
    assert kind == "rm"
    assert config.learning_rate == 2e-5 and config.batch_size == 4
    assert config.group_by_length is False and config.overwrite_output_dir is True
    with pytest.raises(SystemExit, match="unknown key"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("learning_rat: 1\n")
        parse_args(["rm", "--config", str(bad)])


def test_prm_labels_sit_on_the_scorers_read_positions() -> None:
    from transformers import AutoTokenizer

    from rewardsvc.model_refs import resolve_model_path
    from rewardsvc.scorers.render import encode_steps_trl
    from rewardsvc.scorers.step_windows import encode_steps_windows
    from rewardsvc.trainers.prm import encode_step_windows

    tok = AutoTokenizer.from_pretrained(resolve_model_path("bundled:all-minilm-l6-v2"))
    ex = step_examples(read_jsonl(PRMBENCH)[0])[1]
    [enc] = encode_step_windows(tok, ex, "\n", 512)
    served = encode_steps_trl(tok, ex.prompt, ex.steps, "\n", 512)
    assert enc.ids == served.ids and enc.positions == served.positions and enc.labels == ex.labels
    # Too long for max_length: the scorer's step-preserving windows, each step once, with its label.
    short = len(served.ids) // 2
    windows = encode_step_windows(tok, ex, "\n", short)
    scorer = encode_steps_windows(tok, ex.prompt, ex.steps, "\n", short)
    assert len(windows) > 1 and [w.ids for w in windows] == [w.ids for w in scorer]
    assert [w.positions for w in windows] == [w.positions for w in scorer]
    assert [k for w in windows for k in w.steps] == list(range(len(ex.steps)))
    assert [y for w in windows for y in w.labels] == ex.labels
    assert all(len(w.ids) <= short for w in windows)


# ---- real training runs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rm_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A 6-step BT run (3 epochs of 2 batches) on 16 real HH-RLHF pairs, evaluated on the same pairs
    before, halfway and after: the run fits them. The learning rate is high enough that the cut-down
    model's loss falls well clear of noise (0.69 -> ~0.4) and its rewards spread across items."""
    from rewardsvc.trainers.cli import main

    tmp = tmp_path_factory.mktemp("rm")
    pairs = tmp / "hh-16.jsonl"
    pairs.write_text("".join(HH.read_text().splitlines(keepends=True)[:16]))
    out = tmp / "run"
    assert main(rm_args(out, train_file=pairs, eval_file=pairs, max_steps=6, max_length=64, learning_rate=1e-3,
                        eval_on_start="true", eval_steps=3, plot="true", max_eval_examples=0)) == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(900)  # real training on 2 shared cores
def test_rm_loss_falls_on_a_small_real_subset(rm_run: tuple[Path, dict]) -> None:
    out, summary = rm_run
    evals = [r for r in metrics_rows(out) if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 3, 6]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"] - 0.02
    assert evals[-1]["eval_accuracy"] > evals[0]["eval_accuracy"]
    train = [r for r in metrics_rows(out) if "loss" in r and "eval_loss" not in r]
    assert [r["step"] for r in train] == list(range(1, 7))
    assert (out / "metrics.png").stat().st_size > 10_000
    assert summary["steps"] == 6 and summary["train_samples"] == 6 * 8


@pytest.mark.slow
def test_rm_checkpoint_is_a_plain_hf_dir_with_a_serving_config(rm_run: tuple[Path, dict]) -> None:
    import yaml
    from transformers import AutoConfig

    from rewardsvc.config import parse_config

    out, summary = rm_run
    assert AutoConfig.from_pretrained(out).num_labels == 1
    data = yaml.safe_load((out / "rewardsvc.yaml").read_text())
    stanza = data["scorers"]["rm"]
    assert stanza["type"] == "classifier" and Path(stanza["model"]) == out
    assert stanza["normalize_mean"] == pytest.approx(summary["eval_reward_mean"])
    assert stanza["normalize_std"] == pytest.approx(summary["eval_reward_std"]) and stanza["normalize_std"] > 0
    parse_config(data)


@pytest.mark.slow
@pytest.mark.timeout(900)  # real training on 2 shared cores
def test_resumed_run_continues_from_its_step_to_the_same_weights(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from rewardsvc.trainers.cli import main

    full = tmp_path / "full"
    assert main(rm_args(full, max_steps=4, save_steps=2, batch_size=4, max_length=64)) == 0
    assert sorted(p.name for p in (full / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    resumed = tmp_path / "resumed"
    assert main(rm_args(resumed, max_steps=4, save_steps=2, batch_size=4, max_length=64,
                        resume_from=full / "checkpoints" / "step-000002")) == 0
    assert [r["step"] for r in metrics_rows(resumed) if "loss" in r and "eval_loss" not in r] == [3, 4]
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    start = load_file(full / "checkpoints" / "step-000002" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert any(not torch.equal(a[k], start[k]) for k in a)  # steps 3-4 did change the weights


@pytest.mark.slow
@pytest.mark.timeout(900)  # real training on 2 shared cores
def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes_from_it(tmp_path: Path) -> None:
    from rewardsvc.trainers.cli import main

    from support import model_cli

    out = tmp_path / "run"
    # A fresh interpreter's SIGINT handling, forked or not (tests/zygote.py resets it in the child).
    proc = model_cli("rewardsvc.trainers.cli", rm_args(out, max_steps=1000, batch_size=2, max_length=48),
                     dict(os.environ))
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "metrics.jsonl").exists() and metrics_rows(out):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGINT)
        output = proc.stdout.read()  # stdout and stderr: the summary is the last JSON line
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert proc.returncode == 130, output
    summary = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
    assert summary["interrupted"] and 1 <= summary["steps"] < 1000
    stopped = summary["steps"]
    state = json.loads((Path(summary["checkpoint"]) / "trainer_state.json").read_text())
    assert state["step"] == stopped
    assert main(rm_args(out, max_steps=stopped + 2, batch_size=2, max_length=48, resume_from="latest")) == 0
    steps = [r["step"] for r in metrics_rows(out) if "loss" in r and "eval_loss" not in r]
    assert steps == list(range(1, stopped + 3))  # continued from its step, nothing redone or skipped


def test_fresh_run_refuses_to_overwrite_checkpoints(tmp_path: Path) -> None:
    from rewardsvc.trainers.cli import main

    out = tmp_path / "x"
    (out / "checkpoints" / "step-000001").mkdir(parents=True)
    (out / "checkpoints" / "step-000001" / "trainer_state.json").write_text("{}")
    assert main(rm_args(out, max_steps=1)) == 2


@pytest.mark.slow
@pytest.mark.timeout(900)  # real training on 2 shared cores
def test_served_rm_checkpoint_scores_equal_in_process_scores(rm_run: tuple[Path, dict]) -> None:
    """The checkpoint's own rewardsvc.yaml in the real server; client scores = the trainer's scoring."""
    import yaml
    from support import ServerProcess
    from transformers import AutoTokenizer

    from rewardsvc.client import RewardClient
    from rewardsvc.trainers.examples import preference_pair
    from rewardsvc.trainers.rm import encode_pair, load_reward_model, score_sequences
    from rewardsvc.types import Item, Message

    out, _ = rm_run
    config = yaml.safe_load((out / "rewardsvc.yaml").read_text())
    stanza = config["scorers"]["rm"]
    pairs = [preference_pair(r) for r in read_jsonl(HH)[:6]]
    tok = AutoTokenizer.from_pretrained(out)
    model = load_reward_model(out).eval()
    seqs = [s for p in pairs for s in (encode_pair(tok, p, stanza["max_length"]).chosen,
                                       encode_pair(tok, p, stanza["max_length"]).rejected)]
    raw = score_sequences(model, seqs, tok.pad_token_id, "cpu", 4096)
    assert max(raw) - min(raw) > 0.01, raw  # distinct scores per item: the comparisons below can fail
    expected = [(r - stanza["normalize_mean"]) / stanza["normalize_std"] for r in raw]
    items = []
    for i, p in enumerate(pairs):
        # HH prompts are chat messages; send them as such (the server renders them as in training).
        prompt = [Message(m.role, m.content) for m in p.prompt]
        items += [Item(id=f"{i}c", prompt=prompt, response=p.chosen),
                  Item(id=f"{i}r", prompt=prompt, response=p.rejected)]
    with ServerProcess(config, preimported=True) as srv, RewardClient(srv.address) as client:
        results = client.score("rm", items)
    assert [r.id for r in results] == [it.id for it in items]
    assert all(r.error is None for r in results), [r.error for r in results]
    assert [r.score for r in results] == pytest.approx(expected, abs=1e-4)
    assert [r.details["raw_score"] for r in results] == pytest.approx(raw, abs=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(900)  # real training on 2 shared cores
def test_runs_unchanged_under_torchrun_ddp(tmp_path: Path) -> None:
    """Two gloo ranks on CPU (the NCCL path differs only in backend and device)."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rewardsvc.trainers.cli", *rm_args(out, max_steps=2, batch_size=2, max_length=48, save_steps=2)]
    # TMPDIR: torchrun leaves a torchelastic_* log folder in the temp folder after every run.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(summaries) == 2 and {s["world_size"] for s in summaries} == {2}
    assert summaries[0]["train_samples"] == 2 * 2 * 2  # steps x per-device batch x ranks
    assert [r["step"] for r in metrics_rows(out) if "loss" in r and "eval_loss" not in r] == [1, 2]  # rank 0 logs once
    assert (out / "checkpoints" / "step-000002" / "trainer_state.json").exists()
    assert (out / "rewardsvc.yaml").exists()


def test_prepare_step_is_registered_and_retrains_only_when_the_recipe_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardsvc.prepare import steps
    from rewardsvc.trainers import prepare
    from rewardsvc.trainers.loop import config_dict, dump_yaml

    assert "rewardsvc.trainers.prepare:prepare_default_models" in steps()
    monkeypatch.setenv("REWARDSVC_CACHE", str(tmp_path))
    target = tmp_path / "models" / "default-rm"
    calls = []

    def fake_train(config: object) -> dict:  # what a finished run leaves behind, without the training
        calls.append(config)
        target.mkdir(parents=True, exist_ok=True)
        (target / "train_config.yaml").write_text(dump_yaml(config_dict(config)))
        (target / "results.json").write_text("{}")
        return {}

    target.mkdir(parents=True)
    assert prepare._prepare("default-rm", prepare.default_rm_config, fake_train, "eval_accuracy") == target
    assert len(calls) == 1
    prepare._prepare("default-rm", prepare.default_rm_config, fake_train, "eval_accuracy")
    assert len(calls) == 1  # cached: not trained again
    # A model left by an older default config (another step count) is trained again.
    text = (target / "train_config.yaml").read_text()
    (target / "train_config.yaml").write_text(text.replace("max_steps: 60", "max_steps: 59"))
    prepare._prepare("default-rm", prepare.default_rm_config, fake_train, "eval_accuracy")
    assert len(calls) == 2
    # The default configs hold out what other tests and benchmarks treat as never trained on.
    rm = prepare.default_rm_config(tmp_path / "x")
    prm = prepare.default_prm_config(tmp_path / "y")
    assert (rm.eval_fraction, rm.split_seed, prm.eval_fraction, prm.split_seed) == (0.15, 0, 0.03, 0)
