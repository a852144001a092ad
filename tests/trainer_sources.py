"""The released source of veRL 0.9.1, OpenRLHF 0.11.2 and AReaL 1.0.4, for tests that run their own
reward code: `make install` unpacks their wheels into .venv/trainer-src without installing them (their
pins on transformers, ray and torch would fight the project's), plus the few small packages their
reward modules import (tensordict, omegaconf, ...; see the Makefile)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TRAINER_SRC = Path(__file__).resolve().parents[1] / ".venv" / "trainer-src"


def trainer_source() -> Path:
    """The unpacked sources, appended to sys.path (after the project's own packages)."""
    if not (TRAINER_SRC / "verl").is_dir():
        pytest.fail(f"{TRAINER_SRC} has no trainer sources: run `make install` (it unpacks verl, openrlhf and areal)")
    if str(TRAINER_SRC) not in sys.path:
        sys.path.append(str(TRAINER_SRC))
    return TRAINER_SRC
