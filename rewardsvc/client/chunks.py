"""Cutting a batch into requests without cutting a group.

A group (items sharing `group_id`: one GRPO prompt's completions) must reach the server in one
request, or per-group scorers (`zscore`, `shaping` with `center: group`) and prefix sharing see
part of it. So the unit of chunking is the group; items without a group are units of one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rewardsvc.types import Item

# The server's refusal of an oversized request names its limit (service.py, LimitExceededError).
_SIZE_LIMIT = re.compile(r"max_items_per_request\)? is (\d+)")


def units(items: Sequence[Item]) -> list[list[int]]:
    """Indices of `items` as units that stay together: each group in the order it first appears
    (its items in input order), each ungrouped item alone."""
    out: list[list[int]] = []
    where: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.group_id is None:
            out.append([i])
        elif item.group_id in where:
            out[where[item.group_id]].append(i)
        else:
            where[item.group_id] = len(out)
            out.append([i])
    return out


def pack(unit_list: Sequence[list[int]], limit: int) -> list[list[int]]:
    """Whole units packed in order into chunks of at most `limit` items; a unit larger than
    `limit` is a chunk of its own (the caller decides whether the server can take it)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    for unit in unit_list:
        if current and len(current) + len(unit) > limit:
            chunks.append(current)
            current = []
        current = current + unit
    if current:
        chunks.append(current)
    return chunks


def refused_size(details: str) -> int | None:
    """The server's max_items_per_request when `details` is its refusal of a request's size."""
    m = _SIZE_LIMIT.search(details)
    return int(m.group(1)) if m else None


def too_big_message(details: str) -> bool:
    """gRPC's own refusal of a message over max_message_bytes (either side's limit)."""
    return "larger than max" in details
