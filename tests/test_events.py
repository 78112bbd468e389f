"""The event stream: typed events, off-thread delivery, drop and error counters, the bridges."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

import tokentrail as tt
from tokentrail import events
from tokentrail.budgets import Budget
from tokentrail.events import (
    EVENT_KINDS,
    BudgetExceededEvent,
    BudgetThresholdEvent,
    ContextWarningEvent,
    Event,
    EventBus,
    EventSink,
    RecordEvent,
    SinkErrorEvent,
    UnpricedModelEvent,
)
from tokentrail.tokens import clear_model_limits, set_model_limits
from tokentrail.tracker import Tracker

USAGE = tt.Usage(input_tokens=1000, output_tokens=100)


@pytest.fixture
def bus() -> Iterator[EventBus]:
    made = EventBus()
    yield made
    made.close()


@pytest.fixture(autouse=True)
def fresh_unpriced() -> None:
    events._forget_unpriced()


def test_kinds_are_the_seven_documented() -> None:
    assert set(EVENT_KINDS) == {
        "record",
        "budget_threshold",
        "budget_exceeded",
        "context_warning",
        "anomaly",
        "unpriced_model",
        "sink_error",
    }


def test_record_event_reaches_a_sync_subscriber_on_another_thread(bus: EventBus) -> None:
    seen: list[tuple[Event, str]] = []
    bus.subscribe(lambda e: seen.append((e, threading.current_thread().name)))
    tracker = Tracker(sinks=[EventSink(bus)])
    record = tracker.record(USAGE, "gpt-4o", agent="a")
    assert bus.flush(5)
    [(event, thread)] = seen
    assert isinstance(event, RecordEvent) and event.record is record and event.kind == "record"
    assert thread == "tokentrail-events" != threading.current_thread().name


def test_slow_subscriber_does_not_block_record(bus: EventBus) -> None:
    release = threading.Event()
    bus.subscribe(lambda e: release.wait(5))
    tracker = Tracker(sinks=[EventSink(bus)])
    started = time.perf_counter()
    for _ in range(50):
        tracker.record(USAGE, "gpt-4o")
    elapsed = time.perf_counter() - started
    release.set()
    assert elapsed < 1.0  # 50 records while the subscriber sleeps on the first one
    assert bus.flush(5)
    assert bus.delivered == 50


def test_failing_subscriber_is_counted_and_others_still_receive(bus: EventBus) -> None:
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.subscribe(got.append)
    tracker = Tracker(sinks=[EventSink(bus)])
    tracker.record(USAGE, "gpt-4o")
    tracker.record(USAGE, "gpt-4o")
    assert bus.flush(5)
    assert bus.subscriber_errors == 2
    assert len(got) == 2
    assert tracker.sink_errors == 0


def test_full_queue_drops_and_counts() -> None:
    small = EventBus(maxsize=2)
    release = threading.Event()
    entered = threading.Event()

    def hold(event: Event) -> None:
        entered.set()
        release.wait(5)

    small.subscribe(hold)
    assert small.publish(SinkErrorEvent("s", "e", 1))
    assert entered.wait(5)  # the worker holds the first event; the queue is empty again
    results = [small.publish(SinkErrorEvent("s", "e", n)) for n in range(5)]
    release.set()
    assert results == [True, True, False, False, False]
    assert small.dropped == 3
    assert small.flush(5)
    assert small.delivered == 3
    small.close()


def test_kind_filter_and_unsubscribe(bus: EventBus) -> None:
    only_errors: list[Event] = []
    everything: list[Event] = []
    bus.subscribe(only_errors.append, kinds="sink_error")
    stop = bus.subscribe(everything.append)
    bus.publish(UnpricedModelEvent("m", None, "r"))
    bus.publish(SinkErrorEvent("s", "e", 1))
    assert bus.flush(5)
    stop()
    bus.publish(SinkErrorEvent("s", "e", 2))
    assert bus.flush(5)
    assert [e.kind for e in only_errors] == ["sink_error", "sink_error"]
    assert [e.kind for e in everything] == ["unpriced_model", "sink_error"]


def test_unknown_kind_is_refused(bus: EventBus) -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        bus.subscribe(print, kinds=("recrod",))


def test_async_subscriber_runs_on_the_private_loop(bus: EventBus) -> None:
    got: list[tuple[Event, str]] = []
    done = threading.Event()

    async def on_event(event: Event) -> None:
        await asyncio.sleep(0)
        got.append((event, threading.current_thread().name))
        done.set()

    bus.subscribe(on_event)
    bus.publish(SinkErrorEvent("s", "e", 1))
    assert done.wait(5)
    [(event, thread)] = got
    assert isinstance(event, SinkErrorEvent) and thread == "tokentrail-events-async"


def test_async_subscriber_runs_on_a_supplied_loop() -> None:
    async def main() -> list[Event]:
        got: list[Event] = []
        arrived = asyncio.Event()
        loop = asyncio.get_running_loop()
        bus = EventBus(loop=loop)

        async def on_event(event: Event) -> None:
            assert asyncio.get_running_loop() is loop
            got.append(event)
            arrived.set()

        bus.subscribe(on_event)
        await asyncio.to_thread(bus.publish, SinkErrorEvent("s", "e", 1))
        await asyncio.wait_for(arrived.wait(), 5)
        await asyncio.to_thread(bus.close)
        return got

    assert [e.kind for e in asyncio.run(main())] == ["sink_error"]


def test_failing_async_subscriber_is_counted(bus: EventBus) -> None:
    async def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.publish(SinkErrorEvent("s", "e", 1))
    deadline = time.monotonic() + 5
    while bus.subscriber_errors == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert bus.subscriber_errors == 1


def test_unpriced_model_fires_once_per_model(bus: EventBus) -> None:
    got: list[Event] = []
    bus.subscribe(got.append, kinds="unpriced_model")
    tracker = Tracker(sinks=[EventSink(bus)])
    for _ in range(3):
        tracker.record(USAGE, "acme-private-1")
    tracker.record(USAGE, "acme-private-2")
    tracker.record(USAGE, "gpt-4o")
    Tracker(sinks=[EventSink(bus)]).record(USAGE, "acme-private-1")  # once per process, not per tracker
    assert bus.flush(5)
    assert [(e.model, e.kind) for e in got if isinstance(e, UnpricedModelEvent)] == [
        ("acme-private-1", "unpriced_model"),
        ("acme-private-2", "unpriced_model"),
    ]
    assert "acme-private-1" in (got[0].reason or "")  # type: ignore[attr-defined]


def test_default_bus_is_used_and_replaceable() -> None:
    mine = EventBus()
    events.set_bus(mine)
    try:
        assert events.get_bus() is mine
        got: list[Event] = []
        mine.subscribe(got.append)
        Tracker(sinks=[EventSink()]).record(USAGE, "gpt-4o")
        assert mine.flush(5)
        assert len(got) == 1
    finally:
        events.set_bus(None)
        mine.close()
    assert events.get_bus() is not mine


def test_budget_alerts_become_threshold_and_exceeded_events(bus: EventBus) -> None:
    got: list[Event] = []
    bus.subscribe(got.append)
    cost = tt.price(USAGE, "gpt-4o").total
    tracker = Tracker(
        budgets=[Budget(cost * 2, window="daily", thresholds=(0.5,), action="warn", name="team")]
    )
    assert tracker.budgets is not None
    events.bridge_budgets(tracker.budgets, bus)
    tracker.record(USAGE, "gpt-4o")  # 50 %
    tracker.record(USAGE, "gpt-4o")  # 100 %
    assert bus.flush(5)
    kinds = [e.kind for e in got]
    assert kinds == ["budget_threshold", "budget_exceeded"]
    assert isinstance(got[0], BudgetThresholdEvent) and got[0].alert.threshold == Decimal("0.5")
    assert isinstance(got[1], BudgetExceededEvent) and got[1].alert.spent_usd == cost * 2


def test_context_warning_publisher(bus: EventBus) -> None:
    got: list[Event] = []
    bus.subscribe(got.append)
    set_model_limits("acme-small", context_window=1000)
    try:
        tracker = Tracker()
        tracker.context(on_warning=events.context_warning_publisher(bus), thresholds=(0.9,))
        tracker.record(tt.Usage(input_tokens=950, output_tokens=10), "acme-small", session="s1")
        tracker.record(tt.Usage(input_tokens=960, output_tokens=10), "acme-small", session="s1")
    finally:
        clear_model_limits()
    assert bus.flush(5)
    [event] = got
    assert isinstance(event, ContextWarningEvent)
    assert event.warning.conversation == "s1" and event.warning.threshold == 0.9


def test_publish_sink_error(bus: EventBus) -> None:
    got: list[Event] = []
    bus.subscribe(got.append)
    events.publish_sink_error("store.append", ValueError("disk full"), 3, bus)
    assert bus.flush(5)
    [event] = got
    assert isinstance(event, SinkErrorEvent)
    assert (event.sink, event.error, event.count) == ("store.append", "ValueError('disk full')", 3)
    assert events.as_dict(event)["kind"] == "sink_error"


def test_publish_without_subscribers_queues_nothing(bus: EventBus) -> None:
    assert bus.publish(SinkErrorEvent("s", "e", 1))
    assert bus.published == 0 and bus._worker is None


def test_counts_are_exact_with_many_publishing_threads() -> None:
    small = EventBus(maxsize=50)
    release = threading.Event()
    small.subscribe(lambda e: release.wait(5))

    def publish_many() -> None:
        for n in range(500):
            small.publish(SinkErrorEvent("s", "e", n))

    threads = [threading.Thread(target=publish_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    release.set()
    assert small.flush(10)
    assert small.published + small.dropped == 8 * 500
    assert small.delivered == small.published
    assert small.dropped >= 8 * 500 - 51  # at most the queue and the event in hand got through
    small.close()
