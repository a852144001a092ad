"""Code-scorer test support: HumanEval and MBPP as items (tests and bench share them), an in-process
service on its own event-loop thread, and host checks (processes of the sandbox uids)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rewardsvc.config import parse_config
from rewardsvc.service import ScoringService
from rewardsvc.types import Result, item_from_dict

T = TypeVar("T")

DATA = Path(__file__).parent / "data" / "code"


def humaneval() -> list[dict[str, Any]]:
    with gzip.open(DATA / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def mbpp() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "mbpp-sanitized.jsonl").read_text().splitlines() if line.strip()]


def humaneval_item(row: dict[str, Any], completion: str | None = None, item_id: str | None = None) -> dict[str, Any]:
    """The HumanEval task as an item: prompt + completion (canonical by default) against `check`."""
    return {"id": item_id or row["task_id"], "prompt": row["prompt"],
            "response": row["canonical_solution"] if completion is None else completion,
            "reference": json.dumps({"test": row["test"], "entry_point": row["entry_point"]})}


def mbpp_reference_program(row: dict[str, Any]) -> str:
    """MBPP's reference code: the prompt's def line(s) without the docstring, then the solution."""
    m = re.search(r"\n[ \t]*('''|\"\"\")[\s\S]*\1\s*$", row["prompt"])
    if m is None:
        raise ValueError(f"{row['task_id']}: prompt has no trailing docstring")
    return row["prompt"][: m.start() + 1] + row["canonical_solution"]


def mbpp_test(row: dict[str, Any]) -> str:
    test = row["test"]
    if "math." in test and not re.search(r"^\s*(import math|from math)", test, re.M):
        test = "import math\n" + test  # MBPP's test_imports, lost in the repackaging (see NOTE.md)
    return test


def mbpp_item(row: dict[str, Any]) -> dict[str, Any]:
    """The MBPP task as an item: its reference code, fenced as a model would answer, against `check`."""
    return {"id": row["task_id"], "prompt": row["prompt"],
            "response": "Here is the code:\n```python\n" + mbpp_reference_program(row) + "\n```\n",
            "reference": json.dumps({"test": mbpp_test(row), "entry_point": row["entry_point"].strip()})}


def body_indent(completion: str) -> str:
    for line in completion.splitlines():
        if line.strip():
            return line[: len(line) - len(line.lstrip())]
    return "    "


def humaneval_mutants(row: dict[str, Any]) -> dict[str, str]:
    """Wrong completions: the body replaced by `pass`, and by a constant return."""
    indent = body_indent(row["canonical_solution"])
    return {"pass": f"{indent}pass\n", "const": f"{indent}return 0\n"}


class InProcessService:
    """A real ScoringService on its own event-loop thread; tests call it synchronously."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="code-test-loop", daemon=True)
        self.thread.start()
        self.service = ScoringService(parse_config(config))
        self.call(self.service.start())

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 600.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def score(self, items: Sequence[dict[str, Any]], scorer: str = "code", **options: Any) -> list[Result]:
        return self.call(self.service.score(scorer, [item_from_dict(i) for i in items], options))

    def close(self) -> None:
        self.call(self.service.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def processes_of(uids: range) -> list[tuple[int, str]]:
    """(pid, command line) of every live process owned by one of `uids`."""
    found = []
    wanted = {str(u) for u in uids}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                uid = next((line.split()[1] for line in f if line.startswith("Uid:")), None)
            if uid in wanted:
                cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if cmd:  # zombies (already dead, not yet reaped) have no command line
                    found.append((int(entry.name), cmd))
        except (OSError, StopIteration):
            continue
    return found


def processes_with(marker: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains `marker` (any uid)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append((int(entry.name), cmd))
    return found


def eventually(check: Any, timeout_s: float = 10.0) -> Any:
    """Poll `check()` until it returns something truthy (kills land asynchronously)."""
    end = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)
