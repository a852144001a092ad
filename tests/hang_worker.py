"""A deliberately misbehaving WorkerPool worker for fault tests (run as `python -m hang_worker`)."""

import os
import signal
import time

from rewardsvc.verifiers.workerpool import serve_jobs

_held: list[bytes] = []
#: The process that imported this module: the worker itself, or the pool's fork server it was forked from.
IMPORTED_IN = os.getpid()


def handle(job: dict) -> dict:
    action = job["action"]
    if action == "echo":
        return {"echo": job["value"], "pid": os.getpid()}
    if action == "whoami":
        return {"pid": os.getpid(), "imported_in": IMPORTED_IN}
    if action == "hang":  # ignores SIGALRM, so only the parent's kill ends it
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            time.sleep(1)
    if action == "sleep":  # a slow check that finishes
        time.sleep(job["seconds"])
        return {"slept": job["seconds"]}
    if action == "exit":
        os._exit(3)
    if action == "hold":  # memory that stays resident after the job (a leak, a cache that grows)
        _held.append(b"\x01" * (job["mb"] << 20))
        return {"held_mb": job["mb"], "pid": os.getpid()}
    if action == "alloc":
        return {"len": len(bytearray(job["mb"] << 20))}
    raise ValueError(f"unknown action {action}")


if __name__ == "__main__":
    serve_jobs(handle)
