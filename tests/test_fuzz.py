"""Fuzzing the real server with hypothesis: random bytes and random field values get clean status codes."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import MATH_CONFIG
from rewardsvc.client import RewardClient
from rewardsvc.v1 import reward_pb2 as pb
from support import ServerProcess

CLEAN = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.RESOURCE_EXHAUSTED}
METHODS = ["/rewardsvc.v1.RewardService/Score", "/rewardsvc.v1.RewardService/ListScorers"]


@pytest.fixture(scope="module")
def server():
    with ServerProcess(MATH_CONFIG) as srv:
        yield srv


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as ch:
        yield ch


def call_raw(channel: grpc.Channel, method: str, payload: bytes) -> grpc.StatusCode:
    fn = channel.unary_unary(method)  # no serializers: bytes on the wire as given
    try:
        fn(payload, timeout=30)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(max_size=2048), method=st.sampled_from(METHODS))
def test_random_bytes(channel, payload: bytes, method: str) -> None:
    code = call_raw(channel, method, payload)
    assert code in CLEAN, code


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
texts = st.text(max_size=300)
items = st.builds(
    lambda i, p, r, ref, steps, g, md: pb.Item(id=i, prompt_text=p, response_text=r, steps=steps,
                                               metadata=md, **({"reference": ref} if ref is not None else {}),
                                               **({"group_id": g} if g is not None else {})),
    texts, texts, texts | st.sampled_from(["\\boxed{1}", "\\boxed{" * 50, "#### 9" * 20]),
    st.none() | texts, st.lists(texts, max_size=3), st.none() | texts,
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
)


def struct_of(d: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    try:
        s.update(d)
    except (ValueError, TypeError):
        pass
    return s


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(scorer=st.sampled_from(["math", "", "nope"]) | st.text(max_size=30), its=st.lists(items, max_size=6),
       options=st.dictionaries(st.sampled_from(["extract", "timeout_s", "x"]) | st.text(max_size=8), json_values, max_size=3),
       request_id=texts)
def test_random_field_values(channel, scorer, its, options, request_id) -> None:
    req = pb.ScoreRequest(request_id=request_id, scorer=scorer, items=its, options=struct_of(options))
    code = call_raw(channel, "/rewardsvc.v1.RewardService/Score", req.SerializeToString())
    assert code in CLEAN, code


def test_still_serving_after_fuzzing(server) -> None:
    assert server.wait_alive()
    with RewardClient(server.address) as c:
        assert c.score("math", [{"response": "\\boxed{5}", "reference": "5"}])[0].score == 1.0
