"""`serve --ray` start-up (issue 18): what each deployment reserves, progress per deployment, defaults
that fit the machine when it starts its own Ray (tests/test_ray_serve.py starts one), and clear failures
when replicas can't be scheduled or Serve can't start."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from rewardsvc.config import parse_config
from rewardsvc.rayserve.layout import asks, deployment_order, replica_resources, shortfall, summed, with_cpu_defaults

REPO = Path(__file__).resolve().parents[1]
RAY_STARTED = "Started a local Ray instance"  # ray.init's log line
SCORERS = {"math": {"type": "math", "workers": 0},
           "double": {"type": "composite", "components": [{"scorer": "math", "weight": 2.0}]}}


def test_unset_cpus_share_a_local_machine_and_are_one_on_a_cluster() -> None:
    cfg = parse_config({"scorers": SCORERS, "ray": {"scorers": {"math": {"num_replicas": 2}}}})
    names = [s.name for s in cfg.scorers]
    local = with_cpu_defaults(cfg.ray, names, 2.0)
    # 2 math replicas + 1 composite replica share 2 CPUs; the ingress forwards only and takes none.
    assert local.for_scorer("math").ray_actor_options.num_cpus == 0.66
    assert local.for_scorer("double").ray_actor_options.num_cpus == 0.66
    assert local.ingress.ray_actor_options.num_cpus == 0.0
    plan = asks(local, deployment_order(cfg))
    assert [(a.deployment, a.replicas) for a in plan] == [("math", 2), ("double", 1), ("Ingress", 1)]
    assert not shortfall(summed([a.total for a in plan]), {"CPU": 2.0})
    cluster = with_cpu_defaults(cfg.ray, names, None)
    assert {cluster.for_scorer(n).ray_actor_options.num_cpus for n in names} == {1.0}
    assert cluster.ingress.ray_actor_options.num_cpus == 1.0


def test_explicit_sizes_stay_and_the_rest_share_what_they_leave() -> None:
    cfg = parse_config({"scorers": SCORERS, "ray": {
        "ingress": {"ray_actor_options": {"num_cpus": 0.5}},
        "scorers": {"math": {"num_replicas": 3, "ray_actor_options": {"num_cpus": 2, "num_gpus": 1,
                                                                        "memory_mb": 1024}}}}})
    local = with_cpu_defaults(cfg.ray, ["math", "double"], 16.0)
    assert local.for_scorer("math").ray_actor_options.num_cpus == 2.0
    assert local.ingress.ray_actor_options.num_cpus == 0.5
    assert local.for_scorer("double").ray_actor_options.num_cpus == 9.5  # 16 - 3 x 2 - 0.5
    assert replica_resources(local.for_scorer("math")) == {"CPU": 2.0, "GPU": 1.0, "memory": 2.0**30}
    plan = asks(local, ["math", "double"])
    assert shortfall(summed([a.total for a in plan]), {"CPU": 16.0, "GPU": 2.0}) == {"GPU": (3.0, 2.0),
                                                                                     "memory": (3 * 2.0**30, 0.0)}


# Checked, not imported: every xdist worker imports every test file at collection (tests/test_suite_lanes.py).
if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray Serve tests need the rewardsvc[ray] extra: pip install 'rewardsvc[ray]'", allow_module_level=True)


def test_before_a_local_ray_starts_only_cpus_are_checked() -> None:
    from rewardsvc.rayserve.app import _fail_if_never_fits
    from rewardsvc.rayserve.startup import RayStartError

    def config(ray_actor_options: dict) -> tuple:
        cfg = parse_config({"scorers": SCORERS, "ray": {"scorers": {"math": {"num_replicas": 2,
                                                                             "ray_actor_options": ray_actor_options}}}})
        assert cfg.ray is not None
        return cfg, cfg.ray

    said: list[str] = []
    # GPUs and memory are counted by the Ray that starts (the check after it): not refused here.
    _fail_if_never_fits(*config({"num_gpus": 1, "memory_mb": 10**7}), {"CPU": 2.0}, said.append)
    assert said == []
    with pytest.raises(RayStartError, match=r"ask for \{CPU: 6\} in all and this local Ray has \{CPU: 2\}"):
        _fail_if_never_fits(*config({"num_cpus": 3}), {"CPU": 2.0}, said.append)
    assert said[0] == "rewardsvc ray: deploying on a local Ray with {CPU: 2} in all:" and "  math: 2 x {CPU: 3}" in said


def _serve(tmp_path: Path, ray_section: dict, token: str, timeout_s: float = 600) -> subprocess.Popen[str]:
    from rewardsvc.rayserve.app import free_port

    config = {"server": {"host": "127.0.0.1", "port": free_port(), "auth_token_env": "RAY_START_TEST_TOKEN",
                         "metrics_port": None},
              "scorers": {"math": {"type": "math", "workers": 0, "timeout_s": 10.0}},
              "ray": {"http_port": free_port(), **ray_section}}
    path = tmp_path / f"{uuid.uuid4().hex}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # this CLI starts its own local Ray
    env["RAY_START_TEST_TOKEN"] = token
    return subprocess.Popen([sys.executable, "-m", "rewardsvc.cli", "serve", "--ray", "--config", str(path)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow  # a CLI that imports Ray
def test_replicas_a_local_ray_could_never_place_fail_before_ray_starts(tmp_path: Path) -> None:
    cpus = os.cpu_count() or 1
    # Two replicas of a whole machine each on the local Ray the CLI would start: they can never both run
    # there, so the start fails before Ray starts, not after ray.start_timeout_s. tests/test_ray_serve.py
    # has the rest: the same two replicas unsized, fitting a local Ray its server starts, and the timeout
    # path on a joined cluster (which might grow).
    t0 = time.monotonic()
    too_big = _serve(tmp_path, {"start_timeout_s": 600, "scorers": {
        "math": {"num_replicas": 2, "ray_actor_options": {"num_cpus": cpus}}}}, "t1")
    out, _ = too_big.communicate(timeout=600)
    assert too_big.returncode == 2, out[-3000:]
    assert time.monotonic() - t0 < 600  # did not wait the start timeout out
    assert f"math: 2 x {{CPU: {cpus}}}" in out  # the plan, before the error
    assert (f"the replicas ask for {{CPU: {2 * cpus}}} in all and this local Ray has {{CPU: {cpus}}}: "
            "they can never all run here") in out, out[-3000:]
    assert "num_replicas" in out and "--ray-address" in out  # what to do about it
    assert "replicas running" not in out and "start fails after" not in out  # nothing was deployed
    assert RAY_STARTED not in out and "started a local Ray" not in out  # nor was Ray started
    assert "Traceback" not in out and "rewardsvc ready" not in out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_serve_failing_to_start_is_a_clear_error_not_a_ray_traceback(tmp_path: Path) -> None:
    """Ray Serve's own start-up can fail (its HTTP proxy can't bind its port here; on a busy machine its
    proxy may miss Ray's fixed 60 s): the CLI exits 2 naming the cause, and the local Ray it started is
    shut down with it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve(tmp_path, {"http_port": port}, "t3")
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 2, out[-3000:]
    assert (f"Ray Serve did not start on a local Ray: RuntimeError: Failed to bind to address '127.0.0.1:{port}'. "
            f"Its proxies listen on ray.http_port={port}") in out, out[-3000:]
    assert "Traceback" not in out and "rewardsvc ready" not in out
