"""The mock LLM server answers real SDK clients in each provider's documented shape."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from collections.abc import Iterator
from enum import Enum
from typing import Any

import anthropic
import openai
import pytest
from pydantic import BaseModel

from tokentrail.testing._mock_openai import PNG_B64
from tokentrail.testing.mock_llm import REPLY, MockLLMServer, MockResponse


@pytest.fixture(scope="module")
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as running:
        yield running


def test_openai_chat_reports_queued_usage(server: MockLLMServer) -> None:
    client = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
    server.queue(input=1200, output=300, cache_read=1000, reasoning=120)
    usage = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (1200, 300)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 1000
    assert (
        usage.completion_tokens_details is not None
        and usage.completion_tokens_details.reasoning_tokens == 120
    )


def test_openai_stream_sends_usage_only_when_asked(server: MockLLMServer) -> None:
    client = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    without = list(client.chat.completions.create(model="gpt-4o", messages=messages, stream=True))  # type: ignore[arg-type]
    assert all(chunk.usage is None for chunk in without)
    with_usage = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].usage is not None and with_usage[-1].choices == []


def test_anthropic_stream_splits_usage_between_start_and_delta(server: MockLLMServer) -> None:
    client = anthropic.Anthropic(base_url=server.url(), api_key="test", max_retries=0)
    server.queue(MockResponse(input=900, output=40, cache_read=500, cache_write=300, cache_write_1h=100))
    with client.messages.stream(
        model="claude-sonnet-4-0", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message().usage
    start = next(e for e in events if e.type == "message_start")
    assert start.message.usage.output_tokens == 1
    assert (final.input_tokens, final.cache_read_input_tokens, final.cache_creation_input_tokens) == (
        100,
        500,
        300,
    )
    assert final.output_tokens == 40


def test_repeated_system_prompt_is_reported_as_cache_read(server: MockLLMServer) -> None:
    client = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
    messages = [
        {"role": "system", "content": "You are a careful reviewer. " * 30},
        {"role": "user", "content": "go"},
    ]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages).usage  # type: ignore[arg-type]
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages).usage  # type: ignore[arg-type]
    assert first is not None and second is not None
    assert first.prompt_tokens_details is not None and first.prompt_tokens_details.cached_tokens == 0
    assert second.prompt_tokens_details is not None and second.prompt_tokens_details.cached_tokens > 0


def test_error_status_uses_the_provider_error_shape(server: MockLLMServer) -> None:
    client = anthropic.Anthropic(base_url=server.url(), api_key="test", max_retries=0)
    server.queue(status=429, route="anthropic")
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(
            model="claude-sonnet-4-0", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )


def test_gemini_stream_usage_is_cumulative(server: MockLLMServer) -> None:
    server.queue(input=50, output=8)
    request = urllib.request.Request(
        server.base + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        data=json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        chunks = [
            json.loads(line[6:])
            for line in response.read().decode().splitlines()
            if line.startswith("data: ")
        ]
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == sorted(counts) and counts[-1] == 8
    assert all(c["usageMetadata"]["promptTokenCount"] == 50 for c in chunks)


# -- response ids -------------------------------------------------------------------------------------


def test_every_response_has_its_own_id_in_the_provider_format(server: MockLLMServer) -> None:
    oai = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
    claude = anthropic.Anthropic(base_url=server.url(), api_key="test", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    chats = [oai.chat.completions.create(model="gpt-4o", messages=messages).id for _ in range(2)]  # type: ignore[arg-type]
    responses = [oai.responses.create(model="gpt-4o", input="hi").id for _ in range(2)]
    msgs = [
        claude.messages.create(model="claude-sonnet-4-0", max_tokens=10, messages=messages).id  # type: ignore[arg-type]
        for _ in range(2)
    ]
    for ids, prefix in ((chats, "chatcmpl-"), (responses, "resp_"), (msgs, "msg_")):
        assert ids[0] != ids[1]
        assert all(ident.startswith(prefix) and len(ident) == len(prefix) + 32 for ident in ids)


def test_cohere_responses_have_their_own_uuid(server: MockLLMServer) -> None:
    def chat() -> str:
        request = urllib.request.Request(
            server.base + "/v2/chat",
            data=json.dumps({"model": "command-r", "messages": USER}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            return str(json.loads(response.read())["id"])

    first, second = chat(), chat()
    assert first != second and len(first) == 36


# -- tool calls -----------------------------------------------------------------------------------------

TRANSFER = {"name": "transfer_to_billing", "arguments": {"account": 42, "reason": "refund please"}}
USER = [{"role": "user", "content": "I want a refund"}]
TOOL = {
    "type": "function",
    "function": {"name": "transfer_to_billing", "parameters": {"type": "object", "properties": {}}},
}


def _openai(server: MockLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)


def _claude(server: MockLLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url(), api_key="test", max_retries=0)


def test_chat_tool_call_is_a_tool_calls_message(server: MockLLMServer) -> None:
    server.queue(tool_calls=[TRANSFER, {"name": "lookup", "arguments": '{"q": "x"}', "id": "call_fixed"}])
    choice = _openai(server).chat.completions.create(model="gpt-4o", messages=USER, tools=[TOOL]).choices[0]  # type: ignore[arg-type,list-item]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("transfer_to_billing", {"account": 42, "reason": "refund please"}),
        ("lookup", {"q": "x"}),
    ]
    assert calls[0].id.startswith("call_") and calls[1].id == "call_fixed"


def test_chat_streamed_tool_call_arrives_in_fragments_the_sdk_reassembles(server: MockLLMServer) -> None:
    server.queue(tool_calls=[TRANSFER], text="Transferring you.")
    with _openai(server).chat.completions.stream(model="gpt-4o", messages=USER, tools=[TOOL]) as stream:  # type: ignore[arg-type,list-item]
        chunks = [e.chunk for e in stream if e.type == "chunk"]
        final = stream.get_final_completion().choices[0]
    fragments = [
        d.function.arguments
        for c in chunks
        for d in (c.choices[0].delta.tool_calls or [] if c.choices else [])
        if d.function and d.function.arguments
    ]
    assert len(fragments) > 1
    assert final.finish_reason == "tool_calls" and final.message.content == "Transferring you."
    (call,) = final.message.tool_calls or []
    assert call.function.name == "transfer_to_billing"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == TRANSFER["arguments"]  # type: ignore[union-attr]


def test_async_chat_tool_call_then_final_text_in_queue_order(server: MockLLMServer) -> None:
    server.queue(MockResponse(tool_calls=[TRANSFER]), MockResponse(text="Done, refund issued."))
    client = openai.AsyncOpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)

    async def loop() -> list[Any]:
        first = await client.chat.completions.create(model="gpt-4o", messages=USER, tools=[TOOL])  # type: ignore[arg-type,list-item]
        second = await client.chat.completions.create(model="gpt-4o", messages=USER)  # type: ignore[arg-type]
        return [first.choices[0], second.choices[0]]

    assert server.pending == 2
    first, second = asyncio.run(loop())
    assert server.pending == 0
    assert first.finish_reason == "tool_calls" and second.finish_reason == "stop"
    assert second.message.content == "Done, refund issued." and second.message.tool_calls is None


def test_async_chat_stream_tool_call_chunks(server: MockLLMServer) -> None:
    server.queue(tool_calls=[TRANSFER, {"name": "lookup", "arguments": {}}])
    client = openai.AsyncOpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)

    async def run() -> list[Any]:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=USER,  # type: ignore[arg-type]
            tools=[TOOL],  # type: ignore[list-item]
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    heads = [(d.index, d.function.name) for d in deltas if d.id]  # type: ignore[union-attr]
    assert heads == [(0, "transfer_to_billing"), (1, "lookup")]
    arguments = "".join(d.function.arguments or "" for d in deltas if d.index == 0)  # type: ignore[union-attr]
    assert json.loads(arguments) == TRANSFER["arguments"]
    assert chunks[-2].choices[0].finish_reason == "tool_calls" and chunks[-1].usage is not None


def test_responses_echo_the_request_settings(server: MockLLMServer) -> None:
    text = {"format": {"type": "json_object"}}
    response = _openai(server).responses.create(
        model="gpt-4o",
        input="x",
        instructions="Be brief.",
        temperature=0.2,
        text=text,  # type: ignore[arg-type]
    )
    assert (response.instructions, response.temperature) == ("Be brief.", 0.2)
    assert response.text is not None and response.text.format.type == "json_object"  # type: ignore[union-attr]


def test_responses_tool_call_is_a_function_call_item(server: MockLLMServer) -> None:
    server.queue(tool_calls=[TRANSFER])
    response = _openai(server).responses.create(model="gpt-4o", input="refund")
    (item,) = response.output
    assert item.type == "function_call" and item.name == "transfer_to_billing"
    assert item.call_id.startswith("call_") and json.loads(item.arguments) == TRANSFER["arguments"]


def test_responses_streamed_tool_call_sends_the_argument_events(server: MockLLMServer) -> None:
    server.queue(tool_calls=[TRANSFER], text="One moment.")
    with _openai(server).responses.stream(model="gpt-4o", input="refund") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    call_events = types[
        types.index("response.output_item.added", types.index("response.content_part.done")) :
    ]
    assert call_events[0] == "response.output_item.added" and call_events[-1] == "response.completed"
    assert call_events[-3:-1] == ["response.function_call_arguments.done", "response.output_item.done"]
    assert call_events.count("response.function_call_arguments.delta") > 1
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output_text == "One moment."
    assert json.loads(final.output[1].arguments) == TRANSFER["arguments"]  # type: ignore[union-attr]


def test_async_responses_stream_with_tool_call(server: MockLLMServer) -> None:
    server.queue(tool_calls=[TRANSFER])
    client = openai.AsyncOpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)

    async def run() -> Any:
        async with client.responses.stream(model="gpt-4o", input="refund") as stream:
            async for _ in stream:
                pass
            return await stream.get_final_response()

    (item,) = asyncio.run(run()).output
    assert item.type == "function_call" and json.loads(item.arguments) == TRANSFER["arguments"]


def test_anthropic_tool_use_blocks(server: MockLLMServer) -> None:
    server.queue(tool_calls=[TRANSFER], text="Let me transfer you.")
    message = _claude(server).messages.create(model="claude-sonnet-4-0", max_tokens=100, messages=USER)  # type: ignore[arg-type]
    assert message.stop_reason == "tool_use"
    text, tool = message.content
    assert text.type == "text" and text.text == "Let me transfer you."
    assert tool.type == "tool_use" and tool.id.startswith("toolu_")
    assert (tool.name, tool.input) == ("transfer_to_billing", TRANSFER["arguments"])


def test_anthropic_streamed_tool_use_input_is_reassembled_by_the_sdk(server: MockLLMServer) -> None:
    server.queue(tool_calls=[TRANSFER])
    with _claude(server).messages.stream(model="claude-sonnet-4-0", max_tokens=100, messages=USER) as stream:  # type: ignore[arg-type]
        events = list(stream)
        message = stream.get_final_message()
    assert sum(1 for e in events if e.type == "input_json") > 1
    (tool,) = message.content
    assert tool.type == "tool_use" and tool.input == TRANSFER["arguments"]
    assert message.stop_reason == "tool_use"


def test_async_anthropic_stream_tool_use(server: MockLLMServer) -> None:
    server.queue(tool_calls=[TRANSFER])
    client = anthropic.AsyncAnthropic(base_url=server.url(), api_key="test", max_retries=0)

    async def run() -> Any:
        async with client.messages.stream(model="claude-sonnet-4-0", max_tokens=100, messages=USER) as stream:  # type: ignore[arg-type]
            return await stream.get_final_message()

    (tool,) = asyncio.run(run()).content
    assert tool.type == "tool_use" and tool.input == TRANSFER["arguments"]


def test_gemini_tool_call_is_a_function_call_part(server: MockLLMServer) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="test", http_options=types.HttpOptions(base_url=server.base))
    server.queue(tool_calls=[TRANSFER])
    response = client.models.generate_content(model="gemini-2.5-flash", contents="refund")
    (call,) = response.function_calls or []
    assert (call.name, call.args) == ("transfer_to_billing", TRANSFER["arguments"])
    server.queue(tool_calls=[TRANSFER], text="Transferring.")
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="refund"))
    assert [c.name for c in chunks[-1].function_calls or []] == ["transfer_to_billing"]


# -- Anthropic stream usage ------------------------------------------------------------------------------


def test_anthropic_message_delta_carries_the_cumulative_usage(server: MockLLMServer) -> None:
    server.queue(
        input=900, output=40, cache_read=500, cache_write=300, server_tool_use={"web_search_requests": 2}
    )
    with _claude(server).messages.stream(model="claude-sonnet-4-0", max_tokens=100, messages=USER) as stream:  # type: ignore[arg-type]
        events = list(stream)
        final = stream.get_final_message().usage
    start = next(e for e in events if e.type == "message_start").message.usage
    delta = next(e for e in events if e.type == "message_delta").usage
    assert (start.input_tokens, start.output_tokens) == (100, 1)
    assert (
        delta.input_tokens,
        delta.cache_read_input_tokens,
        delta.cache_creation_input_tokens,
        delta.output_tokens,
    ) == (100, 500, 300, 40)
    assert delta.server_tool_use is not None and delta.server_tool_use.web_search_requests == 2
    assert final.server_tool_use is not None and final.server_tool_use.web_fetch_requests == 0
    assert (final.input_tokens, final.output_tokens) == (100, 40)


def test_anthropic_plain_message_reports_server_tool_use(server: MockLLMServer) -> None:
    server.queue(input=50, output=5, server_tool_use={"web_fetch_requests": 1})
    usage = _claude(server).messages.create(model="claude-sonnet-4-0", max_tokens=10, messages=USER).usage  # type: ignore[arg-type]
    assert usage.server_tool_use is not None
    assert (usage.server_tool_use.web_search_requests, usage.server_tool_use.web_fetch_requests) == (0, 1)


def test_anthropic_beta_messages_work_like_messages(server: MockLLMServer) -> None:
    server.queue(input=70, output=7, route="anthropic")
    before = len(server.requests)
    message = _claude(server).beta.messages.create(model="claude-sonnet-4-0", max_tokens=10, messages=USER)  # type: ignore[arg-type]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (70, 7)
    assert server.requests[before]["path"] == "/v1/messages"
    server.queue(tool_calls=[TRANSFER])
    client = anthropic.AsyncAnthropic(base_url=server.url(), api_key="test", max_retries=0)

    async def run() -> Any:
        async with client.beta.messages.stream(
            model="claude-sonnet-4-0", max_tokens=10, messages=USER
        ) as stream:  # type: ignore[arg-type]
            return await stream.get_final_message()

    final = asyncio.run(run())
    assert final.stop_reason == "tool_use" and final.content[0].input == TRANSFER["arguments"]  # type: ignore[union-attr]


# -- requests log, Responses stream events, background mode -----------------------------------------------


def test_requests_log_method_path_query_and_body(server: MockLLMServer) -> None:
    before = len(server.requests)
    _claude(server).beta.messages.create(  # older anthropic SDKs send ?beta=true on every beta call
        model="claude-sonnet-4-0",
        max_tokens=10,
        messages=USER,  # type: ignore[arg-type]
        extra_query={"beta": "true"},
    )
    (entry,) = server.requests[before:]
    assert (entry["method"], entry["path"], entry["query"]) == ("POST", "/v1/messages", {"beta": "true"})
    assert entry["body"]["max_tokens"] == 10


def test_responses_stream_sends_the_documented_event_sequence(server: MockLLMServer) -> None:
    server.queue(text="Hello there")
    events = list(_openai(server).responses.create(model="gpt-4o", input="hi", stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    item_id = events[2].item.id  # type: ignore[union-attr]
    assert all(e.item_id == item_id for e in events[3:8])  # type: ignore[union-attr]
    assert events[0].response.usage is None and events[0].response.status == "in_progress"  # type: ignore[union-attr]
    completed = events[-1].response  # type: ignore[union-attr]
    assert (
        completed.status == "completed"
        and completed.usage is not None
        and completed.output_text == "Hello there"
    )


def test_background_response_is_queued_then_polled_to_completion(server: MockLLMServer) -> None:
    client = _openai(server)
    server.queue(input=300, output=20, pending_polls=2)
    created = client.responses.create(model="gpt-4o", input="long task", background=True)
    assert created.status == "queued" and created.usage is None and created.background
    before = len(server.requests)
    statuses = [client.responses.retrieve(created.id).status for _ in range(2)]
    done = client.responses.retrieve(created.id)
    assert statuses == ["in_progress", "in_progress"] and done.status == "completed"
    assert done.id == created.id and done.usage is not None and done.usage.input_tokens == 300
    gets = [r for r in server.requests[before:] if r["method"] == "GET"]
    assert [r["path"] for r in gets] == [f"/v1/responses/{created.id}"] * 3


def test_background_stream_resumes_after_a_sequence_number(server: MockLLMServer) -> None:
    client = _openai(server)
    server.queue(input=40, output=4, text="a b c")
    first = list(client.responses.create(model="gpt-4o", input="x", background=True, stream=True))
    assert first[0].response.status == "queued"  # type: ignore[union-attr]
    ident = first[0].response.id  # type: ignore[union-attr]
    resumed = list(client.responses.retrieve(ident, stream=True, starting_after=3))
    assert [e.sequence_number for e in resumed] == [e.sequence_number for e in first[4:]]
    assert resumed[-1].type == "response.completed" and resumed[-1].response.usage.output_tokens == 4  # type: ignore[union-attr]
    assert server.requests[-1]["query"] == {"stream": "true", "starting_after": "3"}


def test_background_response_can_be_cancelled_async(server: MockLLMServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
    server.queue(pending_polls=5)

    async def run() -> tuple[Any, Any, Any]:
        created = await client.responses.create(model="gpt-4o", input="x", background=True)
        cancelled = await client.responses.cancel(created.id)
        return created, cancelled, await client.responses.retrieve(created.id)

    created, cancelled, again = asyncio.run(run())
    assert (cancelled.id, cancelled.status, again.status) == (created.id, "cancelled", "cancelled")
    assert again.usage is None


def test_foreground_response_is_retrievable_and_not_cancellable(server: MockLLMServer) -> None:
    client = _openai(server)
    created = client.responses.create(model="gpt-4o", input="x")
    assert client.responses.retrieve(created.id).usage == created.usage
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_unknown")


# -- embeddings, legacy completions -------------------------------------------------------------------------


def test_embeddings_usage_and_vectors_in_both_encodings(server: MockLLMServer) -> None:
    client = _openai(server)
    server.queue(input=12, route="openai.embeddings")
    default = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"]
    )  # SDK asks base64
    assert server.requests[-1]["body"]["encoding_format"] == "base64"
    assert (default.usage.prompt_tokens, default.usage.total_tokens) == (12, 12)
    assert [len(d.embedding) for d in default.data] == [8, 8] and default.data[1].index == 1
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="alpha", encoding_format="float", dimensions=4
    )
    assert len(floats.data) == 1 and len(floats.data[0].embedding) == 4
    assert floats.data[0].embedding == pytest.approx(
        client.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=4)
        .data[0]
        .embedding
    )


def test_async_embeddings_count_the_input(server: MockLLMServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
    response = asyncio.run(client.embeddings.create(model="text-embedding-3-large", input="x" * 40))
    assert response.usage.prompt_tokens == 10 + 10 and response.model == "text-embedding-3-large"


def test_legacy_completions_plain_and_streamed_with_usage(server: MockLLMServer) -> None:
    client = _openai(server)
    server.queue(input=33, output=5, text="four score and seven")
    plain = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say")
    assert plain.choices[0].text == "four score and seven" and plain.object == "text_completion"
    assert plain.usage is not None and (plain.usage.prompt_tokens, plain.usage.completion_tokens) == (33, 5)
    server.queue(input=33, output=5, text="four score")
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "four score"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 38
    assert all(c.usage is None for c in chunks[:-1])


def test_async_legacy_completion_counts_the_prompt(server: MockLLMServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)

    async def run() -> tuple[list[Any], Any]:
        stream = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="y" * 80, stream=True)
        chunks = [chunk async for chunk in stream]
        return chunks, await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="y" * 80)

    chunks, plain = asyncio.run(run())
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.usage is None for c in chunks)
    assert plain.usage is not None and plain.usage.prompt_tokens == 20 + 10


# -- images ---------------------------------------------------------------------------------------------------


def test_image_generation_reports_gpt_image_usage(server: MockLLMServer) -> None:
    client = _openai(server)
    result = client.images.generate(model="gpt-image-1", prompt="a red fox", quality="low", n=2)
    assert result.usage is not None and len(result.data or []) == 2
    assert (result.usage.input_tokens, result.usage.output_tokens) == (3, 2 * 272)
    assert (
        result.usage.input_tokens_details.text_tokens == 3
        and result.usage.input_tokens_details.image_tokens == 0
    )
    assert result.usage.total_tokens == 3 + 544 and result.quality == "low"
    dalle = client.images.generate(model="dall-e-3", prompt="a red fox")
    assert dalle.usage is None and (dalle.data or [])[0].url


def test_image_edit_is_multipart_and_counts_input_images(server: MockLLMServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
    server.queue(input=500, input_media=400, output=1056, route="openai.images")
    png = base64.b64decode(PNG_B64)

    async def run() -> tuple[Any, Any, Any]:
        two = [("a.png", png, "image/png"), ("b.png", png, "image/png")]
        result = await client.images.edit(model="gpt-image-1", image=two, prompt="merge")
        body = server.requests[-1]["body"]
        return (
            result,
            body,
            await client.images.edit(model="gpt-image-1", image=("a.png", png, "image/png"), prompt="x"),
        )

    result, body, counted = asyncio.run(run())
    assert result.usage is not None and result.usage.input_tokens_details.image_tokens == 400
    assert (result.usage.input_tokens, result.usage.input_tokens_details.text_tokens) == (500, 100)
    assert body["prompt"] == "merge" and [f["size"] for f in body["image"]] == [len(png), len(png)]
    assert counted.usage is not None and counted.usage.input_tokens_details.image_tokens == 85


def test_streamed_image_generation_sends_partials_then_usage(server: MockLLMServer) -> None:
    events = list(
        _openai(server).images.generate(model="gpt-image-1", prompt="a fox", stream=True, partial_images=2)
    )
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert events[-1].usage.output_tokens == 1056  # type: ignore[union-attr]
    png = base64.b64decode(PNG_B64)
    edits = list(
        _openai(server).images.edit(
            model="gpt-image-1", image=("a.png", png, "image/png"), prompt="x", stream=True
        )
    )
    assert [e.type for e in edits] == ["image_edit.completed"]
    assert edits[0].usage.input_tokens_details.image_tokens == 85  # type: ignore[union-attr]


# -- audio ------------------------------------------------------------------------------------------------------

AUDIO = ("clip.wav", b"RIFF" + bytes(64_000), "audio/wav")  # 4 "seconds" at the mock's 16 kB/s


def test_transcription_reports_token_usage(server: MockLLMServer) -> None:
    client = _openai(server)
    server.queue(text="hello world", input=50, input_media=45, output=3)
    result = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=AUDIO)
    assert result.text == "hello world" and result.usage is not None and result.usage.type == "tokens"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.total_tokens) == (50, 3, 53)
    details = result.usage.input_token_details
    assert details is not None and (details.audio_tokens, details.text_tokens) == (45, 5)
    counted = client.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=AUDIO)
    assert counted.usage is not None and counted.usage.input_tokens == 40  # type: ignore[union-attr]
    whisper = client.audio.transcriptions.create(model="whisper-1", file=AUDIO)
    assert whisper.usage is not None and whisper.usage.type == "duration" and whisper.usage.seconds == 4
    assert client.audio.transcriptions.create(model="whisper-1", file=AUDIO, response_format="text") == REPLY


def test_streamed_transcription_ends_with_usage(server: MockLLMServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
    server.queue(text="one two three", input=20, output=4)

    async def run() -> list[Any]:
        stream = await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=AUDIO, stream=True)
        return [event async for event in stream]

    events = asyncio.run(run())
    assert "".join(e.delta for e in events[:-1]) == "one two three"  # type: ignore[union-attr]
    done = events[-1]
    assert done.type == "transcript.text.done" and done.usage is not None and done.usage.total_tokens == 24
    assert server.requests[-1]["body"]["stream"] is True


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks translations deprecated
def test_translation_has_no_usage(server: MockLLMServer) -> None:
    server.queue(text="good morning")
    result = _openai(server).audio.translations.create(model="whisper-1", file=AUDIO)
    assert result.to_dict() == {"text": "good morning"}


def test_speech_is_audio_bytes_plain_streamed_or_sse(server: MockLLMServer) -> None:
    client = _openai(server)
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input="hello").content
    assert len(audio) == 4096
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="hello"
    ) as streamed:
        assert b"".join(streamed.iter_bytes(512)) == audio
    server.queue(input=8, output=90)
    sse = client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="alloy", input="hello", stream_format="sse"
    )
    events = [json.loads(line[6:]) for line in sse.text.splitlines() if line.startswith("data: ")]
    assert b"".join(base64.b64decode(e["audio"]) for e in events[:-1]) == audio
    assert events[-1] == {
        "type": "speech.audio.done",
        "usage": {"input_tokens": 8, "output_tokens": 90, "total_tokens": 98},
    }


# -- structured outputs, count_tokens, headers, image variations -------------------------------------------


class Level(str, Enum):
    LOW = "low"
    HIGH = "high"


class Owner(BaseModel):
    name: str
    level: Level


class Ticket(BaseModel):
    title: str
    priority: int
    tags: list[str]
    owner: Owner | None


def test_chat_parse_gets_json_matching_the_schema(server: MockLLMServer) -> None:
    parsed = _openai(server).chat.completions.parse(model="gpt-4o", messages=USER, response_format=Ticket)  # type: ignore[arg-type]
    ticket = parsed.choices[0].message.parsed
    assert ticket == Ticket(
        title="text", priority=1, tags=["text"], owner=Owner(name="text", level=Level.LOW)
    )


def test_async_responses_parse_gets_json_matching_the_schema(server: MockLLMServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
    parsed = asyncio.run(client.responses.parse(model="gpt-4o", input="x", text_format=Ticket))
    assert parsed.output_parsed is not None and parsed.output_parsed.tags == ["text"]


def test_queued_text_wins_over_the_schema_answer(server: MockLLMServer) -> None:
    server.queue(text='{"title": "t", "priority": 3, "tags": [], "owner": null}')
    parsed = _openai(server).chat.completions.parse(model="gpt-4o", messages=USER, response_format=Ticket)  # type: ignore[arg-type]
    assert parsed.choices[0].message.parsed == Ticket(title="t", priority=3, tags=[], owner=None)


def test_anthropic_count_tokens_takes_nothing_from_the_queue(server: MockLLMServer) -> None:
    client = _claude(server)
    server.queue(input=77, output=7, route="anthropic")
    counted = client.messages.count_tokens(
        model="claude-sonnet-4-0", messages=[{"role": "user", "content": "x" * 40}]
    )
    assert counted.input_tokens == 20
    usage = client.messages.create(model="claude-sonnet-4-0", max_tokens=10, messages=USER).usage  # type: ignore[arg-type]
    assert (usage.input_tokens, usage.output_tokens) == (77, 7)


def test_requests_log_keeps_the_headers(server: MockLLMServer) -> None:
    _claude(server).beta.messages.create(
        model="claude-sonnet-4-0",
        max_tokens=10,
        messages=USER,  # type: ignore[arg-type]
        betas=["token-efficient-tools-2025-02-19"],
    )
    headers = server.requests[-1]["headers"]
    assert headers["anthropic-beta"] == "token-efficient-tools-2025-02-19" and "anthropic-version" in headers


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks variations deprecated
def test_image_variations_are_dalle_shaped(server: MockLLMServer) -> None:
    png = base64.b64decode(PNG_B64)
    result = _openai(server).images.create_variation(image=("a.png", png, "image/png"), n=2)
    assert result.usage is None and [bool(d.url) for d in result.data or []] == [True, True]
