"""Embedding, rerank, OCR and guardrail calls of google-genai, cohere, mistralai, ollama and boto3, made by
the real SDKs against the local MockLLMServer under `instrument()`: one record per request the server
counted, with exactly the usage the response reports (or `unknown` with the reason, never 0)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sdk_calls import complete, one_call

import tokentrail as tt
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    """A synchronous tracker `instrument()` feeds for the span of one test."""
    tracker = Tracker(capture="sync")
    tt.instrument(tracker)
    try:
        yield tracker
    finally:
        tt.uninstrument()


# -- google-genai ---------------------------------------------------------------------------------------


def genai(server: MockLLMServer) -> Any:
    from google import genai
    from google.genai import types

    return genai.Client(api_key="test", http_options=types.HttpOptions(base_url=server.base))


def test_gemini_embed_content_records_the_prompt_token_count(server: MockLLMServer, tracker: Tracker) -> None:
    client = genai(server)
    server.queue(input=17, route="gemini.embed")
    record = one_call(
        server,
        tracker,
        ":batchEmbedContents",
        lambda: client.models.embed_content(model="gemini-embedding-001", contents=["a", "b"]),
    )
    complete(record, 17)
    assert record.model == "gemini-embedding-001"
    assert record.cost == Decimal("0.00000255")  # 17 tokens at $0.15 / M


def test_gemini_async_embed_content(server: MockLLMServer, tracker: Tracker) -> None:
    client = genai(server)
    server.queue(input=9, route="gemini.embed")
    record = one_call(
        server,
        tracker,
        ":batchEmbedContents",
        lambda: asyncio.run(client.aio.models.embed_content(model="gemini-embedding-001", contents="hi")),
    )
    complete(record, 9)


def test_gemini_embed_content_without_usage_is_unknown_not_zero(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = genai(server)
    server.queue(omit_usage=True, route="gemini.embed")
    record = one_call(
        server,
        tracker,
        ":batchEmbedContents",
        lambda: client.models.embed_content(model="text-embedding-004", contents="x"),
    )
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert "reports no usage" in (record.usage.reason or "")


def test_gemini_vertex_predict_shape_sums_the_token_statistics() -> None:
    body = {
        "predictions": [
            {"embeddings": {"values": [0.1], "statistics": {"truncated": False, "token_count": 4}}},
            {"embeddings": {"values": [0.2], "statistics": {"truncated": False, "token_count": 7.0}}},
        ],
        "metadata": {"billableCharacterCount": 40},
    }
    from google.genai import models

    parsed = models._EmbedContentResponse_from_vertex(body, None, {})
    from google.genai import types

    usage = tt.usage_from_response(types.EmbedContentResponse(**parsed), provider="google")
    assert (usage.status, usage.input_tokens) == (tt.UsageStatus.COMPLETE, 11)


# -- cohere ---------------------------------------------------------------------------------------------


def test_cohere_v2_embed_sync_and_async(server: MockLLMServer, tracker: Tracker) -> None:
    import cohere

    client = cohere.ClientV2(api_key="test", base_url=server.base, max_retries=0)
    server.queue(input=12, route="cohere.embed")
    record = one_call(
        server,
        tracker,
        "/v2/embed",
        lambda: client.embed(
            model="embed-v4.0", texts=["a b"], input_type="search_document", embedding_types=["float"]
        ),
    )
    complete(record, 12)
    assert record.model == "embed-v4.0"
    aclient = cohere.AsyncClientV2(api_key="test", base_url=server.base, max_retries=0)
    server.queue(input=5, route="cohere.embed")
    record = one_call(
        server,
        tracker,
        "/v2/embed",
        lambda: asyncio.run(
            aclient.embed(
                model="embed-v4.0", texts=["a"], input_type="search_query", embedding_types=["float"]
            )
        ),
    )
    complete(record, 5)


def test_cohere_rerank_is_recorded_unknown_with_its_search_units(
    server: MockLLMServer, tracker: Tracker
) -> None:
    import cohere

    client = cohere.ClientV2(api_key="test", base_url=server.base, max_retries=0)
    record = one_call(
        server,
        tracker,
        "/v2/rerank",
        lambda: client.rerank(model="rerank-v3.5", query="q", documents=["a", "b"]),
    )
    assert record.usage.status == tt.UsageStatus.COMPLETE
    assert record.usage.rerank_searches == 1
    assert record.model == "rerank-v3.5"


def test_cohere_v1_embed_records_each_request(server: MockLLMServer, tracker: Tracker) -> None:
    import cohere

    client = cohere.Client(api_key="test", base_url=server.base, max_retries=0)
    server.queue(input=8, route="cohere.embed_v1")
    record = one_call(
        server,
        tracker,
        "/v1/embed",
        lambda: client.embed(model="embed-english-v3.0", texts=["a"], input_type="search_query"),
    )
    complete(record, 8)


def test_cohere_v1_chat(server: MockLLMServer, tracker: Tracker) -> None:
    import cohere

    client = cohere.Client(api_key="test", base_url=server.base, max_retries=0)
    server.queue(input=21, output=4, route="cohere.chat_v1")
    record = one_call(server, tracker, "/v1/chat", lambda: client.chat(model="command-r", message="hi"))
    complete(record, 21, 4)


# -- mistralai ------------------------------------------------------------------------------------------


def mistral(server: MockLLMServer) -> Any:
    from mistralai.client import Mistral

    return Mistral(api_key="test", server_url=server.base)


def test_mistral_embeddings_sync_and_async(server: MockLLMServer, tracker: Tracker) -> None:
    client = mistral(server)
    server.queue(input=14, route="mistral.embed")
    record = one_call(
        server,
        tracker,
        "/v1/embeddings",
        lambda: client.embeddings.create(model="mistral-embed", inputs=["a", "b"]),
    )
    complete(record, 14)
    assert record.cost == Decimal("0.0000014")  # 14 tokens at $0.10 / M
    server.queue(input=3, route="mistral.embed")
    record = one_call(
        server,
        tracker,
        "/v1/embeddings",
        lambda: asyncio.run(client.embeddings.create_async(model="mistral-embed", inputs="a")),
    )
    complete(record, 3)


def test_mistral_fim_plain_and_streamed(server: MockLLMServer, tracker: Tracker) -> None:
    client = mistral(server)
    server.queue(input=30, output=6, route="mistral")
    record = one_call(
        server,
        tracker,
        "/fim/completions",
        lambda: client.fim.complete(model="codestral-latest", prompt="def f("),
    )
    complete(record, 30, 6)
    server.queue(input=31, output=7, route="mistral")
    record = one_call(
        server,
        tracker,
        "/fim/completions",
        lambda: list(client.fim.stream(model="codestral-latest", prompt="def g(")),
    )
    complete(record, 31, 7)


def test_mistral_agents_complete_async(server: MockLLMServer, tracker: Tracker) -> None:
    client = mistral(server)
    server.queue(input=40, output=9, route="mistral")
    record = one_call(
        server,
        tracker,
        "/agents/completions",
        lambda: asyncio.run(
            client.agents.complete_async(agent_id="ag_1", messages=[{"role": "user", "content": "hi"}])
        ),
    )
    complete(record, 40, 9)


def test_mistral_ocr_is_recorded_unknown_with_its_pages(server: MockLLMServer, tracker: Tracker) -> None:
    client = mistral(server)
    document = {"type": "document_url", "document_url": "https://example.invalid/a.pdf"}
    record = one_call(
        server, tracker, "/v1/ocr", lambda: client.ocr.process(model="mistral-ocr-latest", document=document)
    )
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert "1 pages processed" in (record.usage.reason or "")


# -- ollama ---------------------------------------------------------------------------------------------


def test_ollama_embed_sync_async_and_legacy_embeddings(server: MockLLMServer, tracker: Tracker) -> None:
    import ollama

    server.queue(input=6, route="embed.ollama")
    record = one_call(
        server,
        tracker,
        "/api/embed",
        lambda: ollama.Client(host=server.base).embed(model="nomic-embed-text", input=["a"]),
    )
    complete(record, 6)
    assert record.model == "nomic-embed-text"
    assert record.cost is None  # a local model: unpriced, never $0
    server.queue(input=2, route="embed.ollama")
    aclient = ollama.AsyncClient(host=server.base)
    record = one_call(
        server, tracker, "/api/embed", lambda: asyncio.run(aclient.embed(model="nomic-embed-text", input="a"))
    )
    complete(record, 2)
    record = one_call(
        server,
        tracker,
        "/api/embeddings",
        lambda: ollama.Client(host=server.base).embeddings(model="nomic-embed-text", prompt="a"),
    )
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert "reports no token counts" in (record.usage.reason or "")


# -- boto3 bedrock-runtime ------------------------------------------------------------------------------


def bedrock(server: MockLLMServer) -> Any:
    import boto3

    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.base,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def test_bedrock_titan_embedding_body(server: MockLLMServer, tracker: Tracker) -> None:
    client = bedrock(server)
    server.queue(input=11, route="bedrock.embed")
    model = "amazon.titan-embed-text-v2:0"
    response: dict[str, Any] = {}

    def call() -> None:
        response.update(client.invoke_model(modelId=model, body=json.dumps({"inputText": "hello there"})))

    record = one_call(server, tracker, "/invoke", call)
    complete(record, 11)
    assert json.loads(response["body"].read())["inputTextTokenCount"] == 11  # the caller's body is unread
    assert record.cost == Decimal("0.00000022")  # 11 tokens at $0.02 / M


def test_bedrock_cohere_embed_reads_the_token_count_header(server: MockLLMServer, tracker: Tracker) -> None:
    client = bedrock(server)
    server.queue(input=13, route="bedrock.embed")
    body = json.dumps({"texts": ["a"], "input_type": "search_query"})
    record = one_call(
        server, tracker, "/invoke", lambda: client.invoke_model(modelId="cohere.embed-english-v3", body=body)
    )
    complete(record, 13)


def test_bedrock_apply_guardrail_is_recorded_unknown_with_its_units(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = bedrock(server)
    record = one_call(
        server,
        tracker,
        "/apply",
        lambda: client.apply_guardrail(
            guardrailIdentifier="gr-1",
            guardrailVersion="1",
            source="INPUT",
            content=[{"text": {"text": "hi"}}],
        ),
    )
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert "topicPolicyUnits=1" in (record.usage.reason or "")
