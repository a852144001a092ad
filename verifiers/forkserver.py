"""A worker pool's fork server: imports the worker module once, then forks each worker from itself.

A math worker started as `python -m ...` spends ~0.9 CPU-s importing sympy and math-verify before its
first check, and the pool starts one after every check that times out or crashes. Under hostile load
(items built to time out) those imports were most of what a bad item cost. Forked from a process that
has them imported, a worker is ready in milliseconds.

Run as `python -m rewardsvc.verifiers.forkserver MODULE` with a Unix SOCK_SEQPACKET socket as stdin
(one message per send; file descriptors travel with SCM_RIGHTS). The pool's side is `ForkServer` in
workerpool.py. Messages:
  pool -> here   b"F" + two fds: the new worker's stdin (read end) and stdout (write end)
  here -> pool   b"P <pid>" + the worker's pidfd (the pool kills through it: no pid-reuse race)
  here -> pool   b"X <pid> <returncode>" once the worker has exited (reaped here)
This process is single-threaded (fork is safe here, unlike in the server with its gRPC threads), runs
no job itself, and exits when the pool closes the socket, killing the workers still running.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import importlib
import os
import select
import signal
import socket
import sys
import traceback
from types import ModuleType

#: The return code reported for a worker whose fork server died before reporting its exit: the pool
#: killed it through its pidfd.
LOST = -9


class ForkedProcess:
    """A worker forked by the fork server: the parts of asyncio.subprocess.Process the pool uses."""

    def __init__(self, pid: int, pidfd: int, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader,
                 exited: asyncio.Future[int], transports: list[asyncio.BaseTransport]) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._exited = exited
        self._transports = transports
        exited.add_done_callback(self._on_exit)

    def _on_exit(self, fut: asyncio.Future[int]) -> None:
        self.kill()  # a no-op once reaped; a worker orphaned by a dead fork server dies here
        self.returncode = fut.result() if not fut.cancelled() and fut.exception() is None else LOST
        os.close(self._pidfd)
        for t in self._transports:
            t.close()

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


class ForkServer:
    """The pool's side of the fork server: `await start()`, then `await fork()` per worker."""

    def __init__(self, module: str, env: dict[str, str], line_limit: int, startup_timeout_s: float) -> None:
        self.module = module
        self.env = env
        self.line_limit = line_limit
        self.startup_timeout_s = startup_timeout_s
        self.dead = False
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._ready: asyncio.Future[None] | None = None
        # Per fork in flight: (pid, pidfd, its exit future), set when the fork server names the worker.
        self._pending: collections.deque[asyncio.Future[tuple[int, int, asyncio.Future[int]]]] = collections.deque()
        self._exits: dict[int, asyncio.Future[int]] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "rewardsvc.verifiers.forkserver", self.module, stdin=theirs.fileno(),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=self.env)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_message)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.startup_timeout_s)
        except BaseException:
            await self.close()
            raise

    async def fork(self) -> ForkedProcess:
        if self.dead or self._sock is None:
            raise RuntimeError(f"the fork server of {self.module} is gone")
        loop = asyncio.get_running_loop()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        fut: asyncio.Future[tuple[int, int, asyncio.Future[int]]] = loop.create_future()
        self._pending.append(fut)
        try:
            socket.send_fds(self._sock, [b"F"], [in_r, out_w])
            pid, pidfd, exited = await asyncio.wait_for(asyncio.shield(fut), self.startup_timeout_s)
        except BaseException:
            fut.cancel()  # a late reply kills the worker it names (_on_message)
            os.close(in_w)
            os.close(out_r)
            raise
        finally:
            os.close(in_r)
            os.close(out_w)
        reader = asyncio.StreamReader(limit=self.line_limit)
        rt, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(out_r, "rb", 0))
        wt, wp = await loop.connect_write_pipe(lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
                                               os.fdopen(in_w, "wb", 0))
        writer = asyncio.StreamWriter(wt, wp, None, loop)
        # `exited`, not self._exits[pid]: a worker that exits at once is popped from there while the pipes connect.
        return ForkedProcess(pid, pidfd, writer, reader, exited, [rt, wt])

    def _on_message(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self._sock, 64, 1)
            except BlockingIOError:
                return
            except OSError:
                msg, fds = b"", []
            if not msg:
                self._lost()
                return
            if msg == b"R":
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
                continue
            kind, pid_text, *rest = msg.decode().split()
            pid = int(pid_text)
            if kind == "P" and fds:
                exited = self._exits[pid] = loop.create_future()
                fut = self._pending.popleft() if self._pending else None
                if fut is None or fut.done():  # its caller gave up waiting: the worker is not wanted
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(fds[0], signal.SIGKILL)
                    os.close(fds[0])
                else:
                    fut.set_result((pid, fds[0], exited))
            elif kind == "X":
                gone = self._exits.pop(pid, None)
                if gone is not None and not gone.done():
                    gone.set_result(int(rest[0]))

    def _lost(self) -> None:
        """The fork server exited (or was killed): no fork from it, every worker it forked is killed."""
        if self.dead:
            return
        self.dead = True
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        while self._pending:
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError(f"the fork server of {self.module} exited"))
        for exited in self._exits.values():
            if not exited.done():
                exited.set_result(LOST)
        self._exits.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError(f"the fork server of {self.module} exited before it was ready"))

    async def close(self) -> None:
        self._lost()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                await asyncio.wait_for(self._proc.wait(), 5.0)
            except asyncio.TimeoutError:
                self._proc.kill()
                await self._proc.wait()


# ------------------------------------------------------------------------ the fork server process


def main(argv: list[str]) -> None:
    # No collections while importing: they find nothing to free (what is imported lives as long as this
    # process) and were ~10% of the math worker's start (0.59 -> 0.53 CPU-s a fork server). On again before any fork.
    gc.disable()
    module = importlib.import_module(argv[0])
    prepare = getattr(module, "prepare", None)
    if prepare is not None:
        prepare()
    # What it imported lives as long as it does: out of gc's sight, the forked workers share those pages
    # (gc writes to object headers) and this process's exit skips a last walk of them (0.35-0.4 -> 0.03
    # CPU-s for the math worker, which imports sympy).
    gc.freeze()
    gc.enable()
    control = socket.socket(fileno=os.dup(0))
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    # SIGCHLD wakes the select below through this pipe, so exits are reported at once.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    control.sendall(b"R")
    try:
        while True:
            ready, _, _ = select.select([control.fileno(), wake_r], [], [])
            if wake_r in ready:
                os.read(wake_r, 4096)
            _reap(children, control)
            if control.fileno() not in ready:
                continue
            msg, fds, _, _ = socket.recv_fds(control, 64, 2)
            if not msg:
                return  # the pool is gone
            if msg != b"F" or len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:
                _become_worker(module, fds)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            pidfd = os.pidfd_open(pid)
            try:
                socket.send_fds(control, [f"P {pid}".encode()], [pidfd])
            finally:
                os.close(pidfd)
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still this child's


def _reap(children: set[int], control: socket.socket) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        control.sendall(f"X {pid} {os.waitstatus_to_exitcode(status)}".encode())


def _become_worker(module: ModuleType, fds: list[int]) -> None:
    """In the forked child: the pipes become stdin and stdout, nothing else of the server stays open."""
    from rewardsvc.verifiers.workerpool import serve_jobs

    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.dup2(fds[0], 0)
        os.dup2(fds[1], 1)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115  (fd 0 is the worker's pipe now)
        serve_jobs(module.handle)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
