"""Training data readers: preference pairs, step-labelled solutions, judge examples, fixed-seed splits.

Rows are read from JSONL (optionally .gz). Accepted row formats:

    preference  {"prompt", "chosen", "rejected", "margin"?}  prompt/chosen/rejected as text or chat
                messages ([{"role","content"}...]); or HH-RLHF {"chosen", "rejected"} full
                dialogues ("\\n\\nHuman: ...\\n\\nAssistant: ..."), split at the last Assistant turn.
    steps       PRMBench {"original_question", "original_process", "modified_question",
                "modified_process", "error_steps" (1-indexed)} -> two examples (all correct; the
                error steps wrong); or TRL's {"prompt", "completions": [step...], "labels": [bool...]}.
    judge       {"prompt", "response" | "responses": [a, b], "reference"?, "verdict", "critique"?}.
"""

from __future__ import annotations

import glob
import gzip
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardsvc.types import Message, Text

#: Where the trainers' shipped data sets live (see data/NOTE.md).
DATA_DIR = Path(__file__).with_name("data")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a .jsonl or .jsonl.gz file; a bad line is an error naming file and line."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data file {p} does not exist")
    opener = gzip.open if p.suffix == ".gz" else open
    rows = []
    with opener(p, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}:{n}: not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{p}:{n}: each line must be a JSON object")
            rows.append(row)
    return rows


def read_files(paths: str | Sequence[str]) -> list[dict[str, Any]]:
    """Rows of one file, a comma-separated list, or a list of files (globs allowed), in order."""
    if isinstance(paths, str):
        paths = [p for p in paths.split(",") if p.strip()]
    rows: list[dict[str, Any]] = []
    for spec in (p.strip() for p in paths):
        if any(c in spec for c in "*?["):
            matches = sorted(glob.glob(spec))
            if not matches:
                raise FileNotFoundError(f"no data file matches {spec!r}")
        else:
            matches = [spec]
        for p in matches:
            rows.extend(read_jsonl(p))
    return rows


def _text(value: Any, where: str) -> Text:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
        return [Message(str(m.get("role", "user")), m["content"]) for m in value]
    raise ValueError(f"{where}: expected text or a list of {{role, content}} messages, got {type(value).__name__}")


def split_rows(rows: list[Any], eval_fraction: float, seed: int, key: Any = None) -> tuple[list[Any], list[Any]]:
    """(train, held_out): a fixed-seed shuffle of the groups `key(row)` (default: each row)."""
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    keys = list(dict.fromkeys(key(r) if key else i for i, r in enumerate(rows)))
    random.Random(seed).shuffle(keys)
    n_eval = round(len(keys) * eval_fraction)
    held = set(keys[:n_eval])
    train: list[Any] = []
    evald: list[Any] = []
    for i, r in enumerate(rows):
        (evald if (key(r) if key else i) in held else train).append(r)
    return train, evald


# ---- preference pairs --------------------------------------------------------------------------


@dataclass
class Pair:
    prompt: Text
    chosen: Text
    rejected: Text
    margin: float = 0.0
    rejected_prompt: Text | None = None  # only when the rejected side has its own context


def preference_pair(row: dict[str, Any], where: str = "row", margin_column: str = "margin") -> Pair:
    """One preference pair from an explicit-prompt row or an HH-RLHF dialogue pair."""
    from rewardsvc.scorers.render import hh_prompt_response

    margin = float(row.get(margin_column) or 0.0) if margin_column else 0.0
    if "chosen" not in row or "rejected" not in row:
        raise ValueError(f"{where}: a preference row needs 'chosen' and 'rejected' (and 'prompt' unless HH-RLHF)")
    if "prompt" in row:
        return Pair(_text(row["prompt"], f"{where}.prompt"), _text(row["chosen"], f"{where}.chosen"),
                    _text(row["rejected"], f"{where}.rejected"), margin)
    if is_hh_row(row):
        try:
            p_c, chosen = hh_prompt_response(row["chosen"])
            p_r, rejected = hh_prompt_response(row["rejected"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        # A few HH pairs (9 of 2354 in helpful-base test) differ before the last turn.
        return Pair(p_c, chosen, rejected, margin, rejected_prompt=None if p_r == p_c else p_r)
    raise ValueError(f"{where}: no 'prompt' and not an HH-RLHF dialogue ('\\n\\nHuman: ...'); see trainers/data.py")


def is_hh_row(row: dict[str, Any]) -> bool:
    return "prompt" not in row and isinstance(row.get("chosen"), str) and row["chosen"].startswith("\n\nHuman:")


# ---- step-labelled solutions (PRM) -------------------------------------------------------------


class InconsistentRowError(ValueError):
    """A row whose labels contradict its own content (e.g. an error step past the last step)."""


@dataclass
class StepExample:
    prompt: Text
    steps: list[str]
    labels: list[bool | None]  # True = correct step; None = unlabelled (outcome-graded solutions' earlier steps)
    group: str = ""  # rows from one problem share a group, so a split keeps them together


def step_examples(row: dict[str, Any], where: str = "row") -> list[StepExample]:
    """PRMBench rows give two examples (original, modified); TRL rows give one."""
    if "original_process" in row and "modified_process" in row:
        group = str(row.get("idx") or row.get("original_question") or where)
        original = [str(s) for s in row["original_process"]]
        modified = [str(s) for s in row["modified_process"]]
        errors = {int(e) for e in row.get("error_steps") or []}
        if not errors:
            raise InconsistentRowError(f"{where}: a PRMBench row needs non-empty 'error_steps' (1-indexed)")
        if max(errors) > len(modified) or min(errors) < 1:
            # 57 of the 3203 PRMBench train rows are like this: their labels can't be trusted.
            raise InconsistentRowError(
                f"{where}: error_steps {sorted(errors)} out of range for {len(modified)} steps")
        q_orig = row.get("original_question") or row.get("question") or ""
        q_mod = row.get("modified_question") or q_orig
        return [
            StepExample(str(q_orig), original, [True] * len(original), group),
            StepExample(str(q_mod), modified, [i + 1 not in errors for i in range(len(modified))], group),
        ]
    if "completions" in row and "labels" in row:
        steps, labels = row["completions"], row["labels"]
        if not isinstance(steps, list) or not isinstance(labels, list) or len(steps) != len(labels) or not steps:
            raise ValueError(f"{where}: 'completions' and 'labels' must be non-empty lists of the same length")
        return [StepExample(_text(row.get("prompt", ""), f"{where}.prompt"), [str(s) for s in steps],
                            [bool(x) for x in labels], str(row.get("id", where)))]
    raise ValueError(
        f"{where}: not a step-labelled row: expected PRMBench (original_process, modified_process, "
        "error_steps) or TRL (prompt, completions, labels)"
    )


def first_error(labels: Sequence[bool | None]) -> int:
    """Index of the first wrong step, or -1 when no step is (ProcessBench convention); an unlabelled
    step (None) is not a wrong one."""
    return next((i for i, ok in enumerate(labels) if ok is not None and not ok), -1)


# ---- judge examples ----------------------------------------------------------------------------


@dataclass
class JudgeExample:
    prompt: str
    responses: list[str]
    verdict: str
    critique: str = ""
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def judge_example(row: dict[str, Any], where: str = "row") -> JudgeExample:
    if "verdict" not in row:
        raise ValueError(f"{where}: a judge row needs 'verdict' (and 'prompt', 'response' or 'responses')")
    if "responses" in row:
        responses = row["responses"]
        if not isinstance(responses, list) or len(responses) != 2:
            raise ValueError(f"{where}: 'responses' must be a list of two responses (pairwise)")
    elif "response" in row:
        responses = [row["response"]]
    else:
        raise ValueError(f"{where}: a judge row needs 'response' or 'responses'")
    from rewardsvc.types import text_of

    return JudgeExample(
        prompt=text_of(_text(row.get("prompt", ""), f"{where}.prompt")),
        responses=[text_of(_text(r, f"{where}.response")) for r in responses],
        verdict=str(row["verdict"]),
        critique=str(row.get("critique") or ""),
        reference=None if row.get("reference") is None else str(row["reference"]),
    )

