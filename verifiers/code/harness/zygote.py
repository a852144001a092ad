"""The zygote: one long-lived process per sandbox slot that forks every run into fresh namespaces.

Started by the parent inside bubblewrap (user + net namespaces, read-only system, non-root uid, the
slot's cgroup, a seccomp filter that still allows unshare/mount) with CAP_SYS_ADMIN inside that user
namespace only. For each run it receives the run's pipes over a SOCK_SEQPACKET control socket and:

    fork -> C: unshare(pid, mount, ipc) -> fork -> G, pid 1 of a new pid namespace:
        fresh size-capped tmpfs on /tmp and /dev/shm, run's pipes on fds 0-3, everything else closed,
        empty environment, all capabilities dropped, no_new_privs, the strict seccomp filter,
        then the harness (checker.serve), which forks the runner.

G is pid 1 of its namespace, so when it exits (or C is killed: G has a parent-death SIGKILL) the
kernel kills every process of the run, setsid daemons included; nothing the program does in its
namespace can signal the zygote or another run. Runs start in about a millisecond, with the
interpreter and the common modules (typing, re, collections, ...) already loaded, instead of paying
bwrap and interpreter startup for every item.

Messages (JSON, one per packet): parent -> zygote {"run": id, "tmp_mb": n} with 4 fds (stdin,
stdout, stderr, results) | {"kill": id}; zygote -> parent {"ready": true} | {"done": id, "status": n}.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import sys

import checker
import executor
import frames

_PRELOADED = (executor,)  # the runner is forked from the harness: its module is loaded once, here

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWIPC = 0x00020000, 0x20000000, 0x08000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 22, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL, SECCOMP_MODE_FILTER = 4, 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# Modules most test programs import: loaded once here, inherited by every run for free.
PRELOAD = ("typing", "re", "collections", "math", "itertools", "functools", "heapq", "bisect", "string",
           "operator", "random", "copy", "fractions", "statistics", "hashlib", "array", "decimal")

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_tmpfs(target: str, size_bytes: int, flags: int) -> None:
    _check(_libc.mount(b"tmpfs", target.encode(), b"tmpfs", flags,
                       f"size={size_bytes},mode=1777".encode()), f"mounting a tmpfs on {target}")


def _drop_privileges(bpf: bytes) -> None:
    """No capabilities, no way to regain any, and the strict syscall filter."""
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "dropping capabilities")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")
    program = ctypes.create_string_buffer(bpf, len(bpf))
    fprog = _SockFprog(len(bpf) // 8, ctypes.cast(program, ctypes.c_void_p))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "loading the seccomp filter")


def _install_fds(fds: list[int]) -> None:
    """The run's stdin, stdout, stderr, results on 0-3; every other descriptor closed."""
    high = [os.dup(fd) for fd in fds]  # dup first: a source may sit on a target number
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(4, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 1 << 16)
    os.set_inheritable(3, False)


def _run_g(fds: list[int], tmp_bytes: int, bpf: bytes | None, isolated: bool, workdir: str) -> None:
    """pid 1 of the run's namespace: build the run's world, drop privileges, become the harness."""
    try:
        _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        if isolated:
            _mount_tmpfs("/tmp", tmp_bytes, MS_NOSUID | MS_NODEV)
            _mount_tmpfs("/dev/shm", 1 << 20, MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _install_fds(fds)
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update({"HOME": workdir, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                           "PYTHONIOENCODING": "utf-8"})
        if isolated:
            assert bpf
            _drop_privileges(bpf)
        sys.modules["random"].seed()  # a fresh interpreter would seed from the OS, not share the zygote's state
    except BaseException as exc:  # the run must not start half-isolated
        try:
            os.write(2, f"sandbox setup failed: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(121)
    checker.serve(3, workdir)


def _run_c(fds: list[int], tmp_bytes: int, bpf: bytes | None, isolated: bool, workdir: str) -> None:
    """The run's holder in the zygote's namespace: its exit status is the run's."""
    code = 120
    try:
        _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        if isolated:
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC), "unshare")
            _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
        pid = os.fork()
        if pid == 0:
            _run_g(fds, tmp_bytes, bpf, isolated, workdir)
            os._exit(122)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = code if code >= 0 else 128 - code
    except BaseException as exc:
        try:
            os.write(fds[2], f"sandbox setup failed: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def main() -> None:
    ctl = socket.socket(fileno=int(sys.argv[1]))
    isolated = sys.argv[2] == "isolated"
    with os.fdopen(int(sys.argv[3]), "rb") as stream:
        bpf = stream.read() if isolated else None
    base_workdir = sys.argv[4]
    frames.limit_int_digits()
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    ctl.setblocking(True)
    ctl.send(b'{"ready":true}')
    decoder = frames.Decoder(lambda ref: None)
    running: dict[int, tuple[int, int]] = {}  # run id -> (pid, pidfd)
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    by_pidfd: dict[int, int] = {}
    while True:
        for fd, _ in poller.poll():
            if fd == ctl.fileno():
                try:
                    data, fds, _, _ = socket.recv_fds(ctl, 65536, 8)
                except OSError:
                    data, fds = b"", []
                if not data:  # the parent is gone: so are its runs
                    for pid, _ in running.values():
                        _kill(pid)
                    os._exit(0)
                msg = decoder.loads(data)
                if "run" in msg and len(fds) == 4:
                    run_id = int(msg["run"])
                    workdir = base_workdir if isolated else str(msg.get("workdir", base_workdir))
                    sys.stdout.flush()
                    sys.stderr.flush()
                    try:
                        pid = os.fork()
                    except OSError as exc:  # the slot is out of processes: this run can't start
                        for f in fds:
                            os.close(f)
                        ctl.send(frames.dump_json({"done": run_id, "status": -1, "error": str(exc)}))
                        continue
                    if pid == 0:
                        ctl.close()
                        _run_c(fds, int(msg.get("tmp_mb", 64)) << 20, bpf, isolated, workdir)
                    for f in fds:
                        os.close(f)
                    pidfd = os.pidfd_open(pid)
                    running[run_id] = (pid, pidfd)
                    by_pidfd[pidfd] = run_id
                    poller.register(pidfd, select.POLLIN)
                else:
                    for f in fds:
                        os.close(f)
                    if "kill" in msg and int(msg["kill"]) in running:
                        _kill(running[int(msg["kill"])][0])
            elif fd in by_pidfd:
                run_id = by_pidfd.pop(fd)
                pid, _ = running.pop(run_id)
                poller.unregister(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                ctl.send(frames.dump_json({"done": run_id, "status": os.waitstatus_to_exitcode(status)}))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass
