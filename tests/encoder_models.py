"""Model directories for the encoder-scorer tests, built once per test process.

Real backbones (all-MiniLM-L6-v2, SmolLM2-135M-Instruct from their PyPI packages) with freshly
initialised classification heads. Such heads are fine for shape and batching-equivalence tests
only; tests that claim a reward model *works* use the trained cache:default-rm/default-prm.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

from rewardsvc.model_refs import resolve_model_path

DATA = Path(__file__).parent / "data" / "encoder"


def read_jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


@functools.cache
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="rewardsvc-encoder-tests-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def minilm_dir(task: str, num_labels: int, special_token: str = "") -> Path:
    """MiniLM with a seeded random `task` head ("sequence" or "token"), saved as an HF directory.

    `special_token` is registered as an atomic special token (an existing vocabulary entry, so the
    embeddings need no resizing), like Qwen-PRM's <extra_0>.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    src = resolve_model_path("bundled:all-minilm-l6-v2")
    torch.manual_seed(0)
    cls = AutoModelForSequenceClassification if task == "sequence" else AutoModelForTokenClassification
    model = cls.from_pretrained(src, num_labels=num_labels)
    tok = AutoTokenizer.from_pretrained(src)
    if special_token:
        tok.add_special_tokens({"additional_special_tokens": [special_token]})
        assert len(tok) == model.config.vocab_size, "the special token must already be in the vocabulary"
    out = workdir() / f"minilm-{task}-{num_labels}-{special_token.strip('[]')}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def minilm_layers(n: int = 2) -> str:
    """all-MiniLM-L6-v2 cut to its first `n` of 6 encoder layers (real weights, the same tokenizer),
    saved once per machine in the rewardsvc cache (under a file lock: xdist workers and training
    subprocesses share it). A forward/backward costs about n/6 of the full model's: for trainer
    tests whose assertions hold for any weights (loss falls on the batches it fits, resume, DDP,
    Ctrl-C, progress lines, a checkpoint serves as trained). Claims that a model ranks or judges
    well use the full model or the trained cache:default-rm/default-prm."""
    from support import made_once

    def build(out: Path) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        src = resolve_model_path("bundled:all-minilm-l6-v2")
        model = AutoModel.from_pretrained(src, dtype=torch.float32)
        model.encoder.layer = model.encoder.layer[:n]
        model.config.num_hidden_layers = n
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(src).save_pretrained(out)

    return made_once(f"all-minilm-l6-v2-first-{n}-layers", build)


@functools.cache
def smollm_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors HF directory (converted from its GGUF once per machine)."""
    from rewardsvc.backends.gguf import model_dir

    return model_dir("bundled:smollm2-135m-instruct")


@functools.cache
def smollm_classifier_dir() -> Path:
    """SmolLM2 with a seeded one-logit sequence-classification head.

    The backbone's weights are linked, not copied (540 MB): a sharded-checkpoint index maps them to
    the link and the head to its own small shard.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = smollm_dir()
    out = workdir() / "smollm-seq-1"
    out.mkdir()
    for f in src.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            (out / f.name).symlink_to(f)
    (out / "backbone.safetensors").symlink_to(src / "model.safetensors")
    config = json.loads((src / "config.json").read_text())
    config.update(architectures=["LlamaForSequenceClassification"], num_labels=1,
                  id2label={"0": "reward"}, label2id={"reward": 0})
    (out / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    save_file({"score.weight": torch.randn(1, config["hidden_size"]) * 0.02}, str(out / "head.safetensors"))
    with safe_open(str(src / "model.safetensors"), "pt") as f:
        weight_map = {k: "backbone.safetensors" for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    weight_map["score.weight"] = "head.safetensors"
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out
