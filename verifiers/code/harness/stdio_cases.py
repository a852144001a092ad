"""The stdin/stdout style: each case is a fresh interpreter fed its input, its output compared.

The program runs as `__main__` in a new process per case (exec, so it shares nothing with the
harness's memory), gets only its source on fd 3 and the case's input on stdin; stdout is capped while
it is read; the work directory is emptied between cases. Outputs match when their whitespace-
separated tokens are equal, as competitive-programming harnesses compare.
"""

from __future__ import annotations

import _signal
import os
import select
import sys
import time

from apps_compare import apps_match
from frames import write_all
from program import Recorder, _clip
from remote import _signame

CASE_BOOT = (
    "import os,sys\n"
    "f=os.fdopen(3,'rb');s=f.read();f.close()\n"
    "sys.argv=['solution.py']\n"
    "g={'__name__':'__main__','__builtins__':__builtins__,'__file__':'solution.py'}\n"
    "exec(compile(s,'solution.py','exec'),g)\n"
)
_ERROR_LIMIT = 1000


class CaseRunner:
    """Runs every case of one payload; fills the harness's report."""

    def __init__(self, payload: dict, deadline: float, workdir: str, report: dict) -> None:
        self.p = payload
        self.deadline = deadline
        self.workdir = workdir
        self.report = report

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
                        write_all(2, chunk)
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
        result: dict = {"cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_kb": usage.ru_maxrss,
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
        if apps_match(got, want) if self.p.get("compare") == "apps" else got.split() == want.split():
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


def _cpu_limit(limits: dict) -> int:
    return max(1, int(float(limits["cpu_s"]) + 0.999))
