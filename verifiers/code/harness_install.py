"""The harness's sources, copied where the sandbox's uid can read them, and the interpreter's directories."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HARNESS_SOURCES = Path(__file__).with_name("harness")


def install_harness(python: str) -> str:
    """Copy the harness into a private, world-readable directory and precompile it for `python`.

    The sandbox's unprivileged uid must be able to read it, and the package may live where it can't
    (e.g. under /root); compiled once here, each run skips compiling the harness.
    """
    _remove_stale_harnesses()
    target = tempfile.mkdtemp(prefix=f"rewardsvc-harness-{os.getpid()}-")
    os.chmod(target, 0o755)
    for src in HARNESS_SOURCES.glob("*.py"):
        dst = Path(target) / src.name
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)
    subprocess.run([python, "-I", "-S", "-c", "import compileall,sys; compileall.compile_dir(sys.argv[1], quiet=1)",
                    target], check=False, capture_output=True, timeout=120)
    for root, dirs, files in os.walk(target):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return target


def _remove_stale_harnesses() -> None:
    """Harness copies left by services that died (named `rewardsvc-harness-<pid>-...`)."""
    for d in Path(tempfile.gettempdir()).glob("rewardsvc-harness-*"):
        owner = d.name[len("rewardsvc-harness-"):].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(d, ignore_errors=True)


def python_binds(python: str) -> list[str]:
    """Directories to bind read-only so `python` runs in a sandbox that has only /usr."""
    out = subprocess.run([python, "-I", "-S", "-c", "import sys; print(sys.base_prefix)"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"{python} does not run: {out.stderr.strip()[-500:]}")
    prefix = os.path.realpath(out.stdout.strip())
    binds = [] if prefix == "/usr" or prefix.startswith("/usr/") else [prefix]
    real = os.path.realpath(python)
    if not (real.startswith("/usr/") or any(real.startswith(b + "/") for b in binds)):
        binds.append(os.path.dirname(real))
    return binds
