"""Prometheus metrics: requests, items, item errors by code, in-flight items, batch fill, latency."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from rewardsvc.service import ScoringService

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600)


class Metrics:
    """One registry per server (tests run several in one process)."""

    def __init__(self, service: "ScoringService") -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rewardsvc_requests", "Score requests by scorer and gRPC status code",
                                ["scorer", "code"], registry=self.registry)
        self.items = Counter("rewardsvc_items", "Items received, by scorer", ["scorer"], registry=self.registry)
        self.item_errors = Counter("rewardsvc_item_errors", "Items answered with an error, by scorer and error code",
                                   ["scorer", "code"], registry=self.registry)
        self.latency = Histogram("rewardsvc_request_seconds", "Score request latency by scorer", ["scorer"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_ScorerGauges(service))
        self._http = None

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return server.server_address[1]

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


class _ScorerGauges(Collector):
    """Read at scrape time from the service: nothing to keep in sync."""

    def __init__(self, service: "ScoringService") -> None:
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
