"""Auth, TLS, mTLS, the plaintext-on-remote guard, metrics and logs, on the real server."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from conftest import MATH_CONFIG
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import ServerProcess

from rewardsvc.client import RewardClient, RewardServiceCallError

ITEM = {"id": "1", "response": "\\boxed{2}", "reference": "2"}


def code_of(fn) -> grpc.StatusCode:
    with pytest.raises(RewardServiceCallError) as e:
        fn()
    return e.value.code


@pytest.mark.slow  # own server; seconds of start and drain
def test_bearer_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    cfg = {"server": {"auth_token_file": str(token_file)}, **MATH_CONFIG}
    with ServerProcess(cfg) as srv:
        with RewardClient(srv.address, retries=0) as c:
            assert code_of(lambda: c.score("math", [ITEM])) == grpc.StatusCode.UNAUTHENTICATED
            assert code_of(lambda: c.list_scorers()) == grpc.StatusCode.UNAUTHENTICATED
        with RewardClient(srv.address, retries=0, token="wrong") as c:
            assert code_of(lambda: c.score("math", [ITEM])) == grpc.StatusCode.UNAUTHENTICATED
        with RewardClient(srv.address, token="s3cret-token") as c:
            assert c.score("math", [ITEM])[0].score == 1.0
        with grpc.insecure_channel(srv.address) as ch:  # probes carry no token
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.slow  # own server; seconds of start and drain
def test_token_from_environment() -> None:
    with ServerProcess(MATH_CONFIG, env={"REWARDSVC_AUTH_TOKEN": "envtok"}) as srv:
        with RewardClient(srv.address, retries=0) as c:
            assert code_of(lambda: c.score("math", [ITEM])) == grpc.StatusCode.UNAUTHENTICATED
        with RewardClient(srv.address, token="envtok") as c:
            assert c.score("math", [ITEM])[0].score == 1.0


@pytest.mark.slow  # two TLS servers: about 10 s
def test_tls_and_mutual_tls(pki: Path) -> None:
    tls = {"tls_cert_file": str(pki / "server.pem"), "tls_key_file": str(pki / "server.key")}
    with ServerProcess({"server": tls, **MATH_CONFIG}) as srv:
        with RewardClient(srv.address, tls_ca_file=str(pki / "ca.pem")) as c:
            assert c.score("math", [ITEM])[0].score == 1.0
        with RewardClient(srv.address, retries=0, timeout_s=5) as c:  # plaintext to a TLS port
            assert code_of(lambda: c.score("math", [ITEM])) == grpc.StatusCode.UNAVAILABLE
    mtls = {**tls, "tls_client_ca_file": str(pki / "ca.pem")}
    with ServerProcess({"server": mtls, **MATH_CONFIG}) as srv:
        with RewardClient(srv.address, retries=0, timeout_s=5, tls_ca_file=str(pki / "ca.pem")) as c:
            assert code_of(lambda: c.score("math", [ITEM])) == grpc.StatusCode.UNAVAILABLE
        with RewardClient(srv.address, tls_ca_file=str(pki / "ca.pem"), tls_cert_file=str(pki / "client.pem"),
                          tls_key_file=str(pki / "client.key")) as c:
            assert c.score("math", [ITEM])[0].score == 1.0


def test_plaintext_on_a_non_loopback_address_is_refused() -> None:
    srv = ServerProcess({"server": {"host": "0.0.0.0"}, **MATH_CONFIG}, startup_timeout_s=60)
    with pytest.raises(RuntimeError, match="refusing to serve plaintext without auth"):
        srv.start()


@pytest.mark.slow  # own server; seconds of start and drain
def test_metrics_and_json_logs_without_item_text() -> None:
    secret = "PRIVATE-PROMPT-TEXT-42"
    cfg = {"server": {"log_format": "json"}, **MATH_CONFIG}
    with ServerProcess(cfg) as srv:
        with RewardClient(srv.address) as c:
            c.score("math", [{"prompt": secret, "response": "\\boxed{2}", "reference": "2"},
                             {"prompt": secret, "response": "x"}])
        body = srv.metrics()
        srv.terminate()
    assert 'rewardsvc_requests_total{code="OK",scorer="math"} 1.0' in body
    assert 'rewardsvc_items_total{scorer="math"} 2.0' in body
    assert 'rewardsvc_item_errors_total{code="invalid_item",scorer="math"} 1.0' in body
    assert 'rewardsvc_items_in_flight{scorer="math"} 0.0' in body
    assert "rewardsvc_request_seconds_bucket" in body
    records = [json.loads(line) for line in srv.output if line.startswith("{")]
    score_logs = [r for r in records if r.get("msg", "").startswith("score ")]
    assert score_logs and score_logs[0]["items"] == 2 and score_logs[0]["item_errors"] == 1
    assert score_logs[0]["request_id"]
    assert not any(secret in line for line in srv.output)
