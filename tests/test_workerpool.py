"""WorkerPool faults: hangs are killed, crashes and cancellations replace the worker, queue is bounded."""

import asyncio

import pytest

from rewardsvc.verifiers.workerpool import PoolFullError, PoolTimeoutError, WorkerCrashedError, WorkerPool


def run(coro):
    return asyncio.run(coro)


async def _pool(size: int = 1, **kw) -> WorkerPool:
    pool = WorkerPool("hang_worker", size, **kw)
    await pool.start()
    return pool


def test_hang_is_killed_and_the_worker_replaced() -> None:
    async def main() -> None:
        pool = await _pool()
        first = (await pool.run({"action": "echo", "value": 1}, 10))["pid"]
        with pytest.raises(PoolTimeoutError):
            await pool.run({"action": "hang"}, 1.0)
        reply = await pool.run({"action": "echo", "value": 2}, 30)
        assert reply["echo"] == 2 and reply["pid"] != first
        assert pool.replaced == 1
        await pool.close()

    run(main())


def test_crash_and_memory_limit() -> None:
    async def main() -> None:
        pool = await _pool(memory_mb=512)
        with pytest.raises(WorkerCrashedError, match="exit 3"):
            await pool.run({"action": "exit"}, 10)
        reply = await pool.run({"action": "alloc", "mb": 2048}, 30)
        assert "MemoryError" in reply["error"]
        assert (await pool.run({"action": "alloc", "mb": 16}, 30))["len"] == 16 << 20
        await pool.close()

    run(main())


def test_cancelled_job_never_reuses_its_busy_worker() -> None:
    async def main() -> None:
        pool = await _pool()
        task = asyncio.create_task(pool.run({"action": "hang"}, 60))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Had the hung worker been reused, this would time out.
        assert (await pool.run({"action": "echo", "value": 3}, 30))["echo"] == 3
        await pool.close()

    run(main())


@pytest.mark.slow  # waits out a hung worker's timeout
def test_queue_bound() -> None:
    async def main() -> None:
        pool = await _pool(queue_limit=2)
        hung = asyncio.create_task(pool.run({"action": "hang"}, 3))
        await asyncio.sleep(0.2)
        waiting = [asyncio.create_task(pool.run({"action": "echo", "value": i}, 30)) for i in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(PoolFullError, match="queue_limit"):
            await pool.run({"action": "echo", "value": 9}, 30)
        with pytest.raises(PoolTimeoutError):
            await hung
        assert [(await w)["echo"] for w in waiting] == [0, 1]
        await pool.close()

    run(main())


def test_a_worker_is_retired_when_its_memory_grows_or_its_job_count_is_reached() -> None:
    async def main() -> None:
        pool = await _pool(memory_mb=512)  # retired past 256 MB resident
        pids = {(await pool.run({"action": "echo", "value": i}, 10))["pid"] for i in range(50)}
        assert len(pids) == 1 and pool.replaced == 0  # small jobs: the same worker throughout
        grown = await pool.run({"action": "hold", "mb": 300}, 30)
        assert grown == {"held_mb": 300, "pid": pids.pop()}  # the memory field is the pool's, not the caller's
        assert (await pool.run({"action": "echo", "value": 0}, 30))["pid"] != grown["pid"]
        assert pool.replaced == 1
        await pool.close()

        pool = await _pool(max_jobs_per_worker=3)
        pids = [(await pool.run({"action": "echo", "value": i}, 30))["pid"] for i in range(7)]
        assert pids[0] == pids[2] != pids[3] == pids[5] != pids[6] and pool.replaced == 2
        await pool.close()

    run(main())


def _running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_are_forked_from_a_fork_server_that_imported_the_module_once() -> None:
    async def main() -> None:
        pool = await _pool(2)
        first = await asyncio.gather(*(pool.run({"action": "whoami"}, 10) for _ in range(2)))
        server_pid = first[0]["imported_in"]
        assert len({r["pid"] for r in first}) == 2
        assert all(r["imported_in"] == server_pid != r["pid"] for r in first)  # not imported anew
        for _ in range(3):  # each timeout replaces a worker: forked again, no new import
            with pytest.raises(PoolTimeoutError):
                await pool.run({"action": "hang"}, 0.5)
        later = await asyncio.gather(*(pool.run({"action": "whoami"}, 10) for _ in range(2)))
        assert all(r["imported_in"] == server_pid for r in later)
        assert pool.replaced == 3 and pool.fork_servers_started == 1
        workers = {r["pid"] for r in later}
        await pool.close()
        assert not any(_running(pid) for pid in workers | {server_pid})

        alone = WorkerPool("hang_worker", 1, fork=False)  # the plain path: each worker imports for itself
        await alone.start()
        reply = await alone.run({"action": "whoami"}, 10)
        assert reply["imported_in"] == reply["pid"] and alone.fork_servers_started == 0
        await alone.close()

    run(main())


def test_a_killed_fork_server_is_replaced_and_its_workers_do_not_outlive_it() -> None:
    async def main() -> None:
        import os
        import signal

        pool = await _pool(1)
        before = await pool.run({"action": "whoami"}, 10)
        os.kill(before["imported_in"], signal.SIGKILL)
        for _ in range(100):  # the pool hears of it through the closed control socket
            if not _running(before["pid"]):
                break
            await asyncio.sleep(0.05)
        assert not _running(before["pid"])
        after = await pool.run({"action": "whoami"}, 30)  # the dead idle worker is replaced first
        assert after["imported_in"] not in (before["imported_in"], after["pid"])
        assert pool.fork_servers_started == 2
        with pytest.raises(WorkerCrashedError, match="exit 3"):  # exit codes still come through
            await pool.run({"action": "exit"}, 10)
        await pool.close()

    run(main())


def test_a_worker_that_exits_while_its_pipes_connect_still_reports_its_exit_code() -> None:
    """A forked worker can exit, and the fork server report it, while fork() is still connecting the
    worker's pipes; fork() then returned nothing for it (KeyError: its exit future was already gone,
    ~1 fork in 100 here). Workers that die at once (an unreadable memory limit) make the race common."""
    async def main() -> None:
        import os
        import sys

        from rewardsvc.verifiers.forkserver import ForkServer
        from rewardsvc.verifiers.workerpool import MEMORY_ENV

        env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(sys.path), MEMORY_ENV: "not-a-number"}
        server = ForkServer("hang_worker", env, 1 << 20, 60.0)
        await server.start()
        try:
            codes = [await (await server.fork()).wait() for _ in range(200)]
        finally:
            await server.close()
        assert set(codes) == {1}  # each one forked, failed on the limit, and said so

    run(main())


def test_a_system_without_the_fork_server_s_sockets_gets_plain_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AF_UNIX SOCK_SEQPACKET or pidfds (not Linux): the pool says so once and starts each worker on its
    own, as it did before fork servers; it does not retry a fork server's full start for every worker."""
    from rewardsvc.verifiers import forkserver

    # A socket type the kernel refuses: socketpair() fails for real, as it would where SEQPACKET is missing.
    monkeypatch.setattr(forkserver.socket, "SOCK_SEQPACKET", 0x7F)

    async def main() -> None:
        pool = await _pool(2)
        replies = await asyncio.gather(*(pool.run({"action": "whoami"}, 10) for _ in range(2)))
        assert all(r["imported_in"] == r["pid"] for r in replies)
        assert pool.fork is False and pool.fork_servers_started == 0
        await pool.close()

    run(main())
