"""What a code sandbox is built from (fixed for the scorer's lifetime) and what one run may use."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class SandboxSettings:
    """How sandboxes are built; fixed for the scorer's lifetime."""

    python: str
    harness_dir: str
    isolated: bool = True
    bwrap: str = "bwrap"
    drop_uid: bool = True  # the service is root: run each slot as its own unprivileged uid
    python_binds: list[str] = field(default_factory=list)
    bpf: bytes = b""  # the runs' filter (strict)
    bpf_zygote: bytes = b""  # the zygote's filter: the same, except that unshare and mount stay allowed


@dataclass
class RunLimits:
    """One run's limits (the item's, capped by the config's)."""

    timeout_s: float
    memory_mb: int
    max_output_bytes: int
    tail_bytes: int
    tmp_mb: int
    max_processes: int
    max_open_files: int
    max_file_bytes: int

    def harness_limits(self) -> dict[str, Any]:
        return {"memory_mb": self.memory_mb, "cpu_s": self.timeout_s, "max_file_bytes": self.max_file_bytes,
                "max_open_files": self.max_open_files, "max_processes": self.max_processes}


def log_unsafe(name: str) -> None:
    log.warning("code scorer %r runs WITHOUT isolation (unsafe_no_isolation: true): untrusted code can read "
                "and change this machine. Use it only for trusted code on a local machine.", name)
