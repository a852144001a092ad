"""The sandbox's seccomp filter: built once with pyseccomp, exported as BPF for `bwrap --seccomp FD`.

Allow-by-default with a deny list: the namespaces already cut the network, the filesystem and the
other processes off; the filter removes the kernel surfaces a sandboxed program has no use for and
that sandbox escapes go through (sockets, ptrace and cross-process memory access, mounts, new
namespaces, BPF, keyrings, io_uring, kernel modules). Denied calls fail with EPERM rather than
killing the process, so a program that merely probes gets a Python exception and a normal verdict.
"""

from __future__ import annotations

import errno
import tempfile

#: Syscalls the sandbox denies with EPERM. Names unknown to the local libseccomp are skipped.
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

# clone() flags that create namespaces: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME.
_CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000,
                   0x00000080)


# What the zygote itself still needs (to give each run new namespaces and a fresh /tmp); each run
# then stacks the full filter on top, so the program never gets these.
ZYGOTE_ALLOWED = frozenset({"unshare", "mount"})


def build_filter_bpf(for_zygote: bool = False) -> bytes:
    """The filter as BPF bytes; raises RuntimeError naming the fix when pyseccomp can't be used."""
    try:
        import pyseccomp
    except ImportError as exc:  # pyseccomp needs libseccomp.so.2 through ctypes
        raise RuntimeError(
            f"the code sandbox needs pyseccomp and libseccomp ({exc}): run `make install` "
            "or `pip install pyseccomp==0.1.2` and `apt-get install libseccomp2`"
        ) from exc
    try:
        flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for name in DENIED:
            if for_zygote and name in ZYGOTE_ALLOWED:
                continue
            try:
                flt.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
            except (OSError, ValueError, RuntimeError):
                continue  # not a syscall on this architecture / libseccomp version
        # Threads and fork stay possible; clone with any namespace flag does not (one rule per flag:
        # rules on one syscall are OR-ed).
        for flag in _CLONE_NS_FLAGS:
            flt.add_rule(pyseccomp.ERRNO(errno.EPERM), "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
        # clone3 passes its flags in memory the filter can't read: ENOSYS makes libc fall back to clone.
        flt.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
        with tempfile.TemporaryFile() as out:  # libseccomp writes to a real file descriptor
            flt.export_bpf(out)
            out.seek(0)
            return out.read()
    except OSError as exc:
        raise RuntimeError(f"building the seccomp filter failed ({exc}); is libseccomp2 installed?") from exc
