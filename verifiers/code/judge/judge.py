"""The judge: inside the sandbox, runs the program in a separate runner process and decides each test.

Runs under the sandbox's Python with the standard library only, as the first process in the sandbox:

    judge.serve(RESULTS_FD, WORKDIR)   # called by the zygote in each run's pid-1 process

stdin carries one JSON payload (program, tests, limits, nonce); the one report goes to RESULTS_FD,
written once, after every test ran. The program's stdout/stderr go straight to the sandbox's
stdout/stderr, which the parent reads and caps.

Why the program can't forge a pass:
- The program never runs in this process. In the function styles it runs in the runner, forked
  before the payload (and the nonce in it) was read, so the runner's memory holds no secret; the
  runner gets the program's source over a pipe and answers requests. In the stdin/stdout style each
  case is a fresh interpreter (exec) that gets only its source and its input.
- The tests run here, on values decoded by wire.loads: exact builtin types or opaque handles, never
  the program's objects. An always-equal `__eq__`, a patched `unittest`, a monkeypatched builtin or
  module in the runner changes nothing here; names the tests rely on (builtins, stdlib modules, the
  prompt's helper functions) are this process's own, not the program's.
- Only this process holds RESULTS_FD and the nonce. The runner can't reach them: no /proc in the
  sandbox, ptrace and process_vm_readv are denied by seccomp, the fd is closed in the runner before
  any program code runs. Printing "PASSED", fake report lines, exit(0)/os._exit(0) before the
  asserts, killing this process: at best no report, which the parent treats as a failure.
"""

from __future__ import annotations

import _ast
import _signal
import builtins
import os
import resource
import select
import sys
import time

import wire

CASE_BOOT = (
    "import os,sys\n"
    "f=os.fdopen(3,'rb');s=f.read();f.close()\n"
    "sys.argv=['solution.py']\n"
    "g={'__name__':'__main__','__builtins__':__builtins__,'__file__':'solution.py'}\n"
    "exec(compile(s,'solution.py','exec'),g)\n"
)
_NAME_LIMIT = 300
_ERROR_LIMIT = 1000
_BUILTIN_NAMES = frozenset(dir(builtins))
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))
# Stdlib modules the judge won't import on the program's behalf (side effects, or the judge's own).
_NO_IMPORT = frozenset({"antigravity", "this", "webbrowser", "turtle", "turtledemo", "tkinter", "idlelib",
                        "pydoc", "ensurepip", "venv", "lib2to3", "__main__", "judge", "wire", "runner"})


class JudgeAbort(BaseException):
    """The runner is gone (died, timed out, broke the protocol): stop running tests.

    A BaseException, so `except Exception` in test code doesn't swallow it.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RemoteError(Exception):
    """An exception raised by the program that has no builtin counterpart here."""


# ---- the link to the runner ---------------------------------------------------------------------

class Link:
    """The judge's end of the runner: requests with a deadline, proxies for the runner's objects."""

    def __init__(self, pid: int, req_w: int, resp_r: int) -> None:
        self.pid = pid
        self.req_w = req_w
        self.resp_r = resp_r
        self.deadline: float | None = None
        self.cpu_limit_s = 0.0
        self.remotes: dict[int, Remote] = {}
        self.decoder = wire.Decoder(self.resolve)
        self.abort: JudgeAbort | None = None
        self.memory_error = False
        self.cpu_exhausted = False
        self.rusage = None
        self.status: int | None = None

    @classmethod
    def fork(cls, results_fd: int) -> "Link":
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the runner
            try:
                os.setpgid(0, 0)
                for fd in (req_w, resp_r, results_fd):
                    os.close(fd)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
                import runner

                runner.Runner(req_r, resp_w).serve()
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
        if isinstance(ref, wire.ModuleRef):
            top = ref.name.split(".")[0]
            if top in _STDLIB and top not in _NO_IMPORT:
                try:
                    __import__(ref.name)
                    return sys.modules[ref.name]
                except (ImportError, KeyError):
                    pass
            if ref.hid is None:
                raise wire.WireError(f"module {ref.name!r} is not available to the tests")
            ref = wire.Handle(ref.hid, "module", False)
        remote = self.remotes.get(ref.hid)
        if remote is None:
            remote = self.remotes[ref.hid] = Remote(self, ref.hid, ref.type_name, ref.callable)
        return remote

    # -- requests -----------------------------------------------------------------------------
    def request(self, op: str, args: tuple | list | None = None, **fields):
        if self.abort is not None:
            raise self.abort
        envelope = {"op": op}
        for key, value in fields.items():
            envelope[key] = value if key in ("source", "name", "n", "fn") else wire.to_tree(value, self.handle_of)
        frame = wire.dump_json(envelope)
        try:
            wire.write_frame(self.req_w, frame, self.deadline)
            reply_frame = wire.read_frame(self.resp_r, self.deadline)
        except wire.Expired:
            self.fail("timeout", f"the program ran past the time limit during `{op}`")
        except (wire.Closed, OSError):
            self.fail("runner_died", self.death_reason())
        except wire.WireError as exc:
            self.fail("protocol", str(exc))
        try:
            reply = self.decoder.loads(reply_frame)
        except wire.WireError as exc:
            raise ValueError(f"the program's result can't be read: {exc}") from None
        if type(reply) is not dict:
            raise ValueError("the runner sent a malformed reply")
        if "exc" in reply:
            raise self.remote_exception(reply["exc"])
        if reply.get("stop") is True:
            raise StopIteration
        mutated = reply.get("mut")
        if mutated and args is not None:
            _apply_mutations(args, mutated)
        return reply.get("ok")

    def remote_exception(self, info) -> Exception:
        if type(info) is not dict:
            return RemoteError("the program raised an exception")
        names = [n for n in info.get("types", []) if type(n) is str] or ["Exception"]
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
        self.abort = JudgeAbort(reason, detail)
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
            if sig == _signal.SIGXCPU or (sig == _signal.SIGKILL and self.cpu_limit_s and cpu >= self.cpu_limit_s - 0.05):
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

    __slots__ = ("_link", "_hid", "_type", "_callable")

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


def _apply_mutations(args, mutated) -> None:
    """Mirror the program's in-place changes to mutable arguments onto the test's objects."""
    if type(mutated) is not list:
        return
    for entry in mutated:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int:
            continue
        index, value = entry
        if not 0 <= index < len(args):
            continue
        target = args[index]
        if type(target) is list and type(value) is list:
            target[:] = value
        elif type(target) is dict and type(value) is dict:
            target.clear()
            target.update(value)
        elif type(target) is set and type(value) is set:
            target.clear()
            target.update(value)
        elif type(target) is bytearray and type(value) is bytearray:
            target[:] = value


# ---- programs and tests -------------------------------------------------------------------------

# The C parser directly (`import ast` pulls in enum/contextlib: a third of the judge's startup).
def _parse(source: str, filename: str = "<unknown>"):
    return compile(source, filename, "exec", _ast.PyCF_ONLY_AST)


def _walk(node):
    todo = [node]
    while todo:
        node = todo.pop()
        yield node
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, _ast.AST):
                todo.append(value)
            elif isinstance(value, list):
                todo.extend(v for v in value if isinstance(v, _ast.AST))


def _segment(lines: list[bytes], node) -> str:
    """The source text of `node` (AST column offsets count UTF-8 bytes)."""
    try:
        first, last = node.lineno - 1, node.end_lineno - 1
        if first == last:
            text = lines[first][node.col_offset:node.end_col_offset]
        else:
            text = b"".join([lines[first][node.col_offset:], *lines[first + 1:last], lines[last][:node.end_col_offset]])
        return text.decode("utf-8", "replace")
    except (AttributeError, IndexError, TypeError):
        return ""


def _parses(source: str) -> bool:
    try:
        _parse(source)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def defines(code: str, name: str) -> bool:
    """Whether `code` defines `name` at top level (def, class, assignment or import)."""
    try:
        tree = _parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        import re

        return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(|^{re.escape(name)}\s*=", code, re.M) is not None
    for node in tree.body:
        if isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (_ast.Assign, _ast.AnnAssign)):
            targets = node.targets if isinstance(node, _ast.Assign) else [node.target]
            if any(isinstance(t, _ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, (_ast.Import, _ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return True
    return False


def _referenced_names(tree) -> set[str]:
    return {n.id for n in _walk(tree) if isinstance(n, _ast.Name)}


def _top_level_names(source: str) -> set[str]:
    """Names a (Python) prompt defines at top level; empty when it isn't Python."""
    if not source.strip():
        return set()
    try:
        tree = _parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (_ast.Assign, _ast.AnnAssign)):
            targets = node.targets if isinstance(node, _ast.Assign) else [node.target]
            out.update(t.id for t in targets if isinstance(t, _ast.Name))
        elif isinstance(node, (_ast.Import, _ast.ImportFrom)):
            out.update((a.asname or a.name.split(".")[0]) for a in node.names)
    return out


def compose_program(prompt: str, code: str, entry_point: str) -> str:
    """HumanEval/MBPP: prompt + completion, unless the response defines the entry point itself."""
    if defines(code, entry_point):
        # The prompt (imports, helpers) goes first when it is Python; the response's def wins.
        return (prompt.rstrip() + "\n\n" if prompt.strip() and _parses(prompt) else "") + code
    return prompt + code


def _is_test(stmt) -> bool:
    if isinstance(stmt, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
        return False
    if isinstance(stmt, _ast.Assert) and isinstance(stmt.test, _ast.Constant):
        return False  # `assert True, "..."` filler in HumanEval checks: not a test
    return any(isinstance(n, _ast.Assert) for n in _walk(stmt))


_WRAP = (
    "__judge__.begin(0)\n"
    "try:\n    pass\n"
    "except Exception as __judge_exc__:\n    __judge__.failed(0, __judge_exc__)\n"
    "else:\n    __judge__.passed(0)\n"
)


def _relocate(nodes, ref) -> None:
    """Give the wrapper's nodes the wrapped statement's position (tracebacks point at the test)."""
    for top in nodes:
        for node in _walk(top):
            if "lineno" in node._attributes:
                node.lineno, node.col_offset = ref.lineno, ref.col_offset
                node.end_lineno, node.end_col_offset = ref.end_lineno, ref.end_col_offset


def split_check(tree, source: str) -> list[str]:
    """Turn each top-level assert-bearing statement of `check` into its own recorded test.

    Returns the tests' names (their source); an empty list leaves `check` as one test.
    """
    check = None
    for node in tree.body:
        if isinstance(node, _ast.FunctionDef) and node.name == "check":
            check = node
    if check is None:
        return []
    lines = source.encode("utf-8", "surrogatepass").splitlines(keepends=True)
    names: list[str] = []
    body: list = []
    for stmt in check.body:
        if not _is_test(stmt):
            body.append(stmt)
            continue
        index = len(names)
        names.append(_clip(_segment(lines, stmt) or f"test {index}", _NAME_LIMIT))
        begin, wrapped = _parse(_WRAP).body
        _relocate([begin, wrapped], stmt)
        begin.value.args[0].value = index
        wrapped.body = [stmt]
        wrapped.handlers[0].body[0].value.args[0].value = index
        wrapped.orelse[0].value.args[0].value = index
        body.extend([begin, wrapped])
    if names:
        check.body = body
    return names


class Recorder:
    """`__judge__` in the tests' namespace: records each test's outcome as it happens."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.outcomes: list[tuple[bool, str | None] | None] = [None] * len(names)
        self.current: int | None = None

    def begin(self, index: int) -> None:
        self.current = index

    def passed(self, index: int) -> None:
        self.outcomes[index] = (True, None)
        self.current = None

    def failed(self, index: int, exc: BaseException) -> None:
        self.outcomes[index] = (False, describe(exc))
        self.current = None

    def fill(self, error: str) -> None:
        """Mark the test in progress and every test not run as failed with `error`."""
        for i, outcome in enumerate(self.outcomes):
            if outcome is None:
                self.outcomes[i] = (False, error if i == self.current or self.current is None else f"not run: {error}")

    def tests(self) -> list[dict]:
        return [{"name": n, "passed": bool(o and o[0]), "error": None if o is None else o[1]}
                for n, o in zip(self.names, self.outcomes)]


def describe(exc: BaseException) -> str:
    name = getattr(exc, "remote_type", None) or type(exc).__name__
    try:
        message = str(exc)
    except Exception:
        message = ""
    text = f"{name}: {message}" if message else name
    tb = getattr(exc, "remote_traceback", "")
    if tb and not isinstance(exc, AssertionError):
        text += "\n" + tb
    return _clip(text, _ERROR_LIMIT)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _signame(sig: int) -> str:
    for name in ("SIGKILL", "SIGSEGV", "SIGABRT", "SIGBUS", "SIGFPE", "SIGILL", "SIGTERM", "SIGXCPU",
                 "SIGXFSZ", "SIGPIPE", "SIGINT", "SIGHUP", "SIGSYS", "SIGTRAP", "SIGUSR1", "SIGUSR2", "SIGALRM"):
        if getattr(_signal, name, None) == sig:
            return name
    return str(sig)


# ---- the run --------------------------------------------------------------------------------------

class Judge:
    def __init__(self, payload: dict, link: Link | None, workdir: str) -> None:
        self.p = payload
        self.link = link
        self.workdir = workdir
        self.deadline = time.monotonic() + float(payload["timeout_s"])
        self.report: dict = {"status": "ok", "tests": [], "memory_error": False}
        self.wanted: set[str] = set()

    # -- function styles ----------------------------------------------------------------------
    def run_functions(self) -> None:
        link = self.link
        assert link is not None
        link.deadline = self.deadline
        style = self.p["style"]
        if style == "check":
            program = compose_program(self.p.get("prompt", ""), self.p["code"], self.p["entry_point"])
            recorder, test_code = self._prepare_check()
        else:
            program = self.p["code"]
            recorder, test_code = self._prepare_asserts()
        if recorder is None:
            return
        try:
            # Only the names the tests mention come back: no decoding (or importing) of the rest.
            names = link.request("exec", source=program, name="solution", want=sorted(self.wanted))
        except JudgeAbort as abort:
            self._load_failed(recorder, f"{abort.reason}: {abort.detail}", abort)
            return
        except Exception as exc:
            self._load_failed(recorder, describe(exc), None)
            return
        namespace = self._namespace(names if type(names) is dict else {})
        try:
            if style == "check":
                self._run_check(namespace, test_code, recorder)
            else:
                self._run_asserts(namespace, test_code, recorder)
        except JudgeAbort as abort:
            recorder.fill(f"{abort.reason}: {abort.detail}")
            self._aborted(abort)
        self.report["tests"] = recorder.tests()

    def _prepare_check(self):
        source = self.p["test"]
        try:
            tree = _parse(source, "test.py")
            self.wanted = _referenced_names(tree) | {self.p["entry_point"]}
            names = split_check(tree, source)
            code = compile(tree, "test.py", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            self._test_error(f"the reference's test code does not compile: {describe(exc)}")
            return None, None
        return Recorder(names or [f"check({self.p['entry_point']})"]), (code, bool(names))

    def _prepare_asserts(self):
        codes = []
        self.wanted = set()
        for i, source in enumerate(self.p["asserts"]):
            try:
                tree = _parse(source, f"assert[{i}]")
                self.wanted |= _referenced_names(tree)
                codes.append(compile(tree, f"assert[{i}]", "exec"))
            except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                self._test_error(f"assert {i} of the reference does not compile: {describe(exc)}")
                return None, None
        return Recorder([_clip(s, _NAME_LIMIT) for s in self.p["asserts"]]), codes

    def _namespace(self, names: dict) -> dict:
        """The tests' globals: the program's names as proxies, minus any that would shadow the
        builtins or stdlib modules the tests rely on; then the prompt's own (trusted) helpers."""
        entry = self.p.get("entry_point")
        ns: dict = {"__name__": "__test__", "__builtins__": builtins}
        for name, value in names.items():
            if type(name) is not str or name == "__judge__":
                continue
            if name != entry and name in _BUILTIN_NAMES:
                continue
            if name != entry and name in _STDLIB and type(value).__name__ != "module":
                continue
            ns[name] = value
        prompt = self.p.get("prompt", "")
        if self.p["style"] == "check" and (_top_level_names(prompt) - {entry}) & self.wanted:
            program_entry = ns.get(entry)
            try:
                exec(compile(prompt, "prompt.py", "exec"), ns)
            except Exception:  # noqa: S110 - a prompt that doesn't run just contributes nothing
                pass
            ns["__builtins__"] = builtins
            if program_entry is not None:
                ns[entry] = program_entry
            else:
                ns.pop(entry, None)
        return ns

    def _run_check(self, ns: dict, test_code, recorder: Recorder) -> None:
        code, split = test_code
        entry = self.p["entry_point"]
        program_check = ns.get("check")
        ns["__judge__"] = recorder
        try:
            exec(code, ns)
        except JudgeAbort:
            raise
        except Exception as exc:
            recorder.fill(f"the test code failed before any test ran: {describe(exc)}")
            return
        check = ns.get("check")
        if program_check is not None:
            ns["check"] = program_check  # the tests may call the program's own `check` (MBPP/56)
        if not callable(check):
            self._test_error("the reference's test code does not define check(candidate)")
            recorder.fill("no check function")
            return
        if entry not in ns:
            recorder.fill(f"the program does not define `{entry}`")
            return
        try:
            check(ns[entry])
        except JudgeAbort:
            raise
        except Exception as exc:
            if split:
                recorder.fill(describe(exc))
            else:
                recorder.failed(0, exc)
            return
        if not split:
            recorder.passed(0)
        else:
            recorder.fill("the check function returned before this test ran")

    def _run_asserts(self, ns: dict, codes: list, recorder: Recorder) -> None:
        for i, code in enumerate(codes):
            if time.monotonic() > self.deadline:
                raise JudgeAbort("timeout", "the time limit passed before this test")
            recorder.begin(i)
            try:
                exec(code, ns)
            except JudgeAbort:
                raise
            except Exception as exc:
                recorder.failed(i, exc)
            else:
                recorder.passed(i)

    def _load_failed(self, recorder: Recorder, error: str, abort: JudgeAbort | None) -> None:
        self.report["status"] = "load_error"
        self.report["error"] = _clip(f"the program failed to load: {error}", 3000)
        recorder.current = None
        recorder.fill("the program failed to load")
        self.report["tests"] = recorder.tests()
        if abort is not None:
            self._aborted(abort)

    def _aborted(self, abort: JudgeAbort) -> None:
        self.report["abort"] = {"reason": abort.reason, "detail": _clip(abort.detail, 1000)}
        if abort.reason == "runner_died" and getattr(self.link, "cpu_exhausted", False):
            self.report["abort"]["reason"] = "timeout"

    def _test_error(self, message: str) -> None:
        self.report["status"] = "test_error"
        self.report["error"] = _clip(message, 3000)

    # -- stdin/stdout style -------------------------------------------------------------------
    def run_cases(self) -> None:
        cases = self.p["cases"]
        names = [f"case {i}" for i in range(len(cases))]
        recorder = Recorder(names)
        program = self.p["code"].encode("utf-8", "surrogatepass")
        cpu_s = 0.0
        max_rss = 0
        for i, case in enumerate(cases):
            if i:
                _wipe(self.workdir)
            recorder.begin(i)
            outcome = self._run_case(program, case)
            cpu_s += outcome.get("cpu_s", 0.0)
            max_rss = max(max_rss, outcome.get("max_rss_kb", 0))
            if outcome.get("memory_error"):
                self.report["memory_error"] = True
            if outcome["passed"]:
                recorder.passed(i)
            else:
                recorder.outcomes[i] = (False, outcome["error"])
            if outcome.get("abort"):
                recorder.current = i
                recorder.fill(outcome["abort"][1])
                self.report["abort"] = {"reason": outcome["abort"][0], "detail": outcome["abort"][1]}
                break
        self.report["tests"] = recorder.tests()
        self.report["runner"] = {"cpu_s": round(cpu_s, 3), "max_rss_kb": max_rss}

    def _run_case(self, program: bytes, case: dict) -> dict:
        limit = int(self.p["max_output_bytes"])
        feed = {}
        prog_r, prog_w = _pipe_high()
        in_r, in_w = _pipe_high()
        out_r, out_w = _pipe_high()
        err_r, err_w = _pipe_high()
        actions = [(os.POSIX_SPAWN_DUP2, prog_r, 3), (os.POSIX_SPAWN_DUP2, in_r, 0),
                   (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
        try:
            pid = os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", "-B", "-c", CASE_BOOT],
                                 dict(os.environ), file_actions=actions, setpgroup=0,
                                 setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ))
        except OSError as exc:
            for fd in (prog_r, prog_w, in_r, in_w, out_r, out_w, err_r, err_w):
                os.close(fd)
            return {"passed": False, "error": f"could not start the program: {exc}",
                    "abort": ("runner_died", f"could not start the program: {exc}")}
        for fd in (prog_r, in_r, out_w, err_w):
            os.close(fd)
        feed[prog_w] = memoryview(program)
        feed[in_w] = memoryview(str(case.get("input", "")).encode("utf-8", "surrogatepass"))
        out = bytearray()
        err_tail = bytearray()
        readers = {out_r, err_r}
        for fd in (prog_w, in_w, out_r, err_r):
            os.set_blocking(fd, False)
        abort = None
        poller = select.poll()
        for fd in feed:
            poller.register(fd, select.POLLOUT)
        for fd in readers:
            poller.register(fd, select.POLLIN)
        # Waiting on the process too, so a program that closes its stdout and spins, or leaves a
        # daemon holding it, can't stall the loop.
        pidfd = os.pidfd_open(pid)
        poller.register(pidfd, select.POLLIN)
        exited = False
        drain_until = 0.0
        while not exited or readers:
            now = time.monotonic()
            remaining = self.deadline - now
            if remaining <= 0:
                abort = ("timeout", "the program ran past the time limit")
                break
            if exited:
                if now > drain_until:
                    break
                remaining = min(remaining, drain_until - now)
            events = poller.poll(remaining * 1000)
            if exited and not events:
                break
            for fd, _ in events:
                if fd == pidfd:
                    exited = True
                    drain_until = time.monotonic() + 0.2
                    poller.unregister(pidfd)
                elif fd in feed:
                    try:
                        n = os.write(fd, feed[fd][:65536])
                        feed[fd] = feed[fd][n:]
                        done = not feed[fd]
                    except BlockingIOError:
                        done = False
                    except OSError:  # the program stopped reading: the rest of its input is moot
                        done = True
                    if done:
                        poller.unregister(fd)
                        os.close(fd)
                        del feed[fd]
                elif fd in readers:
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        poller.unregister(fd)
                        readers.discard(fd)
                        continue
                    if fd == out_r:
                        out += chunk
                        if len(out) > limit:
                            abort = ("output_limit", f"the program wrote more than {limit} bytes")
                            break
                    else:
                        _write_all(2, chunk)
                        err_tail = (err_tail + chunk)[-4096:]
            if abort:
                break
            if exited:
                # After exit, drain what is already buffered, then stop: a daemon may hold the pipe.
                for fd in list(feed):
                    poller.unregister(fd)
                    os.close(fd)
                    del feed[fd]
        os.close(pidfd)
        for fd in list(feed) + list(readers):
            os.close(fd)
        for target in (-pid, pid):  # the case's process group (its forks) goes with it
            try:
                os.kill(target, _signal.SIGKILL)
            except OSError:
                pass
        _, status, usage = os.wait4(pid, 0)
        result = {"cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_kb": usage.ru_maxrss,
                  "memory_error": b"MemoryError" in err_tail}
        if abort is None and os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig in (_signal.SIGXCPU, _signal.SIGKILL) and result["cpu_s"] >= _cpu_limit(self.p["limits"]) - 0.05:
                abort = ("timeout", "the program used its CPU-time limit")
        if abort:
            result.update(passed=False, error=abort[1], abort=abort)
            return result
        if os.WIFSIGNALED(status):
            result.update(passed=False, error=f"the program was killed by signal {_signame(os.WTERMSIG(status))}")
            return result
        code = os.WEXITSTATUS(status)
        if code != 0:
            tail = err_tail.decode("utf-8", "replace").strip().splitlines()
            result.update(passed=False, error=_clip(f"the program exited with status {code}"
                                                    + (f": {tail[-1]}" if tail else ""), _ERROR_LIMIT))
            return result
        got = out.decode("utf-8", "replace")
        want = str(case.get("output", ""))
        if got.split() == want.split():
            result.update(passed=True, error=None)
        else:
            result.update(passed=False, error=_clip(f"wrong answer: expected {_clip(want.strip(), 200)!r}, "
                                                    f"got {_clip(got.strip(), 200)!r}", _ERROR_LIMIT))
        return result


def _pipe_high() -> tuple[int, int]:
    """A close-on-exec pipe with both ends at fd >= 10, clear of the 0-3 slots the child gets."""
    import fcntl

    ends = []
    for fd in os.pipe():
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        ends.append(high)
    return ends[0], ends[1]


def _wipe(path: str) -> None:
    """Empty the work directory between cases, so one case can't leave files for the next."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _wipe(entry.path)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
        except OSError:
            return


def _cpu_limit(limits: dict) -> int:
    return max(1, int(float(limits["cpu_s"]) + 0.999))


def _set_limits(limits: dict, pid: int | None) -> None:
    mb = 1 << 20
    cpu = _cpu_limit(limits)
    table = [
        (resource.RLIMIT_AS, int(limits["memory_mb"]) * mb),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, int(limits["max_file_bytes"])),
        (resource.RLIMIT_NOFILE, int(limits["max_open_files"])),
        (resource.RLIMIT_NPROC, int(limits["max_processes"])),
        (resource.RLIMIT_CORE, 0),
    ]
    for res, value in table:
        hard = value + 1 if res == resource.RLIMIT_CPU else value  # SIGXCPU first, SIGKILL a second later
        if pid is None:
            resource.setrlimit(res, (value, hard))
        else:
            resource.prlimit(pid, res, (value, hard))


def _read_payload() -> dict:
    chunks = []
    while True:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    return wire.Decoder(_no_refs).loads(b"".join(chunks))


def _no_refs(ref):
    raise wire.WireError("the payload can't carry program objects")


def serve(results_fd: int, workdir: str) -> None:
    """Run one payload (read from stdin) and write the report to `results_fd`; never returns."""
    wire.limit_int_digits()
    os.set_inheritable(results_fd, False)
    _write_all(results_fd, b"+")  # "the judge started": the parent tells a dead judge from a failed sandbox
    # The runner is forked first, while this process holds nothing secret.
    link = Link.fork(results_fd)
    report: dict = {"status": "judge_error", "tests": []}
    nonce = ""
    try:
        payload = _read_payload()
        nonce = str(payload.pop("nonce"))
        limits = payload["limits"]
        judge_limits = dict(limits, memory_mb=int(limits["memory_mb"]) + 256,
                            cpu_s=float(limits["cpu_s"]) + 2, max_processes=int(limits["max_processes"]) + 4)
        _set_limits(limits, link.pid)
        _set_limits(judge_limits, None)
        link.cpu_limit_s = float(_cpu_limit(limits))
        judge = Judge(payload, link, workdir)
        if payload["style"] == "cases":
            link.close()
            link = None
            judge.link = None
            judge.run_cases()
        else:
            judge.run_functions()
            link.close()
            usage = link.rusage
            if usage is not None:
                judge.report["runner"] = {"cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                                          "max_rss_kb": usage.ru_maxrss}
            judge.report["memory_error"] = link.memory_error
        report = judge.report
    except BaseException as exc:  # the report must go out whatever happened here
        import traceback

        report = {"status": "judge_error", "tests": [],
                  "error": _clip("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), 4000)}
        if link is not None:
            try:
                link.close()
            except BaseException:
                pass
    report["nonce"] = nonce
    data = wire.dump_json(report)
    os.set_blocking(results_fd, True)
    _write_all(results_fd, data)
    os.close(results_fd)
    sys.stdout.flush()
    os._exit(0)
