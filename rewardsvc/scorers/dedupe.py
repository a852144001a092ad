"""Identical work scored once: per-request deduplication and a bounded result cache.

A GRPO group of 8 rollouts often has two or three distinct final answers, code rollouts repeat
programs, and a judge sees the same rendered input twice. A scorer says what "the same work" is
with `Scorer.dedupe_key(item, options)` (math: extracted answer + reference; code: program + tests;
model scorers: the item's content); `score_unique` scores each distinct key once and gives every
item a copy of its key's result, so the results equal those of scoring every item.

`ResultCache` keeps results across requests, keyed by the scorer's name and config version, the
request's options and the dedupe key. Results of stochastic scorers and results the scorer calls
transient (errors, timeouts) are never kept.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from rewardsvc.scorers.base import Scorer
from rewardsvc.scorers.offload import text_work
from rewardsvc.types import Item, Result


@dataclass
class WorkStats:
    """What one call avoided: items answered with another item's result (same request) or from
    the cache, and items the cache did not have."""

    deduplicated: int = 0
    cache_hits: int = 0
    cache_misses: int = 0

    def add(self, other: WorkStats) -> None:
        self.deduplicated += other.deduplicated
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses


class ResultCache:
    """A bounded LRU map from work keys to results; `max_items` entries at most."""

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError(f"a result cache needs max_items >= 1, got {max_items}")
        self.max_items = max_items
        self._data: OrderedDict[Hashable, Result] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> Result | None:
        res = self._data.get(key)
        if res is not None:
            self._data.move_to_end(key)
        return res

    def put(self, key: Hashable, result: Result) -> None:
        self._data[key] = copy_result(result, result.id)
        self._data.move_to_end(key)
        while len(self._data) > self.max_items:
            self._data.popitem(last=False)
            self.evictions += 1


_FLAT = frozenset((str, int, float, bool, type(None)))  # exact types: a subclass may hold state


def copy_result(result: Result, item_id: str) -> Result:
    """An independent copy (callers and composites update `details` in place)."""
    details = result.details
    # Most details are flat (verdicts, answers, probabilities): a dict copy is as independent as a
    # deep one there, at a fraction of deepcopy's cost per copied item.
    flat = _FLAT.issuperset(map(type, details.values()))
    return Result(id=item_id, score=result.score, step_scores=list(result.step_scores),
                  details=dict(details) if flat else copy.deepcopy(details),
                  error=None if result.error is None else copy.copy(result.error))


def options_key(options: Any) -> str:
    """The request's options as canonical JSON (part of a cache key)."""
    data = options
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        # Options fields are JSON-like values: their own dict serialises as asdict's deep copy would.
        data = vars(options) if hasattr(options, "__dict__") else dataclasses.asdict(options)
    return json.dumps(data, sort_keys=True, default=repr)


_versions: weakref.WeakKeyDictionary[Scorer, str] = weakref.WeakKeyDictionary()


def config_version(scorer: Scorer) -> str:
    """A digest of the scorer's type and config: a changed stanza never reads old results. A scorer's
    config is fixed once it is made, so the digest is computed once per scorer (it was ~0.15 ms a request)."""
    try:
        version = _versions.get(scorer)
        if version is None:
            version = _versions[scorer] = _digest(scorer)
    except TypeError:  # a plug-in scorer that is unhashable or has no __weakref__ slot: digest each time
        version = _digest(scorer)
    return version


def _digest(scorer: Scorer) -> str:
    cfg = scorer.config
    is_instance = dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)
    data = dataclasses.asdict(cfg) if is_instance else repr(cfg)
    text = json.dumps([type(scorer).__module__, type(scorer).__qualname__, data], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _keys(scorer: Scorer, items: Sequence[Item], options: Any) -> list[Hashable | None]:
    out: list[Hashable | None] = []
    for item in items:
        try:
            out.append(scorer.dedupe_key(item, options))
        except Exception:  # a key that can't be computed only costs the saving, never the item
            out.append(None)
    return out


async def score_unique(scorer: Scorer, items: Sequence[Item], options: Any, dedupe: bool = True,
                       cache: ResultCache | None = None) -> tuple[list[Result], WorkStats]:
    """`scorer.score(items, options)`, with each distinct dedupe key scored once (when `dedupe`) and
    cacheable results read from / written to `cache`. One Result per item, in order."""
    stats = WorkStats()
    use_cache = cache is not None and not scorer.stochastic
    if not dedupe and not use_cache:
        return await scorer.score(items, options), stats
    # Keys read the items' text (the math scorer extracts answers): past a few pages, off the event
    # loop, so one large request can't stall the others.
    keys = await text_work(items, _keys, scorer, items, options)
    if all(k is None for k in keys):
        return await scorer.score(items, options), stats
    prefix = (scorer.name, config_version(scorer), options_key(options)) if use_cache else None
    results: list[Result | None] = [None] * len(items)
    todo: list[int] = []  # items sent to the scorer
    first: dict[Hashable, int] = {}  # key -> index of the item scored for it
    copies: list[tuple[int, int]] = []  # (item, the item whose result it copies)
    for i, key in enumerate(keys):
        if key is None:
            todo.append(i)
            continue
        if use_cache:
            assert cache is not None and prefix is not None
            hit = cache.get((prefix, key))
            if hit is not None:
                results[i] = copy_result(hit, items[i].id)
                stats.cache_hits += 1
                continue
        if dedupe and key in first:
            copies.append((i, first[key]))
            stats.deduplicated += 1
            continue
        first[key] = i
        todo.append(i)
        if use_cache:
            stats.cache_misses += 1
    if todo:
        scored = await scorer.score([items[i] for i in todo], options)
        if len(scored) != len(todo):
            raise RuntimeError(f"scorer returned {len(scored)} results for {len(todo)} items")
        for i, res in zip(todo, scored):
            res.id = items[i].id
            results[i] = res
            key = keys[i]
            if use_cache and key is not None and scorer.cacheable(res):
                assert cache is not None and prefix is not None
                cache.put((prefix, key), res)
    for i, j in copies:
        src = results[j]
        assert src is not None
        results[i] = copy_result(src, items[i].id)
    return [r for r in results if r is not None], stats
