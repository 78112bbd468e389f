"""The tracker: prices each call, attributes it, and hands the `Record` to its store and sinks.

    tracker = tt.Tracker()
    with tt.scope(agent="researcher"):
        tracker.record(usage, model="gpt-4o")
    tracker.summary(by=("agent", "model"))

Tracking never raises into the caller: a failing price lookup gives an unpriced record with a reason,
a failing sink is logged and counted (`sink_errors`). `tracker.child("name")` is a node of the
hierarchy: it shares the store, its records carry its path, and its totals include its own children.

Instrumented SDK calls (`instrument()`, `wrap()`) are captured in the background by default
(`capture="background"`): the caller's thread hands the response to the tracker's capture queue, and a
worker thread reads the usage, prices it, records it and runs the sinks (see `_capture`). Every read of
the tracker (summary, totals, history, budget status, the store, error counts, `flush()`, `close()`)
first processes what is pending, in call order, so a program that calls an SDK and then reads its
tracker sees the call. Sinks and event subscribers therefore run on the worker thread for such calls.
`capture="sync"` processes each call on the caller's thread instead. `record()` itself is always
synchronous: it returns the record it made (after the pending captures, to keep the order).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tokentrail._capture import CaptureQueue
from tokentrail._record import (
    Attribution,
    Record,
    SummaryRow,
    fresh_record,
    intern_attribution,
    normalize_tags,
    to_timestamp_us,
)
from tokentrail._types import Cost, Usage
from tokentrail.pricing import catalog as _catalogs
from tokentrail.pricing.catalog import Catalog
from tokentrail.scope import current_frame
from tokentrail.stores import open_store
from tokentrail.stores.base import Aggregate, NonTokenFillingStore, Query, Store

if TYPE_CHECKING:
    from logging import Logger

    from tokentrail.budgets import Budget, BudgetManager, BudgetStatus, Reservation
    from tokentrail.tokens._tracked import ContextSink
    from tokentrail.tokens.context import ContextMonitor, ContextWarning

__all__ = ["Sink", "Tracker", "configure", "get_tracker"]


def _logger() -> Logger:
    import logging  # only when something goes wrong: keeps `import tokentrail` light

    return logging.getLogger("tokentrail")


_INFINITY = float("inf")
_time_ns = time.time_ns
_LOG_EVERY = 1000  # after the first failure of a sink, log one in this many


class _AppendSink(Protocol):
    def append(self, record: Record, /) -> object: ...


Sink = Callable[[Record], object] | _AppendSink
"""Anything with `append(record)` (a store, a list) or a callable taking the record."""


class _Shared:
    """What every node of one tracker tree shares."""

    __slots__ = (
        "budgets",
        "captures",
        "catalog",
        "context_sinks",
        "counts_lock",
        "error_counts",
        "nodes",
        "price",
        "sinks",
        "store",
    )

    def __init__(
        self,
        store: Store,
        sinks: Iterable[Sink],
        catalog: Catalog | None,
        budgets: BudgetManager | None,
        captures: CaptureQueue,
    ) -> None:
        self.captures = captures
        self.store = store
        self.catalog = catalog
        self.budgets = budgets
        if budgets is not None:
            sinks = (*sinks, budgets.observe)
        self.price = catalog.price if catalog is not None else None  # None: the process default, per call
        self.sinks: tuple[Callable[[Record], object], ...] = (store.append, *map(_as_callable, sinks))
        self.counts_lock = threading.Lock()
        self.error_counts: dict[str, int] = {}
        self.nodes: dict[tuple[str, ...], Tracker] = {}
        self.context_sinks: dict[str, ContextSink] = {}


class Tracker:
    """Records priced calls and answers who spent what, on which model, when."""

    __slots__ = ("_derived", "_shared", "path")

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        sinks: Iterable[Sink] = (),
        catalog: Catalog | None = None,
        budgets: Iterable[Budget] | BudgetManager | None = None,
        budget_backend: object = None,
        capture: Literal["background", "sync"] = "background",
    ) -> None:
        if capture not in ("background", "sync"):
            raise ValueError(f"capture must be 'background' or 'sync', got {capture!r}")
        opened = open_store(store)
        _fill_non_token_parts(opened)
        manager = _budget_manager(budgets, budget_backend, catalog)
        # made after the store: its exit drain is registered later, so it runs before the store closes
        captures = CaptureQueue(self._capture_failed, background=capture == "background")
        self._shared = _Shared(opened, sinks, catalog, manager, captures)
        self.path: tuple[str, ...] = ()
        self._derived: dict[int, tuple[Attribution, Attribution]] = {}
        self._shared.nodes[()] = self

    @property
    def store(self) -> Store:
        """The store records go to (pending captures are recorded first)."""
        self._shared.captures.drain()
        return self._shared.store

    @property
    def capture(self) -> str:
        """How instrumented calls are processed: "background" (a worker thread) or "sync"."""
        return "background" if self._shared.captures.background else "sync"

    def flush(self) -> None:
        """Record every pending capture now (in call order), then flush the store when it buffers."""
        self._shared.captures.drain()
        flush = getattr(self._shared.store, "flush", None)
        if callable(flush):
            flush()

    def close(self) -> None:
        """Record every pending capture, then close the store (when it can be closed)."""
        self._shared.captures.drain()
        close = getattr(self._shared.store, "close", None)
        if callable(close):
            close()

    @property
    def catalog(self) -> Catalog | None:
        """The catalog prices come from (None: the process default catalog)."""
        return self._shared.catalog

    @property
    def name(self) -> str | None:
        return self.path[-1] if self.path else None

    # -- budgets ---------------------------------------------------------------------------------------

    @property
    def budgets(self) -> BudgetManager | None:
        """The budget manager (pending captures are settled first)."""
        self._shared.captures.drain()
        return self._shared.budgets

    def _call_settings(self) -> tuple[CaptureQueue | None, bool]:
        """For an instrumented call, on the caller's path: (the capture queue, or None to record at once;
        whether to reserve budget room). Drains nothing."""
        shared = self._shared
        captures = shared.captures
        return (captures if captures.background else None), shared.budgets is not None

    def reserve(
        self,
        model: str | None,
        provider: str | None = None,
        input_tokens: int = 0,
        max_output_tokens: int | None = None,
        context: Mapping[str, str] | None = None,
    ) -> Reservation:
        """Hold a call's worst-case cost against every budget in scope, or raise `BudgetExceeded`.

        Use as `with tracker.reserve(...) as r:`; a call recorded inside settles it, leaving the block
        without a record releases it. Without budgets the reservation is a no-op.
        """
        shared = self._shared
        captures = shared.captures
        if captures._pending or captures._busy:
            # settle the calls before this one first: a pending call holds only its reservation, an
            # estimate (a local count of the prompt) that can be below what the provider bills
            captures.drain()
        manager = shared.budgets
        if manager is None:
            from tokentrail.budgets import BudgetManager

            manager = shared.budgets = BudgetManager([], catalog=shared.catalog)
        from tokentrail.budgets.manager import attribution_scope

        attribution = current_frame.get().attribution
        if self.path:
            attribution = self._attribute(attribution, None, None, None, None, None)
        scope = {k: v for k, v in attribution_scope(attribution).items() if v}
        return manager.reserve(model, provider, input_tokens, max_output_tokens, scope=scope, context=context)

    def budget_status(self) -> list[BudgetStatus]:
        """Every budget: spent, reserved, remaining, percent used, when it resets."""
        self._shared.captures.drain()
        return [] if self._shared.budgets is None else self._shared.budgets.status()

    # -- context windows -------------------------------------------------------------------------------

    def context(
        self,
        by: str = "session",
        *,
        on_warning: Callable[[ContextWarning], object] | None = None,
        **options: Any,
    ) -> ContextMonitor:
        """The context monitor fed by this tracker: every recorded call is a turn of the conversation
        its `by` field names (session, agent, user, tool or path).

        The first call for a `by` creates the monitor with `options` (`ContextMonitor`'s: thresholds,
        reserve_output_tokens, …) and installs it as a sink of the whole tracker tree; later calls
        return the same monitor. A threshold reached for the first time in a conversation is logged
        and passed to `on_warning`. Use `monitor.check(messages, model)` before a call as usual.
        """
        from tokentrail.tokens._tracked import ContextSink
        from tokentrail.tokens.context import ContextMonitor

        shared = self._shared
        shared.captures.drain()
        sink = shared.context_sinks.get(by)
        if sink is not None:
            if options or on_warning is not None:
                raise ValueError(f"the context monitor by {by!r} already exists; configure it once")
            return sink.monitor
        options.setdefault("catalog", shared.catalog)
        monitor = ContextMonitor(**options)
        monitor.before_read = shared.captures.drain  # reading the monitor records pending calls first
        sink = ContextSink(monitor, by, on_warning)
        with shared.counts_lock:
            if by not in shared.context_sinks:
                shared.context_sinks[by] = sink
                shared.sinks = (*shared.sinks, sink)
        return shared.context_sinks[by].monitor

    # -- hierarchy -------------------------------------------------------------------------------------

    def child(self, name: str) -> Tracker:
        """The node `name` below this one (the same object every time it is asked for)."""
        path = (*self.path, str(name))
        shared = self._shared
        node = shared.nodes.get(path)
        if node is None:
            node = object.__new__(Tracker)
            node._shared = shared
            node.path = path
            node._derived = {}
            node = shared.nodes.setdefault(path, node)
        return node

    def children(self) -> list[str]:
        """Names of the nodes directly below this one that hold records (tracker children or scopes)."""
        depth = len(self.path)
        names = set()
        for row in self.summary(by=("path",)):
            path = str(row.group["path"])
            parts = tuple(path.split("/")) if path else ()
            if len(parts) > depth:
                names.add(parts[depth])
        return sorted(names)

    # -- recording ---------------------------------------------------------------------------------------

    def record(
        self,
        usage: Usage,
        model: str | None = None,
        provider: str | None = None,
        *,
        duration_ms: float | None = None,
        provider_cost: Decimal | float | str | None = None,
        at: datetime | date | None = None,
        context: Mapping[str, str] | None = None,
        agent: str | None = None,
        session: str | None = None,
        user: str | None = None,
        tool: str | None = None,
        tags: str | Iterable[str] | None = None,
        estimated_input_tokens: int | None = None,
        ttft_ms: float | None = None,
    ) -> Record:
        """Price `usage` on `model`, attribute it, and hand the record to the store and sinks.

        Attribution comes from the active `scope()`; keywords given here override it (tags add up);
        on a child node the agent defaults to the node's name. `provider` defaults to the provider of
        the price rule that matched. `provider_cost` is what the provider reported the call cost, kept
        beside ours. `estimated_input_tokens` is the pre-call local count of the prompt (an int or a
        `tokens.TokenCount`), kept beside the billed usage so `tokens.drift()` can compare them; a
        negative or unreadable value is dropped with a warning. `ttft_ms` is the time to the first token of a
        streamed call. Never raises.
        """
        captures = self._shared.captures
        if captures._pending or captures._busy:
            captures.drain()  # the calls captured before this one are recorded before it
        return self._record_now(  # positional: forwarding 14 keywords costs ≈ 0.1 µs a call
            usage,
            model,
            provider,
            duration_ms,
            provider_cost,
            at,
            context,
            agent,
            session,
            user,
            tool,
            tags,
            estimated_input_tokens,
            ttft_ms,
        )

    def _record_now(
        self,
        usage: Usage,
        model: str | None = None,
        provider: str | None = None,
        duration_ms: float | None = None,
        provider_cost: Decimal | float | str | None = None,
        at: datetime | date | None = None,
        context: Mapping[str, str] | None = None,
        agent: str | None = None,
        session: str | None = None,
        user: str | None = None,
        tool: str | None = None,
        tags: str | Iterable[str] | None = None,
        estimated_input_tokens: int | None = None,
        ttft_ms: float | None = None,
        timestamp_us: int | None = None,
        record_id: int | None = None,
    ) -> Record:
        """`record` without processing pending captures first: how a capture itself is recorded
        (`timestamp_us`: when the call ended, in µs since the epoch; default now). `record_id` replaces
        the fresh id: a caller that can be handed the same call again (an OTLP span re-exported) derives
        it from the call, so a store writes the call once (stores ignore a record id they hold)."""
        attribution = current_frame.get().attribution
        if (
            self.path
            or agent is not None
            or session is not None
            or user is not None
            or tool is not None
            or tags
        ):
            attribution = self._attribute(attribution, agent, session, user, tool, tags)
        shared = self._shared
        try:
            price = shared.price
            if price is None:
                price = (_catalogs._default or _catalogs.default_catalog()).price
            cost = price(usage, model, provider, at, context)
        except Exception as exc:  # never into the caller: an unpriced record says what went wrong
            cost = self._pricing_failed(exc)
            if not isinstance(usage, Usage):
                usage = Usage.unknown(f"not a tokentrail.Usage: {type(usage).__name__}")
            model = model if model is None or isinstance(model, str) else str(model)
            provider = provider if provider is None or isinstance(provider, str) else str(provider)
        rule = cost.rule
        record = fresh_record(
            (_time_ns() // 1000 if timestamp_us is None else timestamp_us)
            if at is None
            else self._timestamp(at),
            usage,
            model,
            provider if provider is not None or rule is None else rule.provider,
            cost.total_units if cost.priced else None,
            rule,
            cost.reason,
            duration_ms
            if duration_ms is None or (type(duration_ms) is float and 0.0 <= duration_ms < _INFINITY)
            else _duration(duration_ms),
            attribution,
            None if provider_cost is None else _reported_cost(provider_cost),
            None if context is None else dict(context),
            None if estimated_input_tokens is None else self._estimate(estimated_input_tokens),
            ttft_ms
            if ttft_ms is None or (type(ttft_ms) is float and 0.0 <= ttft_ms < _INFINITY)
            else _duration(ttft_ms, "ttft_ms"),
            cost.non_token_units if cost.priced else 0,
        )
        if record_id is not None:
            record.id = record_id
        for sink in shared.sinks:
            try:
                sink(record)
            except Exception as exc:  # a sink must not break the caller's call
                self._sink_failed(sink, exc)
        return record

    def add_sink(self, sink: Sink) -> None:
        """Hand every later record to `sink` as well (shared by the whole tracker tree)."""
        shared = self._shared
        shared.captures.drain()  # calls captured before now are not the new sink's
        shared.sinks = (*shared.sinks, _as_callable(sink))

    def _attribute(
        self,
        scoped: Attribution,
        agent: str | None,
        session: str | None,
        user: str | None,
        tool: str | None,
        tags: str | Iterable[str] | None,
    ) -> Attribution:
        """The scope's attribution placed under this node and overridden by explicit keywords."""
        plain = agent is None and session is None and user is None and tool is None and not tags
        if plain:
            known = self._derived.get(id(scoped))
            if known is not None and known[0] is scoped:
                return known[1]
        try:
            extra = normalize_tags(tags)
        except TypeError:
            extra = ()
        merged = tuple(sorted({*scoped.tags, *extra})) if extra else scoped.tags
        derived = intern_attribution(
            agent if agent is not None else scoped.agent if scoped.agent is not None else self.name,
            session if session is not None else scoped.session,
            user if user is not None else scoped.user,
            tool if tool is not None else scoped.tool,
            merged,
            (*self.path, *scoped.path),
        )
        if plain:
            if len(self._derived) >= 4096:
                self._derived.clear()
            self._derived[id(scoped)] = (scoped, derived)
        return derived

    def _timestamp(self, at: object) -> int:
        try:
            return to_timestamp_us(at)  # type: ignore[arg-type]
        except Exception:
            self._count("bad_timestamps")
            _logger().warning("tokentrail: cannot read at=%r as a time; recording the current time", at)
            return time.time_ns() // 1000

    def _estimate(self, value: object) -> int | None:
        if type(value) is int and 0 <= value < 2**63:
            return value
        try:
            if isinstance(value, (bool, float, str)):
                raise TypeError(type(value).__name__)
            number: int = int(value)  # type: ignore[call-overload]  # e.g. a TokenCount
            if not 0 <= number < 2**63:
                raise ValueError("out of range")
        except Exception:
            self._count("bad_estimates")
            _logger().warning("tokentrail: ignoring estimated_input_tokens=%r (not a token count)", value)
            return None
        return number

    def _pricing_failed(self, exc: Exception) -> Cost:
        self._count("pricing_errors")
        _logger().warning("tokentrail: pricing failed, recording the call unpriced: %s", exc)
        return Cost.unpriced(f"pricing failed: {exc}")

    def _sink_failed(self, sink: Callable[[Record], object], error: Exception) -> None:
        count = self._count("sink_errors")
        name = getattr(sink, "__qualname__", repr(sink))
        if count == 1 or count % _LOG_EVERY == 0:
            _logger().exception("tokentrail: sink %s failed (%d sink failures so far)", name, count)
        from tokentrail.events import publish_sink_error  # the rare path pays for the import

        publish_sink_error(name, error, count)

    def _capture_failed(self, error: Exception) -> None:
        count = self._count("capture_errors")
        if count == 1 or count % _LOG_EVERY == 0:
            _logger().error("tokentrail: could not record a captured call (%d so far)", count, exc_info=error)

    def _count(self, what: str) -> int:
        shared = self._shared
        with shared.counts_lock:
            count = shared.error_counts[what] = shared.error_counts.get(what, 0) + 1
        return count

    @property
    def sink_errors(self) -> int:
        """How many times a sink (the store included) raised; the calls were still tracked."""
        return self.error_counts.get("sink_errors", 0)

    @property
    def pricing_errors(self) -> int:
        """How many calls could not be priced because pricing itself failed (bad arguments)."""
        return self.error_counts.get("pricing_errors", 0)

    @property
    def error_counts(self) -> dict[str, int]:
        """Failures counted so far, by kind: sink_errors, pricing_errors, call_errors (the SDK call
        raised), capture_errors (an instrumented call could not be recorded), bad_timestamps, …"""
        shared = self._shared
        shared.captures.drain()
        with shared.counts_lock:
            return dict(shared.error_counts)

    # -- querying ----------------------------------------------------------------------------------------

    def summary(
        self,
        by: str | Iterable[str] = ("agent", "model"),
        since: datetime | date | None = None,
        until: datetime | date | None = None,
        include_children: bool = True,
        **filters: Any,
    ) -> list[SummaryRow]:
        """Totals grouped `by` any of agent, session, user, tool, model, provider, tag, path, status,
        hour, day, month (UTC), over [since, until); filters narrow by field (a list matches any).
        `prices="name"` costs the records with a price version written by `tokentrail reprice`
        (stores that keep versions: memory, SQLite); without it, the prices recorded at call time."""
        keys = (
            tuple(part.strip() for part in by.split(",") if part.strip())
            if isinstance(by, str)
            else tuple(by)
        )
        self._shared.captures.drain()
        return self._shared.store.summary(self._query(since, until, include_children, filters), keys)

    def totals(
        self,
        since: datetime | date | None = None,
        until: datetime | date | None = None,
        include_children: bool = True,
        **filters: Any,
    ) -> SummaryRow:
        """One row summing everything this node selects (zeros when nothing was recorded)."""
        rows = self.summary((), since, until, include_children, **filters)
        return rows[0] if rows else Aggregate().row({})

    def history(
        self,
        since: datetime | date | None = None,
        until: datetime | date | None = None,
        limit: int | None = None,
        include_children: bool = True,
        **filters: Any,
    ) -> list[Record]:
        """The records this node selects, oldest first (the last `limit` of them when given)."""
        self._shared.captures.drain()
        return self._shared.store.history(self._query(since, until, include_children, filters), limit)

    def reset(self, include_children: bool = True, **filters: Any) -> int:
        """Forget the records this node selects (all of them on the root without filters)."""
        self._shared.captures.drain()
        return self._shared.store.reset(self._query(None, None, include_children, filters))

    def plot(self, kind: str, path: str | os.PathLike[str], **options: Any) -> str:
        """Draw a chart of this node's spend to `path` (.png or .svg) and return the path: `kind` is
        cost-by-agent, cost-by-model, cost-over-time or tokens-over-time; `options` are those of
        `tokentrail.reports.charts.plot` (title, since, until, bucket, filters). Needs matplotlib."""
        from tokentrail.reports.charts import plot

        return plot(self, kind, path, **options)

    def _query(
        self,
        since: datetime | date | None,
        until: datetime | date | None,
        include_children: bool,
        filters: dict[str, Any],
    ) -> Query:
        return Query.build(
            filters,
            None if since is None else to_timestamp_us(since),
            None if until is None else to_timestamp_us(until),
            self.path,
            include_children,
        )

    def __repr__(self) -> str:
        where = "/".join(self.path) or "root"
        return f"<Tracker {where} store={type(self._shared.store).__name__}>"


def _fill_non_token_parts(store: Store) -> None:
    """A ledger migrated from before stores kept each cost's non-token part (SQLite schema v9, Postgres v5)
    gets those parts here, once: the store holds the records, pricing recomputes the parts. A failure is
    logged and leaves the ledger marked, so the next tracker that opens it tries again."""
    if getattr(store, "non_token_unfilled", None) is None:  # most stores (a cheaper test than the protocol's)
        return
    if not isinstance(store, NonTokenFillingStore) or not store.non_token_unfilled():
        return
    from tokentrail.pricing.parts import RecomputedParts

    try:
        store.fill_non_token(RecomputedParts())
    except Exception as exc:  # the ledger still records and answers; its old parts stay 0 for now
        _logger().warning(
            "tokentrail: could not fill the non-token parts of older costs (next open retries): %s", exc
        )


def _budget_manager(
    budgets: Iterable[Budget] | BudgetManager | None, backend: object, catalog: Catalog | None
) -> BudgetManager | None:
    if budgets is None:
        return None
    from tokentrail.budgets import BudgetManager

    if isinstance(budgets, BudgetManager):
        return budgets
    return BudgetManager(list(budgets), backend=backend, catalog=catalog)  # type: ignore[arg-type]


def _as_callable(sink: Sink) -> Callable[[Record], object]:
    append = getattr(sink, "append", None)
    if callable(append):
        return append  # type: ignore[no-any-return]
    if callable(sink):
        return sink
    raise TypeError(f"a sink must be callable or have append(record), got {type(sink).__name__}")


def _duration(duration_ms: object, name: str = "duration_ms") -> float | None:
    try:
        value = float(duration_ms)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        _logger().warning("tokentrail: ignoring %s=%r (not a number)", name, duration_ms)
        return None
    if math.isnan(value) or value < 0 or math.isinf(value):
        _logger().warning("tokentrail: ignoring %s=%r (not a finite, non-negative number)", name, duration_ms)
        return None
    return value


def _reported_cost(amount: object) -> Decimal | None:
    try:
        value = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(amount)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        _logger().warning("tokentrail: ignoring provider_cost=%r (not a number)", amount)
        return None
    if not value.is_finite():
        _logger().warning("tokentrail: ignoring provider_cost=%r (not finite)", amount)
        return None
    return value


# -- the process default -----------------------------------------------------------------------------

_default: Tracker | None = None
_default_lock = threading.Lock()


def get_tracker() -> Tracker:
    """The process-wide tracker (an in-memory one until `configure` says otherwise)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Tracker()
    return _default


def configure(
    tracker: Tracker | None = None,
    *,
    store: Store | str | None = None,
    sinks: Iterable[Sink] = (),
    catalog: Catalog | None = None,
    capture: Literal["background", "sync"] = "background",
) -> Tracker:
    """Install `tracker`, or a new one built from the other arguments, as the process default."""
    global _default
    installed = (
        tracker if tracker is not None else Tracker(store, sinks=sinks, catalog=catalog, capture=capture)
    )
    with _default_lock:
        _default = installed
    return installed
