"""The mock LLM server answers real SDK clients in each provider's documented shape."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tokentrail.testing.mock_llm import MockLLMServer, MockResponse


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
