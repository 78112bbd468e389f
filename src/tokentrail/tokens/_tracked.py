"""Feed a `ContextMonitor` from a tracker's records: `tracker.context(...)` installs this sink.

Each recorded call with a model and provider-reported input is observed as one turn of the conversation
its `by` field names (the session by default), so utilization and growth per conversation are kept
without the caller doing anything. A threshold reached for the first time in a conversation is logged
once and handed to `on_warning`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tokentrail._record import Record
from tokentrail._types import UsageStatus
from tokentrail.tokens.context import ContextMonitor, ContextReport, ContextWarning

__all__ = ["CONVERSATION_KEYS", "ContextSink"]

CONVERSATION_KEYS = ("session", "agent", "user", "tool", "path")
_OBSERVED = (UsageStatus.COMPLETE, UsageStatus.PARTIAL)


class ContextSink:
    """A tracker sink observing every recorded call in `monitor`."""

    __slots__ = ("by", "monitor", "on_warning", "reports")

    def __init__(
        self,
        monitor: ContextMonitor,
        by: str = "session",
        on_warning: Callable[[ContextWarning], object] | None = None,
    ) -> None:
        if by not in CONVERSATION_KEYS:
            raise ValueError(f"by must be one of {', '.join(CONVERSATION_KEYS)}, got {by!r}")
        self.monitor = monitor
        self.by = by
        self.on_warning = on_warning
        self.reports = 0

    def conversation_of(self, record: Record) -> str | None:
        if self.by == "path":
            return "/".join(record.path) or None
        value: str | None = getattr(record, self.by)
        return value

    def __call__(self, record: Record) -> ContextReport | None:
        usage = record.usage
        if record.model is None or usage.status not in _OBSERVED or not usage.input_tokens:
            return None
        report = self.monitor.observe(
            self.conversation_of(record), usage, record.model, provider=record.provider
        )
        self.reports += 1
        for warning in report.warnings:
            if warning.first_time:
                logging.getLogger("tokentrail").warning("tokentrail: %s", warning)
                if self.on_warning is not None:
                    self.on_warning(warning)
        return report
