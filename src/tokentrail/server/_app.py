"""`create_app`: the dashboard, its JSON API and `/metrics`, over a ledger opened read-only."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from tokentrail.server._api import api_router
from tokentrail.server._api_sessions import sessions_router
from tokentrail.server._auth import TokenAuth
from tokentrail.server._metrics import metrics_endpoint
from tokentrail.server._page import render_page
from tokentrail.server._pages import pages_router
from tokentrail.server._params import Clock, Range, Selection, range_start, selection, utc_now
from tokentrail.server._readonly import open_read_only
from tokentrail.tracker import Tracker

__all__ = ["DEFAULT_RANGE", "create_app"]

DEFAULT_RANGE: Range = "30d"


def _tracker(source: str | Tracker) -> Tracker:
    """A Tracker as given, or one over the store URL opened read-only."""
    if isinstance(source, Tracker):
        return source
    return Tracker(store=open_read_only(source))


def _page_selection(picked: Annotated[Selection, Depends(selection)]) -> Selection:
    """The page's selection: the last 30 days unless the query string says otherwise."""
    if picked.range is not None or picked.since is not None or picked.until is not None:
        return picked
    start = range_start(DEFAULT_RANGE, picked.now)
    return dataclasses.replace(picked, range=DEFAULT_RANGE, since=start, bucket="day")


def create_app(
    store_url_or_tracker: str | Tracker,
    token: str | None = None,
    metric_labels: Sequence[str] = ("provider", "model", "agent"),
    clock: Clock = utc_now,
    ingest: str | Tracker | None = None,
    live_seconds: float = 2.0,
    ingest_options: Mapping[str, Any] | None = None,
) -> FastAPI:
    """The dashboard app (ASGI). With `token`, every request must carry it (see `TokenAuth`).

    A store URL is opened read-only (writes raise); a Tracker is used as given, and only read.
    `clock` says what "now" is (preset ranges, anomaly windows, the forecast's month): tests fix it.
    `ingest` (a store URL, opened for writing on the first export, or a Tracker) adds `POST /v1/traces`,
    the OTLP/HTTP endpoint recording exported GenAI spans (`tokentrail.ingest`), behind the same token;
    `ingest_options` go to its `Ingestor` (`journal`: the file keeping spans held for their agent span).
    Live pages poll for new calls every `live_seconds`.
    """
    tracker = _tracker(store_url_or_tracker)
    app = FastAPI(
        title="tokentrail dashboard",
        description="Read-only view of a tokentrail ledger: totals, breakdowns, recent calls, budgets.",
        version="1",
    )
    app.include_router(api_router(tracker))
    app.include_router(sessions_router(tracker))
    every_ms = round(live_seconds * 1000)
    app.include_router(pages_router(tracker, every_ms=every_ms))
    app.add_api_route(
        "/metrics",
        metrics_endpoint(tracker, metric_labels),
        methods=["GET"],
        include_in_schema=False,
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(picked: Annotated[Selection, Depends(_page_selection)]) -> HTMLResponse:
        return HTMLResponse(render_page(tracker, picked, every_ms))

    if ingest is not None:
        from starlette.routing import Route

        from tokentrail.ingest.app import PATH, otlp_app

        traces = otlp_app(ingest, **(ingest_options or {}))
        app.router.routes.append(Route(PATH, traces, methods=["POST"], include_in_schema=False))
    if token:
        app.add_middleware(TokenAuth, token=token)
    app.state.tracker = tracker
    app.state.clock = clock
    return app
