"""`rewardsvc` CLI: score in-process and against a server, list scorers, bad lines become errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import MATH_CONFIG

REPO = Path(__file__).resolve().parents[1]

LINES = [
    json.dumps({"id": "a", "prompt": "1+1?", "response": "so \\boxed{2}", "reference": "2"}),
    "this is not json",
    json.dumps({"id": "c", "response": "#### 3", "reference": "4"}),
    json.dumps({"id": "d", "response": [{"role": "assistant", "content": "\\boxed{5}"}], "reference": "5"}),
]


def rewardsvc(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rewardsvc.cli", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def check_output(stdout: str) -> None:
    out = [json.loads(line) for line in stdout.splitlines()]
    assert [o["id"] for o in out] == ["a", "line-2", "c", "d"]
    assert out[0]["score"] == 1.0 and out[0]["details"]["verdict"] == "correct"
    assert out[1]["error"]["code"] == "invalid_item" and "line 2" in out[1]["error"]["message"]
    assert out[2]["score"] == 0.0 and out[2]["details"]["verdict"] == "incorrect"
    assert out[3]["score"] == 1.0


def test_score_in_process(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(MATH_CONFIG))
    proc = rewardsvc("score", "--scorer", "math", "--config", str(cfg), stdin="\n".join(LINES) + "\n")
    assert proc.returncode == 0, proc.stderr
    check_output(proc.stdout)


def test_score_and_scorers_against_a_server(math_server, tmp_path: Path) -> None:
    src = tmp_path / "items.jsonl"
    src.write_text("\n".join(LINES) + "\n")
    dst = tmp_path / "out.jsonl"
    proc = rewardsvc("score", "--scorer", "math", "--address", math_server.address, "--input", str(src),
                     "--output", str(dst))
    assert proc.returncode == 0, proc.stderr
    check_output(dst.read_text())
    proc = rewardsvc("scorers", "--address", math_server.address, "--json")
    assert json.loads(proc.stdout)[0]["name"] == "math"


def test_config_errors_are_clear(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"scorers": {"math": {"type": "math", "wokers": 2}}}))
    proc = rewardsvc("scorers", "--config", str(cfg))
    assert proc.returncode == 2
    assert "unknown key(s) ['wokers']" in proc.stderr and "workers" in proc.stderr
    cfg.write_text(yaml.safe_dump({"scorers": {"x": {"type": "nope"}}}))
    proc = rewardsvc("scorers", "--config", str(cfg))
    assert proc.returncode == 2 and "unknown scorer type 'nope'" in proc.stderr
