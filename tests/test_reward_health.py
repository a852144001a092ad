"""Reward-health telemetry and dedupe/cache counts through a real server: in each response's
metadata, on /metrics, and in the Grafana dashboard's queries (deploy/grafana)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support import ServerProcess

from rewardsvc import messages
from rewardsvc.server.reward_health import pearson, reward_health
from rewardsvc.types import ErrorCode, Item, Result
from rewardsvc.v1 import reward_pb2 as pb
from rewardsvc.v1 import reward_pb2_grpc as pb_grpc

TESTS = Path(__file__).resolve().parent
DASHBOARD = TESTS.parent / "deploy" / "grafana" / "rewardsvc-reward-health.json"
CONFIG = {
    "server": {"result_cache_items": 100},
    "scorers": {"math": {"type": "math", "workers": 1, "timeout_s": 5.0},
                "count": {"type": "counting_scorer:CountingScorer"}},
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    env = {"PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with ServerProcess(CONFIG, env=env) as srv:
        yield srv


def call(srv: ServerProcess, scorer: str, items: list[Item]) -> pb.ScoreResponse:
    with grpc.insecure_channel(srv.address) as ch:
        request = pb.ScoreRequest(scorer=scorer, items=[messages.item_to_pb(i) for i in items])
        return pb_grpc.RewardServiceStub(ch).Score(request, timeout=120)


def sample(text: str, name: str, **labels: str) -> float | None:
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(sel)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def metric(text: str, name: str, **labels: str) -> float:
    value = sample(text, name, **labels)
    assert value is not None, f"{name}{labels} not in /metrics"
    return value


def math_groups(right: int = 4) -> list[Item]:
    """Three groups and a lone item on "what is `right`?". Tests that share the module's server ask about
    different numbers, so none finds another's answers in the result cache."""
    def item(i: str, group: str, answer: int) -> Item:
        return Item(id=i, prompt=f"{right // 2} + {right - right // 2}?", response=f"I think the answer is {answer}.",
                    reference=str(right), group_id=group)

    return ([item(f"z{k}", "never-right", right + 1 + k) for k in range(4)]  # all wrong: zero-reward barrier
            + [item("m0", "mixed", right), item("m1", "mixed", right + 1), item("m2", "mixed", right)]
            + [item(f"r{k}", "always-right", right) for k in range(3)]  # all right: flat, not zero
            + [item("alone", "", right)])


def test_a_zero_variance_group_shows_in_the_response_and_on_metrics(server: ServerProcess) -> None:
    before = server.metrics()  # the module's other tests may have scored math on this server first
    response = call(server, "math", math_groups(4))
    health = response.metadata.health
    assert [r.score for r in response.results] == [0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1]
    assert (health.groups, health.flat_groups, health.all_zero_groups) == (3, 2, 1)
    assert (health.scored_items, health.error_items) == (11, 0)
    assert dict(health.verdicts) == {"correct": 6, "incorrect": 5}
    assert health.score_mean == pytest.approx(6 / 11)
    # Dedupe: answer "4" is checked once for its six items, "5" once for two.
    assert response.metadata.deduplicated_items == 6
    text = server.metrics()

    def grew(name: str, **labels: str) -> float:  # a counter's increase (no sample yet before: 0)
        return metric(text, name, **labels) - (sample(before, name, **labels) or 0.0)

    assert grew("rewardsvc_reward_groups_total", scorer="math") == 3
    assert grew("rewardsvc_reward_flat_groups_total", scorer="math") == 2
    assert grew("rewardsvc_reward_all_zero_groups_total", scorer="math") == 1
    # Shares of the last 1000 groups: the module's other math calls have groups of the same make-up.
    assert metric(text, "rewardsvc_reward_flat_group_fraction", scorer="math") == pytest.approx(2 / 3)
    assert metric(text, "rewardsvc_reward_all_zero_group_fraction", scorer="math") == pytest.approx(1 / 3)
    assert grew("rewardsvc_reward_verdicts_total", scorer="math", verdict="incorrect") == 5
    assert grew("rewardsvc_reward_score_bucket", le="0.0", scorer="math") == 5
    assert grew("rewardsvc_reward_score_count", scorer="math") == 11
    assert grew("rewardsvc_deduplicated_items_total", scorer="math") == 6


def test_cache_hits_errors_and_length_correlation_through_the_server(server: ServerProcess) -> None:
    items = [Item(id=str(k), response="x" * (k + 1)) for k in range(5)] + [Item(id="bad", response="fail")]
    first = call(server, "count", items)
    again = call(server, "count", items)
    assert (first.metadata.cache_hits, again.metadata.cache_hits) == (0, 5)  # the failed item is not kept
    assert [r.score for r in again.results] == [r.score for r in first.results]
    health = again.metadata.health
    assert (health.scored_items, health.error_items, health.groups) == (5, 1, 0)
    # score = len(response) for this scorer: a perfectly length-driven reward.
    assert health.HasField("length_correlation") and health.length_correlation == pytest.approx(1.0)
    text = server.metrics()
    assert metric(text, "rewardsvc_result_cache_hits_total", scorer="count") == 5
    assert metric(text, "rewardsvc_result_cache_misses_total", scorer="count") == 7  # 6, then "fail" again
    assert metric(text, "rewardsvc_reward_length_correlation", scorer="count") == pytest.approx(1.0)
    assert metric(text, "rewardsvc_reward_item_error_fraction", scorer="count") == pytest.approx(2 / 12)
    # A constant reward has no correlation to report.
    flat = call(server, "count", [Item(id=str(k), response="same", group_id="g") for k in range(3)])
    assert not flat.metadata.health.HasField("length_correlation")
    assert flat.metadata.health.flat_groups == 1


def test_every_dashboard_query_names_metrics_the_server_exports(server: ServerProcess) -> None:
    call(server, "math", math_groups(6))
    # Every family the server declares (also those without samples yet), with a histogram's series.
    exported = set()
    for name, kind in re.findall(r"^# TYPE (\w+) (\w+)$", server.metrics(), re.M):
        exported.add(name)
        if kind == "histogram":
            exported |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter":
            exported.add(f"{name}_total")
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used = {name for e in exprs for name in re.findall(r"\b(rewardsvc_\w+)", e)}
    assert used - exported == set(), f"dashboard queries metrics the server does not export: {used - exported}"
    assert {"rewardsvc_reward_flat_group_fraction", "rewardsvc_reward_length_correlation"} <= used


def test_health_of_groups_with_errors_and_single_members() -> None:
    items = [Item(id="a", group_id="g"), Item(id="b", group_id="g"), Item(id="c", group_id="h")]
    results = [Result("a", 0.0), Result.failed("b", ErrorCode.INTERNAL, "x"), Result("c", 0.0)]
    health = reward_health(items, results)
    # "g" has one scored member, "h" one item: neither is a group that could have a signal.
    assert (health.groups, health.flat_groups, health.error_items) == (0, 0, 1)
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(0.9933, abs=1e-4)
    assert pearson([1, 1, 1], [1, 2, 3]) is None
