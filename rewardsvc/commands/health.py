"""`rewardsvc health`: is the server (or one scorer) able to score; with --wait, block until it is.

The source is the server's standard gRPC health service: NOT_SERVING while it loads its scorers
and while it shuts down, SERVING once a Score call can be answered; each scorer has its own health
name (messages.health_service). Exit 0 = SERVING, 1 = not (yet), 2 = a usage error such as a
scorer the server does not host. Scripts use it like `kubectl wait` or grpc_health_probe.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

#: How long one health check may take; a fresh channel per try keeps gRPC's reconnect backoff
#: (up to 2 minutes) from hiding a server that came up.
CHECK_TIMEOUT_S = 5.0
POLL_S = 0.5


async def _check(args: argparse.Namespace, kwargs: dict, timeout_s: float) -> tuple[str | None, str, bool]:
    """(status, why, fatal) of one check on a fresh channel."""
    from rewardsvc.client import AsyncRewardClient, RewardServiceCallError

    async with AsyncRewardClient(args.address, **kwargs) as client:
        try:
            status = await client.check_health(args.scorer, timeout_s=timeout_s)
        except RewardServiceCallError as exc:
            if exc.code.name == "NOT_FOUND" and args.scorer:
                return None, (f"the server at {args.address} hosts no scorer {args.scorer!r} "
                              f"(`rewardsvc scorers --address {args.address}` lists them)"), True
            return None, f"{exc.code.name}: {exc.details}", False
    if status == "NOT_SERVING":
        return status, "NOT_SERVING (loading its scorers, or shutting down)", False
    return status, status, False


async def _wait(args: argparse.Namespace) -> int:
    from rewardsvc.commands.connection import client_kwargs

    kwargs = client_kwargs(args)
    what = f"{args.address}" + (f" scorer {args.scorer!r}" if args.scorer else "")
    wait = max(0.0, args.wait or 0.0)
    deadline = time.monotonic() + wait
    while True:
        remaining = deadline - time.monotonic()
        status, why, fatal = await _check(args, kwargs, max(0.1, min(CHECK_TIMEOUT_S, remaining)) if wait
                                          else CHECK_TIMEOUT_S)
        if status == "SERVING":
            print(f"{what}: SERVING")
            return 0
        if fatal:
            print(f"rewardsvc health: error: {why}", file=sys.stderr)
            return 2
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(POLL_S, remaining))
    after = f" after waiting {wait:g}s" if wait else " (use --wait SECONDS to wait for it)"
    print(f"rewardsvc health: {what} is not SERVING{after}; last answer: {why}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    if not args.address:
        raise ValueError("health needs --address host:port (the server to ask)")
    if args.wait is not None and args.wait < 0:
        raise ValueError("--wait must be >= 0 seconds")
    return asyncio.run(_wait(args))


def add_arguments(s: argparse.ArgumentParser) -> None:
    from rewardsvc.commands.connection import add_connection_args

    add_connection_args(s, "server address host:port (required)")
    s.add_argument("--wait", type=float, metavar="SECONDS",
                   help="keep checking until SERVING or this many seconds have passed (default: check once)")
    s.add_argument("--scorer", help="ask about this scorer (default: the whole server)")
