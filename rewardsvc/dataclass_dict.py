"""Strict dict -> dataclass conversion, so a YAML stanza or a request's options map one-to-one
onto a config dataclass and a typo is an error naming the accepted keys, not a silent default."""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import TYPE_CHECKING, Any, TypeVar

from rewardsvc.errors import quote

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError(f"{where}: {quote(value)} matches none of {hint}: {'; '.join(errors)}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where}: {quote(value)} is not one of {list(args)}")
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{str(k)[:40]}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{where}: expected true/false, got {quote(value)}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{where}: expected an integer, got {quote(value)}")
        as_float = _number(value, where, "an integer")
        if not as_float.is_integer():
            raise ValueError(f"{where}: expected an integer, got {quote(value)}")
        return int(as_float)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{where}: expected a number, got {quote(value)}")
        return _number(value, where, "a number")
    if hint is str:
        if not isinstance(value, (str, int, float)):
            raise ValueError(f"{where}: expected a string, got {type(value).__name__}")
        return str(value)
    return value


def _number(value: Any, where: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:  # a string that is no number: say which field, not just float()'s complaint
        raise ValueError(f"{where}: expected {what}, got {str(value)[:100]!r}") from None


def option(default: Any, help: str) -> Any:  # `help` as argparse names it
    """A dataclass field with a help text: what ListScorers, `rewardsvc scorers`, the trainers' CLI and
    the generated docs show for it."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


@functools.lru_cache(maxsize=512)
def _fields_and_hints(cls: type) -> tuple[frozenset[str], dict[str, Any]]:
    # Every Score request parses its options: get_type_hints evaluates the string annotations anew
    # each time (compile() per field), ~0.2 ms a request; a class's fields never change.
    return frozenset(f.name for f in dataclasses.fields(cls) if f.init), typing.get_type_hints(cls)


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from `data`, rejecting unknown keys and ill-typed values."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields, hints = _fields_and_hints(cls)
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {quote(unknown)}; accepted: {sorted(fields)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a required field is missing, __post_init__ refused a value
        raise ValueError(f"{where}: {exc}") from None


def describe_fields(cls: type) -> list[dict[str, str]]:
    """Name, type, JSON default and help text of each field, for ListScorers and docs."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        hint = hints[f.name]
        if typing.get_origin(hint) is typing.Literal:  # the accepted values, e.g. "" | "min" | "last"
            type_name = " | ".join(json.dumps(a) for a in typing.get_args(hint))
        else:
            type_name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
        out.append(
            {
                "name": f.name,
                "type": type_name,
                "default": json.dumps(default, default=str),
                "description": f.metadata.get("help", ""),
            }
        )
    return out
