"""The data order: which examples go into each micro-batch of an epoch (a pure function of the seed,
so a resumed run sees the same batches)."""

from __future__ import annotations

import random
from collections.abc import Sequence


def make_batches(lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool) -> list[list[int]]:
    """Index batches for one epoch, a pure function of (lengths, seed).

    Length grouping as in HF's LengthGroupedSampler: shuffle, cut into mega-batches of 50 batches,
    sort each by length, cut into batches, shuffle the batch order (longest batch first so an
    out-of-memory shows at step 1).
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return _full_batches([order[i : i + batch_size] for i in range(0, len(order), batch_size)], batch_size)
    mega = batch_size * 50
    batches: list[list[int]] = []
    for m in range(0, len(order), mega):
        chunk = sorted(order[m : m + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    batches = _full_batches(batches, batch_size)
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
    first = batches.pop(longest)
    rng.shuffle(batches)
    return [first, *batches]


def _full_batches(batches: list[list[int]], batch_size: int) -> list[list[int]]:
    """Drop the one short batch (the epoch's remainder) unless it is all there is: a step on a
    handful of examples would be a noisy step at full learning rate."""
    full = [b for b in batches if len(b) == batch_size]
    return full or batches
