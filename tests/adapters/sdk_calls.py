"""What the per-SDK instrumentation tests share: one call checked at both ends (one request counted at the
mock server, one record written) and its usage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tokentrail as tt
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker


def made(server: MockLLMServer, before: int, suffix: str) -> int:
    """Requests the server received since `before` whose path ends with `suffix`."""
    return sum(1 for r in server.requests[before:] if r["path"].endswith(suffix))


def one_call(server: MockLLMServer, tracker: Tracker, suffix: str, call: Callable[[], Any]) -> tt.Record:
    """Make one SDK call; the server saw exactly one request and the tracker holds exactly one record."""
    before, records = len(server.requests), len(tracker.history())
    call()
    assert made(server, before, suffix) == 1
    history = tracker.history()
    assert len(history) == records + 1, history[records:]
    return history[-1]


def complete(record: tt.Record, input_tokens: int, output_tokens: int = 0) -> None:
    assert record.usage.status == tt.UsageStatus.COMPLETE, record.usage
    assert (record.usage.input_tokens, record.usage.output_tokens) == (input_tokens, output_tokens)
