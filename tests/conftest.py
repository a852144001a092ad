"""Shared fixtures: one real math server per test session (subprocess, free loopback port)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ServerProcess

DATA = Path(__file__).parent / "data"

# Under xdist (`make test`: a worker per core) torch gets one thread per worker, and so do the servers
# and trainers the tests start (they inherit it). Two workers with a thread per core each made
# libgomp's spinning threads fight over the cores: tests/test_causal_backend.py twice side by side
# took 203 s and 108 CPU-s per run with the default threads, 48 s and 23 CPU-s with one.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

MATH_CONFIG = {"scorers": {"math": {"type": "math", "workers": 2, "timeout_s": 5.0}}}


@pytest.fixture(scope="session")
def math_server() -> Iterator[ServerProcess]:
    with ServerProcess(MATH_CONFIG) as srv:
        yield srv


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with the most slow tests first (stable otherwise). `make test` runs a file per xdist
    worker (--dist loadfile, module fixtures made once); a long module that started last would leave
    the other core idle at the end."""
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    first_seen = {path: i for i, path in reversed(list(enumerate(item.path for item in items)))}
    items.sort(key=lambda item: (-slow[item.path], first_seen[item.path]))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
