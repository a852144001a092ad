"""What every trainer adapter shares: references from dataset values, group ids, per-item checks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from rewardsvc.types import Item, Result, item_from_dict

DEFAULT_ADDRESS = "127.0.0.1:50051"

# Dataset columns tried, in order, as an item's reference when the adapter is not told one.
REFERENCE_COLUMNS = ("reference", "answer", "solution", "ground_truth", "label", "tests")


def plain(value: Any) -> Any:
    """numpy arrays and scalars (parquet-loaded datasets, veRL's non-tensor batch) as Python values."""
    if callable(getattr(value, "tolist", None)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_reference(value: Any) -> str | None:
    """A dataset value as an item's `reference`: text as is, structured values (code tests) as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, default=plain, ensure_ascii=False)


def stable_key(value: Any) -> str:
    """The same string for equal prompts (text or chat messages), whatever their key order."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=plain, sort_keys=True, ensure_ascii=False)


def group_ids(keys: Sequence[str], group_size: int | None = None) -> list[str]:
    """One group per run of equal consecutive keys (GRPO repeats each prompt once per generation,
    consecutively), cut every `group_size` items when given: the same prompt drawn twice in a row is
    then two groups, as the trainer sees them."""
    out: list[str] = []
    run = 0
    in_run = 0
    for i, key in enumerate(keys):
        if i == 0 or key != keys[i - 1] or (group_size is not None and in_run >= group_size):
            run += 1
            in_run = 0
        in_run += 1
        digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        out.append(f"{digest}-{run}")
    return out


def checked(dicts: Sequence[dict[str, Any]]) -> tuple[list[Item], list[int], dict[int, str]]:
    """Items that can be sent, their positions, and why each of the others can't (a bad message in
    one completion must not fail the trainer's whole batch)."""
    items: list[Item] = []
    where: list[int] = []
    bad: dict[int, str] = {}
    for i, d in enumerate(dicts):
        try:
            item = item_from_dict(d)
        except (ValueError, TypeError) as exc:
            bad[i] = f"invalid_item: {exc}"
            continue
        item.id = str(i)
        items.append(item)
        where.append(i)
    return items, where, bad


def outcome(result: Result | None, bad: str | None = None) -> str:
    """One word for a completion's fate: the scorer's verdict, 'scored', or 'error: <code>'."""
    if bad is not None:
        return "error: invalid_item"
    assert result is not None
    if result.error is not None:
        return f"error: {result.error.code.value}"
    verdict = result.details.get("verdict")
    return str(verdict) if verdict is not None else "scored"
