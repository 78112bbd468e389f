"""Exports that round-trip: JSON (summary + full history) and CSV (history, one row per call).

`save(tracker, "usage.json")` then `load("usage.json")` gives a tracker whose history equals the
original record for record: ids, timestamps, token counts, exact costs, price rules, attribution.
Costs are written as exact decimal strings, never floats.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokentrail._money import decimal_to_units, units_to_decimal
from tokentrail._record import Record, SummaryRow, intern_attribution, to_timestamp_us
from tokentrail._types import TOKEN_FIELDS, PriceRule, Usage, UsageStatus
from tokentrail.tracker import Tracker

__all__ = [
    "load",
    "read_csv",
    "read_json",
    "record_from_dict",
    "record_to_dict",
    "save",
    "summary_row_to_dict",
    "to_csv",
    "to_dict",
    "to_json",
]

FORMAT_VERSION = 1
CSV_COLUMNS = (
    "id",
    "timestamp",
    "model",
    "provider",
    "agent",
    "session",
    "user",
    "tool",
    "tags",
    "path",
    "status",
    "usage_reason",
    *TOKEN_FIELDS,
    "priced",
    "cost",
    "unpriced_reason",
    "duration_ms",
    "provider_cost",
    "context",
    "price_rule",
    "estimated_input_tokens",
    "ttft_ms",
)


# -- records -----------------------------------------------------------------------------------------


def record_to_dict(record: Record) -> dict[str, Any]:
    """A JSON-ready mapping of one record (cost as an exact decimal string)."""
    usage = record.usage
    return {
        "id": f"{record.id:032x}",
        "timestamp": record.timestamp.isoformat(),
        "model": record.model,
        "provider": record.provider,
        "agent": record.agent,
        "session": record.session,
        "user": record.user,
        "tool": record.tool,
        "tags": list(record.tags),
        "path": list(record.path),
        "status": usage.status.value,
        "usage_reason": usage.reason,
        **{name: getattr(usage, name) for name in TOKEN_FIELDS},
        "priced": record.priced,
        "cost": None if record.cost_units is None else str(units_to_decimal(record.cost_units)),
        "unpriced_reason": record.unpriced_reason,
        "duration_ms": record.duration_ms,
        "provider_cost": None if record.provider_cost is None else str(record.provider_cost),
        "context": None if record.context is None else dict(record.context),
        "price_rule": _rule_to_dict(record.price_rule),
        "estimated_input_tokens": record.estimated_input_tokens,
        "ttft_ms": record.ttft_ms,
    }


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """The record `record_to_dict` described."""
    usage = Usage(
        **{name: int(data.get(name) or 0) for name in TOKEN_FIELDS if name != "requests"},
        requests=int(data.get("requests", 1)),
        status=UsageStatus(data.get("status") or "complete"),
        reason=data.get("usage_reason"),
    )
    cost = data.get("cost")
    duration = data.get("duration_ms")
    reported = data.get("provider_cost")
    estimate = data.get("estimated_input_tokens")
    ttft = data.get("ttft_ms")
    return Record(
        id=int(data["id"], 16),
        timestamp_us=to_timestamp_us(datetime.fromisoformat(data["timestamp"])),
        usage=usage,
        model=data.get("model"),
        provider=data.get("provider"),
        cost_units=decimal_to_units(Decimal(cost), what="cost")
        if cost is not None and data.get("priced")
        else None,
        price_rule=_rule_from_dict(data.get("price_rule")),
        unpriced_reason=data.get("unpriced_reason"),
        duration_ms=None if duration is None else float(duration),
        attribution=intern_attribution(
            data.get("agent"),
            data.get("session"),
            data.get("user"),
            data.get("tool"),
            tuple(data.get("tags") or ()),
            tuple(data.get("path") or ()),
        ),
        provider_cost=None if reported is None else Decimal(reported),
        context=data.get("context"),
        estimated_input_tokens=None if estimate is None else int(estimate),
        ttft_ms=None if ttft is None else float(ttft),
    )


def _rule_to_dict(rule: PriceRule | None) -> dict[str, Any] | None:
    return None if rule is None else rule.as_dict()


def _rule_from_dict(data: Mapping[str, Any] | None) -> PriceRule | None:
    return None if data is None else PriceRule.from_dict(data)


# -- summaries ---------------------------------------------------------------------------------------


def summary_row_to_dict(row: SummaryRow) -> dict[str, Any]:
    """A JSON-ready mapping of a summary row: exact costs as strings, metrics as numbers."""
    usage = row.usage
    return {
        **{name: _plain(value) for name, value in row.group.items()},
        "calls": row.calls,
        "unpriced_calls": row.unpriced_calls,
        **{name: getattr(usage, name) for name in TOKEN_FIELDS},
        "cost": str(row.cost),
        "cost_per_call": _text(row.cost_per_call),
        "cost_per_1k_tokens": _text(row.cost_per_1k_tokens),
        "duration_ms": row.duration_ms,
        "timed_calls": row.timed_calls,
        "tokens_per_second": row.tokens_per_second,
        "cache_hit_ratio": row.cache_hit_ratio,
        "provider_cost": _text(row.provider_cost),
        "provider_cost_difference": _text(row.provider_cost_difference),
        "status_counts": row.status_counts,
    }


def to_dict(tracker: Tracker) -> dict[str, Any]:
    """Totals, spend by agent and by model, and every record of `tracker` (its node and below)."""
    return {
        "format": "tokentrail",
        "version": FORMAT_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "node": list(tracker.path),
        "totals": summary_row_to_dict(tracker.totals()),
        "by_agent": [summary_row_to_dict(row) for row in tracker.summary(by=("agent",))],
        "by_model": [summary_row_to_dict(row) for row in tracker.summary(by=("model", "provider"))],
        "records": [record_to_dict(record) for record in tracker.history()],
    }


def to_json(tracker: Tracker, indent: int | None = 2) -> str:
    return json.dumps(to_dict(tracker), indent=indent, ensure_ascii=False)


def to_csv(tracker: Tracker) -> str:
    """The usage history, one call per row; nested fields (tags, path, context, rule) as JSON."""
    buffer = io.StringIO()
    _write_csv(buffer, tracker.history())
    return buffer.getvalue()


def _write_csv(stream: io.TextIOBase | Any, records: Iterable[Record]) -> None:
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = record_to_dict(record)
        for name in ("tags", "path", "context", "price_rule"):
            row[name] = json.dumps(row[name], ensure_ascii=False) if row[name] is not None else ""
        row["priced"] = "true" if row["priced"] else "false"
        for name in ("duration_ms", "ttft_ms"):
            row[name] = "" if row[name] is None else repr(row[name])
        writer.writerow({name: "" if value is None else value for name, value in row.items()})


# -- reading ------------------------------------------------------------------------------------------


def read_json(text: str) -> list[Record]:
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != "tokentrail":
        raise ValueError("not a tokentrail JSON export")
    return [record_from_dict(item) for item in data["records"]]


def read_csv(text: str) -> list[Record]:
    records = []
    for row in csv.DictReader(io.StringIO(text)):
        data: dict[str, Any] = {name: (value if value != "" else None) for name, value in row.items()}
        for name in ("tags", "path", "context", "price_rule"):
            data[name] = json.loads(data[name]) if data[name] is not None else None
        data["priced"] = data["priced"] == "true"
        records.append(record_from_dict(data))
    return records


def save(tracker: Tracker, path: str | os.PathLike[str]) -> Path:
    """Write `tracker`'s export to `path`: `.csv` for the history as CSV, anything else JSON."""
    target = Path(path)
    text = to_csv(tracker) if target.suffix.lower() == ".csv" else to_json(tracker)
    target.write_text(text, encoding="utf-8", newline="")
    return target


def load(path: str | os.PathLike[str], tracker: Tracker | None = None) -> Tracker:
    """Read a `save`d export into `tracker` (a new in-memory one by default) and return it."""
    source = Path(path)
    text = source.read_text(encoding="utf-8")
    records = read_csv(text) if source.suffix.lower() == ".csv" else read_json(text)
    target = tracker if tracker is not None else Tracker()
    for record in records:
        target.store.append(record)
    return target


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, date) else value


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
