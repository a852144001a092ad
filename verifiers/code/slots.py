"""Sandbox slots: a slot's host uid and cgroups, and the last-resort kill of everything in a slot."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rewardsvc.verifiers.code.cgroups import SlotCgroup


@dataclass
class Slot:
    """One concurrent sandbox: its host uid and, when available, its cgroups."""

    index: int
    uid: int | None
    cgroup: SlotCgroup | None = None


def kill_slot(slot: Slot) -> None:
    """SIGKILL every process of the slot: its cgroup members, else every process of its uid."""
    if slot.cgroup is not None:
        slot.cgroup.kill_leftovers()
    elif slot.uid is not None and os.geteuid() == 0:
        # kill(-1) as the slot's uid reaches every process of that uid, in any pid namespace.
        for _ in range(3):
            subprocess.run(["kill", "-9", "-1"], user=slot.uid, group=slot.uid, extra_groups=[],
                           env={"PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False)
            if not process_uids_alive([slot.uid]):
                break


def process_uids_alive(uids: Sequence[int]) -> list[int]:
    """PIDs of live processes owned by any of `uids` (tests use this to check nothing is left)."""
    wanted = {str(u) for u in uids}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if line.split()[1] in wanted:
                            found.append(int(entry.name))
                        break
        except OSError:
            continue
    return found
