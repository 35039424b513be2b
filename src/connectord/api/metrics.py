"""Prometheus metrics: requests by route and status, their latency, test outcomes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connectord.model import TestResult

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """One registry per app, so tests and several apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "connectord_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "connectord_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.tests = Counter(
            "connectord_connector_tests_total",
            "Connector tests by type, outcome and error kind.",
            ["connector_type", "outcome", "error_kind"],
            registry=self.registry,
        )
        self.gateway_calls = Counter(
            "connectord_gateway_calls_total",
            "MCP gateway exchanges with connectors' servers by MCP method, outcome and error kind.",
            ["method", "outcome", "error_kind"],
            registry=self.registry,
        )

        self.uses = Counter(
            "connectord_connector_uses_total",
            "Connectors opened for use (docs/use.md) by purpose (proxy, gateway, checkout) and type.",
            ["purpose", "connector_type"],
            registry=self.registry,
        )
        self.proxied = Counter(
            "connectord_proxy_requests_total",
            "Requests through the HTTP proxy by connector type, status answered and error kind "
            "(empty when the upstream answered).",
            ["connector_type", "status", "error_kind"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_use(self, purpose: str, connector_type: str) -> None:
        """Count one use of a connector (proxy, gateway or checkout: the facade's use observer)."""
        self.uses.labels(purpose, connector_type).inc()

    def observe_proxy(self, connector_type: str, status: int, error_kind: str) -> None:
        """Count one proxied request: the upstream's status, or the proxy's own problem."""
        self.proxied.labels(connector_type, str(status), error_kind).inc()

    def observe_gateway(self, method: str, outcome: str, error_kind: str) -> None:
        """Count one exchange of the MCP gateway with a connector's server."""
        self.gateway_calls.labels(method, outcome, error_kind).inc()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            # labels() builds and checks its key on every call; the children it returns
            # live as long as the registry, so one lookup per label set is enough. The set
            # is bounded: route templates (or "unmatched") x methods x statuses.
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route, method))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_test(self, connector_type: str, result: TestResult) -> None:
        """Count one connector test."""
        outcome = "success" if result.success else "failure"
        self.tests.labels(connector_type, outcome, result.error_kind or "").inc()

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
