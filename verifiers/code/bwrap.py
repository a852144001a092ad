"""The bubblewrap command line that starts a slot's zygote (or, without isolation, the bare zygote)."""

from __future__ import annotations

import os

from rewardsvc.verifiers.code.settings import SandboxSettings
from rewardsvc.verifiers.code.slots import Slot

_MB = 1 << 20


def root_links() -> list[str]:
    """/bin, /lib, ... as on the host: symlinks into /usr stay links, real directories are bound read-only."""
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
            "--ro-bind", "/usr", "/usr", *root_links()]
    for path in settings.python_binds:
        cmd += ["--ro-bind", path, path]
    cmd += ["--ro-bind", settings.harness_dir, "/harness",
            "--dev", "/dev", "--size", str(_MB), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--size", str(_MB), "--tmpfs", "/tmp", "--remount-ro", "/",
            "--chdir", "/tmp", "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8"]
    if bpf_fd is not None:
        cmd += ["--seccomp", str(bpf_fd)]
    return [*cmd, "--", *args]
