"""HumanEval and MBPP as code-scorer items (tests and bench share this loader)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

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
