"""instrument() on litellm: `litellm.completion` / `acompletion`, plain and streamed, through the real
litellm package against the local MockLLMServer (which replays the golden OpenAI fixtures verbatim).

Each call is recorded once, at the LiteLLM level (usage, the provider that served it, LiteLLM's own
`response_cost` as the provider-reported cost), even when LiteLLM makes the request through an SDK
that instrument() also patches.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from adapter_payloads import Fixture, load

import tokentrail as tt
from tokentrail.adapters import instrument, instrumented, uninstrument
from tokentrail.scope import scope
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MESSAGES = [{"role": "user", "content": "Summarize the recording."}]
PLAIN = "openai/chat_completion.json"
STREAMED = "openai/chat_completion_stream.json"


@pytest.fixture(scope="module")
def litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return pytest.importorskip("litellm")


@pytest.fixture
def tracker(litellm: Any) -> Iterator[Tracker]:
    tracker = Tracker()
    instrument(tracker)
    try:
        yield tracker
    finally:
        uninstrument()


def queue(server: MockLLMServer, name: str, **extra: Any) -> Fixture:
    fixture = load(name)
    if fixture.is_stream:
        server.queue(events=fixture.wire_events(), route="openai.chat", **extra)
    else:
        server.queue(body=fixture.payload, route="openai.chat", **extra)
    return fixture


def options(server: MockLLMServer, **more: Any) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "api_base": server.url("openai"),
        "api_key": "test",
        "messages": MESSAGES,
        "num_retries": 0,
        "max_retries": 0,
        **more,
    }


def only(tracker: Tracker) -> tt.Record:
    records = tracker.history()
    assert len(records) == 1, records
    return records[0]


def assert_golden(record: tt.Record, fixture: Fixture) -> None:
    assert record.usage == fixture.expected_usage()
    # LiteLLM's stream chunks name the model asked for, its plain responses the one that answered
    wanted = "gpt-4o-mini" if fixture.is_stream else fixture.doc["expected_model"]
    assert record.model == wanted
    assert record.provider == "openai"  # the provider LiteLLM routed to, not "litellm"
    assert record.cost == Decimal(fixture.doc["expected_cost"])
    assert record.duration_ms is not None and record.duration_ms > 0


def test_instrument_covers_litellm_completion_and_acompletion(litellm: Any, tracker: Tracker) -> None:
    assert {"litellm.completion", "litellm.acompletion"} <= set(instrumented())


def test_plain_call_is_recorded_once_with_litellm_response_cost(
    litellm: Any, server: MockLLMServer, tracker: Tracker
) -> None:
    fixture = queue(server, PLAIN)
    with scope(agent="researcher"):
        response = litellm.completion(**options(server))
    assert type(response).__name__ == "ModelResponse"  # LiteLLM's own object
    record = only(tracker)
    assert_golden(record, fixture)
    assert record.provider_cost == Decimal(str(response._hidden_params["response_cost"]))
    assert record.attribution.agent == "researcher"


def test_stream_asks_for_usage_and_records_the_same_as_the_plain_call(
    litellm: Any, server: MockLLMServer, tracker: Tracker
) -> None:
    queue(server, PLAIN)
    litellm.completion(**options(server))
    fixture = queue(server, STREAMED)
    stream = litellm.completion(**options(server, stream=True))  # no stream_options given
    assert isinstance(stream, litellm.CustomStreamWrapper)  # LiteLLM's own object, tracked in place
    chunks = list(stream)
    assert chunks
    assert server.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    plain, streamed = tracker.history()
    assert streamed.usage == plain.usage and streamed.usage.status is tt.UsageStatus.COMPLETE
    assert_golden(streamed, fixture)
    assert streamed.provider_cost is not None and streamed.provider_cost > 0
    assert streamed.ttft_ms is not None


def test_include_stream_usage_false_leaves_the_request_alone(litellm: Any, server: MockLLMServer) -> None:
    tracker = Tracker()
    instrument(tracker, providers=["litellm"], include_stream_usage=False)
    try:
        queue(server, STREAMED)
        list(litellm.completion(**options(server, stream=True)))
    finally:
        uninstrument()
    assert "stream_options" not in server.requests[-1]["body"]
    assert len(tracker.history()) == 1


def test_async_plain_and_streamed_calls(litellm: Any, server: MockLLMServer, tracker: Tracker) -> None:
    async def run() -> None:
        queue(server, PLAIN)
        await litellm.acompletion(**options(server))
        queue(server, STREAMED)
        stream = await litellm.acompletion(**options(server, stream=True))
        assert isinstance(stream, litellm.CustomStreamWrapper)
        async for _ in stream:
            pass

    asyncio.run(run())
    plain, streamed = tracker.history()
    assert_golden(plain, load(PLAIN))
    assert_golden(streamed, load(STREAMED))


@pytest.mark.parametrize(
    ("model", "route"),
    [("anthropic/claude-3-5-haiku-20241022", "anthropic"), ("gemini/gemini-2.0-flash", "gemini")],
)
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_stream_read_to_its_end_is_complete_for_providers_without_stream_options(
    litellm: Any, server: MockLLMServer, model: str, route: str, asynchronous: bool
) -> None:
    """LiteLLM closes the stream itself at its end and keeps the provider's usage in the last chunk's
    hidden params (it sends no usage chunk to these providers): complete, never "closed early"."""
    tracker = Tracker(capture="sync")
    instrument(tracker, providers=["litellm"])
    kwargs = {**options(server, model=model, api_base=server.url(route)), "stream": True}

    async def read_async() -> list[Any]:
        return [chunk async for chunk in await litellm.acompletion(**kwargs)]

    try:
        server.queue(input=1500, output=60)
        chunks = asyncio.run(read_async()) if asynchronous else list(litellm.completion(**kwargs))
    finally:
        uninstrument()
    assert not any(getattr(chunk, "usage", None) for chunk in chunks)  # no usage chunk reached the reader
    record = only(tracker)
    assert record.usage.status is tt.UsageStatus.COMPLETE, record.usage.reason
    assert (record.usage.input_tokens, record.usage.output_tokens) == (1500, 60)
    assert record.provider == route


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_stream_the_provider_reported_no_usage_for_records_litellm_estimate_as_estimated(
    litellm: Any, server: MockLLMServer, asynchronous: bool
) -> None:
    tracker = Tracker(capture="sync")
    instrument(tracker, providers=["litellm"], include_stream_usage=False)
    kwargs = {**options(server), "stream": True}

    async def read_async() -> list[Any]:
        return [chunk async for chunk in await litellm.acompletion(**kwargs)]

    try:
        server.queue(input=1500, output=60, route="openai.chat")
        chunks = asyncio.run(read_async()) if asynchronous else list(litellm.completion(**kwargs))
    finally:
        uninstrument()
    estimate = chunks[-1]._hidden_params["usage"]  # LiteLLM's own count, once the stream ended
    record = only(tracker)
    assert record.usage.status is tt.UsageStatus.ESTIMATED
    assert (
        (record.usage.input_tokens, record.usage.output_tokens)
        == (
            estimate.prompt_tokens,
            estimate.completion_tokens,
        )
        != (1500, 60)
    )


def test_stream_closed_after_the_second_chunk_records_what_was_seen(
    litellm: Any, server: MockLLMServer, tracker: Tracker
) -> None:
    queue(server, STREAMED)
    stream = litellm.completion(**options(server, stream=True))
    for index, _ in enumerate(stream):
        if index == 1:
            break
    assert tracker.history() == []
    stream.close()
    record = only(tracker)
    assert record.usage.status in (tt.UsageStatus.PARTIAL, tt.UsageStatus.UNKNOWN)
    assert record.usage.reason


def test_stream_left_through_its_context_manager_records_what_was_seen(
    litellm: Any, server: MockLLMServer, tracker: Tracker
) -> None:
    queue(server, STREAMED)
    with litellm.completion(**options(server, stream=True)) as stream:
        next(stream)
    assert only(tracker).usage.status in (tt.UsageStatus.PARTIAL, tt.UsageStatus.UNKNOWN)


def test_async_stream_closed_early_records_what_was_seen(
    litellm: Any, server: MockLLMServer, tracker: Tracker
) -> None:
    async def run() -> None:
        queue(server, STREAMED)
        stream = await litellm.acompletion(**options(server, stream=True))
        async for _ in stream:
            break
        await stream.aclose()

    asyncio.run(run())
    assert only(tracker).usage.status in (tt.UsageStatus.PARTIAL, tt.UsageStatus.UNKNOWN)


def test_server_error_propagates_and_records_nothing(
    litellm: Any, server: MockLLMServer, tracker: Tracker
) -> None:
    import openai

    server.queue(status=500, route="openai.chat")
    with pytest.raises(openai.APIStatusError):  # LiteLLM's errors subclass the openai SDK's
        litellm.completion(**options(server))
    assert tracker.history() == []
    assert tracker._shared.error_counts["call_errors"] == 1


def test_an_sdk_call_litellm_makes_inside_its_call_is_not_recorded_twice(
    litellm: Any, server: MockLLMServer, tracker: Tracker
) -> None:
    """A LiteLLM custom provider (LiteLLM's public extension point) that calls the instrumented `openai`
    SDK itself: the call is recorded once, at the LiteLLM level."""
    import openai

    def ask_openai() -> Any:
        client = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    class Relay(litellm.CustomLLM):  # type: ignore[misc]
        def completion(self, *args: Any, **kwargs: Any) -> Any:
            return litellm.ModelResponse(**ask_openai().model_dump())

        async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
            return self.completion(*args, **kwargs)

    saved = litellm.custom_provider_map
    litellm.custom_provider_map = [{"provider": "tt-relay", "custom_handler": Relay()}]
    try:
        queue(server, PLAIN)
        ask_openai()  # the openai SDK is instrumented: alone, its call is recorded
        assert len(tracker.history()) == 1
        queue(server, PLAIN)
        litellm.completion(model="tt-relay/gpt-4o-mini", messages=MESSAGES)
        queue(server, PLAIN)
        asyncio.run(litellm.acompletion(model="tt-relay/gpt-4o-mini", messages=MESSAGES))
    finally:
        litellm.custom_provider_map = saved
    direct, relayed, arelayed = tracker.history()
    assert relayed.usage == arelayed.usage == direct.usage == load(PLAIN).expected_usage()
    assert direct.provider == "openai"
    assert relayed.provider == arelayed.provider == "litellm"  # recorded by the LiteLLM-level wrapper


def test_the_litellm_callback_stands_down_while_instrument_covers_litellm(
    litellm: Any, server: MockLLMServer, tracker: Tracker
) -> None:
    from tokentrail.integrations.litellm import litellm_callback

    callback_tracker = Tracker()
    callback = litellm_callback(callback_tracker)
    callback.log_success_event({"litellm_call_id": "x"}, {"usage": None}, None, None)
    assert callback_tracker.history() == []
    uninstrument()
    callback.log_success_event({"litellm_call_id": "y"}, {"usage": None}, None, None)
    assert len(callback_tracker.history()) == 1


def test_uninstrument_restores_litellm_functions(litellm: Any) -> None:
    originals = (litellm.completion, litellm.acompletion)
    try:
        assert instrument(Tracker(), providers=["litellm"]) == ["litellm"]
        patched = (litellm.completion, litellm.acompletion)
        assert all(p is not o for p, o in zip(patched, originals, strict=True))
        instrument(Tracker(), providers=["litellm"])
        assert (litellm.completion, litellm.acompletion) == patched
    finally:
        uninstrument()
    assert (litellm.completion, litellm.acompletion) == originals


def test_budget_refusal_happens_before_litellm_sends_the_request(litellm: Any, server: MockLLMServer) -> None:
    from tokentrail.budgets import Budget

    tracker = Tracker(budgets=[Budget(limit_usd="0.001")])
    instrument(tracker, providers=["litellm", "openai"])
    try:
        before = len(server.requests)
        with pytest.raises(tt.BudgetExceeded):
            litellm.completion(**options(server, max_tokens=100_000))
        assert len(server.requests) == before
        queue(server, PLAIN)
        litellm.completion(**options(server, max_tokens=50))
        (status,) = tracker.budget_status()
        (record,) = tracker.history()
        assert status.reserved_usd == 0 and status.spent_usd == record.cost
    finally:
        uninstrument()
