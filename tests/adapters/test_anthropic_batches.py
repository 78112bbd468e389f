"""Message Batches results under `instrument()`: each succeeded result is one record at batch prices, read
as the caller iterates the results; errored results record nothing; results fetched again record nothing
new. The real `anthropic` SDK against the mock server's batch routes (`_mock_batches`)."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest
from tests.adapters.stainless_clients import CLAUDE, ant

import tokentrail as tt
from tokentrail.adapters import instrument, uninstrument
from tokentrail.budgets.policy import Budget
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

BATCH = "batch"


def _requests() -> list[dict[str, Any]]:
    """Two requests that succeed (different prompts, so different usage) and one the API rejects."""
    ask = [
        ("first", "How are tokens counted?"),
        ("second", "What does a cached prompt cost at batch prices?"),
    ]
    good = [
        {
            "custom_id": custom_id,
            "params": {"model": CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": text}]},
        }
        for custom_id, text in ask
    ]
    bad = {"custom_id": "broken", "params": {"model": CLAUDE, "max_tokens": 0, "messages": []}}
    return [*good, bad]


def _succeeded(results: list[Any]) -> dict[str, Any]:
    """The usage of each succeeded result, by message id (what the records must equal)."""
    return {r.result.message.id: r.result.message.usage for r in results if r.result.type == "succeeded"}


def _assert_records_are(tracker: Tracker, results: list[Any]) -> None:
    succeeded = _succeeded(results)
    assert len(succeeded) == 2 and len(results) == 3  # the errored result is not billed
    records = tracker.history()
    assert len(records) == len(succeeded)
    expected = sorted(
        (u.input_tokens, u.output_tokens) for u in succeeded.values()
    )  # the mock's counts differ per prompt
    assert sorted((r.usage.input_tokens, r.usage.output_tokens) for r in records) == expected
    for record in records:
        assert record.model == CLAUDE and record.provider == "anthropic"
        assert record.usage.status == "complete"
        assert record.context is not None and record.context["processing"] == BATCH
        batch_price = tt.price(record.usage, CLAUDE, "anthropic", context={"processing": BATCH})
        assert record.cost == batch_price.total
        assert record.cost != tt.price(record.usage, CLAUDE, "anthropic").total  # the batch discount applied


@pytest.mark.parametrize("beta", [False, True], ids=["messages", "beta.messages"])
def test_each_succeeded_result_is_one_batch_priced_record(
    server: MockLLMServer, tracker: Tracker, beta: bool
) -> None:
    client = ant(server)
    batches = client.beta.messages.batches if beta else client.messages.batches
    batch = batches.create(requests=_requests())
    assert tracker.history() == []  # creating a batch is no billed call
    results = list(batches.results(batch.id))
    _assert_records_are(tracker, results)


def test_results_are_recorded_as_the_caller_iterates(server: MockLLMServer, tracker: Tracker) -> None:
    client = ant(server)
    batch = client.messages.batches.create(requests=_requests())
    results = client.messages.batches.results(batch.id)
    assert tracker.history() == []  # nothing read yet
    seen = [next(results)]
    succeeded = sum(1 for r in seen if r.result.type == "succeeded")
    assert len(tracker.history()) == succeeded
    seen += list(results)
    _assert_records_are(tracker, seen)


def test_results_fetched_again_record_nothing_new(server: MockLLMServer, tracker: Tracker) -> None:
    client = ant(server)
    batch = client.messages.batches.create(requests=_requests())
    first = list(client.messages.batches.results(batch.id))
    again = list(client.beta.messages.batches.results(batch.id))
    assert _succeeded(first).keys() == _succeeded(again).keys()
    fetches = [r for r in server.requests if r["path"] == f"/v1/messages/batches/{batch.id}/results"]
    assert len(fetches) == 2  # both fetches reached the server
    _assert_records_are(tracker, first)


def test_async_results_are_one_batch_priced_record_each_and_once(
    server: MockLLMServer, tracker: Tracker
) -> None:
    async def fetch_twice() -> list[Any]:
        client = ant(server, anthropic.AsyncAnthropic)
        batch = await client.messages.batches.create(requests=_requests())
        results = [r async for r in await client.messages.batches.results(batch.id)]
        async for _ in await client.beta.messages.batches.results(batch.id):
            pass
        return results

    _assert_records_are(tracker, asyncio.run(fetch_twice()))


def test_a_batch_of_errored_results_records_nothing(server: MockLLMServer, tracker: Tracker) -> None:
    client = ant(server)
    batch = client.messages.batches.create(requests=_requests()[2:])
    results = list(client.messages.batches.results(batch.id))
    assert [r.result.type for r in results] == ["errored"]
    assert tracker.history() == []
    assert tracker.error_counts.get("capture_errors", 0) == 0


def test_raw_response_results_are_recorded_as_parsed(server: MockLLMServer, tracker: Tracker) -> None:
    client = ant(server)
    batch = client.messages.batches.create(requests=_requests())
    raw = client.messages.batches.with_raw_response.results(batch.id)
    assert tracker.history() == []  # the body is not read yet
    results = list(raw.parse())
    _assert_records_are(tracker, results)


def test_streaming_response_results_are_recorded_line_by_line(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = ant(server)
    batch = client.messages.batches.create(requests=_requests())
    with client.beta.messages.batches.with_streaming_response.results(batch.id) as response:
        lines = [line for line in response.iter_lines() if line]
    assert len(lines) == 3
    assert len(tracker.history()) == 2  # the two succeeded lines, seen as the caller read them
    results = list(client.messages.batches.results(batch.id))  # fetched again: nothing new
    _assert_records_are(tracker, results)


def test_async_raw_response_results_are_recorded(server: MockLLMServer, tracker: Tracker) -> None:
    async def fetch() -> list[Any]:
        client = ant(server, anthropic.AsyncAnthropic)
        batch = await client.messages.batches.create(requests=_requests())
        raw = await client.messages.batches.with_raw_response.results(batch.id)
        return [r async for r in await raw.parse()]

    _assert_records_are(tracker, asyncio.run(fetch()))


def test_results_are_read_and_recorded_past_a_spent_budget(server: MockLLMServer) -> None:
    """The batch was billed when it ran: reading its results is never refused, and it is still counted."""
    tracker = Tracker(budgets=[Budget(limit_tokens=1)])
    instrument(tracker)
    try:
        client = ant(server)
        first = client.messages.batches.create(requests=_requests())
        list(client.messages.batches.results(first.id))  # spends the budget
        second = client.messages.batches.create(requests=_requests())
        results = list(client.messages.batches.results(second.id))
    finally:
        uninstrument()
    assert len(_succeeded(results)) == 2
    assert len(tracker.history()) == 4
