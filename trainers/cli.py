"""`rewardsvc train rm|prm|judge --config F [--field value ...]`: flags override the YAML file.

Every config field is a flag (`--learning-rate 1e-4`, `--max-steps 200`, `--resume-from latest`);
`rewardsvc train rm --help` lists them. The run's summary is printed as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
from typing import Any

import yaml

from rewardsvc.dataclass_dict import from_dict
from rewardsvc.heap import skip_gc_at_exit

TRAINERS = {
    "rm": ("rewardsvc.trainers.rm", "RMConfig", "train_rm", "Bradley-Terry reward model (sequence classification)"),
    "prm": ("rewardsvc.trainers.prm", "PRMConfig", "train_prm",
            "process reward model (token classification at step separators)"),
    "judge": ("rewardsvc.trainers.judge", "JudgeConfig", "train_judge",
              "generative judge (SFT, loss on verdict/critique tokens)"),
    "implicit_prm": ("rewardsvc.trainers.implicit_prm", "ImplicitPRMConfig", "train_implicit_prm",
                     "PRIME implicit PRM (policy vs reference log-ratio, BCE on outcome labels)"),
}

EXIT_INTERRUPTED = 130


def _parser_for(kind: str, config_cls: type) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"rewardsvc train {kind}", description=TRAINERS[kind][3],
        epilog="Flags override the --config file; booleans take true/false (a bare flag means true).",
    )
    parser.add_argument("--config", help="YAML file with the config fields (flags override it)")
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        names = [flag] if flag == f"--{f.name}" else [flag, f"--{f.name}"]
        default = f.default if f.default is not dataclasses.MISSING else None
        kwargs: dict[str, Any] = {"dest": f.name, "default": None,
                                  "help": f"{f.metadata.get('help', '')} (default: {default!r})"}
        if hints[f.name] is bool:
            kwargs.update(nargs="?", const="true", metavar="true|false")
        parser.add_argument(*names, **kwargs)
    return parser


def parse_args(argv: list[str]) -> tuple[str, Any]:
    """(trainer kind, its config object) from `rm --config F --flag v ...`."""
    if not argv or argv[0] not in TRAINERS:
        kinds = ", ".join(f"{k} ({v[3]})" for k, v in TRAINERS.items())
        raise SystemExit(f"usage: rewardsvc train {{{'|'.join(TRAINERS)}}} --config F [--field value ...]\n"
                         f"trainers: {kinds}")
    kind = argv[0]
    module_name, cls_name, _, _ = TRAINERS[kind]
    import importlib

    config_cls = getattr(importlib.import_module(module_name), cls_name)
    args = _parser_for(kind, config_cls).parse_args(argv[1:])
    data: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config) as stream:
                data = yaml.safe_load(stream) or {}
        except OSError as exc:
            raise SystemExit(f"cannot read --config {args.config}: {exc}") from None
        if not isinstance(data, dict):
            raise SystemExit(f"{args.config}: the config must be a mapping of field: value")
    for f in dataclasses.fields(config_cls):
        value = getattr(args, f.name)
        if value is not None:
            data[f.name] = value
    try:
        config = from_dict(config_cls, data, args.config or "flags")
    except ValueError as exc:
        raise SystemExit(f"{exc}\n(see `rewardsvc train {kind} --help`)") from None
    return kind, config


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 when done, 130 when Ctrl-C stopped the run (after saving a checkpoint)."""
    skip_gc_at_exit()  # `python -m rewardsvc.trainers.cli` under torchrun does not pass through rewardsvc.cli
    argv = list(sys.argv[1:] if argv is None else argv)
    kind, config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import importlib

    module_name, _, fn_name, _ = TRAINERS[kind]
    train = getattr(importlib.import_module(module_name), fn_name)
    try:
        summary = train(config)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"rewardsvc train {kind}: {exc}", file=sys.stderr)
        return 2
    # One write of the whole line: under torchrun every rank shares one stdout pipe, and print()'s
    # separate write of the newline let two ranks' lines run together ("{...}{...}").
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return EXIT_INTERRUPTED if summary.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
