"""LoggingSink writes one key=value line per call with the same fields in `extra=`; log_summary one line."""

from __future__ import annotations

import logging

import pytest

import tokentrail as tt
from tokentrail.exporters import LoggingSink, log_summary


@pytest.fixture
def logger() -> logging.Logger:
    return logging.getLogger("tokentrail.test.exporters")


def test_one_line_per_call_with_key_values(caplog: pytest.LogCaptureFixture, logger: logging.Logger) -> None:
    tracker = tt.Tracker(sinks=[LoggingSink(logger)])
    with caplog.at_level(logging.INFO, logger=logger.name):
        tracker.record(tt.Usage(1_000, 200), model="gpt-4o", agent="researcher", duration_ms=1500)
        tracker.record(tt.Usage(10, 10), model="in-house-7b")
    assert len(caplog.records) == 2
    first = caplog.records[0].getMessage()
    assert first.startswith("tokentrail call ")
    assert "model=gpt-4o" in first and "agent=researcher" in first
    assert "input_tokens=1000 output_tokens=200" in first
    assert "priced=true" in first and "duration_ms=1500" in first
    assert "priced=false" in caplog.records[1].getMessage()


def test_fields_are_passed_as_extra(caplog: pytest.LogCaptureFixture, logger: logging.Logger) -> None:
    tracker = tt.Tracker(sinks=[LoggingSink(logger)])
    with caplog.at_level(logging.INFO, logger=logger.name):
        record = tracker.record(tt.Usage(1_000, 200, cache_read_tokens=300), model="gpt-4o", user="ann")
    logged = caplog.records[0]
    assert logged.model == "gpt-4o"  # type: ignore[attr-defined]
    assert logged.user == "ann"  # type: ignore[attr-defined]
    assert logged.cache_read_tokens == 300  # type: ignore[attr-defined]
    assert logged.cost_usd == str(record.cost)  # type: ignore[attr-defined]
    assert logged.record_id == f"{record.id:032x}"  # type: ignore[attr-defined]


def test_unpriced_reason_with_spaces_is_quoted(
    caplog: pytest.LogCaptureFixture, logger: logging.Logger
) -> None:
    tracker = tt.Tracker(sinks=[LoggingSink(logger)])
    with caplog.at_level(logging.INFO, logger=logger.name):
        record = tracker.record(tt.Usage(10, 10), model="in-house-7b")
    assert record.unpriced_reason
    assert f'unpriced_reason="{record.unpriced_reason}"' in caplog.records[0].getMessage()


def test_level_is_configurable(caplog: pytest.LogCaptureFixture, logger: logging.Logger) -> None:
    tracker = tt.Tracker(sinks=[LoggingSink(logger, level=logging.DEBUG)])
    with caplog.at_level(logging.INFO, logger=logger.name):
        tracker.record(tt.Usage(1, 1), model="gpt-4o")
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        tracker.record(tt.Usage(1, 1), model="gpt-4o")
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_no_request_context_is_logged(caplog: pytest.LogCaptureFixture, logger: logging.Logger) -> None:
    tracker = tt.Tracker(sinks=[LoggingSink(logger)])
    with caplog.at_level(logging.INFO, logger=logger.name):
        tracker.record(tt.Usage(1, 1), model="gpt-4o", context={"secret_prompt": "tell me everything"})
    assert "tell me everything" not in caplog.text
    assert not hasattr(caplog.records[0], "context")


def test_summary_line_totals_the_run(caplog: pytest.LogCaptureFixture, logger: logging.Logger) -> None:
    tracker = tt.Tracker()
    first = tracker.record(tt.Usage(1_000, 200), model="gpt-4o", duration_ms=100)
    second = tracker.record(tt.Usage(500, 50), model="gpt-4o-mini", duration_ms=50)
    tracker.record(tt.Usage(10, 10), model="in-house-7b")
    with caplog.at_level(logging.INFO, logger=logger.name):
        log_summary(tracker, logger)
    (line,) = caplog.records
    message = line.getMessage()
    assert message.startswith("tokentrail summary ")
    assert "calls=3 unpriced_calls=1 input_tokens=1510 output_tokens=260" in message
    assert first.cost is not None and second.cost is not None
    assert line.cost_usd == str(first.cost + second.cost)  # type: ignore[attr-defined]
    assert line.duration_ms == 150  # type: ignore[attr-defined]


def test_other_units_are_logged_when_used(caplog: pytest.LogCaptureFixture, logger: logging.Logger) -> None:
    """Counts beside the five token kinds (durations, searches, pages, …) appear when a call has them."""
    tracker = tt.Tracker(sinks=[LoggingSink(logger)])
    usage = tt.Usage(100, 20, audio_ms=90_500, input_audio_ms=90_500, storage_searches=2)
    with caplog.at_level(logging.INFO, logger=logger.name):
        tracker.record(usage, model="gpt-4o")
        tracker.record(tt.Usage(1, 1), model="gpt-4o")
        log_summary(tracker, logger)
    first, plain, summary = (r.getMessage() for r in caplog.records)
    assert "audio_ms=90500 input_audio_ms=90500" in first and "storage_searches=2" in first
    assert "audio_ms" not in plain and "requests" not in plain and "storage_searches" not in plain
    assert "audio_ms=90500" in summary and "storage_searches=2" in summary and "requests" not in summary
