"""The JSON API: `/api/summary`, `/api/totals`, `/api/records`, `/api/budgets` and, when the analytics
package loads, `/api/anomalies` and `/api/forecast` (sessions and the live pulse: `_api_sessions`).
Every endpoint only reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from tokentrail.server import _insights
from tokentrail.server._budgets import budget_rows, closest
from tokentrail.server._params import GroupKey, Selection, invalid, selection
from tokentrail.server._views import record_view, row_view

if TYPE_CHECKING:
    from tokentrail.tracker import Tracker

__all__ = ["api_router"]

MAX_PAGE = 500
MAX_OFFSET = 100_000
Picked = Annotated[Selection, Depends(selection)]


def _window(picked: Selection) -> dict[str, Any]:
    return {
        "since": None if picked.since is None else picked.since.isoformat(),
        "until": None if picked.until is None else picked.until.isoformat(),
        "filters": picked.filters,
    }


def api_router(tracker: Tracker) -> APIRouter:
    """The read-only API over `tracker` (sync endpoints: FastAPI runs them in its threadpool)."""
    router = APIRouter(prefix="/api", tags=["ledger"])

    @router.get("/summary", summary="Totals grouped by up to four keys")
    def summary(
        picked: Picked,
        by: Annotated[
            list[GroupKey] | None,
            Query(
                max_length=4,
                description="Group keys, in order, each once.",
                json_schema_extra={"uniqueItems": True},
            ),
        ] = None,
    ) -> dict[str, Any]:
        keys = tuple(by) if by else ("agent", "model")
        if len(set(keys)) != len(keys):
            raise invalid("by", f"group keys repeat: {list(keys)}", by)
        rows = tracker.summary(by=keys, since=picked.since, until=picked.until, **picked.filters)
        return {"by": list(keys), **_window(picked), "rows": [row_view(row) for row in rows]}

    @router.get("/totals", summary="One row summing the selection")
    def totals(picked: Picked) -> dict[str, Any]:
        row = tracker.totals(since=picked.since, until=picked.until, **picked.filters)
        return {**_window(picked), "totals": row_view(row)}

    @router.get("/records", summary="Recent calls, newest first (no prompt text is ever stored)")
    def records(
        picked: Picked,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        recent = tracker.history(
            since=picked.since, until=picked.until, limit=offset + limit, **picked.filters
        )
        newest_first = recent[::-1][offset : offset + limit]
        return {
            **_window(picked),
            "limit": limit,
            "offset": offset,
            "records": [record_view(record) for record in newest_first],
        }

    @router.get(
        "/budgets", summary="Every budget in its current window: spent, reserved, remaining, alerts fired"
    )
    def budgets(
        order: Annotated[
            Literal["defined", "closest"],
            Query(description="closest: nearest their limit (spent + reserved) first."),
        ] = "defined",
    ) -> dict[str, Any]:
        rows = budget_rows(tracker)
        return {"budgets": closest(rows, len(rows)) if order == "closest" else rows}

    if _insights.analytics_available():

        @router.get("/anomalies", summary="Hours far above their robust baseline (last 7 days at most)")
        def anomalies(picked: Picked) -> dict[str, Any]:
            return {**_window(picked), "anomalies": _insights.anomalies(tracker, picked)}

        @router.get("/forecast", summary="This month's cost forecast with its interval")
        def forecast(picked: Picked) -> dict[str, Any]:
            outlook, note = _insights.forecast(tracker, picked)
            return {"filters": picked.filters, "forecast": outlook, "note": note}

    return router
