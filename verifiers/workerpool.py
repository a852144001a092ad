"""A pool of killable worker subprocesses speaking JSON lines, for checks that may hang or blow up.

Each worker is `python -m <module>`: it prints one `{"ready": true}` line, then answers one JSON line
per request line. The parent enforces a hard wall-clock limit per job by killing the worker and
starting a replacement, so nothing a job does (SIGALRM ignored, C code spinning, sympy printing a
huge number) can stall the service. Workers run with an address-space limit and a minimal
environment. Jobs wait for a worker in a FairGate: callers take turns, so one caller's queue of
slow checks can't hold back another caller's check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from rewardsvc.verifiers.fairgate import FairGate
from rewardsvc.verifiers.forkserver import ForkedProcess, ForkServer

log = logging.getLogger(__name__)

_LINE_LIMIT = 8 << 20
MEMORY_ENV = "REWARDSVC_WORKER_MEMORY_MB"
#: Reply field a worker adds after each job (taken off before the caller sees the reply): its resident
#: memory in MB, so the parent can retire a worker that has grown before it runs out of address space.
RSS_FIELD = "_worker_rss_mb"


class PoolTimeoutError(TimeoutError):
    """The job ran past its wall-clock limit; its worker was killed and replaced."""


class WorkerCrashedError(RuntimeError):
    """The worker died (out of memory, segfault) while running the job; it was replaced."""


class PoolFullError(RuntimeError):
    """More jobs are waiting than `queue_limit`: report RESOURCE_EXHAUSTED."""


Proc = asyncio.subprocess.Process | ForkedProcess


@dataclass
class _Worker:
    proc: Proc
    jobs: int = 0


class WorkerPool:
    """`size` workers running `module` (its `handle(job)`); `await run(job)` returns the worker's reply.

    With `fork` (the default) the workers are forked from one fork server per pool, which imported
    the module (and ran its `prepare()`) once: a worker replaced after a timeout or crash is ready in
    milliseconds, not after the module's imports (~0.9 CPU-s for math). Without it, or if the fork
    server can't start, each worker is `python -m module`."""

    def __init__(self, module: str, size: int, *, memory_mb: int = 1024, queue_limit: int = 10_000,
                 startup_timeout_s: float = 60.0, max_jobs_per_worker: int = 100_000,
                 recycle_rss_mb: int | None = None, fork: bool = True) -> None:
        if size < 1:
            raise ValueError(f"worker pool size must be >= 1, got {size}")
        self.module = module
        self.size = size
        self.memory_mb = memory_mb
        self.queue_limit = queue_limit
        self.startup_timeout_s = startup_timeout_s
        # A worker is retired once its resident memory passes `recycle_rss_mb` (default: half its
        # address-space limit), so slow growth (parse caches) never reaches the limit mid-check, and
        # after `max_jobs_per_worker` jobs in any case. Retiring every 5,000 jobs, as before, cost a
        # math worker ~0.6 CPU-s of imports each time (~0.12 ms per check) while its memory had grown
        # by ~4 MB in 20,000 GSM8K and LaTeX checks.
        self.max_jobs_per_worker = max_jobs_per_worker
        self.recycle_rss_mb = memory_mb // 2 if recycle_rss_mb is None else recycle_rss_mb
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._gate = FairGate(size)  # a job holds a slot while it holds a worker
        self._closed = False
        self._spawners: set[asyncio.Task] = set()
        # Every process ever started and not yet reaped, so close() can wait for them.
        self._procs: set[Proc] = set()
        self.replaced = 0
        self.fork = fork
        self._fork_server: ForkServer | None = None
        self._fork_lock = asyncio.Lock()
        self.fork_servers_started = 0

    async def _spawn(self) -> _Worker:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.pathsep.join(sys.path),
               "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", MEMORY_ENV: str(self.memory_mb)}
        proc: Proc | None = await self._fork(env) if self.fork else None
        if proc is None:
            # No preexec_fn: it is unsafe in a process with gRPC threads (the child can die before
            # exec). The worker applies its own limits first thing, before it reads any job.
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                env=env, limit=_LINE_LIMIT,
            )
        self._procs.add(proc)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self.startup_timeout_s)
            if json.loads(line or b"{}").get("ready") is not True:
                raise RuntimeError(f"worker {self.module} did not start (first line {line[:200]!r})")
        except BaseException:
            _kill(proc)
            raise
        return _Worker(proc)

    async def _fork(self, env: dict[str, str]) -> ForkedProcess | None:
        """A worker forked from the pool's fork server (started, or restarted if it died, here); None if
        that fails, and the caller starts the worker on its own."""
        try:
            async with self._fork_lock:
                if self._fork_server is None or self._fork_server.dead:
                    if self._fork_server is not None:
                        await self._fork_server.close()
                    self._fork_server = None
                    server = ForkServer(self.module, env, _LINE_LIMIT, self.startup_timeout_s)
                    await server.start()
                    self._fork_server = server
                    self.fork_servers_started += 1
                return await self._fork_server.fork()
        except (OSError, RuntimeError, asyncio.TimeoutError) as exc:
            # E.g. no pidfds or SOCK_SEQPACKET on this system: the plain path from now on, rather than
            # a fork server's full start on every spawn.
            log.warning("could not fork a %s worker (%s); starting workers on their own from now on",
                        self.module, exc)
            self.fork = False
            return None

    async def start(self) -> None:
        workers = await asyncio.gather(*(self._spawn() for _ in range(self.size)))
        for w in workers:
            self._idle.put_nowait(w)

    def _replace(self, worker: _Worker) -> None:
        """Kill `worker` and start a replacement in the background."""
        _kill(worker.proc)
        self.replaced += 1
        reap = asyncio.get_running_loop().create_task(worker.proc.wait())
        proc = worker.proc
        reap.add_done_callback(lambda _t: self._procs.discard(proc))
        if self._closed:
            return

        async def respawn() -> None:
            delay = 0.5
            while not self._closed:
                try:
                    w = await self._spawn()
                except (OSError, RuntimeError, asyncio.TimeoutError, json.JSONDecodeError) as exc:
                    log.error("could not start a %s worker (%s); retrying in %.1fs", self.module, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30)
                    continue
                if self._closed:
                    _kill(w.proc)
                else:
                    self._idle.put_nowait(w)
                return

        task = asyncio.get_running_loop().create_task(respawn())
        self._spawners.add(task)
        task.add_done_callback(self._spawners.discard)

    async def run(self, job: dict[str, Any], timeout_s: float,
                  on_start: Callable[[], None] | None = None, caller: Hashable = None) -> dict[str, Any]:
        """Send `job` to an idle worker and return its reply within `timeout_s` seconds.
        `on_start` is called when a worker takes the job (callers measure their queue wait with it);
        `caller` is whose job it is: waiting jobs get workers round-robin across callers."""
        if self._closed:
            raise RuntimeError("worker pool is closed")
        if self._gate.waiting >= self.queue_limit:
            raise PoolFullError(
                f"{self._gate.waiting} checks queued for {self.module}; the limit (queue_limit) is {self.queue_limit}"
            )
        await self._gate.acquire(caller)
        try:
            worker = await self._idle.get()  # waits only while a killed worker's replacement starts
            while worker.proc.returncode is not None:  # died while idle (killed from outside, OOM)
                self._replace(worker)
                worker = await self._idle.get()
        except BaseException:
            self._gate.release()
            raise
        if on_start is not None:
            on_start()
        done = grown = False
        try:
            assert worker.proc.stdin is not None and worker.proc.stdout is not None
            worker.proc.stdin.write(json.dumps(job).encode() + b"\n")
            await worker.proc.stdin.drain()
            try:
                line = await asyncio.wait_for(worker.proc.stdout.readline(), timeout_s)
            except asyncio.TimeoutError:
                raise PoolTimeoutError(f"check ran past {timeout_s:g}s; worker killed") from None
            if not line:
                code = await _exit_code(worker.proc)
                raise WorkerCrashedError(f"worker died during the check (exit {code})")
            reply = json.loads(line)
            done = True
            rss_mb = reply.pop(RSS_FIELD, 0) if isinstance(reply, dict) else 0
            grown = 0 < self.recycle_rss_mb < rss_mb
            return reply
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerCrashedError(f"worker died before the check ({exc})") from None
        finally:
            worker.jobs += 1
            # A worker whose job did not complete cleanly (timeout, crash, cancelled call) may be
            # mid-computation: it is never reused.
            if done and not grown and worker.jobs < self.max_jobs_per_worker and worker.proc.returncode is None:
                self._idle.put_nowait(worker)
            else:
                self._replace(worker)
            self._gate.release()

    @property
    def queued(self) -> int:
        return self._gate.waiting

    async def close(self) -> None:
        self._closed = True
        for t in list(self._spawners):
            t.cancel()
        for proc in list(self._procs):
            _kill(proc)
        # Reap them while the loop lives, or their transports complain when collected later.
        await asyncio.gather(*(p.wait() for p in self._procs), return_exceptions=True)
        self._procs.clear()
        if self._fork_server is not None:
            await self._fork_server.close()
            self._fork_server = None


def _kill(proc: Proc) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


async def _exit_code(proc: Proc) -> int | None:
    try:
        return await asyncio.wait_for(proc.wait(), 1.0)
    except asyncio.TimeoutError:
        return None


def serve_jobs(handle: Any) -> None:
    """Worker side: answer JSON lines on stdin with `handle(job) -> dict` on the real stdout.

    Library prints go to stderr so they can't corrupt the protocol. The address-space limit is
    set before the ready line, so no job ever runs without it.
    """
    limit = int(os.environ.get(MEMORY_ENV, "0")) << 20
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out.write('{"ready": true}\n')
    for line in sys.stdin:
        try:
            job = json.loads(line)
            reply = handle(job)
        except Exception as exc:  # the parent turns this into an error verdict
            reply = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        if isinstance(reply, dict):
            reply = {**reply, RSS_FIELD: _rss_mb()}
        out.write(json.dumps(reply) + "\n")


def _rss_mb() -> int:
    """This process's resident memory in MB (Linux: now; elsewhere: its peak)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak >> 20 if sys.platform == "darwin" else peak >> 10
