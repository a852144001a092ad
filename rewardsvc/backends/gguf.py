"""GGUF -> safetensors conversion, once per machine, into the model cache (under a file lock).

transformers can read a GGUF file directly, but slowly (SmolLM2: ~45 s, Gemma-270m: ~2 min, 3 GB
peak) and it refuses to `save_pretrained()` the result. So the GGUF is dequantised once, the model
is rebuilt on the meta device, given the loaded tensors with `load_state_dict(assign=True)`, its
tied weights re-tied, and saved as a plain HF directory (loads in 1-5 s; logits are identical).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from pathlib import Path

from filelock import FileLock

from rewardsvc.model_refs import BUNDLED, bundled_path, cache_dir, resolve_model_path

log = logging.getLogger(__name__)

_DONE = "rewardsvc-converted.txt"


def converted_dir(gguf_path: Path) -> Path:
    """Where the HF directory converted from `gguf_path` lives: keyed by the file's size and its
    first and last MiB, so the same file installed in two environments is converted once."""
    size = gguf_path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(gguf_path, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return cache_dir() / "gguf" / f"{gguf_path.stem}-{digest.hexdigest()[:12]}"


def convert(gguf_path: Path) -> Path:
    """Convert `gguf_path` to a safetensors HF directory (once; concurrent callers wait) and return it."""
    gguf_path = Path(gguf_path)
    target = converted_dir(gguf_path)
    if (target / _DONE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _DONE).exists():  # another process converted it while we waited
            return target
        t0 = time.perf_counter()
        log.info("converting %s to safetensors in %s (one time, ~1 min)", gguf_path.name, target)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _convert_into(gguf_path, tmp)
        (tmp / _DONE).write_text(f"converted from {gguf_path}\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        log.info("converted %s in %.0fs", gguf_path.name, time.perf_counter() - t0)
    return target


def _convert_into(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    state = loaded.state_dict()
    config = AutoConfig.from_pretrained(directory, gguf_file=name)
    config.dtype = torch.float32
    # save_pretrained refuses a GGUF-loaded model: build a fresh one without allocating and hand it
    # the dequantised tensors.
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(state, assign=True, strict=False)
    fresh.tie_weights()
    missing = [n for n, p in fresh.named_parameters() if p.is_meta]
    if missing:
        raise RuntimeError(f"GGUF {gguf_path} lacks tensors {missing[:5]}...; cannot convert it")
    generation_config = getattr(loaded, "generation_config", None)
    if generation_config is not None:
        fresh.generation_config = generation_config
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)


def model_dir(model: str) -> Path:
    """A config's `model:` value -> a loadable HF directory (GGUF files are converted first)."""
    path = resolve_model_path(model)
    if path.is_file() and path.suffix == ".gguf":
        return convert(path)
    return path


def prepare_bundled() -> None:
    """`make install` step: convert every bundled GGUF model whose package is installed."""
    for name, (_, inner, _) in BUNDLED.items():
        if not inner.endswith(".gguf"):
            continue
        try:
            path = bundled_path(name)
        except FileNotFoundError as exc:
            log.warning("skipping %s: %s", name, exc)
            continue
        log.info("bundled:%s ready at %s", name, convert(path))
