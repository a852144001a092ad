"""The sandbox's seccomp filters: built once with pyseccomp, exported as BPF for `bwrap --seccomp FD`.

Deny by default: a syscall is allowed only if it is on ALLOWED, the calls CPython, the harness and
the standard library (threads, subprocesses, files in /tmp, pipes, polling, timers, signals, mmap,
sqlite3, ctypes) make, measured with strace over HumanEval, MBPP, the hostile and forgery suites
and a set of library programs (tests/test_code_seccomp.py keeps them passing). Anything else fails
with ENOSYS, as if this kernel didn't have it: syscalls added after this list was written
(memfd_secret, landlock_*, mseal, ...) never reach the kernel, and libc falls back where it has a
fallback (clone3 -> clone). DENIED are the calls a probing or hostile program reaches for first
(sockets, ptrace and cross-process memory, mounts and namespaces, BPF, keyrings, io_uring,
modules): they fail with EPERM, so the program gets an honest PermissionError.

Two filters: the zygote's (bwrap loads it before exec'ing the zygote's interpreter) also allows
what the zygote needs to give each run its namespaces, /tmp and dropped privileges (ZYGOTE_EXTRA);
each run stacks the strict one on top, so the program never gets those.
"""

from __future__ import annotations

import contextlib
import errno
import tempfile

#: What a run may call. Names unknown to the local libseccomp (other architectures' legacy calls)
#: are skipped.
ALLOWED: tuple[str, ...] = (
    # memory
    "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "msync", "mincore",
    # threads, scheduling, identity of this process
    "arch_prctl", "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "futex", "sched_yield",
    "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_getscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "getcpu", "getpriority", "setpriority", "prctl", "capget", "getrandom", "uname",
    "sysinfo", "getrlimit", "setrlimit", "prlimit64", "getrusage", "times", "umask",
    "getpid", "getppid", "gettid", "getpgid", "getpgrp", "setpgid", "getsid", "setsid", "getuid", "geteuid",
    "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    # processes (clone: without namespace flags, see below)
    "fork", "vfork", "execve", "execveat", "wait4", "waitid", "exit", "exit_group", "pidfd_open",
    "pidfd_send_signal",
    # signals and time
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait", "rt_sigsuspend",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "restart_syscall", "kill", "tkill", "tgkill",
    "pause", "alarm", "getitimer", "setitimer", "nanosleep", "clock_nanosleep", "clock_gettime",
    "clock_getres", "gettimeofday", "time",
    # descriptors and files (the filesystem is the sandbox's: read-only but for /tmp and /dev/shm)
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "open", "openat", "creat", "close", "close_range", "dup", "dup2", "dup3", "pipe", "pipe2", "lseek",
    "fcntl", "flock", "fsync", "fdatasync", "ftruncate", "truncate", "fallocate", "fadvise64", "sendfile",
    "copy_file_range", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access",
    "faccessat", "faccessat2", "readlink", "readlinkat", "getcwd", "chdir", "fchdir", "getdents",
    "getdents64", "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat",
    "symlink", "symlinkat", "unlink", "unlinkat", "chmod", "fchmod", "fchmodat", "utime", "utimes",
    "utimensat", "futimesat", "mknod", "mknodat", "ioctl", "getxattr", "lgetxattr", "fgetxattr",
    "listxattr", "llistxattr", "flistxattr",
    # waiting on descriptors
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "timerfd_create", "timerfd_settime",
    "timerfd_gettime", "signalfd", "signalfd4",
)

#: Refused with EPERM (the rest of what isn't allowed gets ENOSYS). None of these is on ALLOWED.
DENIED: tuple[str, ...] = (
    # network: no sockets at all (pipes stay available); the net namespace is empty anyway
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # other processes' memory, and the harness's: the verdict's secrecy relies on these being gone
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
    # filesystem and namespace manipulation
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "mount_setattr", "move_mount",
    "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "name_to_handle_at", "open_by_handle_at",
    # kernel attack surface a test program never needs
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "lookup_dcookie",
    "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "personality",
    "fanotify_init", "vhangup", "uselib", "nfsservctl",
)

#: What the zygote needs on top of ALLOWED (harness/zygote.py): new namespaces and a fresh /tmp per
#: run, dropping capabilities, and its control socket to the parent.
ZYGOTE_EXTRA: tuple[str, ...] = ("unshare", "mount", "capset", "recvmsg", "sendmsg", "recvfrom", "sendto",
                                 "getsockopt", "getsockname")

# clone() flags that create namespaces: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME.
_CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000,
                   0x00000080)


def build_filter_bpf(for_zygote: bool = False) -> bytes:
    """The filter as BPF bytes; raises RuntimeError naming the fix when pyseccomp can't be used."""
    try:
        import pyseccomp
    except ImportError as exc:  # pyseccomp needs libseccomp.so.2 through ctypes
        raise RuntimeError(
            f"the code sandbox needs pyseccomp and libseccomp ({exc}): run `make install` "
            "or `pip install pyseccomp==0.1.2` and `apt-get install libseccomp2`"
        ) from exc
    allowed = ALLOWED + (ZYGOTE_EXTRA if for_zygote else ())
    try:
        flt = pyseccomp.SyscallFilter(pyseccomp.ERRNO(errno.ENOSYS))
        for name in allowed:
            _add(flt, pyseccomp.ALLOW, name)
        for name in DENIED:
            if name not in allowed:
                _add(flt, pyseccomp.ERRNO(errno.EPERM), name)
        # Threads and fork, yes; a clone that creates a namespace, no. The two rule sets are disjoint
        # (no namespace bit / some namespace bit), so their order doesn't matter.
        ns_mask = 0
        for flag in _CLONE_NS_FLAGS:
            ns_mask |= flag
            flt.add_rule(pyseccomp.ERRNO(errno.EPERM), "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
        flt.add_rule(pyseccomp.ALLOW, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, ns_mask, 0))
        # clone3 stays off the list: it passes its flags in memory the filter can't read, and the
        # default ENOSYS makes libc fall back to clone.
        with tempfile.TemporaryFile() as out:  # libseccomp writes to a real file descriptor
            flt.export_bpf(out)
            out.seek(0)
            return out.read()
    except OSError as exc:
        raise RuntimeError(f"building the seccomp filter failed ({exc}); is libseccomp2 installed?") from exc


def _add(flt, action, name: str) -> None:
    # Refused when `name` is not a syscall on this architecture / libseccomp version.
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        flt.add_rule(action, name)
