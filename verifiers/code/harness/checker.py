"""The harness: pid 1 of a run's namespace; runs the program in a separate runner and decides each test.

The zygote calls `serve(3, "/tmp")` in each run's fresh pid 1 (see zygote.py). stdin carries one
JSON payload (program, tests, limits, nonce); fd 3 gets one report, written once, after every test
ran, carrying the nonce. The program's stdout/stderr go straight to the run's stdout/stderr, which
the parent reads and caps.

Why the program can't forge a pass:
- The program never runs in this process. In the function styles it runs in the runner, forked
  before the payload (and the nonce in it) was read, so the runner's memory holds no secret; the
  runner gets the program's source over a pipe and answers requests (executor.py). In the
  stdin/stdout style each case is a fresh interpreter (exec) that gets only its source and input.
- The tests run here, on values decoded by frames.Decoder: exact builtin types or opaque proxies
  that compare by identity (remote.py), never the program's objects. An always-equal `__eq__`, a
  patched `unittest`, a monkeypatched builtin or module in the runner changes nothing here; names
  the tests rely on (builtins, stdlib modules, the problem statement's helper functions, in
  whatever form the statement came: see program.statement_code) are this process's own, not the
  program's.
- The replies on the runner's channel are read as values or the program's exceptions only, and
  any reply that isn't a well-formed answer to the pending request ends the tests (remote.py).
- Only this process holds fd 3 and the nonce. The runner can't reach them: no /proc in the sandbox,
  ptrace and process_vm_readv are denied by seccomp, fd 3 is closed in the runner before any
  program code runs, and as pid 1 of the namespace this process gets no signal it has no handler
  for, and it has none (SIGINT's is removed first). Printing "PASSED", fake report lines,
  exit(0)/os._exit(0) before the asserts, crashing: at best no report or failed tests, which the
  parent scores as failures; a harness failure after the program started is the program's failure.
"""

from __future__ import annotations

import _ast
import _signal
import builtins
import os
import resource
import sys
import time

import frames
from frames import write_all
from program import (
    _NAME_LIMIT,
    Recorder,
    _clip,
    _parse,
    _parses,
    _referenced_names,
    compose_program,
    describe,
    split_check,
    statement_code,
    statement_names,
)
from remote import _STDLIB, HarnessAbort, Link
from stdio_cases import CaseRunner

_BUILTIN_NAMES = frozenset(dir(builtins))


class Harness:
    def __init__(self, payload: dict, link: Link | None, workdir: str) -> None:
        self.p = payload
        self.link = link
        self.workdir = workdir
        self.deadline = time.monotonic() + float(payload["timeout_s"])
        self.report: dict = {"status": "ok", "tests": [], "memory_error": False}
        self.wanted: set[str] = set()
        self.statement = ""
        self.statement_refs: set[str] = set()
        # Once the program has run, anything that goes wrong here may be its doing (serve()).
        self.program_started = False

    # -- function styles ----------------------------------------------------------------------
    def run_functions(self) -> None:
        link = self.link
        assert link is not None
        link.deadline = self.deadline
        style = self.p["style"]
        if not self._prepare_statement():
            return
        if style == "check":
            prompt = self.p.get("prompt", "")
            prefix = prompt if prompt.strip() and _parses(prompt) else self.statement
            program = compose_program(prefix, self.p["code"], self.p["entry_point"])
            recorder, test_code = self._prepare_check()
        else:
            program = (self.statement.rstrip() + "\n\n\n" if self.statement else "") + self.p["code"]
            recorder, test_code = self._prepare_asserts()
        if recorder is None:
            return
        self.program_started = True
        try:
            # Only the names the tests mention come back: no decoding (or importing) of the rest.
            names = link.request("exec", source=program, name="solution", want=sorted(self.wanted))
        except HarnessAbort as abort:
            self._load_failed(recorder, f"{abort.reason}: {abort.detail}", abort)
            return
        except Exception as exc:
            self._load_failed(recorder, describe(exc), None)
            return
        try:
            namespace = self._namespace(names)
            if style == "check":
                self._run_check(namespace, test_code, recorder)
            else:
                self._run_asserts(namespace, test_code, recorder)
        except HarnessAbort as abort:
            recorder.fill(f"{abort.reason}: {abort.detail}")
            self._aborted(abort)
        self.report["tests"] = recorder.tests()

    def _prepare_statement(self) -> bool:
        """The statement's code: the reference's `prompt`, else (HumanEval style) what the item's
        prompt defines, in whatever form it came (statement_code)."""
        given = self.p.get("statement")
        if given:
            try:
                tree = _parse(given, "prompt.py")
            except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                self._test_error(f"the reference's prompt does not compile: {describe(exc)}")
                return False
            self.statement = given
        elif self.p["style"] == "check":
            self.statement = statement_code(self.p.get("prompt", ""))
            try:
                tree = _parse(self.statement, "prompt.py")
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                self.statement, tree = "", None
        else:
            tree = None
        # The statement's helpers may call what the program provides (the entry point, stubs).
        self.statement_refs = _referenced_names(tree) if tree is not None else set()
        return True

    def _prepare_check(self):
        source = self.p["test"]
        try:
            tree = _parse(source, "test.py")
            self.wanted = _referenced_names(tree) | {self.p["entry_point"]} | self.statement_refs
            names = split_check(tree, source)
            code = compile(tree, "test.py", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            self._test_error(f"the reference's test code does not compile: {describe(exc)}")
            return None, None
        return Recorder(names or [f"check({self.p['entry_point']})"], self._broken), (code, bool(names))

    def _prepare_asserts(self):
        codes = []
        self.wanted = set(self.statement_refs)
        for i, source in enumerate(self.p["asserts"]):
            try:
                tree = _parse(source, f"assert[{i}]")
                self.wanted |= _referenced_names(tree)
                codes.append(compile(tree, f"assert[{i}]", "exec"))
            except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                self._test_error(f"assert {i} of the reference does not compile: {describe(exc)}")
                return None, None
        return Recorder([_clip(s, _NAME_LIMIT) for s in self.p["asserts"]], self._broken), codes

    def _broken(self) -> str | None:
        abort = self.link.abort if self.link is not None else None
        return None if abort is None else f"{abort.reason}: {abort.detail}"

    def _namespace(self, names: dict) -> dict:
        """The tests' globals: the program's names as proxies, minus any that would shadow the
        builtins or stdlib modules the tests rely on; then the statement's own (trusted) helpers."""
        entry = self.p.get("entry_point")
        ns: dict = {"__name__": "__test__", "__builtins__": builtins}
        for name, value in names.items():
            if type(name) is not str or name == "__harness__":
                continue
            if name != entry and name in _BUILTIN_NAMES:
                continue
            if name != entry and name in _STDLIB and not _is_module_named(value, name):
                continue
            ns[name] = value
        if self.statement:
            trusted, provided = statement_names(self.statement, entry)
            if trusted & self.wanted:
                self._run_statement(ns, trusted, provided)
        return ns

    def _run_statement(self, ns: dict, trusted: set[str], provided: set[str]) -> None:
        """Define the statement's helpers in the tests' namespace over the program's copies.

        The program's copies go first, so a helper that fails to define leaves a NameError, never
        the program's version; each top-level statement runs on its own, so one that fails (an
        import the sandbox lacks) doesn't take the rest with it. What the program provides (the
        entry point, the statement's stubs) stays the program's."""
        for name in trusted:
            ns.pop(name, None)
        program_provided = {name: ns[name] for name in provided if name in ns}
        for node in _parse(self.statement, "prompt.py").body:
            try:
                exec(compile(_ast.Module(body=[node], type_ignores=[]), "prompt.py", "exec"), ns)
            except HarnessAbort:
                raise
            except Exception:  # a statement line that doesn't run contributes nothing
                continue
        ns["__builtins__"] = builtins
        for name in provided:
            if name in program_provided:
                ns[name] = program_provided[name]
            else:
                ns.pop(name, None)

    def _run_check(self, ns: dict, test_code, recorder: Recorder) -> None:
        code, split = test_code
        entry = self.p["entry_point"]
        program_check = ns.get("check")
        ns["__harness__"] = recorder
        try:
            exec(code, ns)
        except HarnessAbort:
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
        except HarnessAbort:
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
                raise HarnessAbort("timeout", "the time limit passed before this test")
            recorder.begin(i)
            try:
                exec(code, ns)
            except HarnessAbort:
                raise
            except Exception as exc:
                recorder.failed(i, exc)
            else:
                recorder.passed(i)

    def _load_failed(self, recorder: Recorder, error: str, abort: HarnessAbort | None) -> None:
        self.report["status"] = "load_error"
        self.report["error"] = _clip(f"the program failed to load: {error}", 3000)
        recorder.current = None
        recorder.fill("the program failed to load")
        self.report["tests"] = recorder.tests()
        if abort is not None:
            self._aborted(abort)

    def _aborted(self, abort: HarnessAbort) -> None:
        self.report["abort"] = {"reason": abort.reason, "detail": _clip(abort.detail, 1000)}
        if abort.reason == "runner_died" and getattr(self.link, "cpu_exhausted", False):
            self.report["abort"]["reason"] = "timeout"

    def _test_error(self, message: str) -> None:
        self.report["status"] = "test_error"
        self.report["error"] = _clip(message, 3000)

    def run_cases(self) -> None:
        self.program_started = True
        CaseRunner(self.p, self.deadline, self.workdir, self.report).run_cases()


def _is_module_named(value, name: str) -> bool:
    """A program binding of a stdlib module's name counts only when it is that module (here):
    `import cmath as math` must not hand the tests another module as `math`."""
    if type(value) is not type(sys):
        return False
    real = value.__dict__.get("__name__")
    return type(real) is str and (real == name or real.endswith("." + name))


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
    return frames.Decoder(_no_refs).loads(b"".join(chunks))


def _no_refs(ref):
    raise frames.WireError("the payload can't carry program objects")


def serve(results_fd: int, workdir: str) -> None:
    """Run one payload (read from stdin) and write the report to `results_fd`; never returns."""
    # As pid 1 of the run's namespace this process gets only the signals it has a handler for:
    # without Python's SIGINT handler, the program's os.kill(1, SIGINT) is dropped by the kernel.
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    frames.limit_int_digits()
    os.set_inheritable(results_fd, False)
    write_all(results_fd, b"+")  # "the harness started": the parent tells a dead harness from a failed sandbox
    # The runner is forked first, while this process holds nothing secret.
    link = Link.fork(results_fd)
    report: dict = {"status": "harness_error", "tests": []}
    nonce = ""
    harness: Harness | None = None
    try:
        payload = _read_payload()
        nonce = str(payload.pop("nonce"))
        limits = payload["limits"]
        harness_limits = dict(limits, memory_mb=int(limits["memory_mb"]) + 256,
                            cpu_s=float(limits["cpu_s"]) + 2, max_processes=int(limits["max_processes"]) + 4)
        _set_limits(limits, link.pid)
        _set_limits(harness_limits, None)
        link.cpu_limit_s = float(_cpu_limit(limits))
        harness = Harness(payload, link, workdir)
        if payload["style"] == "cases":
            link.close()
            link = None
            harness.link = None
            harness.run_cases()
        else:
            harness.run_functions()
            link.close()
            usage = link.rusage
            if usage is not None:
                harness.report["runner"] = {"cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                                          "max_rss_kb": usage.ru_maxrss}
            harness.report["memory_error"] = link.memory_error
        report = harness.report
    except BaseException as exc:  # the report must go out whatever happened here
        import traceback

        report = {"status": "harness_error", "tests": [],
                  "error": _clip("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), 4000),
                  # After the program has run, a failure here may be its doing: the parent scores it.
                  "program_started": bool(harness is not None and harness.program_started)}
        if link is not None:
            try:
                link.close()
            except BaseException:
                pass
    report["nonce"] = nonce
    data = frames.dump_json(report)
    os.set_blocking(results_fd, True)
    write_all(results_fd, data)
    os.close(results_fd)
    sys.stdout.flush()
    os._exit(0)
