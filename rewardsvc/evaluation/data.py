"""Loaders for evaluation data from local files: RewardBench, HH-RLHF, best-of-N, PRMBench, ProcessBench.

Every loader reads JSONL (optionally gzipped) or a JSON list and returns plain rows for one suite;
each row keeps its `subset` and the Item fields (reference, steps, metadata, group_id) that go to
the scorer with every response built from it. Bad rows raise ValueError naming file and line, or,
with a `skipped` list, are listed there and left out.
"""

from __future__ import annotations

import ast
import contextlib
import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Text as a data file holds it: a string, or chat messages as {"role", "content"} dicts (they become
#: rewardsvc.types.Message when the Item is built, which checks them).
RowText = str | list[dict[str, Any]]

#: Item fields a data row may carry for the scorer besides prompt and response.
EXTRA_ITEM_FIELDS = ("reference", "steps", "group_id", "metadata")

_TIES_ID = re.compile(r"^(ref|tied):(.+)$")


@dataclass
class PairRow:
    """A preference pair (RewardBench v1 / HH-RLHF)."""

    id: str
    subset: str
    prompt: RowText
    chosen: RowText
    rejected: RowText
    rejected_prompt: RowText | None = None  # only when the rejected side has a context of its own
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CandidateRow:
    """One prompt with correct (`chosen`) and incorrect (`rejected`) completions (RewardBench 2, BoN)."""

    id: str
    subset: str
    prompt: RowText
    chosen: list[RowText]
    rejected: list[RowText]
    extra: dict[str, Any] = field(default_factory=dict)
    ties_key: tuple[str, str] | None = None  # ("ref" | "tied", prompt id) for the Ties subset


@dataclass
class StepRow:
    """A step-by-step solution with step labels (True = correct step)."""

    id: str
    subset: str
    prompt: RowText
    steps: list[str]
    labels: list[bool]
    erroneous_source: bool = False  # a PRMBench modified_process
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LabelledRow:
    """A response with a correctness label (verifier suite) or a genuine control (hacking suite)."""

    id: str
    subset: str
    prompt: RowText
    response: RowText
    label: bool
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptRow:
    """A prompt (with its reference) that master-key probes are sent against."""

    id: str
    subset: str
    prompt: RowText
    extra: dict[str, Any] = field(default_factory=dict)
    control: LabelledRow | None = None


# ---- reading -----------------------------------------------------------------------------------


def read_rows(path: str | Path, limit: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for the records of a .jsonl/.json file (the first `limit` of them), gzipped or
    not; `where` is "file:line"."""
    for n, got in enumerate(_read_rows(path)):
        if limit is not None and n >= limit:
            return
        yield got


def _read_rows(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rt", encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read data file {p}: {exc}") from None
    stem = p.name.split(".")[0]
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not valid JSON: {exc}") from None
        for i, row in enumerate(rows, 1):
            yield _checked(row, f"{stem}:{i}")
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}:{n}: not valid JSON: {exc}") from None
        yield _checked(row, f"{stem}:{n}")


def _checked(row: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: each record must be a JSON object, got {type(row).__name__}")
    return where, row


def default_subset(path: str | Path) -> str:
    """A file's rows without a `subset` field take the file name without extensions."""
    return Path(path).name.split(".")[0]


def _text(value: Any, where: str) -> RowText:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
        return value  # chat messages; validated again when the Item is built
    raise ValueError(f"{where}: expected text or a list of chat messages, got {type(value).__name__}")


def _texts(value: Any, where: str) -> list[RowText]:
    """A list of completions; a single string or one chat conversation is a list of one."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(m, dict) and "content" in m for m in value):
            return [value]
        return [_text(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where}: expected a completion or a list of completions, got {type(value).__name__}")


def _list_field(value: Any) -> Any:
    """Some data sets store lists as their Python repr ("['a', 'b']"); read those back."""
    if isinstance(value, str) and value.startswith("["):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _extra(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in EXTRA_ITEM_FIELDS if row.get(k) is not None}


def _row_id(row: dict[str, Any], where: str) -> str:
    for key in ("id", "idx", "unique_id"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return where


@contextlib.contextmanager
def _guard(skipped: list[str] | None) -> Iterator[None]:
    """A row that fails to load raises, or with a `skipped` list is noted there and left out
    (public data sets have a few inconsistent rows; one must not sink a whole evaluation)."""
    try:
        yield
    except ValueError as exc:
        if skipped is None:
            raise
        skipped.append(str(exc))


# ---- pairs ---------------------------------------------------------------------------------------


def load_pairs(path: str | Path, subset: str | None = None, limit: int | None = None,
               skipped: list[str] | None = None) -> list[PairRow]:
    """RewardBench rows (prompt, chosen, rejected, subset) or HH-RLHF dialogue pairs (chosen,
    rejected), where the prompt is the dialogue up to the last "\\n\\nAssistant:"."""
    from rewardsvc.scorers.render import hh_prompt_response

    out: list[PairRow] = []
    fallback = subset or default_subset(path)
    for where, row in read_rows(path, limit):
        with _guard(skipped):
            if "chosen" not in row or "rejected" not in row:
                raise ValueError(f"{where}: a pair needs 'chosen' and 'rejected' "
                                 "(and 'prompt' unless an HH-RLHF dialogue)")
            sub = subset or str(row.get("subset") or fallback)
            rid = _row_id(row, where)
            if "prompt" in row:
                out.append(PairRow(rid, sub, _text(row["prompt"], f"{where}.prompt"),
                                   _text(row["chosen"], f"{where}.chosen"),
                                   _text(row["rejected"], f"{where}.rejected"), extra=_extra(row)))
                continue
            if not (isinstance(row["chosen"], str) and row["chosen"].startswith("\n\nHuman:")):
                raise ValueError(f"{where}: no 'prompt' and not an HH-RLHF dialogue (\"\\n\\nHuman: ...\")")
            try:
                p_c, chosen = hh_prompt_response(row["chosen"])
                p_r, rejected = hh_prompt_response(row["rejected"])
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            prompt = [{"role": m.role, "content": m.content} for m in p_c]
            rejected_prompt = None if p_r == p_c else [{"role": m.role, "content": m.content} for m in p_r]
            out.append(PairRow(rid, sub, prompt, chosen, rejected, rejected_prompt, extra=_extra(row)))
    return out


# ---- best-of-N -----------------------------------------------------------------------------------

#: GSM8K model-solution columns (grade-school-math's example_model_solutions).
GSM8K_SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def gsm8k_answer(ground_truth: str) -> str:
    """The final answer of a GSM8K solution: after the last "####" or the last "A:" line."""
    if "####" in ground_truth:
        return ground_truth.rsplit("####", 1)[1].strip().split("\n")[0].strip()
    for line in reversed(ground_truth.strip().splitlines()):
        if line.strip().startswith("A:"):
            return line.strip()[2:].strip()
    raise ValueError("no final answer ('#### N' or 'A: N') in the GSM8K solution")


def candidate_row(row: dict[str, Any], where: str, subset: str | None, fallback: str) -> CandidateRow:
    """One best-of-N row from any of the supported layouts:

    - {prompt, chosen: [...], rejected: [...], subset, reference?, ...}  (RewardBench 2 style)
    - a MATH best-of-N row {question, response|code: [...], score: [bool...], answer|gt}
      (Qwen2.5-Math's eval_rm_maj_example: the MATH-500 BoN-8 fixture)
    - a GSM8K model-solutions row {question, ground_truth, 6b_finetuning: {solution, is_correct}, ...}
    """
    rid = _row_id(row, where)
    sub = subset or str(row.get("subset") or fallback)
    if "chosen" in row and "rejected" in row:
        prompt = _text(row.get("prompt", ""), f"{where}.prompt")
        chosen = _texts(row["chosen"], f"{where}.chosen")
        rejected = _texts(row["rejected"], f"{where}.rejected")
        extra = _extra(row)
    elif "score" in row and ("response" in row or "code" in row) and "question" in row:
        responses = _list_field(row.get("response") or row.get("code"))
        labels = _list_field(row["score"])
        if not isinstance(responses, list) or not isinstance(labels, list) or len(responses) != len(labels):
            raise ValueError(f"{where}: 'response' and 'score' must be lists of the same length")
        prompt = str(row["question"])
        chosen = [str(r) for r, ok in zip(responses, labels) if ok]
        rejected = [str(r) for r, ok in zip(responses, labels) if not ok]
        answer = row.get("answer") or row.get("gt")
        if answer is None:
            raise ValueError(f"{where}: a MATH best-of-N row needs 'answer' (or 'gt')")
        extra = {"reference": str(answer)}
    elif "ground_truth" in row and "question" in row and any(k in row for k in GSM8K_SOLUTION_KEYS):
        prompt = str(row["question"])
        chosen, rejected = [], []
        for k in GSM8K_SOLUTION_KEYS:
            sol = row.get(k)
            if isinstance(sol, dict) and isinstance(sol.get("solution"), str):
                (chosen if sol.get("is_correct") else rejected).append(sol["solution"])
        try:
            extra = {"reference": gsm8k_answer(str(row["ground_truth"]))}
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    else:
        raise ValueError(
            f"{where}: not a best-of-N row: expected {{prompt, chosen: [...], rejected: [...]}}, a MATH "
            "best-of-N row {question, response: [...], score: [...], answer} or a GSM8K model-solutions row"
        )
    if not chosen and not rejected:
        raise ValueError(f"{where}: no completions")
    ties_key = None
    if sub.lower() == "ties":
        m = _TIES_ID.match(rid)
        if not m:
            raise ValueError(f"{where}: Ties rows need an id 'ref:N' or 'tied:N' (RewardBench 2 format), got {rid!r}")
        ties_key = (m.group(1), m.group(2))
    return CandidateRow(rid, sub, prompt, chosen, rejected, extra, ties_key)


def load_candidates(path: str | Path, subset: str | None = None, limit: int | None = None,
                    skipped: list[str] | None = None) -> list[CandidateRow]:
    out: list[CandidateRow] = []
    fallback = default_subset(path)
    for where, row in read_rows(path, limit):
        with _guard(skipped):
            out.append(candidate_row(row, where, subset, fallback))
    return out


# ---- steps ---------------------------------------------------------------------------------------


def _steps(value: Any, where: str) -> list[str]:
    value = _list_field(value)
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise ValueError(f"{where}: steps must be a non-empty list of strings")
    return list(value)


def load_steps(path: str | Path, subset: str | None = None, limit: int | None = None,
               skipped: list[str] | None = None) -> list[StepRow]:
    """PRMBench rows (original_process all correct; modified_process wrong at the 1-indexed
    error_steps; an original shared by several rows is kept once), ProcessBench rows
    {problem, steps, label = first wrong step or -1} and TRL rows {prompt, completions, labels}."""
    out: list[StepRow] = []
    seen_originals: set[tuple[str, tuple[str, ...]]] = set()
    fallback = default_subset(path)
    for where, row in read_rows(path, limit):
        with _guard(skipped):
            rid = _row_id(row, where)
            if "original_process" in row and "modified_process" in row:
                original = _steps(row["original_process"], f"{where}.original_process")
                modified = _steps(row["modified_process"], f"{where}.modified_process")
                errors = {int(e) for e in _list_field(row.get("error_steps")) or []}
                if not errors or min(errors) < 1 or max(errors) > len(modified):
                    raise ValueError(
                        f"{where}: error_steps {sorted(errors)} must be 1-indexed steps of modified_process")
                q_orig = str(row.get("original_question") or row.get("question") or "")
                q_mod = str(row.get("modified_question") or q_orig)
                key = (q_orig, tuple(original))
                if key not in seen_originals:
                    seen_originals.add(key)
                    out.append(StepRow(f"{rid}:original", "correct", q_orig, original, [True] * len(original)))
                sub = subset or str(row.get("classification") or fallback)
                # PRMBench reuses a problem's idx in every error category.
                out.append(StepRow(f"{rid}:{row.get('classification') or 'modified'}", sub, q_mod, modified,
                                   [i + 1 not in errors for i in range(len(modified))], erroneous_source=True))
            elif "steps" in row and "label" in row:
                steps = _steps(row["steps"], f"{where}.steps")
                first = int(row["label"])
                if not -1 <= first < len(steps):
                    raise ValueError(f"{where}: label {first} is not -1 or a step index below {len(steps)}")
                # ProcessBench labels only the first error; the steps after it count as wrong too.
                labels = [True] * len(steps) if first == -1 else [i < first for i in range(len(steps))]
                prompt = row.get("problem", row.get("prompt", ""))
                out.append(StepRow(rid, subset or str(row.get("subset") or fallback),
                                   _text(prompt, f"{where}.problem"),
                                   steps, labels, extra=_extra({k: v for k, v in row.items() if k != "steps"})))
            elif "completions" in row and "labels" in row:
                steps = _steps(row["completions"], f"{where}.completions")
                labels = row["labels"]
                if not isinstance(labels, list) or len(labels) != len(steps):
                    raise ValueError(f"{where}: 'labels' must be a list as long as 'completions'")
                out.append(StepRow(rid, subset or str(row.get("subset") or fallback),
                                   _text(row.get("prompt", ""), f"{where}.prompt"), steps, [bool(x) for x in labels]))
            else:
                raise ValueError(
                    f"{where}: not a step-labelled row: expected PRMBench (original_process, modified_process, "
                    "error_steps), ProcessBench (problem, steps, label) or TRL (prompt, completions, labels)"
                )
    return out


# ---- verifier and hacking -----------------------------------------------------------------------


def load_labelled(path: str | Path, subset: str | None = None, limit: int | None = None,
                  skipped: list[str] | None = None) -> list[LabelledRow]:
    """Rows {prompt, response, label (bool or 0/1), reference?, ...}; any best-of-N row is
    flattened into its completions (chosen = correct, rejected = incorrect)."""
    out: list[LabelledRow] = []
    fallback = default_subset(path)
    for where, row in read_rows(path, limit):
        with _guard(skipped):
            if "label" in row and (isinstance(row.get("response"), str) or _is_messages(row.get("response"))):
                label = row["label"]
                if not isinstance(label, bool | int) or (isinstance(label, int) and label not in (0, 1)):
                    raise ValueError(f"{where}: 'label' must be true/false or 1/0, got {label!r}")
                out.append(LabelledRow(_row_id(row, where), subset or str(row.get("subset") or fallback),
                                       _text(row.get("prompt", ""), f"{where}.prompt"),
                                       _text(row["response"], f"{where}.response"), bool(label), _extra(row)))
                continue
            cand = candidate_row(row, where, subset, fallback)
            for j, resp in enumerate(cand.chosen):
                out.append(LabelledRow(f"{cand.id}:c{j}", cand.subset, cand.prompt, resp, True, cand.extra))
            for j, resp in enumerate(cand.rejected):
                out.append(LabelledRow(f"{cand.id}:r{j}", cand.subset, cand.prompt, resp, False, cand.extra))
    return out


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "content" in m for m in value)


def load_prompts(path: str | Path, subset: str | None = None, limit: int | None = None,
                 skipped: list[str] | None = None) -> list[PromptRow]:
    """Hacking-suite prompts: {prompt, reference, response?, label?, ...}; MATH rows
    {problem, answer, solution} work as they are (the solution becomes a genuine control)."""
    out: list[PromptRow] = []
    fallback = default_subset(path)
    for where, row in read_rows(path, limit):
        with _guard(skipped):
            rid = _row_id(row, where)
            sub = subset or str(row.get("subset") or fallback)
            if "prompt" in row:
                prompt = _text(row["prompt"], f"{where}.prompt")
                extra = _extra(row)
                control_text = row.get("response")
            elif "problem" in row or "question" in row:
                prompt = str(row.get("problem") or row.get("question"))
                reference = row.get("reference") or row.get("answer")
                extra = {"reference": str(reference)} if reference is not None else {}
                control_text = row.get("response") or row.get("solution")
            else:
                raise ValueError(f"{where}: a hacking row needs 'prompt' (or 'problem') and usually 'reference'")
            control = None
            if control_text:
                control = LabelledRow(f"{rid}:control", sub, prompt, _text(control_text, f"{where}.response"),
                                      bool(row.get("label", True)), extra)
            out.append(PromptRow(rid, sub, prompt, extra, control))
    return out


def load_probes(path: str | Path) -> list[str]:
    """Master-key probes from a file: JSONL {"probe": "..."} or a JSON list of strings."""
    probes: list[str] = []
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise ValueError(f"{p}: a JSON probe file must be a list of strings")
        return data
    for where, row in read_rows(p):
        if not isinstance(row.get("probe"), str):
            raise ValueError(f"{where}: each probe row needs a string 'probe'")
        probes.append(row["probe"])
    return probes


def unique_ids(rows: list[Any]) -> None:
    """Make row ids unique in place (`id#2`, `id#3`, ...): item ids derive from them, and results
    are matched to rows by id in results.jsonl. Data sets reuse ids across files and subsets."""
    taken: set[str] = set()
    for r in rows:
        if r.id in taken:
            base, k = r.id, 2
            while f"{base}#{k}" in taken:
                k += 1
            r.id = f"{base}#{k}"
        taken.add(r.id)
