"""One run's pipes as the parent sees them: non-blocking readers on the event loop, capped tails, the report."""

from __future__ import annotations

import asyncio
import contextlib
import os

from rewardsvc.verifiers.code.report import REPORT_LIMIT


class OutputTail:
    """The last `keep` bytes of a stream and its total length, in bounded memory."""

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


class RunPipes:
    """One run's pipes as seen from the parent: readers on the event loop, tails, the report."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tail_bytes: int, on_limit) -> None:
        self.loop = loop
        self.stdout = OutputTail(tail_bytes)
        self.stderr = OutputTail(tail_bytes)
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
        if len(self.report) > REPORT_LIMIT:
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
