"""Request parameters the API and the page share: time range and scope filters, checked against whitelists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator, StringConstraints

__all__ = [
    "RANGES",
    "Clock",
    "GroupKey",
    "Range",
    "Selection",
    "invalid",
    "range_start",
    "selection",
    "utc_now",
]

Range = Literal["24h", "7d", "30d", "90d", "all"]
RANGES: tuple[Range, ...] = ("24h", "7d", "30d", "90d", "all")
GroupKey = Literal[
    "agent", "session", "user", "tool", "model", "provider", "tag", "path", "status", "hour", "day", "month"
]
Status = Literal["complete", "estimated", "partial", "unknown"]
SCOPE_KEYS = ("agent", "session", "user", "tool", "model", "provider", "tag")
_MAX_VALUE = 200
ScopeValue = Annotated[str, StringConstraints(max_length=_MAX_VALUE, pattern=r"^[^\x00]*$")]
Value = Annotated[list[ScopeValue] | None, Query(max_length=20)]


def _iso_only(value: object) -> object:
    """Accept ISO 8601 text only (pydantic would also read a bare number as a Unix time)."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected an ISO 8601 date-time") from None
    return value


When = Annotated[datetime | None, BeforeValidator(_iso_only)]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock: the current time, in UTC."""
    return datetime.now(timezone.utc)


_LOWEST = datetime(1, 1, 2, tzinfo=timezone.utc)
_HIGHEST = datetime(9999, 12, 30, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which records a request covers: [since, until) in UTC, plus field filters for `tracker.summary`.

    `now` is the app clock read once per request: the end of preset ranges and of open-ended windows.
    """

    range: Range | None
    since: datetime | None
    until: datetime | None
    now: datetime
    filters: dict[str, Any] = field(default_factory=dict)
    bucket: Literal["hour", "day"] = "day"


def range_start(name: Range, now: datetime) -> datetime | None:
    """The start of a preset range ending now: whole UTC hours for 24h, whole UTC days otherwise."""
    if name == "all":
        return None
    if name == "24h":
        return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    days = int(name.removesuffix("d"))
    return now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return min(max(value, _LOWEST), _HIGHEST)


def invalid(where: str, message: str, value: object) -> RequestValidationError:
    """A 422 shaped like FastAPI's own validation errors (so it matches the OpenAPI schema)."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", where), "msg": message, "input": value}]
    )


def _values(given: list[str] | None) -> list[str] | None:
    given = [value for value in given or () if value]  # an empty value (the form's "(all)") is no filter
    return given or None


def selection(
    request: Request,
    range: Annotated[
        Range | None, Query(description="Preset window ending now; since/until override it.")
    ] = None,
    since: Annotated[When, Query(description="Start (inclusive), ISO 8601; naive is UTC.")] = None,
    until: Annotated[When, Query(description="End (exclusive), ISO 8601; naive is UTC.")] = None,
    agent: Value = None,
    session: Value = None,
    user: Value = None,
    tool: Value = None,
    model: Value = None,
    provider: Value = None,
    tag: Value = None,
    status: Annotated[list[Status] | None, Query(max_length=4)] = None,
    priced: Annotated[bool | None, Query(description="Only priced (true) or unpriced (false) calls.")] = None,
) -> Selection:
    """FastAPI dependency: the selection a request's query string describes (422 on anything unknown)."""
    clock: Clock = getattr(request.app.state, "clock", utc_now)
    now = clock()
    start = _utc(since)
    end = _utc(until)
    if start is None and end is None and range is not None:
        start = range_start(range, now)
    given = {"agent": agent, "session": session, "user": user, "tool": tool, "model": model}
    given |= {"provider": provider, "tag": tag}
    filters: dict[str, Any] = {}
    for name, values in given.items():
        checked = _values(values)
        if checked is not None:
            filters[name] = checked[0] if len(checked) == 1 else checked
    if status:
        filters["status"] = status[0] if len(status) == 1 else list(status)
    if priced is not None:
        filters["priced"] = priced
    span = (end or now) - (start or now)
    bucket: Literal["hour", "day"] = "hour" if start is not None and span <= timedelta(hours=48) else "day"
    return Selection(range, start, end, now, filters, bucket)
