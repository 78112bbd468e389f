"""Structured log lines: one per tracked call (`LoggingSink`) and one for a whole run (`log_summary`).

Each line is plain `key=value` text for humans and grep, and the same fields go in `extra=` so structlog
(`ExtraAdder`) or a JSON formatter picks them up as keys. Only counts, cost, timing and attribution are
logged: a `Record` holds no prompt or completion text, and its request `context` is left out too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tokentrail._money import units_to_decimal
from tokentrail._record import Record
from tokentrail._types import TOKEN_FIELDS
from tokentrail.tracker import Tracker

__all__ = ["LoggingSink", "format_pairs", "log_summary", "record_fields", "summary_fields"]

LogValue = str | int | float | bool

_DEFAULT_LOGGER = "tokentrail"
_TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
# Every other count (media tokens, durations, pages, searches, …): logged when it is not its default.
_OTHER_COUNTS = tuple(name for name in TOKEN_FIELDS if name not in _TOKEN_FIELDS)


def record_fields(record: Record) -> dict[str, LogValue]:
    """The loggable fields of one call; absent values (no model, no duration, …) are left out."""
    fields: dict[str, LogValue] = {"record_id": f"{record.id:032x}"}
    _put(fields, "provider", record.provider)
    _put(fields, "model", record.model)
    attribution = record.attribution
    _put(fields, "agent", attribution.agent)
    _put(fields, "session", attribution.session)
    _put(fields, "user", attribution.user)
    _put(fields, "tool", attribution.tool)
    if attribution.tags:
        fields["tags"] = ",".join(attribution.tags)
    usage = record.usage
    for name in _TOKEN_FIELDS:
        fields[name] = getattr(usage, name)
    for name in _OTHER_COUNTS:
        value = getattr(usage, name)
        if value != (1 if name == "requests" else 0):
            fields[name] = value
    if usage.status.value != "complete":
        fields["usage_status"] = usage.status.value
    fields["priced"] = record.cost_units is not None
    if record.cost_units is not None:
        fields["cost_usd"] = str(units_to_decimal(record.cost_units))
    _put(fields, "unpriced_reason", record.unpriced_reason)
    if record.duration_ms is not None:
        fields["duration_ms"] = round(record.duration_ms, 3)
    return fields


def summary_fields(tracker: Tracker) -> dict[str, LogValue]:
    """The loggable totals of everything `tracker` selects."""
    totals = tracker.totals()
    fields: dict[str, LogValue] = {"calls": totals.calls, "unpriced_calls": totals.unpriced_calls}
    for name in _TOKEN_FIELDS:
        fields[name] = getattr(totals.usage, name)
    for name in _OTHER_COUNTS:
        value = getattr(totals.usage, name)
        if value and name != "requests":
            fields[name] = value
    fields["cost_usd"] = str(totals.cost)
    fields["duration_ms"] = round(totals.duration_ms, 3)
    return fields


def format_pairs(fields: Mapping[str, LogValue]) -> str:
    """`key=value` pairs separated by spaces; values with spaces, quotes or `=` are double-quoted."""
    return " ".join(f"{key}={_format_value(value)}" for key, value in fields.items())


class LoggingSink:
    """A tracker sink writing one structured line per call: `tracker.add_sink(LoggingSink())`."""

    __slots__ = ("level", "logger")

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger if logger is not None else logging.getLogger(_DEFAULT_LOGGER)
        self.level = level

    def __call__(self, record: Record) -> None:
        if not self.logger.isEnabledFor(self.level):
            return  # no formatting work when nobody listens
        fields = record_fields(record)
        self.logger.log(self.level, "tokentrail call %s", format_pairs(fields), extra=fields)

    def __repr__(self) -> str:
        return f"LoggingSink(logger={self.logger.name!r}, level={logging.getLevelName(self.level)})"


def log_summary(tracker: Tracker, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
    """Log one end-of-run line with the tracker's totals (calls, tokens, cost, time)."""
    target = logger if logger is not None else logging.getLogger(_DEFAULT_LOGGER)
    if not target.isEnabledFor(level):
        return
    fields = summary_fields(tracker)
    target.log(level, "tokentrail summary %s", format_pairs(fields), extra=fields)


def _put(fields: dict[str, LogValue], key: str, value: str | None) -> None:
    if value is not None:
        fields[key] = value


def _format_value(value: LogValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text == "" or any(char in text for char in ' "=\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    return text
