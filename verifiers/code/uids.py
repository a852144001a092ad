"""Leases on host uids for sandbox slots, so two services on one machine never share a slot's uid.

A slot's uid is what RLIMIT_NPROC counts and what the last-resort kill (`kill -9 -1` as that uid)
reaches, so it must belong to one slot of one service. Each uid is leased with an flock on
/run/rewardsvc-code/uid-<uid>.lock, held while the scorer runs and released by the kernel when the
process dies.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_DIR = Path("/run/rewardsvc-code")
AUTO_BASE = 200_000  # far above the uids of real accounts
AUTO_STEP = 64
AUTO_TRIES = 4096


class UidLease:
    """`count` consecutive uids from `first`, each held by an open, flocked file."""

    def __init__(self, first: int, fds: list[int]) -> None:
        self.first = first
        self._fds = fds

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _try_lease(first: int, count: int) -> UidLease | None:
    fds: list[int] = []
    for uid in range(first, first + count):
        fd = os.open(LOCK_DIR / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            for held in fds:
                os.close(held)
            return None
        fds.append(fd)
    return UidLease(first, fds)


def lease_uids(count: int, first: int = 0) -> UidLease:
    """Lease `count` uids from `first` (0: the first free block from AUTO_BASE); raises if taken."""
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    if first:
        lease = _try_lease(first, count)
        if lease is None:
            raise RuntimeError(f"sandbox uids {first}..{first + count - 1} are in use by another rewardsvc "
                               f"process (locks in {LOCK_DIR}); give this scorer another sandbox_uid, or 0 to "
                               "pick a free range")
        return lease
    step = max(AUTO_STEP, count)
    for i in range(AUTO_TRIES):
        lease = _try_lease(AUTO_BASE + i * step, count)
        if lease is not None:
            return lease
    raise RuntimeError(f"no free block of {count} sandbox uids from {AUTO_BASE} (locks in {LOCK_DIR})")
