"""`rewardsvc score`: JSONL items in, JSONL results out, streamed in chunks.

Lines are read, scored and written a chunk at a time with at most `concurrency` chunks in flight, so
a 1 GB input needs the memory of a few chunks, not of the file. Results come out in input order,
one per non-blank line: a line that is not a valid item gets an `invalid_item` result carrying the
item's own `id` whenever the line parsed as a JSON object with one (else its line number).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

from rewardsvc.config import Config
from rewardsvc.errors import UnknownScorerError
from rewardsvc.progress import Progress, progress_bar
from rewardsvc.types import ErrorCode, Item, Result, item_from_dict

ScoreCall = Callable[[list[Item]], Awaitable[list[Result]]]


class ScoreFailed(RuntimeError):
    """A request failed; results of the lines before its chunk are already written."""


def parse_line(n: int, raw: bytes) -> Item | Result | None:
    """Line `n` (1-based) as an Item, an INVALID_ITEM Result, or None when blank."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Result.failed(f"line-{n}", ErrorCode.INVALID_ITEM, f"line {n}: not UTF-8 ({exc})")
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except ValueError as exc:
        return Result.failed(f"line-{n}", ErrorCode.INVALID_ITEM, f"line {n}: not JSON ({exc})")
    # The caller matches results to items by id: keep the item's own id even when the item is invalid.
    if isinstance(data, dict):
        item_id = str(data["id"]) if "id" in data else str(n)  # as a valid item without an id
    else:
        item_id = f"line-{n}"
    try:
        item = item_from_dict(data)
    except (ValueError, TypeError) as exc:
        return Result.failed(item_id, ErrorCode.INVALID_ITEM, f"line {n}: {exc}")
    item.id = item_id
    return item


@dataclass
class Chunk:
    first_line: int
    entries: list[Item | Result]  # input order; Results are the lines that failed to parse
    nbytes: int


def read_chunks(stream: BinaryIO, size: int) -> Iterator[Chunk]:
    """Chunks of up to `size` non-blank lines."""
    entries: list[Item | Result] = []
    first, nbytes = 1, 0
    n = 0
    for n, raw in enumerate(stream, 1):
        nbytes += len(raw)
        entry = parse_line(n, raw)
        if entry is not None:
            entries.append(entry)
        if len(entries) >= size:
            yield Chunk(first, entries, nbytes)
            entries, first, nbytes = [], n + 1, 0
    if entries or nbytes:
        yield Chunk(first, entries, nbytes)


async def score_chunk(call: ScoreCall, chunk: Chunk) -> list[Result]:
    items = [e for e in chunk.entries if isinstance(e, Item)]
    scored = iter(await call(items) if items else [])
    return [e if isinstance(e, Result) else next(scored) for e in chunk.entries]


@dataclass
class Totals:
    lines: int = 0
    items: int = 0
    errors: int = 0


def failure_message(exc: BaseException, line: int, written: int, address: str | None) -> str:
    code = getattr(getattr(exc, "code", None), "name", "")
    msg = f"scoring from line {line} on failed: {exc}"
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and address:
        msg += (f"; is the server at {address} up and able to score? (`rewardsvc health --address {address} "
                "--wait 60` waits for it; --timeout gives each request longer)")
    elif code == "UNAUTHENTICATED":
        msg += "; pass the server's token with --token-file or $REWARDSVC_AUTH_TOKEN"
    if written:
        msg += f" ({written} results before it were written)"
    return msg


async def stream_scores(chunks: Iterator[Chunk], call: ScoreCall, out: TextIO, concurrency: int,
                        bar: Progress, address: str | None = None) -> Totals:
    """Score chunk by chunk, `concurrency` at a time, writing results in input order as they are ready.

    Reading happens in a thread, so a slow producer on stdin never stalls the calls in flight.
    """
    totals = Totals()
    pending: collections.deque[tuple[Chunk, asyncio.Task[list[Result]]]] = collections.deque()
    end = object()

    def write(chunk: Chunk, results: list[Result]) -> None:
        for r in results:
            out.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        out.flush()
        totals.lines += len(results)
        totals.items += sum(1 for e in chunk.entries if isinstance(e, Item))
        totals.errors += sum(1 for r in results if r.error is not None)
        bar.set_postfix(results=totals.lines, errors=totals.errors, refresh=False)
        bar.update(chunk.nbytes)

    async def drain_one() -> None:
        chunk, task = pending.popleft()
        try:
            results = await task
        except Exception as exc:
            raise ScoreFailed(failure_message(exc, chunk.first_line, totals.lines, address)) from exc
        write(chunk, results)

    try:
        while True:
            chunk = await asyncio.to_thread(next, chunks, end)
            if chunk is end:
                break
            assert isinstance(chunk, Chunk)
            pending.append((chunk, asyncio.create_task(score_chunk(call, chunk))))
            while len(pending) >= concurrency:
                await drain_one()
        while pending:
            await drain_one()
    finally:
        for _, task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*(t for _, t in pending), return_exceptions=True)
    return totals


def config_for_scorer(config: Config, scorer: str) -> Config:
    """`config` cut down to `scorer` and the scorers it uses (`Scorer.uses()`, transitively), so
    in-process scoring loads only the models it needs."""
    import dataclasses

    from rewardsvc.registry import uses_closure

    hosted = [s.name for s in config.scorers]
    if scorer not in hosted:
        raise UnknownScorerError(f"no scorer named {scorer!r} in {config.source}; it has {hosted}")
    keep = set(uses_closure(config.scorers, [scorer]))
    return dataclasses.replace(config, scorers=[s for s in config.scorers if s.name in keep])


def _open_input(path: str | None) -> BinaryIO:
    return open(path, "rb") if path not in (None, "-") else sys.stdin.buffer


def _open_output(path: str | None) -> TextIO:
    return open(path, "w", encoding="utf-8") if path not in (None, "-") else sys.stdout


def run(args: argparse.Namespace) -> int:
    options: dict[str, Any] = json.loads(args.options) if args.options else {}
    if not isinstance(options, dict):
        raise ValueError("--options must be a JSON object, e.g. '{\"all_or_nothing\": true}'")
    if args.batch_size < 1 or args.concurrency < 1:
        raise ValueError("--batch-size and --concurrency must be at least 1")
    src = _open_input(args.input)
    size = os.fstat(src.fileno()).st_size if args.input not in (None, "-") else 0
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    target = args.address or "in-process"
    bar = progress_bar(size or None, f"{args.scorer}@{target}", unit="B", unit_scale=True, enabled=show)
    out = _open_output(args.output)
    try:
        chunks = read_chunks(src, args.batch_size)
        totals = asyncio.run(_score(args, options, chunks, out, bar))
    finally:
        bar.close()
        for f in (src, out):  # stdin and stdout stay open for the caller
            if f not in (sys.stdin.buffer, sys.stdout):
                f.close()
    if show:
        print(f"rewardsvc score: {totals.lines} results ({totals.items} items scored, {totals.errors} with "
              "errors)", file=sys.stderr)
    return 0


async def _score(args: argparse.Namespace, options: dict[str, Any], chunks: Iterator[Chunk], out: TextIO,
                 bar: Progress) -> Totals:
    if args.address:
        from rewardsvc.client import AsyncRewardClient
        from rewardsvc.commands.connection import client_kwargs

        async with AsyncRewardClient(args.address, timeout_s=args.timeout, chunk_size=args.batch_size,
                                     **client_kwargs(args)) as client:
            async def call(items: Sequence[Item]) -> list[Result]:
                return await client.score(args.scorer, list(items), options=options)

            return await stream_scores(chunks, call, out, args.concurrency, bar, args.address)
    from rewardsvc.config import load_config
    from rewardsvc.service import ScoringService

    config = config_for_scorer(load_config(args.config), args.scorer)
    async with ScoringService(config) as service:
        service.parse_options(service.get(args.scorer), options)  # bad options fail before any scoring
        limit = config.server.max_items_per_request

        async def local(items: Sequence[Item]) -> list[Result]:
            out: list[Result] = []
            for i in range(0, len(items), limit):
                out += await service.score(args.scorer, items[i : i + limit], options)
            return out

        return await stream_scores(chunks, local, out, args.concurrency, bar)


def add_arguments(s: argparse.ArgumentParser) -> None:
    from rewardsvc.commands.connection import add_connection_args

    s.add_argument("--scorer", required=True, help="scorer name (see `rewardsvc scorers`)")
    add_connection_args(s, "server address host:port; without it, score in-process with --config")
    s.add_argument("--config", help="config for in-process scoring (default: built-in); only --scorer and the "
                   "scorers it uses are loaded")
    s.add_argument("--input", help="items JSONL (default: stdin)")
    s.add_argument("--output", help="results JSONL (default: stdout)")
    s.add_argument("--options", help='per-request options as JSON, e.g. \'{"all_or_nothing": true}\'')
    s.add_argument("--timeout", type=float, default=600.0,
                   help="with --address: seconds each request may take, connecting and retries included "
                        "(default 600); a server that can't be reached fails the command within it")
    s.add_argument("--batch-size", type=int, default=256, help="items per request (default 256)")
    s.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress on stderr (default: when stderr is a terminal)")
