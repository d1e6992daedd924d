"""Prometheus metrics: ``GET /metrics`` (a key with the scope `read`, like every /v1 endpoint).

Exported (each app has its own registry, on ``app.state.metrics``):

=========================================== ===================================================
``recgov_http_request_duration_seconds``    histogram by ``method`` and ``route``: the route
                                            *template* (``/v1/items/{item_id}/reports``),
                                            never the raw path, so ids never become label
                                            values; unmatched paths are ``<unmatched>``.
``recgov_http_errors_total``                counter by ``status_class`` (``4xx``, ``5xx``).
``recgov_decisions_total``                  counter by ``outcome``: ``personalized``,
                                            ``fallback``, ``non_profiling`` (counted by
                                            ``POST /v1/recommendations``).
=========================================== ===================================================

The endpoint is not open like ``/health``: route names, traffic and decision
mixes are operational data, so scrapers use a viewer key
(``authorization: {type: bearer, credentials: <token>}`` in Prometheus).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from governance.api.deps import needs
from governance.api.errors import problems

__all__ = ["DECISION_OUTCOMES", "Metrics", "install_metrics"]

DECISION_OUTCOMES = ("personalized", "fallback", "non_profiling")
UNMATCHED = "<unmatched>"


@dataclass
class Metrics:
    """One app's registry and instruments."""

    registry: CollectorRegistry
    latency: Histogram
    errors: Counter
    decisions: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        latency = Histogram(
            "recgov_http_request_duration_seconds",
            "Request latency by route template and method.",
            ("method", "route"),
            registry=registry,
        )
        errors = Counter(
            "recgov_http_errors_total",
            "Responses with an error status, by status class.",
            ("status_class",),
            registry=registry,
        )
        decisions = Counter(
            "recgov_decisions_total", "Governed lists served, by outcome.", ("outcome",), registry=registry
        )
        for outcome in DECISION_OUTCOMES:
            decisions.labels(outcome=outcome)
        for status_class in ("4xx", "5xx"):
            errors.labels(status_class=status_class)
        return cls(registry, latency, errors, decisions)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method=method, route=route).observe(seconds)
        if status >= 400:
            self.errors.labels(status_class=f"{status // 100}xx").inc()


class _MetricsMiddleware:
    """Pure ASGI: times each HTTP request and labels it with the matched route's template."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            status = 500
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self.metrics.observe(scope.get("method", "GET"), template, status, time.perf_counter() - started)


def install_metrics(app: FastAPI) -> Metrics:
    """Add the middleware and ``GET /metrics`` (viewer) to ``app``; the instruments go on ``app.state.metrics``."""
    metrics = Metrics.create()
    app.state.metrics = metrics
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    router = APIRouter(tags=["metrics"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics (viewer)",
        response_class=Response,
        dependencies=[needs("read")],
        responses=problems(401, 403, 500),
    )
    def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)
    return metrics
