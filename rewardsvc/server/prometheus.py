"""Prometheus metrics: requests, items, item errors by code, in-flight items, batch fill, latency."""

from __future__ import annotations

import hmac
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from rewardsvc.server.reward_health import (
    MAX_VERDICTS,
    HealthWindows,
    RewardHealth,
    group_flags,
    item_samples,
    summarise,
)
from rewardsvc.types import Item, Result

if TYPE_CHECKING:
    from rewardsvc.service import ScoringService

# Scores live on different scales (0/1 verifiers, probabilities, [-1, 1] judges, raw RM logits).
SCORE_BUCKETS = (-10, -5, -2, -1, -0.5, -0.25, 0, 0.25, 0.5, 0.75, 1, 2, 5, 10)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600)


class Metrics:
    """One registry per server (tests run several in one process)."""

    def __init__(self, service: ScoringService) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rewardsvc_requests", "Score requests by scorer and gRPC status code",
                                ["scorer", "code"], registry=self.registry)
        self.items = Counter("rewardsvc_items", "Items received, by scorer", ["scorer"], registry=self.registry)
        self.item_errors = Counter("rewardsvc_item_errors", "Items answered with an error, by scorer and error code",
                                   ["scorer", "code"], registry=self.registry)
        self.latency = Histogram("rewardsvc_request_seconds", "Score request latency by scorer", ["scorer"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_ScorerGauges(service))
        self._http: ThreadingWSGIServer | None = None
        # Reward health (server/reward_health.py): counters here, recent-window gauges at scrape time.
        self.health_windows = HealthWindows()
        self.reward_scores = Histogram("rewardsvc_reward_score", "Scores of scored items, by scorer", ["scorer"],
                                       buckets=SCORE_BUCKETS, registry=self.registry)
        self.reward_groups = Counter("rewardsvc_reward_groups", "Groups (group_id) with at least two scored items",
                                     ["scorer"], registry=self.registry)
        self.flat_groups = Counter("rewardsvc_reward_flat_groups", "Groups whose rewards were all equal (no GRPO "
                                   "learning signal)", ["scorer"], registry=self.registry)
        self.all_zero_groups = Counter("rewardsvc_reward_all_zero_groups", "Groups whose rewards were all zero",
                                       ["scorer"], registry=self.registry)
        self.verdicts = Counter("rewardsvc_reward_verdicts", "Scored items by details.verdict", ["scorer", "verdict"],
                                registry=self.registry)
        self._verdict_labels: dict[str, set[str]] = {}
        self.registry.register(_HealthAndWork(service, self.health_windows))

    def record(self, scorer: str, code: str, items: int, seconds: float, item_errors: dict[str, int]) -> None:
        """One answered Score request (either transport): `code` is the gRPC status name."""
        self.requests.labels(scorer, code).inc()
        self.items.labels(scorer).inc(items)
        self.latency.labels(scorer).observe(seconds)
        for ecode, n in item_errors.items():
            self.item_errors.labels(scorer, ecode).inc(n)

    def observe_health(self, scorer: str, items: Sequence[Item], results: Sequence[Result]) -> RewardHealth:
        """Count one response's reward health under `scorer` (a hosted name) and return it."""
        flags, samples = group_flags(items, results), item_samples(items, results)
        health = summarise(flags, samples, results)
        observe = self.reward_scores.labels(scorer).observe
        for sample in samples:
            if sample is not None:
                observe(sample[0])
        self.reward_groups.labels(scorer).inc(health.groups)
        self.flat_groups.labels(scorer).inc(health.flat_groups)
        self.all_zero_groups.labels(scorer).inc(health.all_zero_groups)
        seen = self._verdict_labels.setdefault(scorer, set())
        for verdict, n in health.verdicts.items():
            if verdict not in seen and len(seen) >= MAX_VERDICTS:
                verdict = "other"
            seen.add(verdict)
            self.verdicts.labels(scorer, verdict).inc(n)
        self.health_windows.add(scorer, flags, samples)
        return health

    def serve(self, host: str, port: int, token: str | None = None) -> int:
        """Start the /metrics HTTP endpoint on a daemon thread; returns the bound port. With `token`,
        a scrape must send `Authorization: Bearer <token>` (Prometheus: `authorization:
        credentials_file:`), like every gRPC call: metrics name the scorers and their traffic."""
        app = make_wsgi_app(self.registry)
        if token:
            app = _bearer_only(app, token)

        class Server(ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        server = make_server(host.strip("[]"), port, app, Server, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="rewardsvc-metrics", daemon=True).start()
        self._http = server
        return server.server_address[1]

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


class _ScorerGauges(Collector):
    """Read at scrape time from the service: nothing to keep in sync."""

    def __init__(self, service: ScoringService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_flight = GaugeMetricFamily("rewardsvc_items_in_flight", "Items accepted and not yet answered",
                                      labels=["scorer"])
        for name in self.service.scorers:
            in_flight.add_metric([name], self.service.in_flight.get(name, 0))
        yield in_flight
        families: dict[str, GaugeMetricFamily] = {}
        for name, scorer in self.service.scorers.items():
            try:
                stats = scorer.stats()
            except Exception:  # a scorer's gauges must never break the scrape
                continue
            for key, value in stats.items():
                fam = families.setdefault(key, GaugeMetricFamily(f"rewardsvc_scorer_{key}", f"Scorer gauge {key}",
                                                                 labels=["scorer"]))
                fam.add_metric([name], float(value))
        yield from families.values()


class _HealthAndWork(Collector):
    """Recent-window reward-health gauges and the dedupe / result-cache counters, read at scrape time."""

    GAUGES: ClassVar[dict[str, str]] = {
        "flat_group_fraction": "Share of the last 1000 groups whose rewards were all equal",
        "all_zero_group_fraction": "Share of the last 1000 groups whose rewards were all zero",
        "item_error_fraction": "Share of the last 4096 items answered with an error",
        "length_correlation": "Pearson correlation of score with response length over the last 4096 scored items",
    }

    def __init__(self, service: ScoringService, windows: HealthWindows) -> None:
        self.service = service
        self.windows = windows

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        gauges = {k: GaugeMetricFamily(f"rewardsvc_reward_{k}", doc, labels=["scorer"])
                  for k, doc in self.GAUGES.items()}
        for name in list(self.windows.groups.keys() | self.windows.items.keys()):
            for key, value in self.windows.gauges(name).items():
                gauges[key].add_metric([name], value)
        yield from gauges.values()
        work = getattr(self.service, "work", {})
        counters = {
            "deduplicated": CounterMetricFamily("rewardsvc_deduplicated_items", "Items answered with a copy of an "
                                                "identical item's result in the same request", labels=["scorer"]),
            "cache_hits": CounterMetricFamily("rewardsvc_result_cache_hits", "Items answered from the result cache",
                                              labels=["scorer"]),
            "cache_misses": CounterMetricFamily("rewardsvc_result_cache_misses", "Cacheable items the result cache "
                                                "did not have", labels=["scorer"]),
        }
        for name, stats in list(work.items()):
            for attr, fam in counters.items():
                fam.add_metric([name], float(getattr(stats, attr)))
        yield from counters.values()
        cache = getattr(self.service, "result_cache", None)
        entries = GaugeMetricFamily("rewardsvc_result_cache_entries", "Results held in the result cache")
        entries.add_metric([], float(len(cache)) if cache is not None else 0.0)
        yield entries


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def _bearer_only(app: Callable[..., Iterable[bytes]], token: str) -> Callable[..., Iterable[bytes]]:
    """`app` behind the server's bearer token: anything else gets 401."""
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        got = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if hmac.compare_digest(got, expected):  # constant time: no timing oracle on the token
            return app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("WWW-Authenticate", 'Bearer realm="rewardsvc"')])
        return [b"missing or wrong bearer token: send the header 'Authorization: Bearer <token>' "
                b"(Prometheus: authorization.credentials_file)\n"]

    return guarded
