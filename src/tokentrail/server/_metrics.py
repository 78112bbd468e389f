"""`/metrics` as an ASGI app: the Prometheus exposition of a tracker, computed at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import Response

if TYPE_CHECKING:
    from tokentrail.tracker import Tracker

__all__ = ["create_metrics_app", "metrics_endpoint"]

_DEFAULT_LABELS = ("provider", "model", "agent")


def metrics_endpoint(tracker: Tracker, labels: Sequence[str] = _DEFAULT_LABELS) -> Callable[[], Response]:
    """A sync endpoint function (FastAPI runs it in its threadpool) returning the exposition text."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from tokentrail.exporters.prometheus import Collector

    registry = CollectorRegistry(auto_describe=False)
    Collector(tracker, registry=registry, labels=labels)

    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def create_metrics_app(tracker: Tracker, labels: Sequence[str] = _DEFAULT_LABELS) -> FastAPI:
    """An ASGI app serving only `/metrics` (what `tokentrail serve --metrics-only` runs)."""
    app = FastAPI(title="tokentrail metrics", openapi_url=None, docs_url=None, redoc_url=None)
    app.add_api_route("/metrics", metrics_endpoint(tracker, labels), methods=["GET"], include_in_schema=False)
    return app
