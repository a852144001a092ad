"""Shared fixtures: one real math server per test session (subprocess, free loopback port)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ALL_SLOW, ServerProcess

import rewardsvc  # noqa: F401  (first: it turns gRPC's fork handlers off before any test imports grpc)
from rewardsvc.heap import freeze_heap, skip_gc_at_exit

# An xdist worker that imported torch and transformers spent 1-3 s at exit in the interpreter's last
# collection, and the last worker's exit is the end of the run.
skip_gc_at_exit()

DATA = Path(__file__).parent / "data"

# Under xdist (`make test`: a worker per core) torch gets one thread per worker, and so do the servers
# and trainers the tests start (they inherit it). Two workers with a thread per core each made
# libgomp's spinning threads fight over the cores: tests/test_causal_backend.py twice side by side
# took 203 s and 108 CPU-s per run with the default threads, 48 s and 23 CPU-s with one.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# A local Ray has token auth (Ray's default), and Ray sends the token to an explicit address only under
# RAY_AUTH_MODE=token, read when Ray is imported: set here, before any test module imports Ray, so the
# tests and the CLIs they start can join a Ray that another process started (tests/test_ray_serve.py).
os.environ.setdefault("RAY_AUTH_MODE", "token")

# Ray Serve's controller runs its control loop every 0.1 s and each replica and proxy exports metrics every
# 100 ms: an idle local Ray with one replica took ~18% of a core (10.7 CPU-s a minute; 7.0 with these). The
# suite's two Rays live minutes on a shared 2-core machine, and no test reads Serve's metrics or times its
# loop: slower ticks, the same code paths. Set before the Ray CLIs start; they inherit it.
os.environ.setdefault("RAY_SERVE_CONTROL_LOOP_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_SERVE_METRICS_EXPORT_INTERVAL_MS", "2000")


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection built lives to the end of the session: frozen, the collections the tests trigger
    do not walk it (as `rewardsvc serve` does after its start, rewardsvc/heap.py)."""
    if os.environ.get("PYTEST_XDIST_WORKER") and any(item.get_closest_marker("slow") for item in session.items):
        # With the slow tests, every worker loads models: transformers' model code imported now joins the
        # frozen heap, so the tests' full collections do not walk it (the workers' gc: 8.7 -> 5.5 CPU-s).
        import transformers.modeling_utils  # noqa: F401
    freeze_heap()  # gc was paused in pytest_configure


def fast_lane(config: pytest.Config) -> bool:
    """`make test-fast`: no slow test runs, so nothing is prepared for them."""
    return (config.getoption("markexpr", "") or "").strip() == "not slow"


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, the controller starts the session's zygote for model servers (tests/zygote.py), under
    the environment its workers have (so their servers' environment matches what it imported under)."""
    config.addinivalue_line("markers", "stops_module_server: stops a server the file's other tests share; "
                                       "runs after them (pytest_collection_modifyitems)")
    # Ray Serve's own models use pydantic's deprecated Field arguments. Under `make test-fast` a test is the
    # first to import Serve (pytest_ignore_collect below), and pytest would list ~15 of these for it.
    config.addinivalue_line("filterwarnings",
                            r"ignore:Using extra keyword arguments on `Field` is deprecated:DeprecationWarning:ray\.")
    # Third-party code the integration tests run, not ours: veRL 0.9.1 imports `ray.experimental.state`
    # (verl/single_controller/ray/base.py) and TRL 1.16 reads `model.is_gradient_checkpointing`
    # (trl/models/utils.py), both deprecated by the Ray and transformers versions installed here.
    config.addinivalue_line("filterwarnings", r"ignore:Ray state API is no longer experimental:DeprecationWarning")
    config.addinivalue_line("filterwarnings", r"ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
    if os.environ.get("PYTEST_XDIST_WORKER") or not config.getoption("numprocesses", None):
        gc.disable()  # until pytest_collection_finish: importing the test files only adds objects that live on
        return
    if fast_lane(config):
        return  # the model servers are all in slow tests: `make test-fast` would pay its imports for nothing
    import tempfile

    from zygote import ENV_VAR, start_zygote

    directory = tempfile.mkdtemp(prefix="rewardsvc-zygote-")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc, os.environ[ENV_VAR] = start_zygote(env, directory)
    config.add_cleanup(lambda: _stop_zygote(proc, directory))


def _stop_zygote(proc: subprocess.Popen[bytes], directory: str) -> None:
    import shutil

    assert proc.stdin is not None
    proc.stdin.close()  # its lifeline: it kills any children left and exits
    proc.wait(30)
    shutil.rmtree(directory, ignore_errors=True)


MATH_CONFIG = {"scorers": {"math": {"type": "math", "workers": 2, "timeout_s": 5.0}}}


@pytest.fixture(scope="session")
def math_server() -> Iterator[ServerProcess]:
    with ServerProcess(MATH_CONFIG) as srv:
        yield srv


# The module that holds a worker longest (its local Ray's start: 36 s alone, ~110-120 s sharing the cores
# with the other workers): started first, while the other workers fill the cores. test_ray_start (~20 s)
# takes its turn with the others.
START_FIRST = ("test_ray_serve.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """START_FIRST, then modules with the most slow tests first (stable otherwise). `make test` runs a
    file per xdist worker (--dist loadfile, module fixtures made once); a long module that started last
    would leave the other workers idle at the end. In a file, tests marked stops_module_server go last, in
    any order of test ids given on the command line."""
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    first_seen = {path: i for i, path in reversed(list(enumerate(item.path for item in items)))}

    def order(item: pytest.Item) -> tuple[int, int, int, bool]:
        name = item.path.name
        first = START_FIRST.index(name) if name in START_FIRST else len(START_FIRST)
        stops = item.get_closest_marker("stops_module_server") is not None
        return first, -slow[item.path], first_seen[item.path], stops

    items.sort(key=order)


#: Under `make test-fast`, the files whose fast tests import torch and transformers, or Ray Serve, share one
#: xdist work unit per stack, so one worker imports each stack (~4.5 and ~2 CPU-s) instead of every worker
#: that happens to get one of them (all three did). A file missing here only costs that import again.
FAST_LANE_SHARED_WORKER = {
    **dict.fromkeys(["test_encoder_render.py", "test_http.py", "test_prm_outcome_labels.py", "test_step_windows.py",
                     "test_trainers.py", "test_value_heads.py"], "torch"),
    **dict.fromkeys(["test_deploy_manifests.py", "test_ray_start.py"], "ray"),
}


@pytest.hookimpl(optionalhook=True)  # xdist's hook: pytest runs without xdist too (-p no:xdist)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadfile, with FAST_LANE_SHARED_WORKER's files grouped under `make test-fast`."""
    if not fast_lane(config) or config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedWorkerScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return FAST_LANE_SHARED_WORKER.get(Path(path).name, path)

    return SharedWorkerScheduling(config, log)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under `make test-fast` (-m "not slow") a file whose every test is slow is not imported at all: each
    worker would import torch, transformers, Ray Serve and openai for tests it then deselects (~3 CPU-s a
    worker). Read as text, so a file that marks itself some other way is collected and deselected as usual."""
    if not fast_lane(config) or collection_path.suffix != ".py":
        return None
    if collection_path.name.startswith("test_") and ALL_SLOW.search(collection_path.read_text()):
        return True
    return None


#: What importing a test file that `make test-fast` runs must not import: each xdist worker imports every
#: test file at collection and only one runs each file, so a module-level `import torch` there costs the
#: other workers ~2-5 CPU-s each for nothing. tests/test_suite_lanes.py checks it under `make test-fast`.
HEAVY = ("torch", "transformers", "matplotlib", "sympy", "ray")
#: test file -> the HEAVY modules that importing it brought in (this process's collection).
heavy_imports_by_file: dict[str, list[str]] = {}


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A file is imported when its collector runs: note what of HEAVY appeared with it."""
    if report.nodeid.endswith(".py"):
        seen = {m for found in heavy_imports_by_file.values() for m in found}
        if new := [m for m in HEAVY if m in sys.modules and m not in seen]:
            heavy_imports_by_file[report.nodeid] = new


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate (openssl CLI):
    the TLS and mutual-TLS tests of the server, the client and the CLI share it."""
    d = tmp_path_factory.mktemp("pki")

    def sh(*args: str) -> None:
        subprocess.run(args, cwd=d, check=True, capture_output=True)

    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
       "-keyout", "ca.key", "-out", "ca.pem")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
           "-out", f"{name}.csr")
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
           "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem")
    return d
