"""Fixtures the instrumentation tests share: the local mock LLM server (one per test module) and a
tracker that `instrument()` feeds for the span of one test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tokentrail.adapters import instrument, uninstrument
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker


@pytest.fixture(scope="module")
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as running:
        yield running


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    tracker = Tracker()
    instrument(tracker)
    try:
        yield tracker
    finally:
        uninstrument()
