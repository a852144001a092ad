"""Test support: the real server as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from zygote import ForkedProcess, zygote_for

REPO = Path(__file__).resolve().parents[1]
READY = re.compile(r"rewardsvc ready on (\S+)")
#: A test file whose every test is slow, read as text (tests/conftest.py: `make test-fast` doesn't import it).
ALL_SLOW = re.compile(r"^pytestmark = pytest\.mark\.slow\s*(#.*)?$", re.MULTILINE)


def made_once(name: str, build: Any) -> str:
    """`build(directory)` run once per machine into `<model cache>/test-models/<name>` (under a file lock:
    xdist workers and the servers and trainers they start share it); its path."""
    import shutil

    from filelock import FileLock

    from rewardsvc.model_refs import cache_dir

    out = cache_dir() / "test-models" / name
    done = out / "done.txt"
    if done.exists():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not done.exists():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            build(tmp)
            (tmp / "done.txt").write_text(f"{name}\n")
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
    return str(out)


def model_cli(module: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[str] | ForkedProcess:
    """`python -m module *args` in REPO with stdout and stderr merged into `.stdout`: forked from the
    session's zygote (tests/zygote.py) when one runs and `env` keeps what it imported under, which skips
    ~7 CPU-s of torch and transformers imports; a fresh interpreter otherwise."""
    if zygote := zygote_for(env):
        return ForkedProcess(zygote, module, args, str(REPO), env)
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class ServerProcess:
    """`with ServerProcess({"scorers": {...}}) as srv: RewardClient(srv.address)...`

    Runs `python -m rewardsvc.cli serve --config <tmp.yaml> --port 0` and waits for its ready line.
    Output is kept in `.output` (a list of lines) for assertions and failure messages.
    """

    def __init__(self, config: dict[str, Any], env: dict[str, str] | None = None,
                 startup_timeout_s: float = 300.0, args: list[str] | None = None, preimported: bool = False) -> None:
        """`preimported`: a model server, forked from the session's zygote (tests/zygote.py) when one runs and
        the variables read at import are the zygote's, so it skips ~7 CPU-s of torch and transformers imports."""
        self.config = dict(config)
        self.args = list(args or [])  # extra `serve` arguments, e.g. ["--ray", "--ray-address", ...]
        server = dict(self.config.get("server") or {})
        server.setdefault("host", "127.0.0.1")
        server["port"] = 0
        server.setdefault("metrics_port", 0)  # several servers run at once in tests
        self.config["server"] = server
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout_s = startup_timeout_s
        self.output: list[str] = []
        self.address = ""
        self.preimported = preimported
        self.proc: subprocess.Popen[str] | ForkedProcess | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="rewardsvc-test-")
        self._ready = threading.Event()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            m = READY.search(line)
            if m:
                self.address = m.group(1)
                self._ready.set()
        self._ready.set()

    def start(self) -> ServerProcess:
        cfg_path = Path(self._tmp.name) / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(self.config))
        args = ["serve", "--config", str(cfg_path), *self.args]
        if self.preimported:
            self.proc = model_cli("rewardsvc.cli", args, self.env)
        else:
            self.proc = subprocess.Popen([sys.executable, "-m", "rewardsvc.cli", *args], cwd=REPO, env=self.env,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(self.startup_timeout_s) or not self.address:
            self.kill()
            raise RuntimeError("server did not become ready:\n" + "\n".join(self.output[-50:]))
        return self

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.terminate(30)
        except subprocess.TimeoutExpired:
            self.kill()
        self._tmp.cleanup()

    def metrics(self, token: str | None = None) -> str:
        """The server's Prometheus /metrics text (with `token` as the bearer token, if given)."""
        import urllib.request

        url = next(m.group(1) for line in self.output if (m := re.search(r"metrics: (http://\S+?/metrics)", line)))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10).read().decode()

    def wait_in_flight(self, scorer: str, n: int, timeout_s: float = 60.0) -> None:
        """Block until the server has accepted `n` items for `scorer` that are not yet answered."""
        needle = f'rewardsvc_items_in_flight{{scorer="{scorer}"}} {float(n)}'
        deadline = time.monotonic() + timeout_s
        while needle not in self.metrics():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} items for {scorer} never in flight")
            time.sleep(0.05)

    def wait_alive(self) -> bool:
        time.sleep(0)
        return self.proc is not None and self.proc.poll() is None
