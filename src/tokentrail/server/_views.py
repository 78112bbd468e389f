"""JSON shapes of summary rows and records (money as exact decimal strings); budgets: `_budgets`."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from tokentrail._money import units_to_decimal
from tokentrail._record import GroupValue, Record, SummaryRow
from tokentrail._types import TOKEN_FIELDS

__all__ = ["group_text", "record_view", "row_view"]


def group_text(value: GroupValue) -> str | None:
    """A group value as text: ISO for time buckets, None stays None."""
    if value is None:
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def row_view(row: SummaryRow) -> dict[str, Any]:
    """One summary row: its group, calls, every token kind and the exact USD cost of the priced calls (and
    the part of it not paid for tokens: requests, searches, durations, pages, …)."""
    view: dict[str, Any] = {
        "group": {key: group_text(value) for key, value in row.group.items()},
        "calls": row.calls,
        "unpriced_calls": row.unpriced_calls,
        "cost_usd": str(row.cost),
        "non_token_cost_usd": str(row.non_token_cost),
        "total_tokens": row.total_tokens,
        "duration_ms": row.duration_ms,
        "timed_calls": row.timed_calls,
    }
    for name in TOKEN_FIELDS:
        view[name] = getattr(row.usage, name)
    return view


def record_view(record: Record) -> dict[str, Any]:
    """One call without any prompt text: ids, time, model, attribution, tokens, cost and timing."""
    when = datetime.fromtimestamp(record.timestamp_us / 1_000_000, timezone.utc)
    view: dict[str, Any] = {
        "id": f"{record.id:032x}",
        "timestamp": when.isoformat(),
        "model": record.model,
        "provider": record.provider,
        "agent": record.agent,
        "session": record.session,
        "user": record.user,
        "tool": record.tool,
        "tags": list(record.tags),
        "status": str(record.usage.status),
        "cost_usd": None if record.cost_units is None else str(units_to_decimal(record.cost_units)),
        "non_token_cost_usd": None if record.non_token_cost is None else str(record.non_token_cost),
        "unpriced_reason": record.unpriced_reason,
        "duration_ms": record.duration_ms,
        "total_tokens": record.usage.total_tokens,
    }
    for name in TOKEN_FIELDS:
        view[name] = getattr(record.usage, name)
    return view
