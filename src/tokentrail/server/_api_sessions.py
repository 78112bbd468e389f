"""`/api/sessions` (the session list), `/api/sessions/{session}` (one run) and `/api/pulse` (what live pages
poll): read-only, in the OpenAPI schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from tokentrail.server._params import Range, ScopeValue, When, _utc, range_start, utc_now
from tokentrail.server._session import load_run, run_view
from tokentrail.server._sessions import SessionListing, SortKey, list_sessions, session_row_view

if TYPE_CHECKING:
    from tokentrail.tracker import Tracker

__all__ = ["ListingQuery", "listing", "sessions_router"]

MAX_PAGE = 500
MAX_OFFSET = 1_000_000
MAX_CALLS = 10_000
SessionId = Annotated[str, Path(max_length=200, pattern=r"^[^\x00]*$", description="The session id.")]


@dataclass(frozen=True, slots=True)
class ListingQuery:
    """A session list request: what to list, and the preset range it named (for the page's form)."""

    listing: SessionListing
    range: Range | None


def listing(
    request: Request,
    q: Annotated[
        ScopeValue | None, Query(description="Only sessions whose id or an agent name contains this.")
    ] = None,
    range: Annotated[
        Range | None, Query(description="Sessions with a call in this preset window ending now.")
    ] = None,
    since: Annotated[When, Query(description="Sessions with a call at or after this (ISO 8601).")] = None,
    until: Annotated[When, Query(description="Sessions with a call before this (ISO 8601).")] = None,
    sort: Annotated[SortKey, Query(description="Sort key.")] = "last",
    order: Annotated[Literal["asc", "desc"], Query(description="Sort order.")] = "desc",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ListingQuery:
    """FastAPI dependency: the session list a query string asks for."""
    now = getattr(request.app.state, "clock", utc_now)()
    start, end = _utc(since), _utc(until)
    if start is None and end is None and range is not None:
        start = range_start(range, now)
    chosen = SessionListing(start, end, q or None, sort, order == "desc", limit, offset)
    return ListingQuery(chosen, range)


def sessions_router(tracker: Tracker) -> APIRouter:
    """The session endpoints over `tracker`."""
    router = APIRouter(prefix="/api", tags=["sessions"])

    @router.get(
        "/sessions",
        summary="Sessions: cost and its part not paid for tokens, calls, tokens, span, agents, unpriced calls",
    )
    def sessions(asked: Annotated[ListingQuery, Depends(listing)]) -> dict[str, Any]:
        chosen = asked.listing
        page = list_sessions(tracker, chosen)
        return {
            "since": None if chosen.since is None else chosen.since.isoformat(),
            "until": None if chosen.until is None else chosen.until.isoformat(),
            "q": chosen.search,
            "sort": chosen.sort,
            "order": "desc" if chosen.descending else "asc",
            "limit": chosen.limit,
            "offset": chosen.offset,
            "total": page.total,
            "sessions": [session_row_view(row) for row in page.rows],
        }

    @router.get(
        "/sessions/{session}",
        summary="One session as a run: tree with exact subtree costs, context warnings, timeline of calls",
        responses={404: {"description": "No call of this session is in the ledger."}},
    )
    def session(
        session: SessionId,
        limit: Annotated[int, Query(ge=1, le=MAX_CALLS, description="Calls in the timeline page.")] = 500,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        run = load_run(tracker, session)
        if run is None:
            raise HTTPException(status_code=404, detail=f"no calls of session {session!r}")
        return run_view(run, limit, offset)

    @router.get("/pulse", summary="Calls and cost so far (live pages poll it and refresh when it changes)")
    def pulse(
        session: Annotated[ScopeValue | None, Query(description="Only this session.")] = None,
    ) -> dict[str, Any]:
        row = tracker.totals() if session is None else tracker.totals(session=session)
        return {"calls": row.calls, "cost_usd": str(row.cost), "unpriced_calls": row.unpriced_calls}

    return router
