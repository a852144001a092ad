"""cgroup v1 memory + pids groups, one per sandbox slot: limits before each run, peak and OOM kills after."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

_MB = 1 << 20


class SlotCgroup:
    """A cgroup v1 memory + pids pair for one slot; limits set before each run, peak read after."""

    def __init__(self, memory_dir: Path, pids_dir: Path) -> None:
        self.memory_dir = memory_dir
        self.pids_dir = pids_dir

    @classmethod
    def create(cls, name: str, uid: int | None) -> SlotCgroup:
        mem = Path("/sys/fs/cgroup/memory/rewardsvc-code") / name
        pids = Path("/sys/fs/cgroup/pids/rewardsvc-code") / name
        for d in (mem, pids):
            d.mkdir(parents=True, exist_ok=True)
            if uid is not None:  # the slot's uid joins the group itself, first thing after the fork
                os.chown(d / "cgroup.procs", uid, uid)
        return cls(mem, pids)

    def procs_files(self) -> list[str]:
        return [str(self.memory_dir / "cgroup.procs"), str(self.pids_dir / "cgroup.procs")]

    def prepare(self, memory_bytes: int, max_pids: int) -> None:
        """Set the slot's limits before a sandbox is started in it."""
        self.set_memory(memory_bytes)
        self._write(self.pids_dir / "pids.max", max_pids)

    def set_memory(self, memory_bytes: int) -> None:
        swap = self.memory_dir / "memory.memsw.limit_in_bytes"
        # memsw must stay >= the memory limit: raise it first when growing, after when shrinking.
        for path in ((swap, self.memory_dir / "memory.limit_in_bytes", swap) if swap.exists()
                     else (self.memory_dir / "memory.limit_in_bytes",)):
            with contextlib.suppress(OSError):
                self._write(path, memory_bytes)

    def start_run(self, memory_bytes: int) -> int:
        """The run's own memory limit, a fresh peak; returns the OOM-kill count so far."""
        self.set_memory(memory_bytes)
        with contextlib.suppress(OSError):
            self._write(self.memory_dir / "memory.max_usage_in_bytes", 0)
        return self.oom_kills()

    def oom_kills(self) -> int:
        try:
            for line in (self.memory_dir / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def peak_bytes(self) -> int | None:
        try:
            return int((self.memory_dir / "memory.max_usage_in_bytes").read_text())
        except (OSError, ValueError):
            return None

    def members(self) -> list[int]:
        pids: set[int] = set()
        for procs in (self.pids_dir / "cgroup.procs", self.memory_dir / "cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except (OSError, ValueError):
                continue
        return sorted(pids)

    def kill_leftovers(self) -> int:
        """SIGKILL everything in the slot, again until nothing is left (forks race the first pass)."""
        killed = 0
        for _ in range(50):
            pids = self.members()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, 9)
                    killed += 1
            time.sleep(0.001)
        return killed

    def remove(self) -> None:
        for d in (self.memory_dir, self.pids_dir):
            with contextlib.suppress(OSError):
                d.rmdir()

    @staticmethod
    def _write(path: Path, value: int) -> None:
        with open(path, "w") as f:
            f.write(str(value))


def remove_stale_cgroups() -> None:
    """Empty and remove slot cgroups left by services that died (named `<pid>-...`)."""
    for root in (Path("/sys/fs/cgroup/memory/rewardsvc-code"), Path("/sys/fs/cgroup/pids/rewardsvc-code")):
        try:
            entries = list(root.iterdir())
        except OSError:
            continue
        for d in entries:
            owner = d.name.split("-", 1)[0]
            if not d.is_dir() or not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue
            group = SlotCgroup(d, d)
            group.kill_leftovers()
            with contextlib.suppress(OSError):
                d.rmdir()


def cgroups_available() -> bool:
    try:
        for root in (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/pids")):
            if not (root / "cgroup.procs").exists():
                return False
            probe = root / "rewardsvc-code"
            probe.mkdir(exist_ok=True)
            if not os.access(probe, os.W_OK):
                return False
        return True
    except OSError:
        return False


def cgroup_bytes(memory_mb: int, tmp_mb: int) -> int:
    # The program's address space, its /tmp pages, and room for the zygote, harness and runner.
    return (memory_mb + tmp_mb + 256) * _MB
