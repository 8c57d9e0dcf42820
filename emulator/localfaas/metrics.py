"""Prometheus metrics under OpenFaaS's gateway names and labels.

Dashboards and alert rules written for OpenFaaS (gateway-contract.md §13)
work unchanged: invocations started, finished by status code, their
duration, and replicas per function. ``function_name`` is ``name.namespace``
as the gateway records it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Started(Collector):
    """``gateway_function_invocation_started``, without a ``_total`` suffix.

    The Go gateway registered it before the suffix convention, and
    prometheus_client's Counter always appends one; an untyped family keeps
    the name queries and dashboards use.
    """

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}
        self.lock = threading.Lock()

    def inc(self, function: str) -> None:
        with self.lock:
            self.counts[function] = self.counts.get(function, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = Metric(
            "gateway_function_invocation_started",
            "The total number of function HTTP requests started.",
            "unknown",
        )
        with self.lock:
            counts = sorted(self.counts.items())
        for name, value in counts:
            family.add_sample(
                "gateway_function_invocation_started", {"function_name": name}, value
            )
        yield family


class _Replicas(Collector):
    """``gateway_service_count``: replicas per function, read when scraped."""

    def __init__(self, source: Callable[[], dict[str, int]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "gateway_service_count",
            "Current count of replicas for function",
            labels=["function_name"],
        )
        for name, replicas in sorted(self.source().items()):
            family.add_metric([name], replicas)
        yield family


class GatewayMetrics:
    """The gateway's metrics, in a registry of its own."""

    def __init__(self, replicas: Callable[[], dict[str, int]]) -> None:
        # OpenFaaS's Go client exposes no *_created series.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self._started = _Started()
        self.registry.register(self._started)
        self.registry.register(_Replicas(replicas))
        self._total = Counter(
            "gateway_function_invocation",
            "Function metrics",
            ["function_name", "code"],
            registry=self.registry,
        )
        self._seconds = Histogram(
            "gateway_functions_seconds",
            "Function time taken",
            ["function_name", "code"],
            registry=self.registry,
        )

    def started(self, function: str) -> None:
        """Count a call that passed the function lookup."""
        self._started.inc(function)

    def finished(self, function: str, code: int, seconds: float) -> None:
        """Count a finished call by the status the client got."""
        self._total.labels(function, str(code)).inc()
        self._seconds.labels(function, str(code)).observe(seconds)

    def invocations(self, function: str) -> float:
        """All finished calls of ``function``, for the function list."""
        total = 0.0
        for metric in self._total.collect():
            for sample in metric.samples:
                if (
                    sample.name.endswith("_total")
                    and sample.labels["function_name"] == function
                ):
                    total += sample.value
        return total

    def render(self) -> bytes:
        """The text exposition format Prometheus scrapes."""
        return generate_latest(self.registry)
