"""Helpers for users' own tests: a fresh tracker installed as the process default for the duration of
a test, and assertions on what it recorded.

    from tokentrail.testing.recording import assert_recorded, recording

    with recording(instrument=True) as tracker:
        my_agent.run()                       # its openai / anthropic calls are recorded
    assert_recorded(tracker, calls=2, model="gpt-4o", input_tokens=1200, cost="0.0042")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from tokentrail._record import Record
from tokentrail._types import TOKEN_FIELDS
from tokentrail.tracker import Tracker

__all__ = ["assert_all_priced", "assert_recorded", "recorded_calls", "recording"]

_TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


@contextmanager
def recording(*, instrument: bool = False, **tracker_options: Any) -> Iterator[Tracker]:
    """A new in-memory `Tracker`, installed as `tokentrail.get_tracker()` until the block ends (then the
    previous default comes back). `instrument=True` also tracks every openai / anthropic call into it."""
    from tokentrail import tracker as tracker_module

    previous = tracker_module._default
    tracker = Tracker(**tracker_options)
    tracker_module.configure(tracker)
    if instrument:
        from tokentrail.adapters import instrument as instrument_sdks

        instrument_sdks(tracker)
    try:
        yield tracker
    finally:
        if instrument:
            from tokentrail.adapters import uninstrument

            uninstrument()
        if previous is not None:
            tracker_module.configure(previous)
        else:
            _clear_default(tracker_module)


def _clear_default(tracker_module: Any) -> None:
    with tracker_module._default_lock:
        tracker_module._default = None


def recorded_calls(tracker: Tracker, **filters: Any) -> list[Record]:
    """The records `tracker` holds that match `filters` (agent=, model=, tool=, …), oldest first."""
    return tracker.history(**filters)


def assert_recorded(
    tracker: Tracker,
    *,
    calls: int | None = None,
    cost: Decimal | str | int | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    total_tokens: int | None = None,
    **filters: Any,
) -> None:
    """Assert totals of the calls matching `filters` (model=, provider=, agent=, session=, user=, tool=,
    tag=, status=). Any other count of a `Usage` is compared too when given (audio_ms=,
    storage_searches=, input_image_tokens=, …). `cost` is compared exactly as a Decimal; a call that
    could not be priced fails a `cost` check instead of counting as $0."""
    other_counts = {name: filters.pop(name) for name in TOKEN_FIELDS if name in filters}
    totals = tracker.totals(**filters)
    where = ", ".join(f"{key}={value!r}" for key, value in sorted(filters.items())) or "all calls"
    problems: list[str] = []
    if calls is not None and totals.calls != calls:
        problems.append(f"calls: expected {calls}, recorded {totals.calls}")
    expected_tokens = dict(
        zip(
            _TOKEN_FIELDS,
            (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens),
            strict=True,
        )
    )
    for name, expected in (expected_tokens | other_counts).items():
        actual = getattr(totals.usage, name)
        if expected is not None and actual != expected:
            problems.append(f"{name}: expected {expected}, recorded {actual}")
    if total_tokens is not None and totals.total_tokens != total_tokens:
        problems.append(f"total_tokens: expected {total_tokens}, recorded {totals.total_tokens}")
    if cost is not None:
        if totals.unpriced_calls:
            problems.append(f"cost: {totals.unpriced_calls} call(s) could not be priced")
        elif totals.cost != Decimal(str(cost)):
            problems.append(f"cost: expected ${Decimal(str(cost))}, recorded ${totals.cost}")
    if problems:
        raise AssertionError(f"tokentrail usage of {where}:\n  " + "\n  ".join(problems))


def assert_all_priced(tracker: Tracker, **filters: Any) -> None:
    """Assert that every matching call was priced (no model missing from the catalog)."""
    unpriced = [record for record in tracker.history(**filters) if record.cost is None]
    if unpriced:
        reasons = sorted({f"{record.model}: {record.unpriced_reason}" for record in unpriced})
        raise AssertionError(f"{len(unpriced)} unpriced call(s): " + "; ".join(reasons))
