"""Shared fixtures: one real math server per test session (subprocess, free loopback port)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ServerProcess

DATA = Path(__file__).parent / "data"

MATH_CONFIG = {"scorers": {"math": {"type": "math", "workers": 2, "timeout_s": 5.0}}}


@pytest.fixture(scope="session")
def math_server() -> Iterator[ServerProcess]:
    with ServerProcess(MATH_CONFIG) as srv:
        yield srv


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
