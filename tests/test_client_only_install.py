"""`pip install rewardsvc` in a fresh venv is the client and the trainer adapters, without torch,
transformers or the verifiers' dependencies, and it scores against a running server.

The project is installed from a copy of its source files (pip builds in the source tree; the copy
keeps the shared working tree clean), with its declared dependencies from the package index.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a venv and a pip install

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "math_verify", "sympy", "numpy", "yaml", "aiohttp", "prometheus_client")
CLIENT_RUN = """
import asyncio, importlib.util, json, sys
from rewardsvc.client import AsyncRewardClient, RewardClient
from rewardsvc.integrations import areal, trl, verl
address = sys.argv[1]
with RewardClient(address) as client:
    scored = [r.score for r in client.score("math", [{"response": "\\\\boxed{4}", "reference": "4"},
                                                     {"response": "\\\\boxed{5}", "reference": "4"}])]
rewards = trl.reward_func("math", address)(prompts=["2+2?"], completions=["\\\\boxed{4}"], answer=["4"])
verl_score = verl.compute_score("openai/gsm8k", "#### 4", "4", {}, address=address)["score"]
print(json.dumps({"scored": scored, "trl": rewards, "verl": verl_score,
                  "missing": [m for m in sys.argv[2:] if importlib.util.find_spec(m) is None],
                  "loaded": sorted(m for m in sys.argv[2:] if m in sys.modules)}))
"""


def copy_source(dest: Path) -> Path:
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("rewardsvc", "verifiers", "trainers"):
        shutil.copytree(REPO / name, dest / name, symlinks=True, ignore=ignore)
    return dest


def test_client_only_install_scores_without_torch(math_server, tmp_path) -> None:
    source = copy_source(tmp_path / "src")
    venv = tmp_path / "venv"
    # A venv without its own pip, installed into by this venv's pip (`pip --python`): the same resolver and
    # the same resulting environment, without ~6 CPU-s of ensurepip.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check"]
    install = subprocess.run([*pip, "install", "-q", str(source)], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    # The build itself is clean: setuptools' deprecations (e.g. a TOML-table `project.license`) turn into
    # build failures on a date.
    assert "BuildBackendWarning" not in install.stderr and "SetuptoolsDeprecationWarning" not in install.stderr, \
        install.stderr[-3000:]
    listed = subprocess.run([*pip, "list", "--format=json"], capture_output=True, text=True, check=True).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert {"rewardsvc", "grpcio", "protobuf"} <= names
    assert not names & {"torch", "transformers", "math-verify", "sympy", "numpy", "aiohttp", "pyyaml"}, names
    out = subprocess.run([python, "-c", CLIENT_RUN, math_server.address, *HEAVY], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["scored"] == [1.0, 0.0] and got["trl"] == [1.0] and got["verl"] == 1.0
    assert sorted(got["missing"]) == sorted(HEAVY) and got["loaded"] == []
