"""Middleware-style tracking around an LLM client: a config, per-request usage, a summary, events.

A thin face over the engine: the client is `tokentrail.wrap`-ped into a `Tracker`, every number comes
from that tracker's records, and events are the tracker's records handed to a broadcaster as they land.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tokentrail._record import Record
from tokentrail.compat.rates import new_catalog
from tokentrail.tracker import Tracker

if TYPE_CHECKING:
    from tokentrail.events import EventBus

__all__ = [
    "EventBroadcaster",
    "MiddlewareConfig",
    "RequestUsage",
    "TokenTrackingMiddleware",
    "UsageSummary",
]


@dataclass(frozen=True)
class MiddlewareConfig:
    """`enabled`: track at all; `emit_events`: hand each request to the broadcaster; `log_usage`: one
    log line per request; `custom_costs`: model → prices in USD per million tokens (see `new_catalog`)."""

    enabled: bool = True
    emit_events: bool = True
    log_usage: bool = False
    custom_costs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestUsage:
    """One tracked request, as middleware users expect it."""

    provider: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: Decimal | None  # None: the model could not be priced
    duration_ms: float | None
    timestamp: datetime
    status: str

    @classmethod
    def from_record(cls, record: Record) -> RequestUsage:
        usage = record.usage
        return cls(
            record.provider,
            record.model,
            usage.input_tokens,
            usage.output_tokens,
            usage.input_tokens + usage.output_tokens,
            record.cost,
            record.duration_ms,
            record.timestamp,
            usage.status.value,
        )


@dataclass(frozen=True)
class UsageSummary:
    """Totals over every tracked request."""

    request_count: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    total_cost: Decimal
    unpriced_requests: int
    total_duration_ms: float


@runtime_checkable
class EventBroadcaster(Protocol):
    """Implement this to receive every tracked request (e.g. to update Prometheus or a websocket)."""

    def broadcast(self, event: RequestUsage) -> None: ...


class TokenTrackingMiddleware:
    """Wraps an openai or anthropic client: use `middleware.client` (or the middleware itself, which
    forwards attribute access) exactly like the client; every call is recorded into `tracker`.

    With `emit_events`, each request goes to `broadcaster.broadcast(RequestUsage)` and, when `bus` (a
    `tokentrail.events.EventBus`) is given, onto that bus as a `record` event.
    """

    def __init__(
        self,
        client: Any,
        config: MiddlewareConfig | None = None,
        *,
        tracker: Tracker | None = None,
        broadcaster: EventBroadcaster | None = None,
        bus: EventBus | None = None,
    ) -> None:
        from tokentrail.adapters import wrap

        self.config = config or MiddlewareConfig()
        self.broadcaster = broadcaster
        if tracker is None:
            catalog = new_catalog(self.config.custom_costs) if self.config.custom_costs else None
            # middleware users expect each request's event and log line by the time the request returns
            tracker = Tracker(catalog=catalog, capture="sync")
        self.tracker = tracker
        self.client = wrap(client, tracker) if self.config.enabled else client
        if self.config.enabled and self.config.log_usage:
            from tokentrail.exporters.logging import LoggingSink

            tracker.add_sink(LoggingSink())
        if self.config.enabled and self.config.emit_events:
            tracker.add_sink(self._on_record)
            if bus is not None:  # also onto tokentrail's typed event stream (`record` events)
                from tokentrail.events import EventSink

                tracker.add_sink(EventSink(bus))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["client"], name)

    def _on_record(self, record: Record) -> None:
        if self.broadcaster is not None:
            self.broadcaster.broadcast(RequestUsage.from_record(record))

    def get_usage(self) -> list[RequestUsage]:
        """Every tracked request, oldest first."""
        return [RequestUsage.from_record(record) for record in self.tracker.history()]

    def get_summary(self) -> UsageSummary:
        totals = self.tracker.totals()
        usage = totals.usage
        return UsageSummary(
            totals.calls,
            usage.input_tokens,
            usage.output_tokens,
            usage.input_tokens + usage.output_tokens,
            totals.cost,
            totals.unpriced_calls,
            totals.duration_ms,
        )

    def reset(self) -> int:
        """Forget the tracked requests; returns how many were dropped."""
        return self.tracker.reset()
