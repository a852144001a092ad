"""The package layout of ARCHITECTURE.md, checked: which layer may import which.

Every `import` in every module (including imports inside functions) is checked against LAYERS, so
a change that makes the transport import torch, a verifier import the service, or the service import
the trainers fails here, naming the file, the line and the rule.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Folders and the import names they are installed under (verifiers/ and trainers/ live inside the
# rewardsvc namespace: their own names belong to other PyPI projects).
ROOTS = {REPO / "rewardsvc": "rewardsvc", REPO / "verifiers": "rewardsvc.verifiers",
         REPO / "trainers": "rewardsvc.trainers"}

CORE = {"rewardsvc.errors", "rewardsvc.types", "rewardsvc.dataclass_dict", "rewardsvc.logs", "rewardsvc.model_refs",
        "rewardsvc.queue_clock", "rewardsvc.caller", "rewardsvc.threads", "rewardsvc.heap"}
# Model code: never in the transport, the client or the engines that run without models.
HEAVY = {"torch", "transformers", "accelerate", "vllm", "safetensors", "gguf", "ray"}
GRPC = {"grpc", "grpc_health", "grpc_reflection", "google"}

# layer -> (rewardsvc layers it may import, third-party top-level names it must not import).
# A layer always may import itself and CORE. Anything not listed here may import everything but the
# trainers: nothing outside rewardsvc.trainers imports rewardsvc.trainers.
LAYERS: dict[str, tuple[set[str], set[str]]] = {
    "core": (set(), HEAVY | GRPC),
    "rewardsvc.verifiers": (set(), HEAVY | GRPC | {"rewardsvc"}),
    "rewardsvc.batching": (set(), HEAVY | GRPC),
    "rewardsvc.backends": (set(), GRPC),
    "rewardsvc.scorers": ({"rewardsvc.batching", "rewardsvc.backends", "rewardsvc.verifiers"}, GRPC),
    "rewardsvc.registry": ({"rewardsvc.scorers"}, HEAVY | GRPC),
    # The `ray:` section's dataclasses (no Ray import) are validated with the rest of the config.
    "rewardsvc.config": ({"rewardsvc.registry", "rewardsvc.rayserve.options"}, HEAVY | GRPC),
    "rewardsvc.service": ({"rewardsvc.config", "rewardsvc.registry", "rewardsvc.scorers.base",
                           "rewardsvc.scorers.dedupe", "rewardsvc.scorers.offload"}, HEAVY | GRPC),
    "rewardsvc.v1": (set(), HEAVY),
    "rewardsvc.messages": ({"rewardsvc.v1"}, HEAVY),
    "rewardsvc.server": ({"rewardsvc.config", "rewardsvc.service", "rewardsvc.messages", "rewardsvc.v1"}, HEAVY),
    "rewardsvc.client": ({"rewardsvc.messages", "rewardsvc.v1"}, HEAVY),
    "rewardsvc.integrations": ({"rewardsvc.client", "rewardsvc.messages"}, HEAVY),
}


def layer_of(module: str) -> str:
    if module in CORE:
        return "core"
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _allowed(target: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def violations(module: str, source: str, filename: str = "<source>") -> list[str]:
    """Each import in `source` (the text of `module`) that breaks LAYERS, as 'file:line: why'."""
    layer = layer_of(module)
    allowed, banned = LAYERS.get(layer, (None, set()))
    out = []
    tree = ast.parse(source, filename)
    # Imports for type checkers only make no run-time dependency.
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [f"{node.module}.{a.name}" if node.module == "rewardsvc" else node.module for a in node.names]
        else:
            continue
        for target in targets:
            top = target.split(".")[0]
            where = f"{filename}:{node.lineno}: {module} ({layer}) imports {target}"
            if top == "rewardsvc":
                target_layer = layer_of(target)
                if target_layer == "rewardsvc.trainers" and layer != "rewardsvc.trainers":
                    out.append(f"{where}: nothing outside the trainers imports them (use an entry point)")
                elif allowed is not None and target_layer not in (layer, "core") and not _allowed(target, allowed):
                    out.append(f"{where}: {layer} may import only {sorted(allowed | {'core'})}")
                elif "rewardsvc" in banned and not target.startswith(layer):
                    out.append(f"{where}: {layer} imports nothing of the service")
            elif top in banned:
                out.append(f"{where}: {layer} must not import {top}")
    return out


def all_modules() -> list[tuple[str, Path]]:
    found = []
    for folder, package in ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("").parts
            if "__pycache__" in rel or path.is_symlink():
                continue
            parts = [package, *rel]
            if parts[-1] == "__init__":
                parts.pop()
            found.append((".".join(parts), path))
    return found


def test_every_import_follows_the_layers() -> None:
    modules = all_modules()
    assert len(modules) > 80, "the walk found too few modules: did the layout change?"
    found = [v for name, path in modules for v in violations(name, path.read_text(), str(path.relative_to(REPO)))]
    assert not found, "imports that break ARCHITECTURE.md:\n" + "\n".join(found)


@pytest.mark.parametrize(("module", "source"), [
    ("rewardsvc.verifiers.math.extract", "from rewardsvc.service import ScoringService"),
    ("rewardsvc.verifiers.code.sandbox", "import grpc"),
    ("rewardsvc.server.app", "def f():\n    import torch\n"),  # inside a function counts too
    ("rewardsvc.client.aio", "from rewardsvc.scorers.base import Scorer"),
    ("rewardsvc.cli", "from rewardsvc.trainers.cli import main"),
    ("rewardsvc.scorers.judge", "import grpc"),
    ("rewardsvc.service", "from rewardsvc.server.app import RewardServer"),
    ("rewardsvc.types", "from rewardsvc import service"),
])
def test_a_forbidden_import_is_reported(module: str, source: str) -> None:
    assert violations(module, source), f"{module}: {source!r} should break the layers"


def test_allowed_imports_are_not_reported() -> None:
    assert not violations("rewardsvc.scorers.math", "from rewardsvc.verifiers.math.extract import extract_answer")
    assert not violations("rewardsvc.trainers.rm", "from rewardsvc.scorers.render import encode_conversation")
    assert not violations("rewardsvc.server.app", "import grpc\nfrom rewardsvc.service import ScoringService")


def test_the_transport_and_client_load_no_model_code() -> None:
    """What the lines above can't see: imports of imports. Load the transport and look."""
    code = ("import sys, rewardsvc.server.app, rewardsvc.client, rewardsvc.integrations, rewardsvc.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'vllm', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
