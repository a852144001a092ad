"""Values and frames between the harness and the runner: tagged JSON over length-prefixed pipe frames.

Runs inside the sandbox (stdlib only). The decoder is the harness's safety boundary: whatever the
untrusted runner sends, `loads` yields only exact builtin types (int, float, str, bool, None,
list, tuple, dict, set, frozenset, bytes, bytearray, complex) plus opaque handles, so every
comparison the tests make on program results runs builtin code, never the program's.
"""

from __future__ import annotations

import os
import select
import sys
import time

try:  # the C codec directly: `import json` pulls in re/enum and doubles the harness's startup
    import _json
except ImportError:  # pragma: no cover - interpreters without the accelerator
    _json = None  # type: ignore[assignment]

MAX_FRAME = 16 << 20
MAX_DEPTH = 200
# Big enough for honest results, small enough that decoding one can't take minutes.
MAX_INT_DIGITS = 100_000
_HDR_SIZE = 4



def limit_int_digits() -> None:
    """Called by the harness at start (the runner inherits it): ints of up to MAX_INT_DIGITS digits."""
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(MAX_INT_DIGITS)


class WireError(Exception):
    """A frame or value that breaks the protocol (too big, malformed, unknown tag)."""


class Expired(Exception):
    """The deadline passed while waiting on the other side."""


class Closed(Exception):
    """The other side closed its end (it exited or died)."""


class Handle:
    """Marker in decoded trees for an object that stays in the runner (its id and type name)."""

    __slots__ = ("callable", "hid", "type_name")

    def __init__(self, hid: int, type_name: str, is_callable: bool) -> None:
        self.hid = hid
        self.type_name = type_name
        self.callable = is_callable


class ModuleRef:
    """Marker in decoded trees for a module: its name, and its handle when the runner sent it."""

    __slots__ = ("hid", "name")

    def __init__(self, name: str, hid: int | None) -> None:
        self.name = name
        self.hid = hid


# ---- frames -------------------------------------------------------------------------------------

def _wait(fd: int, events: int, deadline: float | None) -> None:
    if deadline is None:
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise Expired()
    poller = select.poll()
    poller.register(fd, events)
    if not poller.poll(remaining * 1000):
        raise Expired()


def write_frame(fd: int, data: bytes, deadline: float | None = None) -> None:
    if len(data) > MAX_FRAME:
        raise WireError(f"message of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    view = memoryview(len(data).to_bytes(_HDR_SIZE, "big") + data)
    while view:
        _wait(fd, select.POLLOUT, deadline)
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            raise Closed() from None
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    chunks = []
    while n:
        _wait(fd, select.POLLIN, deadline)
        try:
            chunk = os.read(fd, min(n, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None) -> bytes:
    head = _read_exact(fd, _HDR_SIZE, deadline)
    if head is None:
        raise Closed()
    size = int.from_bytes(head, "big")
    if size > MAX_FRAME:
        raise WireError(f"message of {size} bytes is over the {MAX_FRAME}-byte limit")
    body = _read_exact(fd, size, deadline)
    if body is None:
        raise Closed()
    return body


def write_all(fd: int, data: bytes) -> None:
    """Write everything (blocking or not) unless the reader is gone."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
        except OSError:
            return


# ---- values -------------------------------------------------------------------------------------

def to_tree(value, handle_of, depth: int = 0):
    """A JSON-able tree for `value`; objects that aren't plain data go through `handle_of(obj)`."""
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    t = type(value)
    if value is None or t is str or t is bool or t is int or t is float:
        return value
    d = depth + 1
    if t is list:
        return [to_tree(v, handle_of, d) for v in value]
    if t is tuple:
        return {"~": "tuple", "v": [to_tree(v, handle_of, d) for v in value]}
    if t is dict:
        return {"~": "dict", "v": [[to_tree(k, handle_of, d), to_tree(v, handle_of, d)] for k, v in value.items()]}
    if t is set or t is frozenset:
        return {"~": t.__name__, "v": [to_tree(v, handle_of, d) for v in value]}
    if t is bytes or t is bytearray:
        return {"~": t.__name__, "v": bytes(value).decode("latin-1")}
    if t is complex:
        return {"~": "complex", "v": [value.real, value.imag]}
    # Subclasses of plain types (namedtuple, IntEnum, Counter, OrderedDict, ...) travel as their
    # base type, read through the base type's own C methods, as `==` against plain data treats them.
    if issubclass(t, bool):
        return bool(int.__index__(value))
    if issubclass(t, int):
        return int.__index__(value)
    if issubclass(t, float):
        return float.__float__(value)
    if issubclass(t, str):
        return str.__str__(value)
    if issubclass(t, tuple):
        return {"~": "tuple", "v": [to_tree(v, handle_of, d) for v in tuple.__iter__(value)]}
    if issubclass(t, list):
        return [to_tree(v, handle_of, d) for v in list.__iter__(value)]
    if issubclass(t, dict):
        return {"~": "dict", "v": [[to_tree(k, handle_of, d), to_tree(v, handle_of, d)]
                                   for k, v in dict.items(value)]}
    if issubclass(t, frozenset):
        return {"~": "frozenset", "v": [to_tree(v, handle_of, d) for v in frozenset.__iter__(value)]}
    if issubclass(t, set):
        return {"~": "set", "v": [to_tree(v, handle_of, d) for v in set.__iter__(value)]}
    return handle_of(value)


def _no_default(obj):
    raise TypeError(f"{type(obj).__name__} is not JSON-able")


if _json is not None:
    _encode = _json.make_encoder(None, _no_default, _json.encode_basestring_ascii, None, ":", ",",
                                 False, False, True)

    def dump_json(tree) -> bytes:
        """Compact ASCII JSON of a tree of dicts/lists/str/int/float/bool/None (NaN allowed)."""
        return "".join(_encode(tree, 0)).encode("ascii")
else:  # pragma: no cover
    import json as _pyjson

    def dump_json(tree) -> bytes:
        return _pyjson.dumps(tree, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def dumps(value, handle_of) -> bytes:
    return dump_json(to_tree(value, handle_of))


class _Context:
    """The attributes _json.make_scanner reads from a JSONDecoder."""

    strict = True
    object_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__

    def __init__(self, pairs_hook) -> None:
        self.object_pairs_hook = pairs_hook


class Decoder:
    """Frames to values; `resolve` turns a Handle or a ModuleRef into the local object."""

    def __init__(self, resolve) -> None:
        hook = _decoder(resolve)
        if _json is not None:
            # typeshed types the context as a make_scanner; anything with its attributes works.
            self._scan = _json.make_scanner(_Context(hook))  # type: ignore[arg-type]
        else:  # pragma: no cover
            import json as _pyjson

            self._scan = _pyjson.JSONDecoder(object_pairs_hook=hook).scan_once

    def loads(self, data: bytes):
        try:
            text = data.decode("ascii")
            start = len(text) - len(text.lstrip())
            value, end = self._scan(text, start)
        except StopIteration:
            raise WireError("malformed message: not JSON") from None
        except (ValueError, TypeError, RecursionError, MemoryError) as exc:  # TypeError: unhashable key
            raise WireError(f"malformed message: {type(exc).__name__}: {str(exc)[:200]}") from None
        if text[end:].strip():
            raise WireError("malformed message: data after the JSON value")
        return value


def _decoder(resolve):
    def hook(pairs):
        obj = dict(pairs)
        tag = obj.get("~")
        if tag is None:
            return obj  # a protocol envelope, not a value
        v = obj.get("v")
        if tag == "tuple":
            return tuple(_list(v))
        if tag == "dict":
            out = {}
            for pair in _list(v):
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("dict entries must be [key, value] pairs")
                out[pair[0]] = pair[1]
            return out
        if tag == "set":
            return set(_list(v))
        if tag == "frozenset":
            return frozenset(_list(v))
        if tag in ("bytes", "bytearray"):
            if type(v) is not str:
                raise WireError("bytes must be a latin-1 string")
            raw = v.encode("latin-1")
            return raw if tag == "bytes" else bytearray(raw)
        if tag == "complex":
            parts = _list(v)
            if len(parts) != 2 or not all(type(p) in (int, float) for p in parts):
                raise WireError("complex must be [real, imag]")
            return complex(parts[0], parts[1])
        if tag == "h":
            if type(v) is not int:
                raise WireError("handle id must be an integer")
            return resolve(Handle(v, str(obj.get("t", "object"))[:100], obj.get("c") is True))
        if tag == "mod":
            hid = obj.get("h")
            if type(v) is not str or not (hid is None or type(hid) is int):
                raise WireError("module reference must be a name and an optional handle id")
            return resolve(ModuleRef(v, hid))
        raise WireError(f"unknown value tag {tag!r}")

    return hook


def _list(v) -> list:
    if type(v) is not list:
        raise WireError("malformed value: expected a list")
    return v


