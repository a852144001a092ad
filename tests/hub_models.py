"""Tiny random-weight look-alikes of public reward models, in a Hugging Face cache of their own.

Each repo has the real model's architecture class, head, config layout, special tokens and chat
template style, with a small vocabulary (a byte-level BPE, or a Metaspace BPE for Mistral, trained
here on a few sentences) and 2 layers of width 32. They are written once per machine into
`<model cache>/test-models/hub-look-alikes-<digest>/hub`, with the on-disk layout huggingface_hub
itself writes (blobs/, snapshots/<commit>/, refs/<name> holding the commit without a newline), so a
server started with HF_HUB_CACHE=<that>/hub and HF_HUB_OFFLINE=1 loads them by Hub id. `hub_cache()[1]`
maps each repo to its source directory, for the tests' own forward passes.

Models whose real checkpoints ship their own code (ArmoRM, Qwen2.5-Math-PRM) get small modeling
files written for these tests (tests/data/remote_code), with the same class and parameter names.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from encoder_models import workdir

REMOTE_CODE = Path(__file__).parent / "data" / "remote_code"

SKYWORK = "rewardsvc-tiny/Skywork-Reward-V2-Llama-3.1-8B"
INF_ORM = "rewardsvc-tiny/INF-ORM-Llama3.1-70B"
QWEN2_RM = "rewardsvc-tiny/Qwen2-RM"
GEMMA2_RM = "rewardsvc-tiny/Gemma2-RM"
ARMO = "rewardsvc-tiny/ArmoRM-Llama3-8B-v0.1"
QWEN_PRM = "rewardsvc-tiny/Qwen2.5-Math-PRM-7B"
SHEPHERD = "rewardsvc-tiny/math-shepherd-mistral-7b-prm"
RLHFLOW = "rewardsvc-tiny/Llama3.1-8B-PRM-Deepseek-Data"
EURUS = "rewardsvc-tiny/EurusPRM-Stage2"
EURUS_REF = "rewardsvc-tiny/Qwen2.5-Math-7B-Instruct"
#: A repo with two revisions: main and the tag "v1.0" (different weights).
REVISIONS = "rewardsvc-tiny/Llama-RM-revisions"
TAG = "v1.0"

QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

CORPUS = [
    "What is 2 + 3? Step 1: 2 + 3 = 5. Step 2: The answer is 5.",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "The answer is \\boxed{12}. So x = 4 and y = 7, then x + y = 11 - 0 = 11.",
    "user assistant system model Human Assistant: Hello! How can I help you today?",
    "Let me compute: 6 * 7 = 42, 42 / 2 = 21, and 21 - 1 = 20. Therefore the result is 20.",
    "A train leaves at 3 pm and travels 60 miles per hour for 2 hours.",
    "+ - + - = ( ) [ ] { } ^ _ \\frac{1}{2} \\sqrt{2} . , : ; ? !",
] * 20
SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=2048, initializer_range=0.2)

LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
CHATML_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
    "else message['role'] %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
    "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


def commit_of(repo_id: str, revision: str = "main") -> str:
    """A distinct 40-hex commit per repo and revision (transformers names remote-code modules after
    the snapshot directory, so two repos must not share one)."""
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


# ---------------------------------------------------------------- the cache layout


def add_file(repo: Path, commit: str, name: str, data: bytes) -> None:
    """One snapshot file: a blob named by its git hash and a relative symlink to it."""
    blob = repo / "blobs" / hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        blob.write_bytes(data)
    link = repo / "snapshots" / commit / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))


def populate(cache: Path, repo_id: str, folder: Path, revision: str = "main") -> Path:
    """Copy an HF directory into the cache as `repo_id` at `revision` (a branch or tag name)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = commit_of(repo_id, revision)
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            add_file(repo, commit, f.relative_to(folder).as_posix(), f.read_bytes())
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)  # huggingface_hub reads it unstripped: no newline
    return repo / "snapshots" / commit


# ---------------------------------------------------------------- tokenizers


def bpe_tokenizer(specials: list[str], bos: str | None, eos: str, pad: str | None, template: str | None,
                  extra_special: list[str] = ()) -> Any:
    """A byte-level BPE (Llama-3 / Qwen / Gemma style) with `specials`; BOS prepended when given."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    steps = [processors.ByteLevel(trim_offsets=False)]
    if bos:
        steps.append(processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                   special_tokens=[(bos, tok.token_to_id(bos))]))
    tok.post_processor = processors.Sequence(steps)
    named = {k: v for k, v in (("bos_token", bos), ("eos_token", eos), ("pad_token", pad)) if v}
    others = [s for s in specials if s not in named.values()] + list(extra_special)
    out = PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=others, **named)
    if template:
        out.chat_template = template
    return out


def llama3_tokenizer() -> Any:
    return bpe_tokenizer(["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                          "<|eot_id|>", "[PAD]"], "<|begin_of_text|>", "<|eot_id|>", "[PAD]", LLAMA3_TEMPLATE)


def qwen_tokenizer() -> Any:
    return bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"], None, "<|im_end|>",
                         "<|endoftext|>", CHATML_TEMPLATE)


def gemma_tokenizer() -> Any:
    return bpe_tokenizer(["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>",
                         "<pad>", GEMMA_TEMPLATE)


def mistral_tokenizer() -> Any:
    """Sentencepiece-like (Metaspace BPE, BOS prepended) with "ки" as its own token, as Math-Shepherd's
    Mistral tokenizer has it: `encode("+ -")[1:]` gives the "+" and "-" ids, `encode("ки")[-1]` the tag."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok.train_from_iterator(CORPUS + ["Step 1: 2 + 3 = 5 ки\nStep 2: ok ки"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    bos = [("<s>", tok.token_to_id("<s>"))]
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=bos)
    out = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    out.add_tokens(["ки"])
    return out


# ---------------------------------------------------------------- models


def _ids(tok: Any) -> dict[str, Any]:
    return {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None
            else tok.eos_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}


def _save(out: Path, model: Any, tok: Any, config_update: dict[str, Any] | None = None,
          code: list[str] = ()) -> Path:
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if config_update:
        path = out / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config_update}, indent=2))
    for name in code:
        shutil.copy(REMOTE_CODE / name, out / name)
    return out


def build_seq_cls(out: Path, config_cls: Any, tok: Any, seed: int, dims: dict[str, Any] = SMALL,
                  **extra: Any) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    cfg = config_cls(**_ids(tok), num_labels=1, **dims, **extra)
    model = AutoModelForSequenceClassification.from_config(cfg, dtype=torch.float32)
    return _save(out, model, tok)


def build_inf_orm(out: Path) -> Path:
    """LlamaModel + score = Linear(h, h), ReLU, Linear(h, 1), saved as INFORMForSequenceClassification
    (the class exists only in users' scripts: the checkpoint ships no code)."""
    import torch
    from torch import nn
    from transformers import LlamaConfig, LlamaModel

    tok = llama3_tokenizer()
    torch.manual_seed(1)
    cfg = LlamaConfig(**_ids(tok), num_labels=1, **SMALL)
    backbone = LlamaModel(cfg)
    h = cfg.hidden_size
    head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    state = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    state.update({f"score.{k}": v.contiguous() for k, v in head.state_dict().items()})
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg.architectures = ["INFORMForSequenceClassification"]
    cfg.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def armo_pattern(tok: Any) -> list[int]:
    """The ids of "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n" (ArmoRM's gating anchor)."""
    return tok("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", add_special_tokens=False)["input_ids"]


def build_armo(out: Path) -> Path:
    import sys

    import torch
    from transformers import LlamaConfig

    sys.path.insert(0, str(REMOTE_CODE))
    try:
        from modeling_armo import LlamaForRewardModelWithGating
    finally:
        sys.path.remove(str(REMOTE_CODE))
    tok = llama3_tokenizer()
    torch.manual_seed(2)
    cfg = LlamaConfig(**_ids(tok), **SMALL)
    extra = {"num_objectives": 19, "gating_temperature": 10, "gating_hidden_dim": 16, "gating_n_hidden": 3,
             "gating_token_pattern": armo_pattern(tok)}
    for k, v in extra.items():
        setattr(cfg, k, v)
    model = LlamaForRewardModelWithGating(cfg)
    with torch.no_grad():  # spread the rewards so objectives and the gated sum differ visibly
        model.regression_layer.weight.mul_(10)
    return _save(out, model, tok, {
        "architectures": ["LlamaForRewardModelWithGating"],
        "auto_map": {"AutoModelForSequenceClassification": "modeling_armo.LlamaForRewardModelWithGating"},
    }, ["modeling_armo.py"])


def build_qwen_prm(out: Path, dims: dict[str, Any] = SMALL) -> Path:
    import sys

    import torch
    from transformers import Qwen2Config

    sys.path.insert(0, str(REMOTE_CODE))
    try:
        from modeling_qwen2_prm import Qwen2ForProcessRewardModel
    finally:
        sys.path.remove(str(REMOTE_CODE))
    tok = qwen_tokenizer()
    torch.manual_seed(3)
    cfg = Qwen2Config(**_ids(tok), num_labels=2, **dims)
    model = Qwen2ForProcessRewardModel(cfg)
    return _save(out, model, tok, {
        "architectures": ["Qwen2ForProcessRewardModel"],
        "auto_map": {"AutoModel": "modeling_qwen2_prm.Qwen2ForProcessRewardModel"},
    }, ["modeling_qwen2_prm.py"])


def build_causal(out: Path, config_cls: Any, tok: Any, seed: int, dims: dict[str, Any] = SMALL,
                 **extra: Any) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = config_cls(**_ids(tok), **dims, **extra)
    return _save(out, AutoModelForCausalLM.from_config(cfg, dtype=torch.float32), tok)


@functools.cache
def hub_cache() -> tuple[Path, dict[str, Path]]:
    """(cache dir, repo id -> its local source directory). Built once per machine (support.made_once,
    under a file lock) and only read after: the models are seeded, and the name of the directory changes
    with this file, tests/data/remote_code and the torch and transformers versions. Building them
    imports torch and transformers and takes ~10 CPU-s, which every test process that needs one of
    these repos paid before."""
    from support import made_once

    root = Path(made_once(f"hub-look-alikes-{_recipe_digest()}", _build))
    local = {repo_id: root / rel for repo_id, rel in json.loads((root / "local.json").read_text()).items()}
    return root / "hub", local


def _recipe_digest() -> str:
    from importlib.metadata import version

    h = hashlib.sha256(Path(__file__).read_bytes())
    for f in sorted(REMOTE_CODE.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    h.update(f"torch {version('torch')} transformers {version('transformers')}".encode())
    return h.hexdigest()[:16]


def _build(root: Path) -> None:
    from transformers import Gemma2Config, LlamaConfig, MistralConfig, Qwen2Config

    src, cache = root / "src", root / "hub"
    local: dict[str, Path] = {}
    builders = {
        SKYWORK: lambda d: build_seq_cls(d, LlamaConfig, llama3_tokenizer(), 0),
        INF_ORM: build_inf_orm,
        QWEN2_RM: lambda d: build_seq_cls(d, Qwen2Config, qwen_tokenizer(), 4),
        GEMMA2_RM: lambda d: build_seq_cls(d, Gemma2Config, gemma_tokenizer(), 5, head_dim=8,
                                           query_pre_attn_scalar=8, sliding_window=64),
        ARMO: build_armo,
        QWEN_PRM: build_qwen_prm,
        SHEPHERD: lambda d: build_causal(d, MistralConfig, mistral_tokenizer(), 6, sliding_window=None),
        RLHFLOW: lambda d: build_causal(d, LlamaConfig, llama3_tokenizer(), 7),
        EURUS: lambda d: build_causal(d, Qwen2Config, qwen_tokenizer(), 8),
        EURUS_REF: lambda d: build_causal(d, Qwen2Config, qwen_tokenizer(), 9),
        REVISIONS: lambda d: build_seq_cls(d, LlamaConfig, llama3_tokenizer(), 10),
    }
    for repo_id, build in builders.items():
        folder = src / repo_id.replace("/", "--")
        build(folder)
        local[repo_id] = populate(cache, repo_id, folder)
    tagged = src / "revisions-v1"
    build_seq_cls(tagged, LlamaConfig, llama3_tokenizer(), 11)
    local[f"{REVISIONS}@{TAG}"] = populate(cache, REVISIONS, tagged, TAG)
    # Relative to the root: made_once builds in a scratch directory and renames it into place.
    (root / "local.json").write_text(json.dumps({k: str(v.relative_to(root)) for k, v in local.items()}))


def server_env(cache: Path) -> dict[str, str]:
    """Environment of a server that reads `cache` and never goes to the network. Remote-code modules go to
    this test process's own directory, since the cache is shared."""
    modules = workdir() / "hf-modules"
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(modules)}
