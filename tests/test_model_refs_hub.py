"""Models named by Hub id (org/name, org/name@revision) resolve through an offline HF cache.

The cache is a temporary one in huggingface_hub's own layout (tests/hub_models.py) holding a tiny
reward model at two revisions: main and the tag v1.0. A real server loads it by id, by tag and by
full commit; unknown ids and revisions fail at start with an error that says what was tried.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import hub_models as H
import pytest
import yaml
from support import REPO, ServerProcess

from rewardsvc.client import RewardClient
from rewardsvc.config import parse_config
from rewardsvc.errors import ConfigError
from rewardsvc.model_refs import resolve_model, split_hub_ref
from rewardsvc.service import ScoringService
from rewardsvc.types import Item

ITEM = Item(id="x", prompt="What is 2 + 3?", response="2 + 3 = 5. The answer is 5.")


@pytest.fixture
def offline_cache(monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, Path]]:
    cache, local = H.hub_cache()
    for key, value in H.server_env(cache).items():
        monkeypatch.setenv(key, value)
    return cache, local


def test_hub_id_forms() -> None:
    assert split_hub_ref("org/name") == ("org/name", "")
    assert split_hub_ref("org/name@v1.0") == ("org/name", "v1.0")
    assert split_hub_ref("hf:org/name@refs/pr/1") == ("org/name", "refs/pr/1")
    for not_an_id in ("name", "a/b/c", "/abs/path", "./rel/dir", "org/name@", "org--x/name", "bundled:x"):
        assert split_hub_ref(not_an_id) is None, not_an_id


def test_resolves_branch_tag_and_commit_offline(offline_cache: tuple[Path, dict[str, Path]]) -> None:
    _, local = offline_cache
    main, tagged = local[H.REVISIONS], local[f"{H.REVISIONS}@{H.TAG}"]
    commit = H.commit_of(H.REVISIONS, H.TAG)
    assert resolve_model(H.REVISIONS).path == main
    assert resolve_model(f"{H.REVISIONS}@main").path == main
    got = resolve_model(f"{H.REVISIONS}@{H.TAG}")
    assert (got.path, got.source, got.repo_id, got.revision, got.commit) == (tagged, "hub", H.REVISIONS, H.TAG, commit)
    assert resolve_model(f"hf:{H.REVISIONS}@{commit}").path == tagged
    # A local directory keeps working, and wins over a Hub id of the same form.
    assert resolve_model(str(main)).source == "local"


def test_unknown_id_and_revision_say_what_was_tried(offline_cache: tuple[Path, dict[str, Path]]) -> None:
    cache, _ = offline_cache
    with pytest.raises(FileNotFoundError) as exc:
        resolve_model("rewardsvc-tiny/no-such-model")
    msg = str(exc.value)
    for part in ("tried the local path", "Hugging Face Hub id rewardsvc-tiny/no-such-model at revision main",
                 str(cache), "HF_HUB_OFFLINE is set", "the cache has no copy"):
        assert part in msg, msg
    with pytest.raises(FileNotFoundError) as exc:
        resolve_model(f"{H.REVISIONS}@v9")
    msg = str(exc.value)
    assert "at revision v9" in msg and "['main', 'v1.0']" in msg, msg
    with pytest.raises(FileNotFoundError) as exc:
        resolve_model(f"{H.REVISIONS}@{H.commit_of(H.REVISIONS)[:7]}")
    assert "40 hex digits" in str(exc.value)


@pytest.mark.slow
def test_checkpoint_code_needs_trust_remote_code(offline_cache: tuple[Path, dict[str, Path]]) -> None:
    for stanza in ({"type": "classifier", "model": H.ARMO},
                   {"type": "prm", "model": H.QWEN_PRM, "format": "step_token"}):
        with pytest.raises(ConfigError) as exc:
            asyncio.run(ScoringService(parse_config({"scorers": {"s": {**stanza, "device": "cpu"}}})).start())
        msg = str(exc.value)
        assert "auto_map" in msg and "trust_remote_code: true" in msg, msg


@pytest.mark.slow
def test_server_scores_by_id_tag_and_commit(offline_cache: tuple[Path, dict[str, Path]]) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    cache, local = offline_cache
    commit = H.commit_of(H.REVISIONS)
    refs = {"main": H.REVISIONS, "tagged": f"{H.REVISIONS}@{H.TAG}", "pinned": f"hf:{H.REVISIONS}@{commit}"}
    dirs = {"main": local[H.REVISIONS], "tagged": local[f"{H.REVISIONS}@{H.TAG}"], "pinned": local[H.REVISIONS]}
    expected = {}
    for name, path in dirs.items():
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
        ids = tok.apply_chat_template([{"role": "user", "content": ITEM.prompt},
                                       {"role": "assistant", "content": ITEM.response}], return_dict=True)["input_ids"]
        with torch.no_grad():
            expected[name] = model(input_ids=torch.tensor([ids])).logits[0][0].item()
    assert abs(expected["main"] - expected["tagged"]) > 1e-3, "the two revisions must differ"
    config = {"scorers": {name: {"type": "classifier", "model": ref, "device": "cpu"} for name, ref in refs.items()}}
    with ServerProcess(config, env=H.server_env(cache)) as srv, RewardClient(srv.address) as client:
        for name in refs:
            [result] = client.score(name, [ITEM])
            assert result.score == pytest.approx(expected[name], abs=1e-4), name


@pytest.mark.slow
def test_server_refuses_an_unknown_id_naming_what_it_tried(offline_cache: tuple[Path, dict[str, Path]]) -> None:
    cache, _ = offline_cache
    config = {"scorers": {"rm": {"type": "classifier", "model": "rewardsvc-tiny/no-such-model", "device": "cpu"}}}
    with pytest.raises(RuntimeError) as exc, ServerProcess(config, env=H.server_env(cache), startup_timeout_s=120):
        pass
    out = str(exc.value)
    assert "scorer 'rm'" in out and "rewardsvc-tiny/no-such-model" in out, out
    assert "Hugging Face Hub id" in out and "the cache has no copy" in out, out


def test_an_unknown_id_fails_before_torch_is_imported(offline_cache: tuple[Path, dict[str, Path]]) -> None:
    """A misnamed model fails at once: the classification backend resolves it before importing torch and
    transformers (~4 CPU-s), which a server that is about to refuse its config never needs."""
    cache, _ = offline_cache
    code = ("import sys\n"
            "from rewardsvc.backends.pooling import PoolingBackend\n"
            "try:\n"
            "    PoolingBackend('rewardsvc-tiny/no-such-model', 'sequence_classification', device='cpu')\n"
            "except FileNotFoundError as exc:\n"
            "    print('the cache has no copy' in str(exc), 'torch' in sys.modules, 'transformers' in sys.modules)\n")
    env = {**__import__("os").environ, **H.server_env(cache)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split() == ["True", "False", "False"], out.stdout + out.stderr


def test_scorers_command_shows_what_each_id_resolved_to(offline_cache: tuple[Path, dict[str, Path]],
                                                        tmp_path: Path) -> None:
    cache, local = offline_cache
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"scorers": {
        "tagged": {"type": "classifier", "model": f"{H.REVISIONS}@{H.TAG}"},
        "missing": {"type": "classifier", "model": "rewardsvc-tiny/no-such-model"},
    }}))
    cmd = [sys.executable, "-m", "rewardsvc.cli", "scorers", "--config", str(path), "--json"]
    env = {**__import__("os").environ, **H.server_env(cache)}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True)
    infos = {s["name"]: s for s in json.loads(out.stdout)}
    tagged = infos["tagged"]["models"]["model"]
    assert tagged["revision"] == H.TAG and tagged["commit"] == H.commit_of(H.REVISIONS, H.TAG)
    assert tagged["path"] == str(local[f"{H.REVISIONS}@{H.TAG}"])
    assert "the cache has no copy" in infos["missing"]["models"]["model"]["error"]
    text = subprocess.run(cmd[:-1], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    assert f"revision {H.TAG}" in text


def test_gpu_deploy_example_is_a_valid_config() -> None:
    """deploy/configs/gpu-hub-models.yaml (Hub ids, vLLM, a judge by URL) passes the strict config checks."""
    from rewardsvc.model_refs import split_hub_ref

    path = REPO / "deploy" / "configs" / "gpu-hub-models.yaml"
    config = parse_config(yaml.safe_load(path.read_text()), str(path))
    by_name = {s.name: s.config for s in config.scorers}
    assert split_hub_ref(by_name["rm"].model) and by_name["rm"].backend == "vllm"
    assert by_name["prm"].format == "step_token" and by_name["prm"].trust_remote_code
    assert by_name["judge"].backend == "openai" and by_name["judge"].openai.base_url.startswith("http")
