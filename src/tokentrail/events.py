"""A typed event stream: what happened (a call recorded, a budget threshold, a context warning, an
anomaly, an unpriced model, a failing sink), delivered to subscribers off the caller's thread.

    bus = tt.events.get_bus()
    bus.subscribe(print, kinds=("budget_exceeded", "anomaly"))
    tracker = tt.Tracker(sinks=[tt.events.EventSink()])

`EventBus.publish` only puts the event on a bounded queue and returns: one worker thread hands it to
the subscribers. A full queue drops the event and counts it (`dropped`); a subscriber that raises is
logged and counted (`subscriber_errors`). A slow subscriber delays later events, never the call.

Async subscribers (coroutine functions, or callables returning an awaitable) run on the event loop
given as `EventBus(loop=...)`, or, without one, on a private loop in a daemon thread started at their
first event. The worker does not wait for them: a slow coroutine holds neither the call nor the bus.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import asyncio

    from tokentrail._record import Record
    from tokentrail.budgets.events import BudgetAlert
    from tokentrail.budgets.manager import BudgetManager
    from tokentrail.tokens.context import ContextWarning

__all__ = [
    "EVENT_KINDS",
    "AnomalyEvent",
    "BudgetExceededEvent",
    "BudgetThresholdEvent",
    "ContextWarningEvent",
    "Event",
    "EventBus",
    "EventSink",
    "RecordEvent",
    "SinkErrorEvent",
    "Subscriber",
    "UnpricedModelEvent",
    "as_dict",
    "bridge_budgets",
    "context_warning_publisher",
    "get_bus",
    "publish_sink_error",
    "set_bus",
]

logger = logging.getLogger("tokentrail")


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: `kind` names it, `at` is when it was made (UTC)."""

    kind: ClassVar[str] = "event"


@dataclass(frozen=True, slots=True)
class RecordEvent(Event):
    """A call was recorded."""

    kind: ClassVar[str] = "record"
    record: Record
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class BudgetThresholdEvent(Event):
    """A budget's spend reached an alert threshold below its limit."""

    kind: ClassVar[str] = "budget_threshold"
    alert: BudgetAlert
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class BudgetExceededEvent(Event):
    """A budget's spend reached (or passed) its limit."""

    kind: ClassVar[str] = "budget_exceeded"
    alert: BudgetAlert
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class ContextWarningEvent(Event):
    """A conversation's prompt reached a threshold of the model's context window."""

    kind: ClassVar[str] = "context_warning"
    warning: ContextWarning
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class AnomalyEvent(Event):
    """A metric (`cost_per_hour` or `cost_per_call`) far above its recent baseline.

    `score` is the robust z-score (0.6745 × (value − median) / MAD); `group` names what was measured
    (e.g. {"agent": "a", "model": "m"}); `period` is the hour or the call's time.
    """

    kind: ClassVar[str] = "anomaly"
    metric: str
    group: dict[str, str | None]
    value: Decimal
    baseline_median: Decimal
    score: float
    period: datetime
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class UnpricedModelEvent(Event):
    """A model the catalog could not price was recorded (published once per model per process)."""

    kind: ClassVar[str] = "unpriced_model"
    model: str | None
    provider: str | None
    reason: str | None
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class SinkErrorEvent(Event):
    """A tracker sink raised; `count` is that tracker's sink failures so far."""

    kind: ClassVar[str] = "sink_error"
    sink: str
    error: str
    count: int
    at: datetime = field(default_factory=_now)


EVENT_KINDS = tuple(
    cls.kind
    for cls in (
        RecordEvent,
        BudgetThresholdEvent,
        BudgetExceededEvent,
        ContextWarningEvent,
        AnomalyEvent,
        UnpricedModelEvent,
        SinkErrorEvent,
    )
)

Subscriber = Callable[[Event], "object | Awaitable[object]"]
"""A callable taking an event; a coroutine function (or one returning an awaitable) runs as async."""


class EventBus:
    """Delivers published events to subscribers on a worker thread, through a bounded queue.

    `maxsize` bounds the queue (a full queue drops and counts); `loop` is the event loop async
    subscribers run on (None: a private loop thread, started when first needed).
    """

    def __init__(self, maxsize: int = 10_000, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if maxsize <= 0:
            raise ValueError(f"maxsize must be positive, got {maxsize!r}")
        self._maxsize = maxsize
        self._pending: deque[Event] = deque()
        self._wakeup = threading.Event()
        self._handled = 0  # events taken off the queue by the worker (only it writes this)
        self._stopping = False
        self._subscribers: tuple[tuple[Subscriber, frozenset[str] | None, bool], ...] = ()
        self._lock = threading.Lock()
        self._counts_lock = threading.Lock()  # publishers on many threads count exactly
        self._worker: threading.Thread | None = None
        self._loop = loop
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0
        self.subscriber_errors = 0
        self.delivered = 0
        self.published = 0

    # -- subscribing -----------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber, kinds: str | Iterable[str] | None = None) -> Callable[[], None]:
        """Call `callback(event)` for every event of `kinds` (all kinds when None); returns the
        function that unsubscribes it."""
        if not callable(callback):
            raise TypeError(f"a subscriber must be callable, got {type(callback).__name__}")
        wanted = None if kinds is None else frozenset((kinds,) if isinstance(kinds, str) else kinds)
        unknown = sorted((wanted or frozenset()) - set(EVENT_KINDS))
        if unknown:
            raise ValueError(f"unknown event kind {', '.join(unknown)}; known: {', '.join(EVENT_KINDS)}")
        entry = (callback, wanted, inspect.iscoroutinefunction(callback))
        with self._lock:
            self._subscribers = (*self._subscribers, entry)

        def unsubscribe() -> None:
            self.unsubscribe(callback)

        return unsubscribe

    def unsubscribe(self, callback: Subscriber) -> None:
        """Stop calling `callback` (every subscription of it)."""
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s[0] is not callback)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    # -- publishing ------------------------------------------------------------------------------------

    def publish(self, event: Event) -> bool:
        """Queue `event` for the subscribers; False (and counted in `dropped`) when the queue is full.

        Never blocks and never raises. Without subscribers the event is discarded at once.
        """
        if not self._subscribers:
            return True
        with self._counts_lock:
            if len(self._pending) >= self._maxsize:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._pending.append(event)
                self.published += 1
                dropped = 0
        if dropped:
            if dropped == 1 or dropped % 1000 == 0:
                logger.warning("tokentrail: event queue full, %d events dropped so far", dropped)
            return False
        if self._worker is None:
            self._start_worker()
        if not self._wakeup.is_set():  # the worker drains everything pending once woken
            self._wakeup.set()
        return True

    def wants(self, kind: str) -> bool:
        """Whether any subscriber takes events of `kind` (lets producers skip building them)."""
        return any(kinds is None or kind in kinds for _, kinds, _ in self._subscribers)

    @property
    def pending(self) -> int:
        """Events queued and not yet handed to the subscribers."""
        return len(self._pending)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event was handed to the sync subscribers (async ones were scheduled);
        False when `timeout` seconds passed first. Instrumented calls still being captured by a
        tracker are recorded (and so published) first."""
        import time

        from tokentrail._capture import drain_all

        drain_all()

        deadline = None if timeout is None else time.monotonic() + timeout
        while self._handled < self.published:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return True

    def close(self, timeout: float | None = 5.0) -> None:
        """Deliver what is queued, then stop the worker and the private loop."""
        worker = self._worker
        if worker is not None:
            self.flush(timeout)
            self._stopping = True
            self._wakeup.set()
            worker.join(timeout)
            self._worker = None
            self._stopping = False
        own = self._own_loop
        if own is not None:
            own.call_soon_threadsafe(own.stop)
            self._own_loop = None

    # -- delivery ----------------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is None:
                worker = threading.Thread(target=self._run, name="tokentrail-events", daemon=True)
                worker.start()
                self._worker = worker

    def _run(self) -> None:
        pending, wakeup = self._pending, self._wakeup
        while True:
            wakeup.wait()
            wakeup.clear()  # before draining: an event appended after this sets it again
            while pending:
                event = pending.popleft()
                try:
                    self._deliver(event)
                finally:
                    self._handled += 1
            if self._stopping:
                return

    def _deliver(self, event: Event) -> None:
        for callback, kinds, is_async in self._subscribers:
            if kinds is not None and event.kind not in kinds:
                continue
            try:
                result = callback(event)
                if is_async or inspect.isawaitable(result):
                    self._schedule(result)  # type: ignore[arg-type]
                else:
                    with self._counts_lock:
                        self.delivered += 1
            except Exception:
                self._failed(callback)

    def _failed(self, callback: object) -> None:
        self.subscriber_errors += 1
        if self.subscriber_errors == 1 or self.subscriber_errors % 1000 == 0:
            logger.exception(
                "tokentrail: event subscriber %r failed (%d failures so far)",
                callback,
                self.subscriber_errors,
            )

    def _schedule(self, awaitable: Awaitable[object]) -> None:
        import asyncio

        async def run() -> None:
            try:
                await awaitable
                with self._counts_lock:
                    self.delivered += 1
            except Exception:
                self._failed(awaitable)

        asyncio.run_coroutine_threadsafe(run(), self._async_loop())

    def _async_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None:
            return self._loop
        if self._own_loop is None:
            import asyncio

            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="tokentrail-events-async", daemon=True).start()
            self._own_loop = loop
        return self._own_loop

    def __repr__(self) -> str:
        return (
            f"<EventBus subscribers={self.subscribers} queued={self.pending} "
            f"dropped={self.dropped} subscriber_errors={self.subscriber_errors}>"
        )


# -- the process default -------------------------------------------------------------------------------

_default: EventBus | None = None
_default_lock = threading.Lock()


def get_bus() -> EventBus:
    """The process-wide bus (created on first use; bridges publish here unless given another)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = EventBus()
    return _default


def set_bus(bus: EventBus | None) -> None:
    """Install `bus` as the process default (None: a fresh one is made on next use)."""
    global _default
    with _default_lock:
        _default = bus


# -- bridges -------------------------------------------------------------------------------------------

_unpriced_seen: set[tuple[str | None, str | None]] = set()
_unpriced_lock = threading.Lock()


class EventSink:
    """A tracker sink publishing a `record` event per call, and an `unpriced_model` event the first time
    in this process an unpriced call names a (model, provider).

    `bus` None publishes on the process default bus (read at each call, so `set_bus` takes effect).
    """

    __slots__ = ("bus", "records")

    def __init__(self, bus: EventBus | None = None, *, records: bool = True) -> None:
        self.bus = bus
        self.records = records

    def __call__(self, record: Record) -> None:
        bus = self.bus or get_bus()
        if self.records and bus.wants("record"):
            bus.publish(RecordEvent(record))
        if record.cost_units is None:
            key = (record.model, record.provider)
            if key in _unpriced_seen:
                return
            with _unpriced_lock:
                if key in _unpriced_seen:
                    return
                _unpriced_seen.add(key)
            bus.publish(UnpricedModelEvent(record.model, record.provider, record.unpriced_reason))


def _forget_unpriced() -> None:
    """Forget which unpriced models were announced (for tests)."""
    with _unpriced_lock:
        _unpriced_seen.clear()


def bridge_budgets(manager: BudgetManager, bus: EventBus | None = None) -> Callable[[], None]:
    """Publish every `BudgetAlert` of `manager`: `budget_exceeded` at or above the limit, else
    `budget_threshold`. Returns the function that removes the bridge."""

    def publish(alert: BudgetAlert) -> None:
        event: Event = BudgetExceededEvent(alert) if alert.kind == "limit" else BudgetThresholdEvent(alert)
        (bus or get_bus()).publish(event)

    return manager.subscribe(publish)


def context_warning_publisher(bus: EventBus | None = None) -> Callable[[ContextWarning], None]:
    """An `on_warning` callback publishing `context_warning` events:
    `tracker.context(on_warning=context_warning_publisher())`."""

    def publish(warning: ContextWarning) -> None:
        (bus or get_bus()).publish(ContextWarningEvent(warning))

    return publish


def publish_sink_error(
    sink: str, error: BaseException | str, count: int, bus: EventBus | None = None
) -> None:
    """Publish a `sink_error` event (what `Tracker` calls when a sink raises). Never raises."""
    try:
        (bus or get_bus()).publish(
            SinkErrorEvent(sink, repr(error) if isinstance(error, BaseException) else error, count)
        )
    except Exception:  # pragma: no cover - publish itself does not raise
        logger.exception("tokentrail: cannot publish a sink_error event")


def as_dict(event: Event) -> dict[str, Any]:
    """A JSON-friendly view of an event (for logs and the dashboard)."""
    out: dict[str, Any] = {"kind": event.kind}
    for name in getattr(event, "__dataclass_fields__", {}):
        value = getattr(event, name)
        if hasattr(value, "as_dict"):
            value = value.as_dict()
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Decimal) or not isinstance(value, (str, int, float, dict, type(None))):
            value = str(value)
        out[name] = value
    return out
