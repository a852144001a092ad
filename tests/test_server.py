"""The real gRPC server on loopback: health, reflection, streams, deadlines, limits, graceful stop."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import MATH_CONFIG
from rewardsvc import messages
from rewardsvc.client import RewardClient, RewardServiceCallError
from rewardsvc.types import Item
from rewardsvc.v1 import reward_pb2 as pb
from rewardsvc.v1 import reward_pb2_grpc as pb_grpc
from support import ServerProcess

SLOW = "\\boxed{9^{9^{9^{9}}}}"  # runs into math-verify's limit in a worker, on a full core
#: Options sent with SLOW: a per-check limit of 2 s gives math-verify 1 s (its limits are whole seconds) instead
#: of the 3 s the config's 5 s gives it. Each SLOW check spins a core until then; these tests only need it slow.
SHORT_LIMIT = {"timeout_s": 2.0}


def test_health_and_reflection_list_the_services(math_server) -> None:
    with grpc.insecure_channel(math_server.address) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        # What `grpcurl -plaintext ADDRESS list` does.
        services = set(ProtoReflectionDescriptorDatabase(ch).get_services())
        assert {"rewardsvc.v1.RewardService", "grpc.health.v1.Health"} <= services


def test_list_scorers_names_options(math_server) -> None:
    with RewardClient(math_server.address) as c:
        (info,) = c.list_scorers()
    assert info["name"] == "math" and info["kind"] == "math"
    assert {"extract", "timeout_s"} <= {o["name"] for o in info["options"]}


def test_request_level_errors_are_status_codes(math_server) -> None:
    with RewardClient(math_server.address) as c:
        with pytest.raises(RewardServiceCallError) as e:
            c.score("nope", [{"response": "1", "reference": "1"}])
        assert e.value.code == grpc.StatusCode.NOT_FOUND and "math" in e.value.details
        with pytest.raises(RewardServiceCallError) as e:
            c.score("math", [{"response": "1", "reference": "1"}], no_such_option=1)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "accepted" in e.value.details
        with pytest.raises(RewardServiceCallError) as e:
            c.score("math", [{"response": "1", "reference": "1"}], extract=["bogus"])
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        # the server is fine afterwards
        assert c.score("math", [{"response": "\\boxed{1}", "reference": "1"}])[0].score == 1.0


def test_stream_answers_each_request_with_its_id_fast_ones_first(math_server) -> None:
    async def main() -> list[pb.ScoreResponse]:
        async with grpc.aio.insecure_channel(math_server.address) as ch:
            stub = pb_grpc.RewardServiceStub(ch)

            async def requests():
                yield pb.ScoreRequest(request_id="slow", scorer="math", options=messages.options_to_struct(SHORT_LIMIT),
                                      items=[messages.item_to_pb(Item(id="s", response=SLOW, reference="1"))])
                for i in range(3):
                    yield pb.ScoreRequest(request_id=f"fast{i}", scorer="math",
                                          items=[messages.item_to_pb(Item(id=str(i), response=f"\\boxed{{{i}}}", reference=str(i)))])
                yield pb.ScoreRequest(request_id="unknown", scorer="nope",
                                      items=[messages.item_to_pb(Item(id="u", response="1", reference="1"))])

            return [r async for r in stub.ScoreStream(requests(), timeout=60)]

    responses = asyncio.run(main())
    ids = [r.request_id for r in responses]
    assert sorted(ids) == sorted(["slow", "fast0", "fast1", "fast2", "unknown"])
    assert ids.index("slow") > ids.index("fast0")  # not head-of-line blocked
    by_id = {r.request_id: r for r in responses}
    for i in range(3):
        assert by_id[f"fast{i}"].results[0].score == 1.0
    # A request-level error inside a stream is said once, in the response's `error`; the stream goes on.
    assert by_id["unknown"].error.code == "NOT_FOUND" and not by_id["unknown"].results
    assert "no scorer named" in by_id["unknown"].error.message


@pytest.mark.slow  # items wait seconds for a busy worker
def test_metadata_reports_queue_time_when_items_wait_for_a_worker(math_server) -> None:
    """The math server has 2 workers: of 4 slow checks in one request, two wait for the first two."""
    # Four references, so four checks: identical items would be one check (server.dedupe).
    items = [messages.item_to_pb(Item(id=str(i), response=SLOW, reference=str(i + 1))) for i in range(4)]
    with grpc.insecure_channel(math_server.address) as ch:
        response = pb_grpc.RewardServiceStub(ch).Score(pb.ScoreRequest(
            scorer="math", items=items, options=messages.options_to_struct(SHORT_LIMIT)), timeout=120)
    meta = response.metadata
    assert meta.items == 4
    assert meta.queue_time_ns > 0 and meta.compute_time_ns > 0
    with grpc.insecure_channel(math_server.address) as ch:  # a lone quick item on an idle pool barely waits
        one = pb_grpc.RewardServiceStub(ch).Score(pb.ScoreRequest(scorer="math", items=[messages.item_to_pb(
            Item(id="q", response="\\boxed{1}", reference="1"))]), timeout=60)
    assert one.results[0].score == 1.0
    assert one.metadata.queue_time_ns < meta.queue_time_ns


def test_deadline_drops_the_work_and_the_server_goes_on(math_server) -> None:
    with RewardClient(math_server.address, retries=0) as c:
        t0 = time.perf_counter()
        with pytest.raises(RewardServiceCallError) as e:
            c.score("math", [{"response": SLOW, "reference": "1"}] * 4, timeout_s=0.5)
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.perf_counter() - t0 < 3  # the client is not held until the work would finish
        assert c.score("math", [{"response": "\\boxed{7}", "reference": "7"}])[0].score == 1.0


@pytest.mark.slow  # own server; seconds of start and drain
def test_limits_items_per_request_text_length_and_message_size() -> None:
    cfg = {"server": {"max_items_per_request": 5, "max_text_chars": 1000, "max_message_bytes": 200_000},
           "scorers": MATH_CONFIG["scorers"]}
    with ServerProcess(cfg) as srv, RewardClient(srv.address, chunk_size=100, retries=0) as c:
        six = [Item(id=str(i), response="\\boxed{1}", reference="1") for i in range(6)]
        with grpc.insecure_channel(srv.address) as ch, pytest.raises(grpc.RpcError) as refused:
            pb_grpc.RewardServiceStub(ch).Score(pb.ScoreRequest(scorer="math", items=[
                messages.item_to_pb(it) for it in six]), timeout=60)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_items_per_request" in refused.value.details()
        # The client splits a request refused for its size and re-sends the halves.
        assert [r.score for r in c.score("math", six)] == [1.0] * 6
        res = c.score("math", [{"id": "long", "response": "x" * 2000, "reference": "1"},
                               {"id": "ok", "response": "\\boxed{1}", "reference": "1"}])
        assert res[0].error is not None and "max_text_chars" in res[0].error.message
        assert res[1].score == 1.0
        with pytest.raises(RewardServiceCallError) as e:
            c.score("math", [{"response": "x" * 300_000, "reference": "1"}])
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert c.score("math", [{"response": "\\boxed{2}", "reference": "2"}])[0].score == 1.0


@pytest.mark.slow  # waits out a drain: a few seconds
def test_sigterm_drains_in_flight_calls_refuses_new_ones_and_exits_0() -> None:
    srv = ServerProcess(MATH_CONFIG).start()
    try:
        results: dict[int, object] = {}

        def call(i: int) -> None:
            with RewardClient(srv.address, retries=0) as c:
                try:
                    results[i] = c.score("math", [{"id": str(i), "response": SLOW, "reference": "1"}],
                                         options=SHORT_LIMIT)
                except RewardServiceCallError as exc:
                    results[i] = exc

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        srv.wait_in_flight("math", 4)  # all four accepted; each takes ~1 s in one of 2 math workers
        srv.proc.send_signal(__import__("signal").SIGTERM)
        time.sleep(0.5)
        with RewardClient(srv.address, retries=0) as c:
            with pytest.raises(RewardServiceCallError) as e:
                c.score("math", [{"response": "\\boxed{1}", "reference": "1"}], timeout_s=5)
            assert e.value.code in (grpc.StatusCode.UNAVAILABLE,)
        for t in threads:
            t.join(60)
        assert srv.proc.wait(60) == 0
        for i in range(4):
            res = results[i]
            assert isinstance(res, list), res
            assert res[0].details["verdict"] == "timeout"
        assert any("draining" in line for line in srv.output)
    finally:
        srv.kill()
