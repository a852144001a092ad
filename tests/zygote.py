"""A pre-imported Python that forks the suite's model servers.

Every process that loads a model pays ~7 CPU-s importing torch and transformers' model code before it does
anything (transformers 5 pulls in torch.distributed.tensor and torch._dynamo at import). Under xdist
(`make test`) one zygote per session imports that once; `ServerProcess(..., preimported=True)` then runs
`python -m rewardsvc.cli serve ...` as a fork of it instead of a fresh interpreter. The child is the real
CLI: same argv, environment, working directory and standard streams, its own process, signals and exit code
(relayed by the zygote, which is its parent).

Modules imported are shared, so a fork is used only when the variables read at import (IMPORT_TIME) are
those the zygote imported under; otherwise (a test that sets HF_HOME for its server, say) the server starts
the usual way, with a warning. Like torch's DataLoader workers, the children are forks of a process that
imported torch; no grpc is imported before the fork (its core is not fork-safe).

Protocol (one unix stream connection per child): the client sends a JSON request with the child's stdin,
stdout and stderr as SCM_RIGHTS; the zygote answers the pid as a line, then, when the child exits, its
exit code (negative: killed by that signal) as a line. A client that hangs up kills its child.
"""

from __future__ import annotations

import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

# What the suite's model servers import (the llama and bert model code: SmolLM2 and MiniLM checkpoints).
PREIMPORT = (
    "torch", "transformers", "transformers.models.llama.modeling_llama", "transformers.models.bert.modeling_bert",
    "rewardsvc.backends.causal_lm", "rewardsvc.backends.pooling", "rewardsvc.config", "rewardsvc.service",
    "rewardsvc.scorers.causal", "rewardsvc.scorers.pooling", "rewardsvc.scorers.classifier",
)
# The variables that PREIMPORT reads when imported (thread pools, Hub cache and offline mode, transformers'
# switches, hash seed) or that configure rewardsvc: a server whose value of one of them differs from the
# zygote's starts the usual way. The children get the whole environment; libraries that set others in the
# test process as it runs (ray's RAY_*, torch's TORCHINDUCTOR_CACHE_DIR) don't stop the fork.
IMPORT_TIME = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_", "SAFETENSORS_", "OMP_", "MKL_", "KMP_", "GOMP_",
               "OPENBLAS_", "PYTORCH_", "TORCH_", "CUDA_", "USE_TORCH", "USE_TF", "USE_JAX", "PYTHONHASHSEED",
               "PYTHONPATH", "XDG_CACHE_HOME", "HOME", "REWARDSVC_")
ENV_VAR = "REWARDSVC_TEST_ZYGOTE"  # its directory, for the workers


def _kept(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME) and k != ENV_VAR}


# --- the zygote ---------------------------------------------------------------------------------------

def _child(request: dict[str, Any], fds: list[int], sockets: list[socket.socket], pidfds: list[int]) -> None:
    for sock in sockets:
        sock.close()
    for fd in pidfds:
        os.close(fd)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # what a fresh interpreter has (the zygote ignores it)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [request["module"], *request["args"]]
    sys.modules.pop(request["module"], None)  # as under `python -m`: the module runs as __main__ only
    code: Any = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    # Normal interpreter exit from here (atexit handlers, stream flushes) with the CLI's code.
    raise SystemExit(code)


def serve(path: str) -> None:
    # Listening before the imports: the session goes on (its workers start and collect) while this process
    # imports, and a client that connects early waits in the backlog until the first accept below.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)  # the path appears listening: start_zygote waits for it
    from rewardsvc.heap import startup_heap

    # Frozen before the forks (Python's gc docs): the children share these pages instead of copying them
    # when a collection writes to their object headers, and skip walking them at exit.
    with startup_heap():
        for name in PREIMPORT:
            __import__(name)
    assert "grpc" not in sys.modules, "the zygote must fork before grpc is imported"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches pytest, which stops us
    children: dict[int, tuple[socket.socket, int]] = {}  # pidfd -> (connection, pid)
    by_conn: dict[int, int] = {}  # connection fd -> pidfd
    while True:
        watched = [listener.fileno(), sys.stdin.fileno(), *children, *by_conn]
        ready, _, _ = select.select(watched, [], [])
        for fd in ready:
            if fd == sys.stdin.fileno():
                if not os.read(fd, 1024):  # the session that started us is gone
                    for _, pid in children.values():
                        os.kill(pid, signal.SIGKILL)
                    return
            elif fd == listener.fileno():
                conn, _ = listener.accept()
                msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                request = json.loads(msg)
                pid = os.fork()
                if pid == 0:
                    _child(request, fds, [listener, conn, *(c for c, _ in children.values())], list(children))
                for f in fds:
                    os.close(f)
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (conn, pid)
                by_conn[conn.fileno()] = pidfd
                conn.sendall(f"{pid}\n".encode())
            elif fd in children:
                conn, pid = children.pop(fd)
                by_conn.pop(conn.fileno(), None)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                try:
                    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass
                conn.close()
            elif fd in by_conn:  # the client hung up (or wrote): its child goes
                pidfd = by_conn[fd]
                conn, pid = children[pidfd]
                if not conn.recv(1):
                    os.kill(pid, signal.SIGKILL)
                    by_conn.pop(fd)


# --- the client ---------------------------------------------------------------------------------------

def start_zygote(env: dict[str, str], directory: str) -> tuple[subprocess.Popen[bytes], str]:
    """The zygote for this session (its stdin is its lifeline) and the value of ENV_VAR for workers: the
    directory that holds its socket and the environment it imported under. Returns once it listens, not
    once it has imported (~7 CPU-s): its first client waits for that instead of the whole session."""
    with open(os.path.join(directory, "env.json"), "w") as f:
        json.dump(_kept(env), f)
    path = os.path.join(directory, "zygote.sock")
    proc = subprocess.Popen([sys.executable, __file__, path], env=env, stdin=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"test zygote did not start listening on {path} (exit code {proc.poll()})")
        time.sleep(0.01)
    return proc, directory


_warned: set[str] = set()


def zygote_for(env: dict[str, str]) -> str | None:
    """The zygote's socket when one runs for this session and `env`'s IMPORT_TIME variables are those it
    imported under. A difference is warned about once per variable (a server of a test that sets its own is
    expected to start the usual way; a module that sets one at import would silently slow every model server
    down)."""
    directory = os.environ.get(ENV_VAR, "")
    if not directory:
        return None
    with open(os.path.join(directory, "env.json")) as f:
        imported_under = json.load(f)
    differ = sorted(k for k in set(imported_under) | set(_kept(env)) if imported_under.get(k) != env.get(k))
    if not differ:
        return os.path.join(directory, "zygote.sock")
    if new := [k for k in differ if k not in _warned]:
        import warnings

        _warned.update(new)
        warnings.warn(f"model server started without the test zygote: {', '.join(new)} differ from the "
                      "environment it imported under (tests/zygote.py)", stacklevel=2)
    return None


class ForkedProcess:
    """The part of subprocess.Popen that tests use, for a child of the zygote."""

    def __init__(self, path: str, module: str, args: list[str], cwd: str, env: dict[str, str]) -> None:
        read_end, write_end = os.pipe()
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conn.connect(path)
        with open(os.devnull, "rb") as devnull:
            request = {"module": module, "args": args, "cwd": cwd, "env": env}
            socket.send_fds(self._conn, [json.dumps(request).encode()], [devnull.fileno(), write_end, write_end])
        os.close(write_end)
        pid = self._line()
        if not pid.strip():
            os.close(read_end)
            self._conn.close()
            raise RuntimeError(f"the test zygote at {path} closed the connection before forking: its stderr in "
                               "the pytest output says why (an import of PREIMPORT failed?)")
        self.pid = int(pid)
        self.stdout = os.fdopen(read_end, "r")
        self.returncode: int | None = None

    def _line(self) -> str:
        """One line from the zygote, unbuffered: a buffered reader could swallow the exit code that select waits for.
        Empty when the zygote is gone (a reset: it died with this connection still in its backlog)."""
        out = b""
        while not out.endswith(b"\n"):
            try:
                byte = self._conn.recv(1)
            except ConnectionResetError:
                return ""
            if not byte:
                break
            out += byte
        return out.decode()

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._conn], [], [], 0)[0]:
            self._read_code()
        return self.returncode

    def _read_code(self) -> None:
        line = self._line()
        self.returncode = int(line) if line.strip() else -signal.SIGKILL  # zygote gone: so is the child
        self._conn.close()

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._conn], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"zygote child {self.pid}", timeout or 0)
            self._read_code()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


if __name__ == "__main__":
    serve(sys.argv[1])
