"""Every `bash` and `python` block of README.md runs as a reader would run it (issue 18), so the README
can't rot; `yaml` blocks that are rewardsvc configs pass the strict config parser.

A block right after `<!-- not runnable here: WHY -->` is skipped, saying WHY. The others run in a
scratch directory that sees the checkout's files (tests/data/..., the bundled configs), with
`.venv/bin` first on PATH, as after `source .venv/bin/activate`. A block naming 127.0.0.1:50051 talks
to one real server with the built-in default config (what `make serve` runs) on a free port; any
other 5005N port a block uses is swapped for a free one, so blocks that start their own server
don't collide with anything.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from support import ServerProcess

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SKIP = re.compile(r"<!--\s*not runnable here:\s*(.*?)\s*-->")
PORT = re.compile(r"\b5005\d\b")
SERVER_PORT = "50051"


@dataclass
class Block:
    line: int
    lang: str
    body: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.lang}"


def blocks(text: str) -> list[Block]:
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        why = SKIP.search(before)
        out.append(Block(start + 1, lang, "\n".join(lines[start + 1:end]) + "\n", why.group(1) if why else None))
        i = end + 1
    return out


ALL = blocks(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in ALL if b.lang in ("bash", "python")]
CONFIGS = [b for b in ALL if b.lang == "yaml"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def default_server() -> Iterator[ServerProcess]:
    """The built-in default config, as `make serve` hosts it (here on a free port)."""
    with ServerProcess(yaml.safe_load((REPO / "rewardsvc" / "default.yaml").read_text()),
                       startup_timeout_s=600, preimported=True) as srv:
        yield srv


def scratch(tmp_path: Path) -> Path:
    """A working directory whose top-level entries are the checkout's (links), so outputs land here."""
    for entry in REPO.iterdir():
        if entry.name not in (".git",):
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def test_the_readme_opens_with_make_serve_and_make_test() -> None:
    first = next(b for b in ALL if b.lang)
    assert first.body.splitlines()[:2] == [
        "make serve   # install (idempotent) and run the server on 127.0.0.1:50051 with the built-in default config",
        "make test    # install and run the whole test suite",
    ]
    assert len(RUNNABLE) >= 10, "the README's blocks were not found: did the fence style change?"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_readme_block_runs(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if block.skip:
        pytest.skip(f"marked not runnable here: {block.skip}")
    body = block.body
    ports = {p: str(free_port()) for p in sorted(set(PORT.findall(body))) if p != SERVER_PORT}
    if SERVER_PORT in body:
        server: ServerProcess = request.getfixturevalue("default_server")
        ports[SERVER_PORT] = server.address.rsplit(":", 1)[1]
    body = PORT.sub(lambda m: ports[m.group(0)], body)
    cwd = scratch(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("REWARDSVC_AUTH_TOKEN", "PYTHONPATH")}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # as after `source .venv/bin/activate`
    env["VIRTUAL_ENV"] = str(REPO / ".venv")
    if block.lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", body]
    else:
        cmd = [str(REPO / ".venv" / "bin" / "python"), "-c", body]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, (f"{block.id} failed (exit {proc.returncode}):\n{body}\n--- stdout\n"
                                  f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}")


def _is_rewardsvc_config(data: object) -> bool:
    return isinstance(data, dict) and "scorers" in data and set(data) <= {"server", "scorers", "ray"}


@pytest.mark.parametrize("block", CONFIGS, ids=[b.id for b in CONFIGS])
def test_readme_config_parses(block: Block) -> None:
    from rewardsvc.config import parse_config

    if block.skip:
        pytest.skip(f"marked not runnable here: {block.skip}")
    data = yaml.safe_load(block.body)
    if not _is_rewardsvc_config(data):
        pytest.skip("not a rewardsvc config (another program's settings)")
    parse_config(data, block.id)  # strict: unknown keys, unknown types and missing scorers fail


def test_markers_are_only_used_before_blocks() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        if SKIP.search(line):
            after = next((lines[j] for j in range(n + 1, len(lines)) if lines[j].strip()), "")
            assert after.startswith("```"), f"README.md:{n + 1}: a not-runnable marker with no block after it"

