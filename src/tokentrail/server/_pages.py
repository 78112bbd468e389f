"""The HTML pages besides the overview: `/sessions`, `/sessions/{session}` and `/budgets`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse

from tokentrail.server._api_sessions import ListingQuery, listing
from tokentrail.server._budgets import render_budgets
from tokentrail.server._session import load_run
from tokentrail.server._session_pages import render_run, render_sessions
from tokentrail.server._sessions import list_sessions

if TYPE_CHECKING:
    from tokentrail.tracker import Tracker

__all__ = ["pages_router"]


def pages_router(tracker: Tracker, every_ms: int) -> APIRouter:
    """The pages over `tracker`; live ones poll every `every_ms` milliseconds."""
    router = APIRouter(include_in_schema=False)

    @router.get("/sessions", response_class=HTMLResponse)
    def sessions(asked: Annotated[ListingQuery, Depends(listing)]) -> HTMLResponse:
        page = list_sessions(tracker, asked.listing)
        return HTMLResponse(render_sessions(page, asked.listing, asked.range, every_ms))

    @router.get("/sessions/{session}", response_class=HTMLResponse)
    def session(
        session: Annotated[str, Path(max_length=200)],
        call: Annotated[str | None, Query(max_length=32)] = None,
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> HTMLResponse:
        run = load_run(tracker, session)
        if run is None:
            return HTMLResponse(_missing(session), status_code=404)
        return HTMLResponse(render_run(run, call, page, every_ms))

    @router.get("/budgets", response_class=HTMLResponse)
    def budgets() -> HTMLResponse:
        return HTMLResponse(render_budgets(tracker, every_ms))

    return router


def _missing(session: str) -> str:
    from html import escape

    from tokentrail.server._layout import frame

    body = f"<section><h2>No such session</h2><p>No call of session <b>{escape(session)}</b> is in the ledger.</p></section>"
    return frame("No such session", "/sessions", "", body, None, 0)
