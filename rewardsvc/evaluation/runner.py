"""Scores evaluation items through the production path: a remote server, or ScoringService in-process.

Items go out in chunks, a few at a time, with a tqdm progress bar. A chunk whose request fails
(server gone, deadline, overload) becomes per-item errors, so one bad chunk costs only its items;
an unknown scorer or bad options stop the run before any scoring.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rewardsvc.config import DEFAULT_CONFIG_PATH, Config, parse_config
from rewardsvc.errors import ConfigError, InvalidOptionsError, UnknownScorerError
from rewardsvc.types import ErrorCode, Item, Result


@dataclass
class ScoringRun:
    """The results of one evaluation's scoring, in item order, and how it went."""

    results: list[Result]
    seconds: float
    target: str
    errors_by_code: dict[str, int] = field(default_factory=dict)

    @property
    def n_errors(self) -> int:
        return sum(self.errors_by_code.values())


def _names_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_names_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_names_in(v) for v in value)) if value else set()
    return set()


def config_for(scorer: str, path: str | Path | None) -> Config:
    """The config at `path` (or the built-in default) cut down to `scorer` and the scorers it
    names (composites), so an evaluation loads only the models it needs."""
    p = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    scorers = (data.get("scorers") or {}) if isinstance(data, dict) else {}
    if scorer not in scorers:
        raise UnknownScorerError(f"no scorer named {scorer!r} in {p}; it has {sorted(scorers)}")
    keep, todo = set(), [scorer]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        todo.extend(n for n in _names_in(scorers[name]) if n in scorers and n not in keep)
    data = {**data, "scorers": {k: v for k, v in scorers.items() if k in keep}}
    return parse_config(data, str(p))


def _failed(items: Sequence[Item], exc: BaseException) -> list[Result]:
    msg = f"request failed: {type(exc).__name__}: {exc}"
    return [Result.failed(it.id, ErrorCode.INTERNAL, msg) for it in items]


async def _score_chunks(
    call: Any, items: Sequence[Item], batch_size: int, concurrency: int, progress: bool, desc: str
) -> list[Result]:
    from tqdm import tqdm

    chunks = [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    out: list[list[Result]] = [[] for _ in chunks]
    gate = asyncio.Semaphore(max(1, concurrency))
    errors = 0
    bar = tqdm(total=len(items), desc=desc, unit="item", disable=not progress, file=sys.stderr, dynamic_ncols=True)

    async def one(k: int) -> None:
        nonlocal errors
        async with gate:
            try:
                res = await call(chunks[k])
            except (UnknownScorerError, InvalidOptionsError):
                raise
            except Exception as exc:  # a failed request costs its chunk, not the run
                if _fatal(exc):
                    raise
                res = _failed(chunks[k], exc)
        if len(res) != len(chunks[k]):
            res = _failed(chunks[k], RuntimeError(f"{len(res)} results for {len(chunks[k])} items"))
        out[k] = res
        errors += sum(1 for r in res if not r.ok)
        bar.update(len(res))
        bar.set_postfix(errors=errors, refresh=False)

    try:
        await asyncio.gather(*(one(k) for k in range(len(chunks))))
    finally:
        bar.close()
    return [r for part in out for r in part]


def _fatal(exc: BaseException) -> bool:
    """Request errors that would fail every chunk the same way (caller errors, not load or faults)."""
    from rewardsvc.client import RewardServiceCallError

    if isinstance(exc, RewardServiceCallError):
        return exc.code.name in ("NOT_FOUND", "INVALID_ARGUMENT", "UNIMPLEMENTED", "UNAUTHENTICATED",
                                 "PERMISSION_DENIED", "FAILED_PRECONDITION")
    return isinstance(exc, ConfigError)


async def score_items(
    scorer: str,
    items: Sequence[Item],
    *,
    options: dict[str, Any] | None = None,
    address: str | None = None,
    config: str | Path | None = None,
    batch_size: int = 64,
    concurrency: int = 4,
    progress: bool = True,
    timeout_s: float | None = 600.0,
    client_options: dict[str, Any] | None = None,
) -> ScoringRun:
    """Score `items` with `scorer`: remotely when `address` is given (`client_options`: the
    client's token and TLS arguments), else in-process with `config`."""
    opts = dict(options or {})
    t0 = time.perf_counter()
    if address:
        from rewardsvc.client import AsyncRewardClient

        async with AsyncRewardClient(address, timeout_s=timeout_s, chunk_size=batch_size,
                                     **(client_options or {})) as client:
            names = [s["name"] for s in await client.list_scorers()]
            if scorer not in names:
                raise UnknownScorerError(
                    f"the server at {address} has no scorer {scorer!r}; it hosts {sorted(names)}")

            async def call(chunk: list[Item]) -> list[Result]:
                # a scorer's timeout_s is an option, not the deadline
                return await client.score(scorer, chunk, options=opts)

            results = await _score_chunks(call, items, batch_size, concurrency, progress, f"{scorer}@{address}")
        target = f"remote {address}"
    else:
        from rewardsvc.service import ScoringService

        cfg = config_for(scorer, config)
        async with ScoringService(cfg) as service:
            service.parse_options(service.get(scorer), opts)  # bad options fail here, before scoring

            async def call(chunk: list[Item]) -> list[Result]:
                return await service.score(scorer, chunk, opts)

            results = await _score_chunks(call, items, batch_size, concurrency, progress, f"{scorer} (in-process)")
        target = f"in-process ({cfg.source})"
    errors: dict[str, int] = {}
    for r in results:
        if r.error is not None:
            errors[r.error.code.value] = errors.get(r.error.code.value, 0) + 1
    return ScoringRun(results, time.perf_counter() - t0, target, errors)
