"""`rewardsvc serve --ray` (issues 7 and 18): the unchanged client against Ray Serve hosting a verifier (2
replicas), a composite over it and a model-backed reward model.

One Ray cluster for the module, started by the module's server: the real CLI, `serve --ray` with no
address, sizing every deployment by its defaults for the machine. Ray takes tens of seconds to start,
so every check shares it: the tests join it as a second driver, and a second CLI joins it to show what
happens when replicas can't be placed. The server's SIGTERM, last, stops the application and its Ray.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from rewardsvc import messages
from rewardsvc.client import AsyncRewardClient, RewardClient, RewardServiceCallError
from rewardsvc.types import ErrorCode, Item
from rewardsvc.v1 import reward_pb2 as pb
from rewardsvc.v1 import reward_pb2_grpc as pb_grpc
from encoder_models import minilm_dir
from rewardsvc.config import parse_config
from rewardsvc.service import ScoringService
from support import ServerProcess

# Checked, not imported: every xdist worker imports every test file at collection (tests/test_suite_lanes.py),
# and one runs this file. Ray, Serve and rewardsvc.rayserve (~1.5 CPU-s of imports) come in where used.
if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray Serve tests need the rewardsvc[ray] extra: pip install 'rewardsvc[ray]'", allow_module_level=True)

pytestmark = pytest.mark.slow

APP = "rewardsvc"
TOKEN = uuid.uuid4().hex
TOKEN_ENV = "REWARDSVC_RAY_TEST_TOKEN"
CALLS, PER_CALL = 50, 10
REPO = Path(__file__).resolve().parents[1]
RAY_STARTED = "Started a local Ray instance"  # ray.init's log line


def _rm_stanza() -> dict:
    # A real backbone (MiniLM from its PyPI package) with a seeded head: enough to compare paths.
    return {"type": "classifier", "model": str(minilm_dir("sequence", 1)), "device": "cpu", "max_length": 64}


def _config() -> dict:
    from rewardsvc.rayserve.app import free_port

    return {
        "server": {"auth_token_env": TOKEN_ENV},
        "scorers": {
            "math": {"type": "math", "workers": 1, "timeout_s": 10.0},
            "double_math": {"type": "composite", "components": [{"scorer": "math", "weight": 2.0}]},
            "rm": _rm_stanza(),
        },
        # No sizes: the four replicas share the machine's CPUs, so a killed math replica's share is what
        # its replacement takes.
        "ray": {"app_name": APP, "http_port": free_port(), "scorers": {"math": {"num_replicas": 2}}},
    }


def _math_items(n: int) -> list[dict]:
    # Every third reference is wrong, so scores are not all equal and a wrong one would show.
    return [{"id": f"m{i}", "prompt": f"What is {i}?", "response": f"The answer is \\boxed{{{i}}}.",
             "reference": str(i if i % 3 else i + 1)} for i in range(n)]


def _expected(item: dict) -> float:
    return 1.0 if item["reference"] in item["response"].replace("{", " ").replace("}", " ").split() else 0.0


@pytest.fixture(scope="module")
def ray_server() -> Iterator[ServerProcess]:
    import ray

    srv = ServerProcess(_config(), env={TOKEN_ENV: TOKEN}, startup_timeout_s=300, args=["--ray"])
    srv.env.pop("RAY_ADDRESS", None)  # the CLI starts its own local Ray
    with srv:
        # This driver joins with RAY_AUTH_MODE=token, as the CLI's line says (tests/conftest.py sets it).
        ray.init(address=cluster_address(srv), log_to_driver=False)
        try:
            yield srv
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def join_without_auth_mode(ray_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
                           ) -> Iterator[subprocess.Popen[str]]:
    """A `serve --ray --ray-address` without RAY_AUTH_MODE, started with the module's first test: Ray's ~20 s
    of retries overlap the other tests."""
    path = tmp_path_factory.mktemp("join") / "join.yaml"
    path.write_text(yaml.safe_dump({"server": {"auth_token_env": TOKEN_ENV},
                                    "scorers": {"math": {"type": "math", "workers": 0}}}))
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    proc = subprocess.Popen([sys.executable, "-m", "rewardsvc.cli", "serve", "--ray", "--ray-address",
                             cluster_address(ray_server), "--config", str(path)], cwd=REPO,
                            env={**env, TOKEN_ENV: TOKEN}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def cluster_address(srv: ServerProcess) -> str:
    """The local Ray's address, as the CLI that started it says it."""
    said = next(m for line in srv.output if (m := re.match(r"rewardsvc ray: started a local Ray at (\S+);", line)))
    address = said.group(1)
    assert re.fullmatch(r"[\d.]+:\d+", address), said.string
    assert said.string.endswith(f"join it with RAY_AUTH_MODE=token and --ray-address {address}"), said.string
    return address


def _replica_states() -> dict[str, int]:
    from ray import serve

    status = serve.status().applications[APP].deployments["math"]
    return {str(k.value if hasattr(k, "value") else k): v for k, v in status.replica_states.items()}


@pytest.mark.usefixtures("join_without_auth_mode")  # starts it: see the fixture
def test_a_local_ray_the_cli_starts_sizes_unsized_replicas_to_fit_the_machine(ray_server: ServerProcess) -> None:
    from rewardsvc.rayserve.app import local_cpus

    cpus = local_cpus()
    lines = ray_server.output
    assert any(RAY_STARTED in line for line in lines)  # ray.init's own line: this CLI started Ray
    # Two math replicas, the composite and the model share the machine; the ingress forwards only.
    share = f"{{CPU: {math.floor(100 * cpus / 4) / 100:g}}}"
    assert f"rewardsvc ray: deploying on a local Ray with {{CPU: {cpus}}} in all:" in lines, lines[:30]
    assert f"  math: 2 x {share}" in lines and f"  rm: 1 x {share}" in lines and f"  double_math: 1 x {share}" in lines
    assert "  Ingress: 1 x nothing" in lines
    assert "rewardsvc ray: math: 2/2 replicas running (ready)" in lines
    assert not any(line.startswith("rewardsvc ray: warning") or "Traceback" in line for line in lines), lines
    # It serves: the command-line client scores and checks health through Ray's proxy.
    proc = subprocess.run([sys.executable, "-m", "rewardsvc.cli", "score", "--scorer", "math", "--address",
                           ray_server.address, "--token", TOKEN, "--timeout", "120"], cwd=REPO, capture_output=True,
                          text=True, timeout=300,
                          input=json.dumps({"id": "a", "response": "\\boxed{4}", "reference": "4"}) + "\n")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["score"] == 1.0
    health = subprocess.run([sys.executable, "-m", "rewardsvc.cli", "health", "--address", ray_server.address,
                             "--scorer", "math"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert health.returncode == 0, health.stderr


def test_two_replicas_share_500_items_and_killing_one_loses_none(ray_server: ServerProcess) -> None:
    import ray
    from ray import serve

    from rewardsvc.rayserve.app import INGRESS_NAME

    items = _math_items(CALLS * PER_CALL)
    chunks = [items[i : i + PER_CALL] for i in range(0, len(items), PER_CALL)]
    killed: list[str] = []

    async def run() -> list:
        async with AsyncRewardClient(ray_server.address, token=TOKEN, retries=8, backoff_s=0.1) as client:
            calls = [asyncio.create_task(client.score("math", chunk)) for chunk in chunks]
            pending, done = set(calls), []
            while len(done) < 10:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                done += finished
            failed = [t.exception() for t in done if t.exception() is not None]
            assert not failed, f"{len(failed)} calls failed before any replica was killed: {failed[0]!r}"
            assert pending, "every call finished before a replica could be killed: nothing was mid-run"
            victim = done[0].result()[0].details["replica"]
            ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
            killed.append(victim)
            return [r for part in await asyncio.gather(*calls) for r in part]

    results = asyncio.run(run())

    assert [r.id for r in results] == [it["id"] for it in items]  # each answered exactly once, in order
    assert [r.error for r in results if r.error is not None] == []
    assert [r.score for r in results] == [_expected(it) for it in items]
    served = collections.Counter(r.details["replica"] for r in results)
    assert killed[0] in served and len(served) >= 2, served  # both replicas served some
    ingress = serve.get_deployment_handle(INGRESS_NAME, app_name=APP)
    resent = ingress.stats.remote().result()["resent"]
    print(f"items per replica {dict(served)}; killed {killed[0]}; calls re-sent {resent}")  # shown with -s
    # Calls in flight on the killed replica went to another one: re-sent by the ingress when the replica
    # had taken them, or retried by the client when the ingress answered UNAVAILABLE first (which of the two
    # depends on where the kill lands: CI saw both). Either way nothing is lost, which is checked above.
    assert set(resent) <= {"math"}, resent
    # Ray replaces the killed replica.
    deadline = time.monotonic() + 120
    while _replica_states().get("RUNNING", 0) < 2:
        assert time.monotonic() < deadline, f"math never got back to 2 running replicas: {_replica_states()}"
        time.sleep(0.5)


def test_same_api_over_ray_composites_errors_auth_health_stream(ray_server: ServerProcess) -> None:
    items = _math_items(12)
    with RewardClient(ray_server.address, token=TOKEN) as client:
        assert {s["name"] for s in client.list_scorers()} == {"math", "double_math", "rm"}
        doubled = client.score("double_math", items)
        assert [r.score for r in doubled] == [2 * _expected(it) for it in items]
        assert all(r.details["components"] == {"math": _expected(it)} for r, it in zip(doubled, items))
        bad = client.score("math", [{"id": "x", "prompt": "q", "response": "\\boxed{1}"}])[0]
        assert bad.error is not None and bad.error.code == ErrorCode.INVALID_ITEM and "reference" in bad.error.message
        with pytest.raises(RewardServiceCallError) as unknown:
            client.score("nope", items[:1])
        assert unknown.value.code == grpc.StatusCode.NOT_FOUND and "math" in unknown.value.details
        with pytest.raises(RewardServiceCallError) as bad_option:
            client.score("math", items[:1], extract=["bogus"])
        assert bad_option.value.code == grpc.StatusCode.INVALID_ARGUMENT

    with RewardClient(ray_server.address, retries=0) as anonymous:
        anonymous.wait_ready(timeout_s=30)  # health is open: kubelet probes carry no token
        with pytest.raises(RewardServiceCallError) as denied:
            anonymous.score("math", items[:1])
        assert denied.value.code == grpc.StatusCode.UNAUTHENTICATED

    # ScoreStream through Ray's proxy: every request answered once, matched by request_id.
    with grpc.insecure_channel(ray_server.address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        requests = [pb.ScoreRequest(request_id=f"r{k}", scorer="math",
                                    items=[messages.item_to_pb(Item(**it)) for it in items[k * 4 : k * 4 + 4]])
                    for k in range(3)]
        responses = list(stub.ScoreStream(iter(requests), metadata=[("authorization", f"Bearer {TOKEN}")], timeout=60))
    by_id = {r.request_id: r for r in responses}
    assert sorted(by_id) == ["r0", "r1", "r2"] and len(responses) == 3
    for k in range(3):
        assert [x.score for x in by_id[f"r{k}"].results] == [_expected(it) for it in items[k * 4 : k * 4 + 4]]


def test_model_scorer_replica_scores_as_in_process(ray_server: ServerProcess) -> None:
    items = [{"id": str(i), "prompt": f"Question {i}: how do I bake bread?",
              "response": "Mix flour, water, salt and yeast; knead; let it rise; bake at 230C." * (1 + i % 3)}
             for i in range(12)]
    with RewardClient(ray_server.address, token=TOKEN) as client:
        remote = client.score("rm", items)

    async def local() -> list:
        async with ScoringService(parse_config({"scorers": {"rm": _rm_stanza()}})) as service:
            return await service.score("rm", [Item(**it) for it in items])

    expected = asyncio.run(local())
    assert [r.error for r in remote] == [None] * len(items)
    assert len({round(r.score, 4) for r in remote}) > 1  # not a constant
    assert [r.score for r in remote] == pytest.approx([r.score for r in expected], abs=1e-4)
    assert all(r.details["replica"].startswith(f"SERVE_REPLICA::{APP}#rm#") for r in remote)


def test_replicas_a_joined_cluster_cannot_place_fail_after_the_start_timeout_with_their_ask(
        ray_server: ServerProcess, tmp_path: Path) -> None:
    """On a cluster it joins (which may grow, or free resources) the CLI waits ray.start_timeout_s for
    replicas that don't fit, reporting progress, then fails with each waiting deployment's ask against
    what the cluster has, and removes its application; the cluster and the application it shares it with
    go on. Two replicas of 3/4 of the machine each: more than the cluster has, and the module's
    application holds most of its CPUs."""
    import ray
    from ray import serve

    from rewardsvc.rayserve.app import free_port

    app = "rewardsvc-too-big"
    total = ray.cluster_resources()["CPU"]
    each = 0.75 * total
    config = {"server": {"auth_token_env": TOKEN_ENV},
              "scorers": {"math": {"type": "math", "workers": 0, "timeout_s": 10.0}},
              "ray": {"app_name": app, "http_port": free_port(), "start_timeout_s": 10,
                      "ingress": {"ray_actor_options": {"num_cpus": 0}},
                      # Serve stops even a replica that never started gracefully: it waits this out first.
                      "scorers": {"math": {"num_replicas": 2, "ray_actor_options": {"num_cpus": each},
                                           "graceful_shutdown_timeout_s": 1}}}}
    path = tmp_path / "too-big.yaml"
    path.write_text(yaml.safe_dump(config))
    cluster = cluster_address(ray_server)
    proc = subprocess.run([sys.executable, "-m", "rewardsvc.cli", "serve", "--ray", "--ray-address", cluster,
                           "--config", str(path)], cwd=REPO, env={**os.environ, TOKEN_ENV: TOKEN},
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert f"rewardsvc ray: deploying on the Ray cluster at {cluster}" in out
    assert f"math: 2 x {{CPU: {each:g}}}" in out  # the plan
    assert f"warning: the replicas ask for {{CPU: {2 * each:g}}} and the cluster has {{CPU: {total:g}}}" in out
    assert "start fails after ray.start_timeout_s=10s" in out
    assert "did not start application 'rewardsvc-too-big' within 10s (ray.start_timeout_s)" in out
    waiting = re.search(rf"math: 0/2 replicas running; each asks for \{{CPU: {each:g}\}}, all 2 "
                        rf"\{{CPU: {2 * each:g}\}}; the cluster has \{{CPU: {total:g}\}} in all, "
                        r"\{CPU: ([\d.]+)\} free: can't be scheduled", out)
    assert waiting and float(waiting.group(1)) < each, out[-3000:]
    assert "Traceback" not in out and "rewardsvc ready" not in out
    assert app not in serve.status().applications
    assert APP in serve.status().applications and ray_server.wait_alive()


def test_joining_without_ray_auth_mode_says_how_to_send_the_token(
        ray_server: ServerProcess, join_without_auth_mode: subprocess.Popen[str]) -> None:
    """Ray sends its token to an explicit address only under RAY_AUTH_MODE=token, and otherwise retries for
    ~20 s, logging the cause, then raises a bare ConnectionError: the CLI's error says what to set."""
    _, stderr = join_without_auth_mode.communicate(timeout=300)
    assert join_without_auth_mode.returncode == 2, stderr[-3000:]
    assert "InvalidAuthToken" in stderr  # Ray's log of the cause
    cluster = cluster_address(ray_server)
    assert (f"rewardsvc: error: Failed to connect to Ray cluster at {cluster}: if its log says InvalidAuthToken, "
            "the cluster has token auth") in stderr and "RAY_AUTH_MODE=token" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr
    assert ray_server.wait_alive()


@pytest.mark.stops_module_server
def test_sigterm_deletes_the_application_and_stops_the_ray_it_started(ray_server: ServerProcess) -> None:
    import ray

    host, port = cluster_address(ray_server).rsplit(":", 1)
    ray.shutdown()  # this driver leaves first: the cluster is about to go
    assert ray_server.terminate(120) == 0
    assert "rewardsvc: deleting the Ray Serve application (in-flight calls drain)" in ray_server.output
    assert "rewardsvc: stopped" in ray_server.output
    with pytest.raises(ConnectionRefusedError):  # its Ray's GCS is gone with it
        socket.create_connection((host, int(port)), timeout=10).close()
