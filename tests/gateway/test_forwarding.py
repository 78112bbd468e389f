"""The gateway forwards each provider API unchanged and records every call once, with the tokens the
client's SDK reports: the real `openai` and `anthropic` SDKs, httpx and curl against the mock server."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import Running, ScriptedUpstream, Step, gateway_config, recorded, serve
from tokentrail.gateway import Gateway
from tokentrail.testing.mock_llm import MockLLMServer, MockResponse

MESSAGES = [{"role": "user", "content": "Count the tokens of this sentence."}]


def _openai(gateway: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-client", max_retries=0)


def _anthropic(gateway: Running) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="sk-ant-client", max_retries=0)


def _history(gateway: Running) -> list:
    return gateway.gateway.tracker.history()


def test_openai_chat_is_forwarded_unchanged_and_recorded_with_the_sdk_usage(
    gateway: Running, mock: MockLLMServer
) -> None:
    mock.queue(input=120, output=30, cache_read=100)
    response = _openai(gateway).chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.5)

    assert [r["body"] for r in mock.requests] == [
        {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0.5}
    ]
    (record,) = _history(gateway)
    assert record.usage.input_tokens == response.usage.prompt_tokens == 120
    assert record.usage.output_tokens == response.usage.completion_tokens == 30
    assert record.usage.cache_read_tokens == 100
    assert (record.model, record.provider, record.usage.status.value) == ("gpt-4o", "openai", "complete")
    assert record.cost_units is not None and record.cost_units > 0


def test_openai_chat_stream_gets_usage_upstream_without_showing_the_client_a_usage_chunk(
    gateway: Running, mock: MockLLMServer
) -> None:
    mock.queue(input=40, output=12)
    chunks = list(_openai(gateway).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))

    assert mock.requests[0]["body"]["stream_options"] == {"include_usage": True}
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    (record,) = _history(gateway)
    assert (record.usage.input_tokens, record.usage.output_tokens) == (40, 12)
    assert record.usage.status.value == "complete"


def test_openai_chat_stream_that_asked_for_usage_sees_it_and_the_record_agrees(
    gateway: Running, mock: MockLLMServer
) -> None:
    mock.queue(input=40, output=12)
    chunks = list(
        _openai(gateway).chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    (record,) = _history(gateway)
    assert (record.usage.input_tokens, record.usage.output_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_usage_null_fields_the_client_did_not_ask_for_are_taken_out(
    gateway: Running, mock: MockLLMServer
) -> None:
    # Chunks as the API sends them with include_usage: "usage": null on every chunk but the last, which
    # has "choices": [] (https://platform.openai.com/docs/api-reference/chat-streaming/streaming, `usage`).
    base = '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb",'
    events = [
        f'data: {base}"choices":[{{"index":0,"delta":{{"role":"assistant","content":"Hi"}},"logprobs":null,"finish_reason":null}}],"usage":null}}\n\n',
        f'data: {base}"choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}\n\n',
        f'data: {base}"choices":[],"usage":{{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}}}\n\n',
        "data: [DONE]\n\n",
    ]
    mock.queue(MockResponse(events=events))
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    ) as response:
        text = response.read().decode()

    assert '"usage"' not in text
    assert text.count("data: ") == 3 and text.endswith("data: [DONE]\n\n")
    (record,) = _history(gateway)
    assert (record.usage.input_tokens, record.usage.output_tokens) == (9, 12)


def test_responses_api_plain_and_streamed(gateway: Running, mock: MockLLMServer) -> None:
    client = _openai(gateway)
    mock.queue(input=50, output=20)
    plain = client.responses.create(model="gpt-4o", input="Hello")
    mock.queue(input=60, output=25)
    with client.responses.stream(model="gpt-4o", input="Hello") as stream:
        final = stream.get_final_response()

    first, second = _history(gateway)
    assert (first.usage.input_tokens, first.usage.output_tokens) == (
        plain.usage.input_tokens,
        plain.usage.output_tokens,
    )
    assert (second.usage.input_tokens, second.usage.output_tokens) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
    )
    assert len(mock.requests) == 2


def test_embeddings(gateway: Running, mock: MockLLMServer) -> None:
    response = _openai(gateway).embeddings.create(model="text-embedding-3-small", input="tokens")

    (record,) = _history(gateway)
    assert record.usage.input_tokens == response.usage.prompt_tokens
    assert record.usage.output_tokens == 0 and record.model == "text-embedding-3-small"


def test_anthropic_messages_plain_and_streamed(gateway: Running, mock: MockLLMServer) -> None:
    client = _anthropic(gateway)
    mock.queue(input=300, output=40, cache_read=200)
    plain = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=MESSAGES)
    mock.queue(input=80, output=16)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256, messages=MESSAGES) as stream:
        final = stream.get_final_message()

    first, second = _history(gateway)
    sdk_input = plain.usage.input_tokens + plain.usage.cache_read_input_tokens
    assert (first.usage.input_tokens, first.usage.output_tokens) == (sdk_input, plain.usage.output_tokens)
    assert first.usage.cache_read_tokens == 200
    assert second.usage.output_tokens == final.usage.output_tokens == 16
    assert [r.provider for r in (first, second)] == ["anthropic", "anthropic"]
    assert len(mock.requests) == 2


def test_gemini_generate_and_stream(gateway: Running, mock: MockLLMServer) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
    mock.queue(input=30, output=9)
    plain = httpx.post(gateway.url + "/v1beta/models/gemini-2.5-flash:generateContent", json=body).json()
    mock.queue(input=31, output=10)
    with httpx.stream(
        "POST", gateway.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", json=body
    ) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]

    first, second = _history(gateway)
    assert first.usage.input_tokens == plain["usageMetadata"]["promptTokenCount"] == 30
    assert second.usage.output_tokens == events[-1]["usageMetadata"]["candidatesTokenCount"] == 10
    assert (first.model, first.provider) == ("gemini-2.5-flash", "google")
    assert mock.requests[1]["query"] == {"alt": "sse"}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_stream(gateway: Running, mock: MockLLMServer) -> None:
    mock.queue(input=20, output=8)
    payload = json.dumps(
        {"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True, "messages": MESSAGES}
    )
    out = subprocess.run(
        ["curl", "-sN", gateway.url + "/v1/messages", "-H", "content-type: application/json", "-d", payload],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    ).stdout

    assert "event: message_stop" in out
    (record,) = _history(gateway)
    assert (record.usage.input_tokens, record.usage.output_tokens) == (20, 8)


def test_upstream_errors_pass_unchanged_and_record_nothing(gateway: Running, mock: MockLLMServer) -> None:
    mock.queue(MockResponse(status=429))
    with pytest.raises(openai.RateLimitError) as caught:
        _openai(gateway).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    mock.queue(MockResponse(status=500))
    with pytest.raises(anthropic.InternalServerError) as failed:
        _anthropic(gateway).messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES)

    assert caught.value.body == {"message": "mock failure", "type": "rate_limit_error", "code": None}
    assert failed.value.body == {"type": "error", "error": {"type": "api_error", "message": "mock failure"}}
    assert _history(gateway) == []
    assert len(mock.requests) == 2


def test_openai_compatible_hosts_by_path_prefix_and_by_header(mock: MockLLMServer, ledger: str) -> None:
    config = gateway_config(mock.base, ledger, extra=(f"groq={mock.base}", f"together={mock.base}/v1"))
    with serve(Gateway(config)) as running:
        by_path = openai.OpenAI(base_url=running.url + "/groq/v1", api_key="k", max_retries=0)
        by_path.chat.completions.create(model="llama-3.1-8b-instant", messages=MESSAGES)
        by_header = openai.OpenAI(
            base_url=running.url + "/v1",
            api_key="k",
            max_retries=0,
            default_headers={"X-Tokentrail-Upstream": "together"},
        )
        by_header.chat.completions.create(model="meta-llama/Llama-3.3-70B-Instruct-Turbo", messages=MESSAGES)
        records = running.gateway.tracker.history()

    assert [r.provider for r in records] == ["groq", "together"]
    assert [r["path"] for r in mock.requests] == ["/v1/chat/completions", "/v1/chat/completions"]
    assert all("x-tokentrail-upstream" not in r["headers"] for r in mock.requests)


def test_a_stream_reaches_the_client_before_the_upstream_has_sent_it_all(
    scripted: ScriptedUpstream, ledger: str
) -> None:
    client_has_first = threading_event()
    scripted.steps = [
        Step(
            b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":12,"output_tokens":1}}}\n\n'
        ),
        Step(
            b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}\n\n',
            gate=client_has_first,
        ),
        Step(b'event: message_stop\ndata: {"type":"message_stop"}\n\n'),
    ]
    with serve(Gateway(gateway_config(scripted.base, ledger))) as running:
        with httpx.stream(
            "POST",
            running.url + "/v1/messages",
            json={"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True, "messages": MESSAGES},
        ) as response:
            lines = response.iter_lines()
            first = next(lines)
            last_sent_before = scripted.steps[-1].sent.is_set()
            client_has_first.set()
            rest = list(lines)
        (record,) = running.gateway.tracker.history()

    assert first == "event: message_start"
    assert not last_sent_before
    assert "event: message_stop" in rest
    assert (record.usage.input_tokens, record.usage.output_tokens) == (12, 7)


def test_a_compressed_body_passes_as_the_upstream_sent_it(scripted: ScriptedUpstream, ledger: str) -> None:
    # the gateway asks for identity; an upstream that compresses anyway reaches the client byte for byte
    completion = b'{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[]}'
    scripted.answer_json(gzip.compress(completion), ("Content-Encoding", "gzip"))
    with serve(Gateway(gateway_config(scripted.base, ledger))) as running:
        with httpx.stream(
            "POST", running.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}
        ) as response:
            raw = b"".join(response.iter_raw())
            encoding = response.headers.get("content-encoding")
        (record,) = running.gateway.tracker.history()

    assert scripted.requests[0]["headers"]["accept-encoding"] == "identity"
    assert (encoding, raw) == ("gzip", scripted.steps[0].data)
    assert gzip.decompress(raw) == completion
    assert record.usage.status.value == "unknown"  # not read: the gateway does not decompress


def test_request_headers_pass_without_ones_the_gateway_would_add(
    scripted: ScriptedUpstream, ledger: str
) -> None:
    scripted.answer_json(b"{}")
    with serve(Gateway(gateway_config(scripted.base, ledger))) as running:
        httpx.post(
            running.url + "/v1/chat/completions",
            content=b'{"model":"gpt-4o"}',
            headers={"User-Agent": "agent/1.0", "X-Custom": "kept", "Cookie": "a=b"},
        )

    headers = scripted.requests[0]["headers"]
    assert (headers["user-agent"], headers["x-custom"], headers["cookie"]) == ("agent/1.0", "kept", "a=b")
    assert "content-type" not in headers  # the client sent none: none added
    assert headers["content-length"] == "18"


def test_cookies_set_by_an_upstream_are_not_sent_for_other_clients(
    scripted: ScriptedUpstream, ledger: str
) -> None:
    scripted.answer_json(b"{}", ("Set-Cookie", "session=upstream-1; Path=/"))
    with serve(Gateway(gateway_config(scripted.base, ledger))) as running:
        first = httpx.post(running.url + "/v1/chat/completions", json={"model": "gpt-4o"})
        httpx.post(running.url + "/v1/chat/completions", json={"model": "gpt-4o"})

    assert first.headers["set-cookie"] == "session=upstream-1; Path=/"  # relayed to its client
    assert [r["headers"].get("cookie") for r in scripted.requests] == [None, None]


def threading_event():
    import threading

    return threading.Event()


def test_gemini_stream_without_alt_sse_is_read_as_a_json_array(
    scripted: ScriptedUpstream, ledger: str
) -> None:
    # streamGenerateContent without ?alt=sse answers one JSON array of GenerateContentResponse chunks, sent
    # as they are generated (kgateway-dev/kgateway#10804; chunks as in simonw/llm-gemini#97)
    scripted.content_type = "application/json; charset=UTF-8"
    scripted.steps = [
        Step(
            b'[{\n  "candidates": [{"content": {"parts": [{"text": "Here"}],"role": "model"},"index": 0}],\n'
            b'  "usageMetadata": {"promptTokenCount": 5,"candidatesTokenCount": 1,"totalTokenCount": 6},\n'
            b'  "modelVersion": "gemini-2.5-flash"\n}\n'
        ),
        Step(
            b',\r\n{\n  "candidates": [{"content": {"parts": [{"text": " you go"}],"role": "model"},'
            b'"finishReason": "STOP","index": 0}],\n  "usageMetadata": {"promptTokenCount": 5,'
            b'"candidatesTokenCount": 44,"totalTokenCount": 235,"thoughtsTokenCount": 186},\n'
            b'  "modelVersion": "gemini-2.5-flash"\n}\n'
        ),
        Step(b"]"),
    ]
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
    with serve(Gateway(gateway_config(scripted.base, ledger))) as running:
        response = httpx.post(
            running.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent", json=body
        )
        (record,) = running.gateway.tracker.history()

    assert response.content == b"".join(step.data for step in scripted.steps)
    assert record.usage.status.value == "complete"
    assert (record.usage.input_tokens, record.usage.output_tokens) == (5, 44 + 186)
    assert record.usage.reasoning_tokens == 186 and record.model == "gemini-2.5-flash"


def test_gemini_json_array_stream_cut_short_records_what_arrived(
    scripted: ScriptedUpstream, ledger: str
) -> None:
    never = threading_event()
    scripted.content_type = "application/json"
    scripted.steps = [
        Step(
            b'[{"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"index": 0}],'
            b'"usageMetadata": {"promptTokenCount": 7,"candidatesTokenCount": 1,"totalTokenCount": 8},'
            b'"modelVersion": "gemini-2.5-flash"}'
        ),
        Step(b"]", gate=never),
    ]
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
    gateway = Gateway(gateway_config(scripted.base, ledger))
    done = recorded(gateway)
    with serve(gateway) as running:
        with httpx.stream(
            "POST", running.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent", json=body
        ) as response:
            first = next(response.iter_raw())
        assert done.wait(30), "the gateway did not record the abandoned stream"
        (record,) = gateway.tracker.history()

    assert first.startswith(b'[{"candidates"')
    assert record.usage.status.value == "partial"
    assert (record.usage.input_tokens, record.usage.output_tokens) == (7, 1)


def test_openrouter_usage_cost_is_kept_as_the_provider_cost(mock: MockLLMServer, ledger: str) -> None:
    # OpenRouter's usage object, with `cost` in credits (USD), in the plain body and in the last chunk of a
    # stream (https://openrouter.ai/docs/use-cases/usage-accounting, "Response Format")
    usage = {
        "completion_tokens": 2,
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cost": 0.95,
        "cost_details": {"upstream_inference_cost": 19},
        "prompt_tokens": 194,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "total_tokens": 196,
    }
    head = '{"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"openai/gpt-4o",'
    mock.queue(
        MockResponse(
            body={
                "id": "gen-0",
                "object": "chat.completion",
                "created": 1,
                "model": "openai/gpt-4o",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        ),
        MockResponse(
            events=[
                f'data: {head}"choices":[{{"index":0,"delta":{{"role":"assistant","content":"Hi"}},"finish_reason":null}}]}}\n\n',
                f'data: {head}"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}],"usage":{json.dumps(usage | {"cost": 0.0125})}}}\n\n',
                "data: [DONE]\n\n",
            ]
        ),
    )
    config = gateway_config(mock.base, ledger, extra=(f"openrouter={mock.base}/api",))
    with serve(Gateway(config)) as running:
        client = openai.OpenAI(base_url=running.url + "/openrouter/v1", api_key="k", max_retries=0)
        client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES)
        list(
            client.chat.completions.create(
                model="openai/gpt-4o",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        plain, streamed = running.gateway.tracker.history()

    assert [r["path"] for r in mock.requests] == ["/api/v1/chat/completions"] * 2
    assert (plain.provider, plain.provider_cost, plain.usage.input_tokens) == (
        "openrouter",
        Decimal("0.95"),
        194,
    )
    assert (streamed.provider_cost, streamed.usage.output_tokens) == (Decimal("0.0125"), 2)
