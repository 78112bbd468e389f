"""Framework hooks: the LiteLLM callback (real litellm against MockLLMServer), the LangChain callback
handler (LangChain's own result objects), and `track_llm_call` for hand-rolled agents."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import openai
import pytest

import tokentrail as tt
from tokentrail.adapters.hooks import track_llm_call
from tokentrail.scope import scope
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

MESSAGES = [{"role": "user", "content": "How are tokens counted when a prompt is cached?"}]


def wait_for(tracker: Tracker, count: int, timeout: float = 10.0) -> list[tt.Record]:
    """LiteLLM records from a background thread or task: poll until `count` records are in."""
    deadline = time.monotonic() + timeout
    while len(tracker.history()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # and make sure no duplicate follows
    return tracker.history()


# -- LiteLLM ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return pytest.importorskip("litellm")


@pytest.fixture(scope="module")
def litellm_logger(litellm: Any) -> Iterator[Any]:
    """One callback for the module: LiteLLM copies `litellm.callbacks` into its own lists once."""
    from tokentrail.integrations.litellm import litellm_callback

    callback = litellm_callback()
    saved = litellm.callbacks
    litellm.callbacks = [callback]
    try:
        yield callback
    finally:
        from tokentrail.integrations.litellm import unregister

        unregister(callback)  # from every list LiteLLM copied it into (its pre-call hook opens claims)
        litellm.callbacks = saved


@pytest.fixture
def litellm_tracker(litellm_logger: Any) -> Iterator[Tracker]:
    tracker = Tracker()
    litellm_logger.tracker = tracker
    try:
        yield tracker
    finally:
        litellm_logger.tracker = None


def check_litellm_record(record: tt.Record) -> None:
    assert record.usage == tt.Usage(input_tokens=1200, output_tokens=80, cache_read_tokens=1024)
    assert record.model == "gpt-4o"
    assert record.provider == "openai"
    assert record.priced
    assert record.cost_units == tt.price(record.usage, "gpt-4o", "openai").total_units
    assert record.provider_cost is not None and record.provider_cost > 0
    assert record.duration_ms is not None and record.duration_ms > 0


def test_litellm_sync_call_is_recorded_once(
    litellm: Any, litellm_tracker: Tracker, server: MockLLMServer
) -> None:
    server.queue(input=1200, output=80, cache_read=1024, route="openai.chat")
    with scope(agent="researcher"):
        response = litellm.completion(
            model="openai/gpt-4o", api_base=server.url("openai"), api_key="x", messages=MESSAGES
        )
    assert response.usage.prompt_tokens == 1200
    (record,) = wait_for(litellm_tracker, 1)
    check_litellm_record(record)
    assert record.attribution.agent == "researcher"  # LiteLLM copies the caller's context


def test_litellm_sync_stream_is_recorded_once(
    litellm: Any, litellm_tracker: Tracker, server: MockLLMServer
) -> None:
    server.queue(input=1200, output=80, cache_read=1024, route="openai.chat")
    stream = litellm.completion(
        model="openai/gpt-4o",
        api_base=server.url("openai"),
        api_key="x",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks
    (record,) = wait_for(litellm_tracker, 1)
    check_litellm_record(record)


def test_litellm_async_call_and_stream(litellm: Any, litellm_tracker: Tracker, server: MockLLMServer) -> None:
    async def run() -> None:
        server.queue(input=1200, output=80, cache_read=1024, route="openai.chat")
        await litellm.acompletion(
            model="openai/gpt-4o", api_base=server.url("openai"), api_key="x", messages=MESSAGES
        )
        server.queue(input=1200, output=80, cache_read=1024, route="openai.chat")
        stream = await litellm.acompletion(
            model="openai/gpt-4o",
            api_base=server.url("openai"),
            api_key="x",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass
        deadline = time.monotonic() + 10
        while len(litellm_tracker.history()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)

    asyncio.run(run())
    records = litellm_tracker.history()
    assert len(records) == 2, [
        (r.model, r.provider, r.usage.input_tokens, r.provider_cost, r.duration_ms) for r in records
    ]
    for record in records:
        check_litellm_record(record)


def test_litellm_server_error_is_counted_not_recorded(
    litellm: Any, litellm_tracker: Tracker, server: MockLLMServer
) -> None:
    server.queue(status=500, route="openai.chat")
    with pytest.raises(Exception):  # noqa: B017 - whichever litellm error class it maps 500 to
        litellm.completion(
            model="openai/gpt-4o",
            api_base=server.url("openai"),
            api_key="x",
            messages=MESSAGES,
            num_retries=0,
            max_retries=0,
        )
    deadline = time.monotonic() + 5
    while litellm_tracker._shared.error_counts.get("call_errors", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert litellm_tracker.history() == []
    assert litellm_tracker._shared.error_counts.get("call_errors") == 1


def test_litellm_stream_without_provider_usage_records_litellm_estimate_as_estimated(
    litellm: Any, litellm_tracker: Tracker, server: MockLLMServer
) -> None:
    server.queue(input=1200, output=80, route="openai.chat")
    chunks = list(
        litellm.completion(
            model="openai/gpt-4o", api_base=server.url("openai"), api_key="x", messages=MESSAGES, stream=True
        )
    )
    assert "stream_options" not in server.requests[-1]["body"]  # the provider sends no usage
    (record,) = wait_for(litellm_tracker, 1)
    estimate = chunks[-1]._hidden_params["usage"]  # LiteLLM's own count, once the stream ended
    assert record.usage.status is tt.UsageStatus.ESTIMATED
    assert "include_usage" in (record.usage.reason or "")
    assert (record.usage.input_tokens, record.usage.output_tokens) == (
        estimate.prompt_tokens,
        estimate.completion_tokens,
    )
    assert (record.usage.input_tokens, record.usage.output_tokens) != (1200, 80)  # indeed not the provider's


def test_litellm_anthropic_stream_usage_is_complete(
    litellm: Any, litellm_tracker: Tracker, server: MockLLMServer
) -> None:
    server.queue(input=1500, output=60, route="anthropic")
    list(
        litellm.completion(
            model="anthropic/claude-3-5-haiku-20241022",
            api_base=server.url("anthropic"),
            api_key="x",
            messages=MESSAGES,
            stream=True,
        )
    )
    (record,) = wait_for(litellm_tracker, 1)
    assert record.usage.status is tt.UsageStatus.COMPLETE
    assert (record.usage.input_tokens, record.usage.output_tokens) == (1500, 60)


def test_litellm_acompletion_is_recorded_before_its_event_loop_closes(
    litellm: Any, litellm_tracker: Tracker, server: MockLLMServer
) -> None:
    """`asyncio.run` closes the loop as soon as the call returns, before LiteLLM's logging task runs."""
    server.queue(input=1200, output=80, cache_read=1024, route="openai.chat")
    with scope(agent="researcher"):
        response = asyncio.run(
            litellm.acompletion(
                model="openai/gpt-4o", api_base=server.url("openai"), api_key="x", messages=MESSAGES
            )
        )
    records = litellm_tracker.history()  # no waiting: recorded before acompletion returned
    assert len(records) == 1, records
    check_litellm_record(records[0])
    assert records[0].attribution.agent == "researcher"
    assert response.usage.prompt_tokens == records[0].usage.input_tokens


def test_litellm_enable_registers_one_callback_and_disable_removes_it(litellm: Any) -> None:
    from tokentrail.integrations import litellm as tt_litellm

    saved = list(litellm.callbacks)
    try:
        first = tt_litellm.enable()
        assert tt_litellm.enable(Tracker()) is first
        assert litellm.callbacks.count(first) == 1 and tt_litellm.is_enabled()
        tt_litellm.disable()
        assert first not in litellm.callbacks and not tt_litellm.is_enabled()
        tt_litellm.disable()  # harmless twice
    finally:
        tt_litellm.disable()
        litellm.callbacks = saved


def test_litellm_callback_never_raises_on_garbage(litellm: Any) -> None:
    from tokentrail.integrations.litellm import TokentrailLogger, litellm_callback

    tracker = Tracker()
    callback = litellm_callback(tracker)
    assert isinstance(callback, TokentrailLogger)
    assert isinstance(callback, litellm.integrations.custom_logger.CustomLogger)
    callback.log_success_event(None, None, None, None)
    callback.log_success_event({"litellm_call_id": "a"}, {"usage": "nope"}, 1.0, 0.5)
    asyncio.run(callback.async_log_success_event({"litellm_call_id": "a"}, {"usage": None}, None, None))
    records = tracker.history()
    assert len(records) == 2  # the second hook for call "a" is a duplicate
    assert all(r.usage.status == tt.UsageStatus.UNKNOWN for r in records)


# -- LangChain -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lc() -> Any:
    return pytest.importorskip("langchain_core.outputs")


def chat_result(usage_metadata: Any, **response_metadata: Any) -> Any:
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    message = AIMessage(content="hi", usage_metadata=usage_metadata, response_metadata=response_metadata)
    return LLMResult(generations=[[ChatGeneration(message=message)]])


def test_langchain_usage_metadata_with_cache_and_reasoning(lc: Any) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    from tokentrail.integrations.langchain import TokentrailCallbackHandler

    tracker = Tracker()
    handler = TokentrailCallbackHandler(tracker)
    assert isinstance(handler, BaseCallbackHandler)
    run_id = uuid4()
    handler.on_chat_model_start(
        {}, [[]], run_id=run_id, metadata={"ls_provider": "anthropic", "ls_model_name": "claude-sonnet-4-5"}
    )
    usage_metadata = {
        "input_tokens": 2000,
        "output_tokens": 300,
        "total_tokens": 2300,
        "input_token_details": {"cache_read": 1500, "cache_creation": 200},
        "output_token_details": {"reasoning": 120},
    }
    with scope(agent="writer"):
        handler.on_llm_end(
            chat_result(usage_metadata, model_name="claude-sonnet-4-5-20250929"), run_id=run_id
        )
    (record,) = tracker.history()
    assert record.usage == tt.Usage(
        input_tokens=2000,
        output_tokens=300,
        cache_read_tokens=1500,
        cache_write_tokens=200,
        reasoning_tokens=120,
    )
    assert record.model == "claude-sonnet-4-5-20250929"
    assert record.provider == "anthropic"
    assert record.priced
    assert record.duration_ms is not None and record.duration_ms >= 0
    assert record.attribution.agent == "writer"


def test_langchain_llm_output_token_usage_fallback(lc: Any) -> None:
    from langchain_core.outputs import Generation, LLMResult

    from tokentrail.integrations.langchain import TokentrailCallbackHandler

    tracker = Tracker()
    handler = TokentrailCallbackHandler(tracker)
    result = LLMResult(
        generations=[[Generation(text="hi")]],
        llm_output={
            "token_usage": {
                "prompt_tokens": 1200,
                "completion_tokens": 80,
                "total_tokens": 1280,
                "prompt_tokens_details": {"cached_tokens": 1024},
            },
            "model_name": "gpt-4o",
        },
    )
    handler.on_llm_end(result, run_id=uuid4())
    (record,) = tracker.history()
    assert record.usage == tt.Usage(input_tokens=1200, output_tokens=80, cache_read_tokens=1024)
    assert record.model == "gpt-4o"
    assert record.cost_units == tt.price(record.usage, "gpt-4o", "openai").total_units


def test_langchain_anthropic_llm_output_usage_adds_the_cache(lc: Any) -> None:
    from tokentrail.integrations.langchain import usage_from_metadata

    usage = usage_from_metadata(
        {
            "input_tokens": 100,
            "output_tokens": 5,
            "cache_read_input_tokens": 900,
            "cache_creation_input_tokens": 50,
        }
    )
    assert usage == tt.Usage(input_tokens=1050, output_tokens=5, cache_read_tokens=900, cache_write_tokens=50)


def test_langchain_n_candidates_are_not_double_counted(lc: Any) -> None:
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    from tokentrail.integrations.langchain import TokentrailCallbackHandler

    tracker = Tracker()
    meta = {"input_tokens": 10, "output_tokens": 20, "total_tokens": 30}
    generations = [ChatGeneration(message=AIMessage(content=str(i), usage_metadata=meta)) for i in range(3)]
    TokentrailCallbackHandler(tracker).on_llm_end(LLMResult(generations=[generations]), run_id=uuid4())
    (record,) = tracker.history()
    assert record.usage == tt.Usage(input_tokens=10, output_tokens=20)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"input_tokens": -1, "output_tokens": 2, "total_tokens": 1},
        {"output_tokens": 2},
        {"input_tokens": "many", "output_tokens": 2, "total_tokens": 2},
        {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7, "input_token_details": {"cache_read": 9}},
    ],
)
def test_langchain_bad_usage_records_unknown_and_never_raises(lc: Any, bad: Any) -> None:
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    from tokentrail.integrations.langchain import TokentrailCallbackHandler

    tracker = Tracker()
    message = AIMessage(content="x")
    message.usage_metadata = bad  # past pydantic validation, as a misbehaving integration could
    TokentrailCallbackHandler(tracker).on_llm_end(
        LLMResult(generations=[[ChatGeneration(message=message)]]), run_id=uuid4()
    )
    (record,) = tracker.history()
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert record.usage.reason


def test_langchain_error_is_counted_and_garbage_is_ignored(lc: Any) -> None:
    from tokentrail.integrations.langchain import TokentrailCallbackHandler

    tracker = Tracker()
    handler = TokentrailCallbackHandler(tracker)
    run_id = uuid4()
    handler.on_llm_start({}, ["hi"], run_id=run_id, invocation_params={"model": "gpt-4o"})
    handler.on_llm_error(RuntimeError("boom"), run_id=run_id)
    handler.on_llm_end(object(), run_id=uuid4())  # not an LLMResult: an unknown record, no exception
    assert tracker._shared.error_counts.get("call_errors") == 1
    (record,) = tracker.history()
    assert record.usage.status == tt.UsageStatus.UNKNOWN


# -- track_llm_call -------------------------------------------------------------------------------------


def test_decorator_records_a_real_sdk_response(server: MockLLMServer) -> None:
    tracker = Tracker()
    client = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)

    @track_llm_call(tracker=tracker, agent="planner")
    def ask() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    server.queue(input=1200, output=80, cache_read=1024, route="openai.chat")
    response = ask()
    assert isinstance(response, openai.types.chat.ChatCompletion)  # the caller's object, unchanged
    (record,) = tracker.history()
    assert record.usage == tt.Usage(input_tokens=1200, output_tokens=80, cache_read_tokens=1024)
    assert record.model == "gpt-4o-mini"
    assert record.provider == "openai"
    assert record.priced
    assert record.attribution.agent == "planner"
    assert record.duration_ms is not None and record.duration_ms > 0
    assert ask.__name__ == "ask"


def test_bare_decorator_async_and_default_tracker(server: MockLLMServer) -> None:
    tracker = tt.configure(Tracker())
    client = openai.AsyncOpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)

    @track_llm_call
    async def ask() -> Any:
        return await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    server.queue(input=500, output=20, route="openai.chat")
    with scope(agent="async-agent"):
        asyncio.run(ask())
    (record,) = tracker.history()
    assert record.usage == tt.Usage(input_tokens=500, output_tokens=20)
    assert record.attribution.agent == "async-agent"


def test_explicit_model_and_provider_with_raw_bodies_and_usage() -> None:
    tracker = Tracker()

    @track_llm_call(model="claude-sonnet-4-5", provider="anthropic", tracker=tracker)
    def raw() -> dict[str, Any]:
        return {
            "type": "message",
            "usage": {"input_tokens": 100, "output_tokens": 10, "cache_read_input_tokens": 900},
        }

    @track_llm_call(model="gpt-4o", provider="openai", tracker=tracker, context={"service_tier": "flex"})
    def counted() -> tt.Usage:
        return tt.Usage(input_tokens=10, output_tokens=1)

    raw()
    counted()
    first, second = tracker.history()
    assert first.usage == tt.Usage(input_tokens=1000, output_tokens=10, cache_read_tokens=900)
    assert (first.model, first.provider) == ("claude-sonnet-4-5", "anthropic")
    assert first.priced
    assert second.usage == tt.Usage(input_tokens=10, output_tokens=1)
    assert second.context == {"service_tier": "flex"}


def test_context_helper_sync_and_async() -> None:
    tracker = Tracker()
    body = {
        "object": "chat.completion",
        "model": "gpt-4o",
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    }
    with track_llm_call(tracker=tracker) as call:
        first = call.record(body)
        assert call.record(body) is None  # once per call
    assert first is not None and first.usage == tt.Usage(input_tokens=7, output_tokens=3)

    async def run() -> None:
        async with track_llm_call(tracker=tracker, provider="openai") as call:
            call.record(body)

    asyncio.run(run())
    assert len(tracker.history()) == 2


def test_errors_propagate_unrecorded_and_tracking_errors_never_raise() -> None:
    tracker = Tracker()

    @track_llm_call(tracker=tracker)
    def boom() -> None:
        raise ValueError("provider down")

    with pytest.raises(ValueError, match="provider down"):
        boom()
    with pytest.raises(KeyError), track_llm_call(tracker=tracker):
        raise KeyError("x")
    assert tracker.history() == []
    assert tracker._shared.error_counts.get("call_errors") == 2

    class Broken:
        def record(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("tracker broke")

    @track_llm_call(tracker=Broken())
    def fine() -> str:
        return "garbage response"

    assert fine() == "garbage response"

    @track_llm_call(tracker=tracker)
    def garbage() -> Any:
        return float("nan")

    garbage()
    (record,) = tracker.history()
    assert record.usage.status == tt.UsageStatus.UNKNOWN


def test_track_llm_call_with_instrument_records_each_call_once(server: MockLLMServer) -> None:
    import openai

    from tokentrail.adapters import instrument, uninstrument

    tracker = Tracker(capture="sync")
    client = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)

    @track_llm_call(tracker=tracker, agent="planner", tags=["plan"])
    def plan() -> object:
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )

    instrument(tracker)
    try:
        before = len(server.requests)
        plan()
        with track_llm_call(tracker=tracker, agent="writer") as call:
            call.record(
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "y"}]
                )
            )
    finally:
        uninstrument()
    records = tracker.history()
    assert len(records) == len(server.requests) - before == 2
    assert [(r.agent, r.tags) for r in records] == [("planner", ("plan",)), ("writer", ())]
    assert all(r.usage.status is tt.UsageStatus.COMPLETE and r.ttft_ms is None for r in records)
