"""The checker's end of the executor: requests with a deadline, and proxies for the program's objects.

Whatever the executor answers is decoded by frames.Decoder into exact builtin types or `Remote`
proxies; a proxy forwards calls, attribute access, indexing and iteration to the executor, and
compares by identity, so no comparison a test makes ever runs the program's code in the checker.

The program controls the executor process, so it controls every byte of every reply. A reply can
therefore only ever be read as what the program's code could have produced honestly: a value, or an
exception of a builtin `Exception` class raised by the call. Every reply must answer the request
with the same id, with exactly one of `ok` (plus `mut` for calls), `exc`, or `stop` (only for
`next`); anything else, or bytes that don't decode, is a protocol break that ends the run's tests.
So a forged "stop" can't end a `map`/`filter`/`zip` early, a forged SystemExit/KeyboardInterrupt/
GeneratorExit can't get past a test's `except Exception` or stop the checker, and a stale or extra
frame can't answer another request.
"""

from __future__ import annotations

import _signal
import builtins
import os
import resource
import sys

import frames

_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))
# Stdlib modules the harness won't import on the program's behalf (side effects, or the harness's own).
_NO_IMPORT = frozenset({"antigravity", "this", "webbrowser", "turtle", "turtledemo", "tkinter", "idlelib",
                        "pydoc", "ensurepip", "venv", "lib2to3", "__main__", "test", "site", "checker", "frames",
                        "executor", "remote", "program", "stdio_cases", "zygote"})
_MODULE = type(sys)


class HarnessAbort(BaseException):
    """The runner is gone (died, timed out, broke the protocol): stop running tests.

    A BaseException, so `except Exception` in test code doesn't swallow it.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RemoteError(Exception):
    """An exception raised by the program that has no builtin counterpart here."""


class Link:
    """The harness's end of the runner: requests with a deadline, proxies for the runner's objects."""

    def __init__(self, pid: int, req_w: int, resp_r: int) -> None:
        self.pid = pid
        self.req_w = req_w
        self.resp_r = resp_r
        self.deadline: float | None = None
        self.cpu_limit_s = 0.0
        self.remotes: dict[int, Remote] = {}
        self.decoder = frames.Decoder(self.resolve)
        self.abort: HarnessAbort | None = None
        self.memory_error = False
        self.cpu_exhausted = False
        self.rusage: resource.struct_rusage | None = None
        self.status: int | None = None
        self.last_id = 0

    @classmethod
    def fork(cls, results_fd: int) -> Link:
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the runner
            try:
                # The checker ignores SIGINT (it is pid 1); the program gets Python's usual handler.
                _signal.signal(_signal.SIGINT, _signal.default_int_handler)
                os.setpgid(0, 0)
                for fd in (req_w, resp_r, results_fd):
                    os.close(fd)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
                import executor

                executor.Runner(req_r, resp_w).serve()
            finally:
                os._exit(70)
        os.close(req_r)
        os.close(resp_w)
        os.set_blocking(req_w, False)
        os.set_blocking(resp_r, False)
        return cls(pid, req_w, resp_r)

    # -- values -------------------------------------------------------------------------------
    def handle_of(self, obj) -> dict:
        if type(obj) is Remote:
            return {"~": "h", "v": object.__getattribute__(obj, "_hid")}
        if type(obj).__name__ == "module" and isinstance(getattr(obj, "__name__", None), str):
            return {"~": "mod", "v": obj.__name__}
        raise TypeError(f"a {type(obj).__name__} can't be passed to the program: only plain data "
                        "(numbers, strings, lists, tuples, dicts, sets, bytes) and the program's own "
                        "objects cross the sandbox boundary")

    def resolve(self, ref):
        if isinstance(ref, frames.ModuleRef):
            module = harness_module(ref.name)
            if module is not None:
                return module
            if ref.hid is None:
                raise frames.WireError(f"module {ref.name!r} is not available to the tests")
            ref = frames.Handle(ref.hid, "module", False)
        remote = self.remotes.get(ref.hid)
        if remote is None:
            remote = self.remotes[ref.hid] = Remote(self, ref.hid, ref.type_name, ref.callable)
        return remote

    # -- requests -----------------------------------------------------------------------------
    def request(self, op: str, args: tuple | list | None = None, **fields):
        if self.abort is not None:
            raise self.abort
        self.last_id += 1
        rid = self.last_id
        envelope = {"op": op, "id": rid}
        for key, value in fields.items():
            envelope[key] = value if key in ("source", "name", "n", "fn") else frames.to_tree(value, self.handle_of)
        frame = frames.dump_json(envelope)
        sent = False
        try:
            frames.write_frame(self.req_w, frame, self.deadline)
            sent = True
            reply_frame = frames.read_frame(self.resp_r, self.deadline)
        except frames.Expired:
            self.fail("timeout", f"the program ran past the time limit during `{op}`")
        except (frames.Closed, OSError):
            self.fail("runner_died", self.death_reason())
        except frames.WireError as exc:
            self.fail("protocol", f"the program broke the harness's protocol: {exc}" if sent
                      else f"the tests' request `{op}` can't be sent to the program: {exc}")
        try:
            reply = self.decoder.loads(reply_frame)
        except frames.WireError as exc:
            self.fail("protocol", f"the program broke the harness's protocol: a reply to `{op}` that can't be "
                                  f"read ({exc})")
        return self.answer(op, rid, reply, args)

    def answer(self, op: str, rid: int, reply, args):
        """The reply's meaning, if it is a well-formed answer to request `rid`; else a protocol break."""
        if type(reply) is not dict or type(reply.get("id")) is not int or reply["id"] != rid:
            self.fail("protocol", f"the program broke the harness's protocol: a reply that does not answer "
                                  f"`{op}` (request {rid})")
        keys = set(reply) - {"id"}
        if keys == {"exc"}:
            raise self.remote_exception(reply["exc"])
        if keys == {"stop"} and op == "next" and reply["stop"] is True:
            raise StopIteration
        if keys == {"ok"} and (op != "exec" or type(reply["ok"]) is dict):
            return reply["ok"]
        if keys == {"ok", "mut"} and op == "call" and _valid_mutations(reply["mut"], args):
            _apply_mutations(args, reply["mut"])
            return reply["ok"]
        self.fail("protocol", f"the program broke the harness's protocol: a malformed reply to `{op}` "
                              f"(keys {sorted(k if type(k) is str else '?' for k in keys)[:5]})")

    def remote_exception(self, info) -> Exception:
        """The program's exception as an `Exception` here: never a BaseException that would get past
        a test's `except Exception` or stop the checker, never StopIteration that would end an
        iteration early."""
        if type(info) is not dict:
            return RemoteError("the program raised an exception")
        types = info.get("types")
        names = [n for n in types if type(n) is str][:20] if type(types) is list else []
        names = names or ["Exception"]
        message = info.get("msg") if type(info.get("msg")) is str else ""
        if "MemoryError" in names:
            self.memory_error = True
        exc: Exception | None = None
        for name in names:
            cls = getattr(builtins, name, None)
            if (isinstance(cls, type) and issubclass(cls, Exception)
                    and not issubclass(cls, (StopIteration, StopAsyncIteration))):
                try:
                    exc = cls(message)
                except Exception:
                    continue
                break
        if exc is None:
            exc = RemoteError(message)
        exc.remote_type = names[0]  # type: ignore[attr-defined]
        exc.remote_traceback = info.get("tb") if type(info.get("tb")) is str else ""  # type: ignore[attr-defined]
        return exc

    def fail(self, reason: str, detail: str):
        self.kill()
        self.abort = HarnessAbort(reason, detail)
        raise self.abort

    def kill(self) -> None:
        for target in (-self.pid, self.pid):
            try:
                os.kill(target, _signal.SIGKILL)
            except OSError:
                pass
        self.reap()

    def reap(self) -> int | None:
        if self.rusage is not None:
            return self.status
        try:
            _, status, self.rusage = os.wait4(self.pid, 0)
        except ChildProcessError:
            status = None
        self.status = status
        return status

    def death_reason(self) -> str:
        status = self.reap()
        if status is None:
            return "the program's process vanished"
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            cpu = self.rusage.ru_utime + self.rusage.ru_stime if self.rusage else 0.0
            # A SIGKILL at the hard limit is the kernel's answer when SIGXCPU at the soft one didn't end it.
            killed_at_limit = sig == _signal.SIGKILL and self.cpu_limit_s and cpu >= self.cpu_limit_s - 0.05
            if sig == _signal.SIGXCPU or killed_at_limit:
                self.cpu_exhausted = True
                return f"the program used its CPU-time limit ({self.cpu_limit_s:.0f}s)"
            if sig == _signal.SIGXFSZ:
                return "the program wrote a file over the file-size limit"
            if sig == _signal.SIGSEGV:
                return "the program crashed with SIGSEGV (unbounded recursion or a bad native call)"
            return f"the program was killed by signal {_signame(sig)}"
        return f"the program exited with status {os.WEXITSTATUS(status)} while the tests were running"

    def close(self) -> None:
        """Stop the runner (and its process group) and collect its resource usage."""
        if self.rusage is None:
            try:
                os.close(self.req_w)
            except OSError:
                pass
            self.kill()


class Remote:
    """A program object that stays in the runner. Equality is identity: `==` never asks the program."""

    __slots__ = ("_callable", "_hid", "_link", "_type")

    def __init__(self, link: Link, hid: int, type_name: str, is_callable: bool) -> None:
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_hid", hid)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_callable", is_callable)

    def _req(self, op: str, args=None, **fields):
        return object.__getattribute__(self, "_link").request(op, args, o=self, **fields)

    def __call__(self, *args, **kwargs):
        link = object.__getattribute__(self, "_link")
        return link.request("call", args, f=self, a=list(args), k=[[k, v] for k, v in kwargs.items()])

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._req("getattr", n=name)

    def __setattr__(self, name: str, value) -> None:
        self._req("setattr", n=name, v=value)

    def __delattr__(self, name: str) -> None:
        self._req("delattr", n=name)

    def __getitem__(self, key):
        return self._req("getitem", k=key)

    def __setitem__(self, key, value) -> None:
        self._req("setitem", k=key, v=value)

    def __delitem__(self, key) -> None:
        self._req("delitem", k=key)

    def __contains__(self, value) -> bool:
        return _exact(self._req("contains", v=value), bool, "`in`")

    def __len__(self) -> int:
        return _exact(self._req("unary", fn="len"), int, "len()")

    def __bool__(self) -> bool:
        return _exact(self._req("unary", fn="bool"), bool, "bool()")

    def __str__(self) -> str:
        return _exact(self._req("unary", fn="str"), str, "str()")

    def __repr__(self) -> str:
        try:
            return _exact(self._req("unary", fn="repr"), str, "repr()")
        except Exception:
            return f"<program object {object.__getattribute__(self, '_type')}>"

    def __int__(self) -> int:
        return _exact(self._req("unary", fn="int"), int, "int()")

    def __float__(self) -> float:
        return _exact(self._req("unary", fn="float"), float, "float()")

    def __index__(self) -> int:
        return _exact(self._req("unary", fn="index"), int, "index()")

    def __iter__(self):
        it = self._req("unary", fn="iter")
        return it if type(it) is Remote else iter(it)

    def __next__(self):
        return self._req("next")

    def __eq__(self, other) -> bool:
        return self is other

    def __ne__(self, other) -> bool:
        return self is not other

    def __hash__(self) -> int:
        return hash(("remote", object.__getattribute__(self, "_hid")))


def _exact(value, kind: type, what: str):
    if type(value) is not kind:
        raise TypeError(f"{what} of a program object returned {type(value).__name__}, not {kind.__name__}")
    return value


def harness_module(name: str):
    """The checker's own copy of stdlib module `name`, when handing it to the tests is harmless:
    already imported here, or a plain top-level stdlib module whose import runs nothing of note.
    Never a `__main__` submodule (unittest.__main__ runs tests and exits at import) or the harness's
    own modules; None otherwise (the program's module then stays a proxy)."""
    if type(name) is not str:
        return None
    top = name.partition(".")[0]
    if top not in _STDLIB or top in _NO_IMPORT or name.rpartition(".")[2] == "__main__":
        return None
    module = sys.modules.get(name)
    if module is None and "." not in name and not name.startswith("_"):
        try:
            __import__(name)
        except BaseException:  # a module that can't be imported here stays the program's
            return None
        module = sys.modules.get(name)
    return module if type(module) is _MODULE else None


def _valid_mutations(mutated, args) -> bool:
    if type(mutated) is not list or args is None:
        return False
    return all(type(e) is list and len(e) == 2 and type(e[0]) is int and 0 <= e[0] < len(args) for e in mutated)


def _apply_mutations(args, mutated) -> None:
    """Mirror the program's in-place changes to mutable arguments onto the test's objects."""
    for index, value in mutated:
        target = args[index]
        if type(target) is list and type(value) is list:
            target[:] = value
        elif (type(target) is dict and type(value) is dict) or (type(target) is set and type(value) is set):
            target.clear()
            target.update(value)
        elif type(target) is bytearray and type(value) is bytearray:
            target[:] = value



def _signame(sig: int) -> str:
    for name in ("SIGKILL", "SIGSEGV", "SIGABRT", "SIGBUS", "SIGFPE", "SIGILL", "SIGTERM", "SIGXCPU",
                 "SIGXFSZ", "SIGPIPE", "SIGINT", "SIGHUP", "SIGSYS", "SIGTRAP", "SIGUSR1", "SIGUSR2", "SIGALRM"):
        if getattr(_signal, name, None) == sig:
            return name
    return str(sig)
