"""The executor (the "runner"): the one process that runs the untrusted program, answering the checker.

Forked by the checker before it has read anything secret, so nothing in this process's memory is
worth stealing. It loads the program, then serves calls, attribute reads, indexing and iteration on
the program's objects; each reply carries its request's id, with results as plain data (frames.py)
or opaque handles. The program can rewrite all of this (it shares the process), so nothing here is
trusted: the checker accepts only well-formed answers to its pending request (remote.Link.answer)
and evaluates the tests itself on what it receives.
"""

from __future__ import annotations

import _operator
import builtins
import os
import sys

import frames

_UNARY: dict = {
    "len": len, "bool": bool, "str": str, "repr": repr, "iter": iter, "int": int, "float": float,
    "index": _operator.index,
}
_MODULE = type(sys)
# A global bigger than this travels as a handle, so loading a program with a huge table stays cheap.
_MAX_GLOBAL_BYTES = 1 << 20


class Runner:
    def __init__(self, req_fd: int, resp_fd: int) -> None:
        self.req_fd = req_fd
        self.resp_fd = resp_fd
        self.objects: dict[int, object] = {}
        self.ids: dict[int, int] = {}
        self.decoder = frames.Decoder(self.resolve)

    # -- handles ------------------------------------------------------------------------------
    def handle_of(self, obj) -> dict:
        hid = self.ids.get(id(obj))
        if hid is None:
            hid = len(self.objects) + 1
            self.objects[hid] = obj  # kept alive, so ids stay unique for the run
            self.ids[id(obj)] = hid
        if type(obj) is _MODULE:
            name = obj.__dict__.get("__name__")
            return {"~": "mod", "v": name if type(name) is str else "?", "h": hid}
        try:
            type_name = str(type.__dict__["__name__"].__get__(type(obj)))
        except Exception:
            type_name = "object"
        return {"~": "h", "v": hid, "t": type_name, "c": callable(obj)}

    def resolve(self, ref):
        if isinstance(ref, frames.Handle):
            try:
                return self.objects[ref.hid]
            except KeyError:
                raise frames.WireError(f"unknown handle {ref.hid}") from None
        if ref.hid is not None and ref.hid in self.objects:
            return self.objects[ref.hid]
        __import__(ref.name)
        return sys.modules[ref.name]

    # -- serving ------------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            try:
                frame = frames.read_frame(self.req_fd)
            except (frames.Closed, frames.WireError, OSError):
                break
            reply = self.dispatch(frame)
            _flush()
            try:
                frames.write_frame(self.resp_fd, reply)
            except (frames.Closed, OSError):
                break
        _flush()
        os._exit(0)

    def dispatch(self, frame: bytes) -> bytes:
        rid = None
        try:
            msg = self.decoder.loads(frame)
            rid = msg.get("id")
            op = msg["op"]
            if op == "exec":
                return self._reply(rid, {"ok": self.load(msg["source"], msg["name"], msg.get("want"))})
            if op == "call":
                return self.call(rid, msg)
            target = msg.get("o")
            if op == "getattr":
                result = getattr(target, msg["n"])
            elif op == "setattr":
                setattr(target, msg["n"], msg["v"])
                result = None
            elif op == "delattr":
                delattr(target, msg["n"])
                result = None
            elif op == "getitem":
                result = target[msg["k"]]
            elif op == "setitem":
                target[msg["k"]] = msg["v"]
                result = None
            elif op == "delitem":
                del target[msg["k"]]
                result = None
            elif op == "contains":
                result = msg["v"] in target
            elif op == "next":
                try:
                    result = next(target)
                except StopIteration:
                    return self._reply(rid, {"stop": True})
            elif op == "unary":
                result = _UNARY[msg["fn"]](target)
            else:
                raise frames.WireError(f"unknown op {op!r}")
            return self._reply(rid, {"ok": frames.to_tree(result, self.handle_of)})
        except BaseException as exc:  # the program's own exceptions, exit() included, are answers
            return _exception_reply(rid, exc)

    def load(self, source: str, name: str, want) -> dict:
        namespace = {"__name__": name, "__builtins__": builtins}
        exec(compile(source, "solution.py", "exec"), namespace)
        names = {}
        wanted = set(want) if type(want) is list else None
        for key, value in list(namespace.items()):
            if type(key) is not str or (key.startswith("__") and key.endswith("__")):
                continue
            if wanted is not None and key not in wanted:
                continue
            tree = frames.to_tree(value, self.handle_of)
            if len(frames.dump_json(tree)) > _MAX_GLOBAL_BYTES:
                tree = self.handle_of(value)
            names[key] = tree
        return names

    def call(self, rid, msg: dict) -> bytes:
        args = msg.get("a") or []
        kwargs = dict(msg.get("k") or [])
        # Mutable arguments are copies here: report in-place changes so the harness can apply them.
        watched = {i: frames.dump_json(frames.to_tree(a, self.handle_of)) for i, a in enumerate(args)
                   if type(a) in (list, dict, set, bytearray)}
        result = msg["f"](*args, **kwargs)
        reply = {"ok": frames.to_tree(result, self.handle_of)}
        changed = []
        for i, before in watched.items():
            after = frames.to_tree(args[i], self.handle_of)
            if frames.dump_json(after) != before:
                changed.append([i, after])
        if changed:
            reply["mut"] = changed
        return self._reply(rid, reply)

    @staticmethod
    def _reply(rid, envelope: dict) -> bytes:
        # The request's id goes back with its answer: the harness refuses any other pairing.
        return frames.dump_json({"id": rid, **envelope})


def _exception_reply(rid, exc: BaseException) -> bytes:
    try:
        bases = [c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins"]
        names = [str(type.__dict__["__name__"].__get__(type(exc))), *bases]
    except BaseException:
        names = ["Exception"]
    try:
        message = str(exc)[:2000]
    except BaseException:
        message = "<unprintable exception>"
    try:
        tb = _program_traceback(exc)
    except BaseException:
        tb = ""
    body = {"id": rid, "exc": {"types": [n for n in names if type(n) is str][:20], "msg": message, "tb": tb}}
    try:
        return frames.dump_json(body)
    except BaseException:
        return frames.dump_json({"id": rid if type(rid) is int else None,
                                 "exc": {"types": ["Exception"], "msg": "<unencodable exception>", "tb": ""}})


def _program_traceback(exc: BaseException) -> str:
    """The traceback's frames in the program (the runner's own frames are noise to the reader)."""
    import traceback

    here = os.path.dirname(os.path.abspath(__file__))
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(here)]
    if not frames:
        return ""
    return ("Traceback (most recent call last):\n" + "".join(traceback.format_list(frames[-5:])))[-3000:]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # the program may have replaced or closed its streams
            pass
