"""Sandbox slots: one bubblewrap sandbox with a zygote per slot, one fresh namespace set per run.

A slot's sandbox (started once): new user/net/uts/cgroup namespaces, read-only /usr, interpreter and
harness, no /proc, an empty environment, a non-root host uid of its own (so RLIMIT_NPROC counts this
slot only), its own cgroup v1 memory + pids group when available, and a seccomp filter; inside it
the zygote (harness/zygote.py), which holds CAP_SYS_ADMIN in that user namespace only.

Each run: the zygote forks it into new pid/mount/ipc namespaces with a fresh size-capped /tmp and
/dev/shm, drops every capability, sets no_new_privs and the strict seccomp filter, and runs the
harness as pid 1 of the new pid namespace. The run ends when that pid 1 exits or is killed, and the
kernel takes every process of the run with it (setsid daemons included). If the zygote ever fails
to end a run, the slot is torn down as a whole (every process of its cgroup, else of its uid).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HARNESS_SOURCES = Path(__file__).with_name("harness")
# The harness writes this byte first: an empty results pipe means the harness never started.
READY_MARK = b"+"
_REPORT_LIMIT = 64 << 20
_MB = 1 << 20


@dataclass
class SandboxSettings:
    """How sandboxes are built; fixed for the scorer's lifetime."""

    python: str
    harness_dir: str
    isolated: bool = True
    bwrap: str = "bwrap"
    drop_uid: bool = True  # the service is root: run each slot as its own unprivileged uid
    python_binds: list[str] = field(default_factory=list)
    bpf: bytes = b""  # the runs' filter (strict)
    bpf_zygote: bytes = b""  # the zygote's filter: the same, except that unshare and mount stay allowed


@dataclass
class RunLimits:
    timeout_s: float
    memory_mb: int
    max_output_bytes: int
    tail_bytes: int
    tmp_mb: int
    max_processes: int
    max_open_files: int
    max_file_bytes: int

    def harness_limits(self) -> dict[str, Any]:
        return {"memory_mb": self.memory_mb, "cpu_s": self.timeout_s, "max_file_bytes": self.max_file_bytes,
                "max_open_files": self.max_open_files, "max_processes": self.max_processes}


@dataclass
class Slot:
    """One concurrent sandbox: its host uid and, when available, its cgroups."""

    index: int
    uid: int | None
    cgroup: "SlotCgroup | None" = None


@dataclass
class RunOutcome:
    report: dict[str, Any] | None = None
    killed: str | None = None  # "timeout" | "output_limit" | "report_limit" when the parent ended the run
    harness_started: bool = False
    problem: str = ""  # why there is no valid report
    exit_code: int | None = None
    stdout_tail: bytes = b""
    stderr_tail: bytes = b""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    wall_s: float = 0.0
    memory_peak_bytes: int | None = None
    oom_kills: int = 0
    sandbox_died: str = ""  # the slot's zygote died during the run: not the program's doing, unless OOM


class SlotCgroup:
    """A cgroup v1 memory + pids pair for one slot; limits set before each run, peak read after."""

    def __init__(self, memory_dir: Path, pids_dir: Path) -> None:
        self.memory_dir = memory_dir
        self.pids_dir = pids_dir

    @classmethod
    def create(cls, name: str, uid: int | None) -> "SlotCgroup":
        mem = Path("/sys/fs/cgroup/memory/rewardsvc-code") / name
        pids = Path("/sys/fs/cgroup/pids/rewardsvc-code") / name
        for d in (mem, pids):
            d.mkdir(parents=True, exist_ok=True)
            if uid is not None:  # the slot's uid joins the group itself, first thing after the fork
                os.chown(d / "cgroup.procs", uid, uid)
        return cls(mem, pids)

    def procs_files(self) -> list[str]:
        return [str(self.memory_dir / "cgroup.procs"), str(self.pids_dir / "cgroup.procs")]

    def prepare(self, memory_bytes: int, max_pids: int) -> None:
        """Set the slot's limits before a sandbox is started in it."""
        self.set_memory(memory_bytes)
        self._write(self.pids_dir / "pids.max", max_pids)

    def set_memory(self, memory_bytes: int) -> None:
        swap = self.memory_dir / "memory.memsw.limit_in_bytes"
        # memsw must stay >= the memory limit: raise it first when growing, after when shrinking.
        for path in ((swap, self.memory_dir / "memory.limit_in_bytes", swap) if swap.exists()
                     else (self.memory_dir / "memory.limit_in_bytes",)):
            with contextlib.suppress(OSError):
                self._write(path, memory_bytes)

    def start_run(self, memory_bytes: int) -> int:
        """The run's own memory limit, a fresh peak; returns the OOM-kill count so far."""
        self.set_memory(memory_bytes)
        with contextlib.suppress(OSError):
            self._write(self.memory_dir / "memory.max_usage_in_bytes", 0)
        return self.oom_kills()

    def oom_kills(self) -> int:
        try:
            for line in (self.memory_dir / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def peak_bytes(self) -> int | None:
        try:
            return int((self.memory_dir / "memory.max_usage_in_bytes").read_text())
        except (OSError, ValueError):
            return None

    def members(self) -> list[int]:
        pids: set[int] = set()
        for procs in (self.pids_dir / "cgroup.procs", self.memory_dir / "cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except (OSError, ValueError):
                continue
        return sorted(pids)

    def kill_leftovers(self) -> int:
        """SIGKILL everything in the slot, again until nothing is left (forks race the first pass)."""
        killed = 0
        for _ in range(50):
            pids = self.members()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, 9)
                    killed += 1
            time.sleep(0.001)
        return killed

    def remove(self) -> None:
        for d in (self.memory_dir, self.pids_dir):
            with contextlib.suppress(OSError):
                d.rmdir()

    @staticmethod
    def _write(path: Path, value: int) -> None:
        with open(path, "w") as f:
            f.write(str(value))


def remove_stale_cgroups() -> None:
    """Empty and remove slot cgroups left by services that died (named `<pid>-...`)."""
    for root in (Path("/sys/fs/cgroup/memory/rewardsvc-code"), Path("/sys/fs/cgroup/pids/rewardsvc-code")):
        try:
            entries = list(root.iterdir())
        except OSError:
            continue
        for d in entries:
            owner = d.name.split("-", 1)[0]
            if not d.is_dir() or not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue
            group = SlotCgroup(d, d)
            group.kill_leftovers()
            with contextlib.suppress(OSError):
                d.rmdir()


def cgroups_available() -> bool:
    try:
        for root in (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/pids")):
            if not (root / "cgroup.procs").exists():
                return False
            probe = root / "rewardsvc-code"
            probe.mkdir(exist_ok=True)
            if not os.access(probe, os.W_OK):
                return False
        return True
    except OSError:
        return False


def install_harness(python: str) -> str:
    """Copy the harness into a private, world-readable directory and precompile it for `python`.

    The sandbox's unprivileged uid must be able to read it, and the package may live where it can't
    (e.g. under /root); compiled once here, each run skips compiling the harness.
    """
    _remove_stale_harnesses()
    target = tempfile.mkdtemp(prefix=f"rewardsvc-harness-{os.getpid()}-")
    os.chmod(target, 0o755)
    for src in HARNESS_SOURCES.glob("*.py"):
        dst = Path(target) / src.name
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)
    subprocess.run([python, "-I", "-S", "-c", "import compileall,sys; compileall.compile_dir(sys.argv[1], quiet=1)",
                    target], check=False, capture_output=True, timeout=120)
    for root, dirs, files in os.walk(target):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return target


def _remove_stale_harnesses() -> None:
    """Harness copies left by services that died (named `rewardsvc-harness-<pid>-...`)."""
    for d in Path(tempfile.gettempdir()).glob("rewardsvc-harness-*"):
        owner = d.name[len("rewardsvc-harness-"):].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(d, ignore_errors=True)


def python_binds(python: str) -> list[str]:
    """Directories to bind read-only so `python` runs in a sandbox that has only /usr."""
    out = subprocess.run([python, "-I", "-S", "-c", "import sys; print(sys.base_prefix)"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"{python} does not run: {out.stderr.strip()[-500:]}")
    prefix = os.path.realpath(out.stdout.strip())
    binds = [] if prefix == "/usr" or prefix.startswith("/usr/") else [prefix]
    real = os.path.realpath(python)
    if not (real.startswith("/usr/") or any(real.startswith(b + "/") for b in binds)):
        binds.append(os.path.dirname(real))
    return binds


def _root_links() -> list[str]:
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def build_command(settings: SandboxSettings, slot: Slot, ctl_fd: int, bpf_fd: int | None,
                  strict_fd: int | None, workdir: str) -> list[str]:
    """The command that starts a slot's zygote."""
    harness_dir = "/harness" if settings.isolated else settings.harness_dir
    boot = f"import sys;sys.path.insert(0,{harness_dir!r});import zygote;zygote.main()"
    args = [settings.python, "-I", "-S", "-B", "-c", boot, str(ctl_fd),
            "isolated" if settings.isolated else "unsafe", str(strict_fd if strict_fd is not None else -1), workdir]
    if not settings.isolated:
        return args
    cmd: list[str] = []
    if slot.cgroup is not None:
        # Join the slot's cgroups before anything else runs, so the whole tree is accounted.
        cmd += ["/bin/sh", "-c", 'echo $$ >"$1" && echo $$ >"$2" && shift 2 && exec "$@"', "sh",
                *slot.cgroup.procs_files()]
    cmd += [settings.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--clearenv", "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
            # Inside this user namespace only: the zygote needs it to give each run new namespaces.
            "--cap-add", "CAP_SYS_ADMIN",
            "--ro-bind", "/usr", "/usr", *_root_links()]
    for path in settings.python_binds:
        cmd += ["--ro-bind", path, path]
    cmd += ["--ro-bind", settings.harness_dir, "/harness",
            "--dev", "/dev", "--size", str(_MB), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--size", str(_MB), "--tmpfs", "/tmp", "--remount-ro", "/",
            "--chdir", "/tmp", "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8"]
    if bpf_fd is not None:
        cmd += ["--seccomp", str(bpf_fd)]
    return cmd + ["--", *args]


class _Tail:
    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * self.keep:
            del self.data[: len(self.data) - self.keep]

    def tail(self) -> bytes:
        return bytes(self.data[-self.keep:]) if self.keep else b""


class _Run:
    """One run's pipes as seen from the parent: readers on the event loop, tails, the report."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tail_bytes: int, on_limit) -> None:
        self.loop = loop
        self.stdout = _Tail(tail_bytes)
        self.stderr = _Tail(tail_bytes)
        self.report = bytearray()
        self.max_output_bytes = 1 << 62
        self.readers: dict[int, asyncio.Future[None]] = {}
        self.stdin: int | None = None
        self.on_limit = on_limit

    def watch(self, fd: int, sink) -> None:
        os.set_blocking(fd, False)
        self.readers[fd] = self.loop.create_future()
        self.loop.add_reader(fd, self._readable, fd, sink)

    def _readable(self, fd: int, sink) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            sink(chunk)
        else:
            self.close_reader(fd)

    def close_reader(self, fd: int) -> None:
        fut = self.readers.get(fd)
        if fut is None or fut.done():
            return
        self.loop.remove_reader(fd)
        os.close(fd)
        fut.set_result(None)

    def on_stdout(self, chunk: bytes) -> None:
        self.stdout.add(chunk)
        if self.stdout.total + self.stderr.total > self.max_output_bytes:
            self.on_limit("output_limit")

    def on_stderr(self, chunk: bytes) -> None:
        self.stderr.add(chunk)
        if self.stdout.total + self.stderr.total > self.max_output_bytes:
            self.on_limit("output_limit")

    def on_report(self, chunk: bytes) -> None:
        self.report.extend(chunk)
        if len(self.report) > _REPORT_LIMIT:
            self.on_limit("report_limit")

    async def send(self, body: bytes) -> None:
        assert self.stdin is not None
        fd, view = self.stdin, memoryview(body)
        writable = asyncio.Event()
        while view:
            try:
                view = view[os.write(fd, view):]
                continue
            except BlockingIOError:
                pass
            except OSError:  # the harness is gone; the report (or its absence) tells the rest
                break
            writable.clear()
            self.loop.add_writer(fd, writable.set)
            try:
                await writable.wait()
            finally:
                self.loop.remove_writer(fd)
        self.close_stdin()

    def close_stdin(self) -> None:
        if self.stdin is not None:
            with contextlib.suppress(OSError):
                self.loop.remove_writer(self.stdin)
            os.close(self.stdin)
            self.stdin = None

    def close(self) -> None:
        for fd in list(self.readers):
            self.close_reader(fd)
        self.close_stdin()


class Zygote:
    """A slot's long-lived sandbox. `run()` executes one payload in fresh namespaces inside it."""

    def __init__(self, settings: SandboxSettings, slot: Slot, tail_bytes: int) -> None:
        self.settings = settings
        self.slot = slot
        self.tail_bytes = tail_bytes
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctl: socket.socket | None = None
        self.dead = False
        self.why_dead = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[None] | None = None
        self._done: dict[int, asyncio.Future[int | None]] = {}
        self._next_id = 0
        self._log = _Tail(4096)
        self._log_fd: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, timeout_s: float = 120.0) -> None:
        settings, slot = self.settings, self.slot
        loop = self._loop = asyncio.get_running_loop()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds_to_close = [child_end.fileno()]
        bpf_fd = strict_fd = None
        if settings.isolated:
            bpf_fd = _memfd("rewardsvc-seccomp-zygote", settings.bpf_zygote) if settings.bpf_zygote else None
            strict_fd = _memfd("rewardsvc-seccomp", settings.bpf)
            fds_to_close += [fd for fd in (bpf_fd, strict_fd) if fd is not None]
            workdir = "/tmp"
        else:
            workdir = tempfile.gettempdir()
            strict_fd = _memfd("rewardsvc-none", b"")
            fds_to_close.append(strict_fd)
        cmd = build_command(settings, slot, child_end.fileno(), bpf_fd, strict_fd, workdir)
        # The uid drop happens in the forked child before exec (no preexec_fn): root's capabilities
        # go with it, and RLIMIT_NPROC counts this slot's processes only.
        drop = ({"user": slot.uid, "group": slot.uid, "extra_groups": []}
                if settings.isolated and settings.drop_uid and slot.uid is not None else {})
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, pass_fds=fds_to_close,
                                         env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                         cwd="/tmp" if settings.isolated else workdir,
                                         start_new_session=not settings.isolated, **drop)
        finally:
            child_end.close()
            for fd in fds_to_close[1:]:
                os.close(fd)
        assert self.proc.stderr is not None
        self._log_fd = os.dup(self.proc.stderr.fileno())
        self.proc.stderr.close()
        os.set_blocking(self._log_fd, False)
        loop.add_reader(self._log_fd, self._on_log)
        self.ctl = parent_end
        parent_end.setblocking(False)
        self._ready = loop.create_future()
        loop.add_reader(parent_end.fileno(), self._on_ctl)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except asyncio.TimeoutError:
            self.why_dead = f"the sandbox did not come up within {timeout_s:.0f}s"
        except BaseException:  # cancelled while starting: leave nothing behind
            await self.close()
            raise
        if self.dead or not self._ready.done():
            why = self.why_dead or "it exited"
            log_tail = self._log.tail().decode("utf-8", "replace").strip()
            await self.close()
            raise RuntimeError(f"the code sandbox failed to start ({why}): {log_tail[-1500:] or 'no output'}")

    def _on_log(self) -> None:
        assert self._loop is not None and self._log_fd is not None
        try:
            chunk = os.read(self._log_fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self._log.add(chunk)
            return
        self._loop.remove_reader(self._log_fd)
        os.close(self._log_fd)
        self._log_fd = None

    def _on_ctl(self) -> None:
        import json

        assert self.ctl is not None
        try:
            data = self.ctl.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._mark_dead("the zygote exited")
            return
        try:
            msg = json.loads(data)
        except ValueError:
            self._mark_dead("the zygote sent garbage")
            return
        if msg.get("ready") and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        elif "done" in msg:
            fut = self._done.pop(msg["done"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg.get("status"))

    def _mark_dead(self, why: str) -> None:
        if self.dead:
            return
        self.dead = True
        self.why_dead = why
        if self._loop is not None and self.ctl is not None:
            self._loop.remove_reader(self.ctl.fileno())
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        for fut in self._done.values():
            if not fut.done():
                fut.set_result(None)
        self._done.clear()
        if why != "closed" and self.proc is not None and self.proc.poll() is None:
            log.warning("code sandbox slot %d: %s; %s", self.slot.index, why,
                        self._log.tail().decode("utf-8", "replace")[-500:])

    @property
    def alive(self) -> bool:
        return not self.dead and self.proc is not None and self.proc.poll() is None

    async def close(self) -> None:
        """Tear the slot's sandbox down: the zygote, its runs, anything left in the slot."""
        self._mark_dead("closed")
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if self.settings.isolated:
                    self.proc.kill()
                else:
                    os.killpg(self.proc.pid, 9)
        kill_slot(self.slot)
        if self.proc is not None:
            for _ in range(500):
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.01)
        if self._log_fd is not None and self._loop is not None:
            self._loop.remove_reader(self._log_fd)
            os.close(self._log_fd)
            self._log_fd = None

    # -- runs -----------------------------------------------------------------------------------
    async def run(self, payload: dict[str, Any], limits: RunLimits) -> RunOutcome:
        """One harness run in fresh namespaces. Kills it at the backstop deadline, on an output flood,
        and on cancellation (then waits for it to be gone before propagating)."""
        import json

        assert self._loop is not None and self.ctl is not None and self.alive
        loop = self._loop
        outcome = RunOutcome()
        self._next_id += 1
        run_id = self._next_id
        nonce = secrets.token_hex(16)
        body = json.dumps({**payload, "nonce": nonce, "limits": limits.harness_limits(),
                           "timeout_s": limits.timeout_s, "max_output_bytes": limits.max_output_bytes},
                          ensure_ascii=True).encode("ascii")
        workdir = None if self.settings.isolated else tempfile.mkdtemp(prefix="rewardsvc-unsafe-")

        def limit_hit(reason: str) -> None:
            if outcome.killed is None:
                outcome.killed = reason
            self._kill_run(run_id)

        run = _Run(loop, limits.tail_bytes, limit_hit)
        run.max_output_bytes = limits.max_output_bytes
        pipes = [os.pipe() for _ in range(4)]  # stdin, stdout, stderr, results
        child_fds = [pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1]]
        done = self._done[run_id] = loop.create_future()
        baseline_ooms = 0
        if self.slot.cgroup is not None:
            baseline_ooms = self.slot.cgroup.start_run(_cgroup_bytes(limits.memory_mb, limits.tmp_mb))
        header = {"run": run_id, "tmp_mb": limits.tmp_mb}
        if workdir:
            header["workdir"] = workdir
        t0 = time.perf_counter()
        try:
            socket.send_fds(self.ctl, [json.dumps(header).encode()], child_fds)
        except OSError as exc:
            self._mark_dead(f"the zygote can't be reached ({exc})")
        finally:
            for fd in child_fds:
                os.close(fd)
        run.stdin = pipes[0][1]
        os.set_blocking(run.stdin, False)
        run.watch(pipes[1][0], run.on_stdout)
        run.watch(pipes[2][0], run.on_stderr)
        run.watch(pipes[3][0], run.on_report)
        status = None
        try:
            # The harness enforces timeout_s itself and reports partial results; this is the backstop.
            backstop = limits.timeout_s + 2.0 + 0.1 * limits.timeout_s
            try:
                status = await asyncio.wait_for(self._finish(run, body, done), timeout=backstop)
            except asyncio.TimeoutError:
                limit_hit("timeout")
        finally:
            if not done.done():
                await self._end_run(run_id, done)
            run.close()
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
        outcome.wall_s = time.perf_counter() - t0
        outcome.exit_code = status if status is not None else (done.result() if done.done() else None)
        if self.dead and self.why_dead != "closed" and outcome.killed is None:
            outcome.sandbox_died = self.why_dead
        outcome.stdout_tail, outcome.stderr_tail = run.stdout.tail(), run.stderr.tail()
        outcome.stdout_bytes, outcome.stderr_bytes = run.stdout.total, run.stderr.total
        if self.slot.cgroup is not None:
            outcome.memory_peak_bytes = self.slot.cgroup.peak_bytes()
            outcome.oom_kills = self.slot.cgroup.oom_kills() - baseline_ooms
        _read_report(bytes(run.report), nonce, outcome)
        return outcome

    async def _finish(self, run: _Run, body: bytes, done: "asyncio.Future[int | None]") -> int | None:
        await run.send(body)
        status = await asyncio.shield(done)
        # The run's namespace died with its pid 1: every pipe is at EOF, or is about to be.
        pending = [f for f in run.readers.values() if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=0.5)
        return status

    def _kill_run(self, run_id: int) -> None:
        if self.ctl is not None and not self.dead:
            try:
                self.ctl.send(b'{"kill":%d}' % run_id)
            except OSError as exc:
                self._mark_dead(f"the zygote can't be reached ({exc})")

    async def _end_run(self, run_id: int, done: "asyncio.Future[int | None]") -> None:
        """Kill the run and wait until it is gone; if the zygote can't, take the slot down."""
        self._kill_run(run_id)
        try:
            await asyncio.wait_for(asyncio.shield(done), 3.0)
            return
        except asyncio.TimeoutError:
            log.error("code sandbox slot %d: run %d did not end after a kill; restarting the slot",
                      self.slot.index, run_id)
        except asyncio.CancelledError:
            self._mark_dead("cancelled while a run was being killed")
            kill_slot(self.slot)
            raise
        self._mark_dead("a run could not be killed")
        await self.close()


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def kill_slot(slot: Slot) -> None:
    """SIGKILL every process of the slot: its cgroup members, else every process of its uid."""
    if slot.cgroup is not None:
        slot.cgroup.kill_leftovers()
    elif slot.uid is not None and os.geteuid() == 0:
        # kill(-1) as the slot's uid reaches every process of that uid, in any pid namespace.
        for _ in range(3):
            subprocess.run(["kill", "-9", "-1"], user=slot.uid, group=slot.uid, extra_groups=[],
                           env={"PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False)
            if not process_uids_alive([slot.uid]):
                break


def _cgroup_bytes(memory_mb: int, tmp_mb: int) -> int:
    # The program's address space, its /tmp pages, and room for the zygote, harness and runner.
    return (memory_mb + tmp_mb + 256) * _MB


def _read_report(data: bytes, nonce: str, outcome: RunOutcome) -> None:
    import json

    outcome.harness_started = data.startswith(READY_MARK)
    if not outcome.harness_started:
        outcome.problem = "the harness did not start"
        return
    body = data[len(READY_MARK):]
    if not body:
        outcome.problem = "the sandbox ended without a report (the program killed the harness?)"
        return
    try:
        report = json.loads(body)
    except ValueError:
        outcome.problem = "the harness's report is incomplete (the harness was killed while writing it?)"
        return
    if not isinstance(report, dict) or not secrets.compare_digest(str(report.get("nonce", "")), nonce):
        outcome.problem = "the report does not carry this run's nonce"
        return
    outcome.report = report


def process_uids_alive(uids: Sequence[int]) -> list[int]:
    """PIDs of live processes owned by any of `uids` (tests use this to check nothing is left)."""
    wanted = {str(u) for u in uids}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if line.split()[1] in wanted:
                            found.append(int(entry.name))
                        break
        except OSError:
            continue
    return found


def log_unsafe(name: str) -> None:
    log.warning("code scorer %r runs WITHOUT isolation (unsafe_no_isolation: true): untrusted code can read "
                "and change this machine. Use it only for trusted code on a local machine.", name)


__all__ = ["SandboxSettings", "RunLimits", "Slot", "RunOutcome", "SlotCgroup", "Zygote",
           "kill_slot", "remove_stale_cgroups",
           "build_command", "install_harness", "python_binds", "cgroups_available", "process_uids_alive",
           "log_unsafe"]
