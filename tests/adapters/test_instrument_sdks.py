"""instrument() / wrap() on google-genai, mistralai, cohere, ollama and boto3 bedrock-runtime.

The real SDKs talk to the local MockLLMServer, which replays the golden fixtures verbatim, so each
record's usage and cost are asserted exactly against tests/fixtures/<provider>/. Every SDK runs the
same specification through its driver (instrument_drivers.py).

Server errors: no record is written (the provider reported no usage); the SDK's exception reaches
the caller unchanged and the tracker counts it under `call_errors`. That holds for lazy streams too,
which only raise at their first read.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest
from instrument_drivers import (
    ASYNC_DRIVERS,
    CONVERSE,
    DRIVERS,
    INVOKE_MODEL,
    OLLAMA,
    Driver,
    bedrock_client,
    driver_id,
    queue_fixture,
)

import tokentrail as tt
from tokentrail.adapters import capture_stream, instrument, uninstrument, wrap
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def only(tracker: Tracker) -> tt.Record:
    records = tracker.history()
    assert len(records) == 1, records
    return records[0]


def assert_golden(record: tt.Record, driver: Driver, *, streamed: bool) -> None:
    """The record carries exactly the fixture's usage, model and cost."""
    fixture = driver.streamed() if streamed else driver.plain()
    assert record.usage == fixture.expected_usage()
    assert record.model == fixture.price_model
    assert record.cost == fixture.expected_cost  # None: no catalog price (Ollama), never $0


def consume(stream: Any) -> int:
    return sum(1 for _ in stream)


def event_count(driver: Driver) -> int:
    """How many events the SDK hands over for the stream fixture (SSE `[DONE]` is not one)."""
    return sum(1 for event in driver.streamed().events() if event != "[DONE]")


async def aconsume(stream: Any) -> int:
    return len([event async for event in stream])


# -- plain and streamed calls ----------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS, ids=driver_id)
def test_plain_call_records_the_fixture_usage_and_cost(
    server: MockLLMServer, tracker: Tracker, driver: Driver
) -> None:
    queue_fixture(server, driver, driver.plain())
    response = driver.call(driver.client(server))
    assert not type(response).__module__.startswith("tokentrail")  # the SDK's own object
    record = only(tracker)
    assert_golden(record, driver, streamed=False)
    assert record.duration_ms is not None and record.duration_ms > 0
    assert record.ttft_ms is None


@pytest.mark.parametrize("driver", DRIVERS, ids=driver_id)
def test_streamed_call_gives_the_same_usage_and_cost_as_the_plain_one(
    server: MockLLMServer, tracker: Tracker, driver: Driver
) -> None:
    client = driver.client(server)
    queue_fixture(server, driver, driver.plain())
    driver.call(client)
    queue_fixture(server, driver, driver.streamed())
    assert consume(driver.stream(client)) == event_count(driver)  # every event reaches the caller
    plain, streamed = tracker.history()
    assert streamed.usage == plain.usage and streamed.usage.status is tt.UsageStatus.COMPLETE
    assert streamed.cost == plain.cost
    assert_golden(streamed, driver, streamed=True)


@pytest.mark.parametrize("driver", ASYNC_DRIVERS, ids=driver_id)
def test_async_plain_and_streamed_calls(server: MockLLMServer, tracker: Tracker, driver: Driver) -> None:
    assert driver.aclient is not None and driver.acall is not None and driver.astream is not None
    acall, astream, aclient = driver.acall, driver.astream, driver.aclient

    async def run() -> None:
        client = aclient(server)
        queue_fixture(server, driver, driver.plain())
        response = await acall(client)
        assert not type(response).__module__.startswith("tokentrail")
        queue_fixture(server, driver, driver.streamed())
        assert await aconsume(await astream(client)) == event_count(driver)

    asyncio.run(run())
    plain, streamed = tracker.history()
    assert_golden(plain, driver, streamed=False)
    assert_golden(streamed, driver, streamed=True)


# -- streams cut short, failing, cancelled ----------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS, ids=driver_id)
def test_stream_closed_after_the_second_chunk_records_what_was_seen(
    server: MockLLMServer, tracker: Tracker, driver: Driver
) -> None:
    fixture = driver.streamed()
    queue_fixture(server, driver, fixture)
    client = driver.client(server)  # kept alive: google-genai closes its HTTP client when collected
    stream = driver.stream(client)
    for index, _ in enumerate(stream):
        if index == 1:
            break
    assert tracker.history() == []  # not finished yet
    stream.close()
    record = only(tracker)
    seen = capture_stream(fixture.events()[:2], driver.plain().doc["expected_provider"], aborted=True)
    assert record.usage == seen.usage  # partial with the counts seen, or unknown when none were
    assert record.usage.status in (tt.UsageStatus.PARTIAL, tt.UsageStatus.UNKNOWN)
    assert record.usage.reason


@pytest.mark.parametrize("driver", DRIVERS, ids=driver_id)
def test_stream_dropped_without_close_is_recorded_when_collected(
    server: MockLLMServer, tracker: Tracker, driver: Driver
) -> None:
    queue_fixture(server, driver, driver.streamed())
    client = driver.client(server)
    stream = driver.stream(client)
    next(iter(stream))
    del stream
    gc.collect()
    assert only(tracker).usage.status is not tt.UsageStatus.COMPLETE


@pytest.mark.parametrize("driver", DRIVERS, ids=driver_id)
def test_server_error_propagates_and_records_nothing(
    server: MockLLMServer, tracker: Tracker, driver: Driver
) -> None:
    client = driver.client(server)
    server.queue(status=500, route=driver.route)
    with pytest.raises(driver.error()):
        driver.call(client)
    server.queue(status=500, route=driver.route)
    with pytest.raises(driver.error()):
        consume(driver.stream(client))  # eager streams raise at the call, lazy ones at the first read
    assert tracker.history() == []
    assert tracker._shared.error_counts["call_errors"] == 2


@pytest.mark.parametrize("driver", ASYNC_DRIVERS, ids=driver_id)
def test_cancelled_task_records_what_was_seen(
    server: MockLLMServer, tracker: Tracker, driver: Driver
) -> None:
    assert driver.aclient is not None and driver.astream is not None
    astream, aclient = driver.astream, driver.aclient

    async def run() -> None:
        client = aclient(server)
        queue_fixture(server, driver, driver.streamed())
        started = asyncio.Event()

        async def reader() -> None:
            async for _ in await astream(client):
                started.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(reader())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    gc.collect()
    record = only(tracker)
    assert record.usage.status in (tt.UsageStatus.PARTIAL, tt.UsageStatus.UNKNOWN)
    assert record.usage.reason


@pytest.mark.parametrize("driver", ASYNC_DRIVERS, ids=driver_id)
def test_task_cancelled_while_waiting_for_the_first_chunk_records_unknown(
    server: MockLLMServer, tracker: Tracker, driver: Driver
) -> None:
    assert driver.aclient is not None and driver.astream is not None
    astream, aclient = driver.astream, driver.aclient

    async def run() -> None:
        client = aclient(server)
        queue_fixture(server, driver, driver.streamed(), first_chunk_delay=0.5)
        stream = await astream(client)

        async def reader() -> None:
            await aconsume(stream)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    record = only(tracker)
    assert record.usage.status is tt.UsageStatus.UNKNOWN and record.usage.reason
    assert record.cost is None


# -- time to first token ------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS, ids=driver_id)
def test_time_to_first_token_is_measured_on_streams(
    server: MockLLMServer, tracker: Tracker, driver: Driver
) -> None:
    queue_fixture(server, driver, driver.streamed(), first_chunk_delay=0.15)
    client = driver.client(server)
    consume(driver.stream(client))
    record = only(tracker)
    assert record.ttft_ms is not None and record.duration_ms is not None
    assert 150 <= record.ttft_ms <= record.duration_ms


# -- patching -------------------------------------------------------------------------------------------------

SDKS = {driver.name: driver for driver in DRIVERS}


@pytest.mark.parametrize("driver", list(SDKS.values()), ids=lambda d: d.name)
def test_instrument_is_idempotent_and_uninstrument_restores_the_originals(driver: Driver) -> None:
    originals = [cls.__dict__[attr] for cls, attr in driver.patched()]
    try:
        assert instrument(Tracker(), providers=[driver.name]) == [driver.name]
        patched = [cls.__dict__[attr] for cls, attr in driver.patched()]
        assert all(p is not o for p, o in zip(patched, originals, strict=True))
        instrument(Tracker(), providers=[driver.name])
        assert [cls.__dict__[attr] for cls, attr in driver.patched()] == patched
    finally:
        uninstrument()
    assert all(cls.__dict__[attr] is o for (cls, attr), o in zip(driver.patched(), originals, strict=True))


@pytest.mark.parametrize("driver", DRIVERS, ids=driver_id)
def test_wrap_affects_only_that_client(server: MockLLMServer, driver: Driver) -> None:
    originals = [cls.__dict__[attr] for cls, attr in driver.patched()]
    mine, everyone = Tracker(), Tracker()
    wrapped = wrap(driver.client(server), mine)
    assert wrap(wrapped, mine) is wrapped  # idempotent
    other = driver.client(server)
    for client in (wrapped, other):
        queue_fixture(server, driver, driver.plain())
        driver.call(client)
    assert [cls.__dict__[attr] for cls, attr in driver.patched()] == originals
    assert len(mine.history()) == 1
    assert_golden(mine.history()[0], driver, streamed=False)
    instrument(everyone, providers=[driver.name])  # both active: the wrapped client still records once
    other = driver.client(server)  # built after instrument(): cohere binds its methods at construction
    try:
        for client in (wrapped, other):
            queue_fixture(server, driver, driver.plain())
            driver.call(client)
    finally:
        uninstrument()
    assert len(mine.history()) == 2 and len(everyone.history()) == 1


def test_a_method_copied_onto_a_client_stops_tracking_after_uninstrument(server: MockLLMServer) -> None:
    from instrument_drivers import COHERE

    tracker = Tracker()
    instrument(tracker, providers=["cohere"])
    client = COHERE.client(server)  # cohere copies the (patched) chat onto the client object
    uninstrument()
    queue_fixture(server, COHERE, COHERE.plain())
    COHERE.call(client)
    assert tracker.history() == []


# -- per-SDK details --------------------------------------------------------------------------------------------


def test_ollama_generate_plain_and_streamed(server: MockLLMServer, tracker: Tracker) -> None:
    client = OLLAMA.client(server)
    server.queue(input=40, output=12, route="ollama")
    assert client.generate("llama3.2", "Why is the sky blue?").response
    server.queue(input=40, output=12, route="ollama")
    assert consume(client.generate(model="llama3.2", prompt="Why is the sky blue?", stream=True)) > 1
    assert [r.usage for r in tracker.history()] == [tt.Usage(40, 12), tt.Usage(40, 12)]
    assert all(r.model == "llama3.2" for r in tracker.history())


def test_invoke_model_body_is_still_readable(server: MockLLMServer, tracker: Tracker) -> None:
    from instrument_drivers import INVOKE

    queue_fixture(server, INVOKE, INVOKE.plain())
    response = INVOKE.call(INVOKE.client(server))
    assert response["decoded"] == INVOKE.plain().payload
    assert only(tracker).usage == INVOKE.plain().expected_usage()


def test_other_aws_operations_pass_through_untracked(server: MockLLMServer, tracker: Tracker) -> None:
    from botocore.exceptions import ClientError

    client = bedrock_client(server)
    with pytest.raises(ClientError):  # the mock has no such route: an error the SDK raises
        client.count_tokens(modelId="m", input={"converse": {"messages": []}})  # free: never tracked
    assert tracker.history() == []
    assert tracker._shared.error_counts.get("call_errors", 0) == 0  # not even counted: never tracked


def test_bedrock_budget_reservation_reads_the_request_limits(server: MockLLMServer) -> None:
    from tokentrail.budgets import Budget

    tracker = Tracker(budgets=[Budget(limit_usd="0.001")])
    wrapped = wrap(bedrock_client(server), tracker)
    before = len(server.requests)
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1_000_000, "messages": []})
    with pytest.raises(tt.BudgetExceeded):
        wrapped.invoke_model(modelId=INVOKE_MODEL, body=body)
    with pytest.raises(tt.BudgetExceeded):
        wrapped.converse(
            modelId=CONVERSE.plain().price_model, messages=[], inferenceConfig={"maxTokens": 1_000_000}
        )
    assert len(server.requests) == before  # refused before any request was sent
