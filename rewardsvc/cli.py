"""`rewardsvc` command line: serve, score, scorers, train, eval."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from rewardsvc.config import Config, load_config
from rewardsvc.errors import RewardServiceError
from rewardsvc.heap import skip_gc_at_exit


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if getattr(args, "host", None):
        config.server.host = args.host
    if getattr(args, "port", None) is not None:
        config.server.port = args.port
    for name in ("metrics_port", "http_port"):  # serve --metrics-port / --http-port; "off" disables
        value = getattr(args, name, None)
        if value is not None:
            setattr(config.server, name, None if value == "off" else int(value))
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    from rewardsvc.logs import setup_logging
    from rewardsvc.server import serve

    config = _load(args)
    setup_logging(config.server.log_format, args.verbose)
    if getattr(args, "ray", False):
        from rewardsvc.rayserve.cli import serve_on_ray

        return serve_on_ray(config, args.ray_address)
    async def serve_then_exit() -> None:
        await serve(config)
        _exit_despite_stuck_threads(STUCK_THREAD_WAIT_S)

    asyncio.run(serve_then_exit())
    return 0


# After the drain, how long compute threads may take to finish before the process exits without them. The
# drain has answered every call by then (or its scorer_timeout_s has), so a thread still busy computes a
# result no caller will read: a few seconds let a batch that is nearly done end with a normal exit, and the
# pod goes (and frees its GPU for the next one) soon after its last answer.
STUCK_THREAD_WAIT_S = 3.0


def _exit_despite_stuck_threads(wait_s: float) -> None:
    """Exit even if a compute thread never returns (a hung backend call, a wedged kernel): asyncio.run
    and the interpreter both join such threads at exit, so a stopped server would otherwise stay
    alive until something kills it."""
    import os
    import threading

    def exit_now() -> None:
        busy = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon
                and t is not threading.main_thread()]
        print(f"rewardsvc: compute threads {busy} still busy {wait_s:.0f}s after the drain (a hung backend "
              "call?); exiting without them", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(0)

    timer = threading.Timer(wait_s, exit_now)
    timer.daemon = True
    timer.start()


def cmd_score(args: argparse.Namespace) -> int:
    from rewardsvc.commands.score import run

    return run(args)


def cmd_health(args: argparse.Namespace) -> int:
    from rewardsvc.commands.health import run

    return run(args)


def cmd_scorers(args: argparse.Namespace) -> int:
    from rewardsvc.model_refs import describe_line

    if args.address:
        from rewardsvc.client import RewardClient
        from rewardsvc.commands.connection import client_kwargs

        with RewardClient(args.address, **client_kwargs(args)) as client:
            infos = client.list_scorers()
    else:
        from rewardsvc.model_refs import describe_models
        from rewardsvc.registry import scorer_infos

        config = load_config(args.config)
        infos = scorer_infos(config.scorers)
        for info, spec in zip(infos, config.scorers):
            info["models"] = describe_models(spec.config)  # what each model reference resolves to
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for s in infos:
        print(f"{s['name']}  ({s['kind']})  {s['description']}")
        for field, resolved in s.get("models", {}).items():
            print(f"    {field}: {describe_line(resolved)}")
        for o in s["options"]:
            print(f"    {o['name']}: {o['type']} = {o['default']}  {o['description']}")
    return 0


def plugin_commands() -> dict[str, Any]:
    """Subcommands other packages add through the `rewardsvc.commands` entry-point group (`train` comes
    from rewardsvc.trainers), so the service never imports the trainers."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="rewardsvc.commands")}


def _port_or_off(value: str) -> str:
    if value == "off" or (value.isdigit() and int(value) < 65536):
        return value
    raise argparse.ArgumentTypeError(f"expected a port number (0 = any free port) or 'off', got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    from rewardsvc.commands.connection import add_connection_args
    from rewardsvc.commands.health import add_arguments as health_arguments
    from rewardsvc.commands.score import add_arguments as score_arguments

    p = argparse.ArgumentParser(prog="rewardsvc", description="Reward models and verifiers behind one gRPC API.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gRPC server")
    s.add_argument("--config", help="YAML config (default: the built-in default config)")
    s.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default from config: 50051; 0 = any free port)")
    s.add_argument("--metrics-port", type=_port_or_off, help="Prometheus /metrics port (default from config: "
                   "9464; 0 = any free port, off = none): two servers on one host need different ones")
    s.add_argument("--http-port", type=_port_or_off, help="also serve HTTP/JSON on this port (/v1/score, OpenRLHF and "
                   "slime remote rewards; default from config: off; 0 = any free port)")
    s.add_argument("--ray", action="store_true",
                   help="deploy on Ray Serve as laid out by the config's `ray:` section (needs rewardsvc[ray])")
    s.add_argument("--ray-address", help="Ray cluster to join with --ray: auto, ray://host:10001 (default: config, "
                   "$RAY_ADDRESS, else start a local Ray)")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("score", help="score JSONL items (stdin -> stdout by default), streamed in chunks")
    score_arguments(s)
    s.set_defaults(fn=cmd_score)

    s = sub.add_parser("scorers", help="list scorers and their options")
    add_connection_args(s, "ask a running server (default: read the config)")
    s.add_argument("--config", help="config to read without --address (default: built-in)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_scorers)

    s = sub.add_parser("health", help="exit 0 when the server (or --scorer) can score; --wait to wait for it")
    health_arguments(s)
    s.set_defaults(fn=cmd_health)

    sub.add_parser("train", help="train a reward model, PRM or judge (rewardsvc train rm|prm|judge --config F)",
                   add_help=False)
    sub.add_parser("eval", help="RewardBench-style evaluation of a scorer (rewardsvc eval --help)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    skip_gc_at_exit()
    argv = list(sys.argv[1:] if argv is None else argv)
    # train/eval own their argument parsing; hand them the rest of the command line.
    if argv and argv[0] in plugin_commands():
        return plugin_commands()[argv[0]].load()(argv[1:])
    if argv and argv[0] == "eval":
        from rewardsvc.evaluation.cli import main as eval_main

        return eval_main(argv[1:])
    args = build_parser().parse_args(argv)
    from rewardsvc.client import RewardServiceCallError
    from rewardsvc.commands.score import ScoreFailed

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.fn(args)
    except RewardServiceError as exc:
        print(f"rewardsvc: error: {exc}", file=sys.stderr)
        return 2
    except (RewardServiceCallError, ScoreFailed) as exc:  # the server refused or could not be reached
        print(f"rewardsvc: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"rewardsvc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
