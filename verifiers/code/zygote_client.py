"""The parent's side of a slot's zygote: start the slot's sandbox, run payloads in it, end runs.

A slot's sandbox (started once, bwrap.py): new user/net/uts/cgroup namespaces, read-only /usr,
interpreter and harness, no /proc, an empty environment, a non-root host uid of its own (so
RLIMIT_NPROC counts this slot only), its own cgroup v1 memory + pids group when available
(cgroups.py), and a seccomp filter (seccomp.py); inside it the zygote (harness/zygote.py), which
holds CAP_SYS_ADMIN in that user namespace only.

Each run: the zygote forks it into new pid/mount/ipc namespaces with a fresh size-capped /tmp and
/dev/shm, drops every capability, sets no_new_privs and the strict seccomp filter, and runs the
harness as pid 1 of the new pid namespace. The run ends when that pid 1 exits or is killed, and the
kernel takes every process of the run with it (setsid daemons included). If the zygote ever fails
to end a run, the slot is torn down as a whole (every process of its cgroup, else of its uid).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from rewardsvc.verifiers.code.bwrap import build_command
from rewardsvc.verifiers.code.cgroups import cgroup_bytes
from rewardsvc.verifiers.code.report import RunOutcome, read_report
from rewardsvc.verifiers.code.run_pipes import OutputTail, RunPipes
from rewardsvc.verifiers.code.settings import RunLimits, SandboxSettings
from rewardsvc.verifiers.code.slots import Slot, kill_slot

log = logging.getLogger(__name__)


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
        self._log = OutputTail(4096)
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
        uid = slot.uid if settings.isolated and settings.drop_uid else None
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, pass_fds=fds_to_close,
                                         env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                                         cwd="/tmp" if settings.isolated else workdir,
                                         start_new_session=not settings.isolated,
                                         user=uid, group=uid, extra_groups=None if uid is None else [])
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

        run = RunPipes(loop, limits.tail_bytes, limit_hit)
        run.max_output_bytes = limits.max_output_bytes
        pipes = [os.pipe() for _ in range(4)]  # stdin, stdout, stderr, results
        child_fds = [pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1]]
        done = self._done[run_id] = loop.create_future()
        baseline_ooms = 0
        if self.slot.cgroup is not None:
            baseline_ooms = self.slot.cgroup.start_run(cgroup_bytes(limits.memory_mb, limits.tmp_mb))
        header: dict[str, int | str] = {"run": run_id, "tmp_mb": limits.tmp_mb}
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
        read_report(bytes(run.report), nonce, outcome)
        return outcome

    async def _finish(self, run: RunPipes, body: bytes, done: asyncio.Future[int | None]) -> int | None:
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

    async def _end_run(self, run_id: int, done: asyncio.Future[int | None]) -> None:
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
