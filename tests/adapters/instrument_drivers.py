"""One driver per SDK call family, so the instrumentation tests run the same specification on every SDK.

Each driver builds the real SDK client pointed at the local MockLLMServer and makes one plain or
streamed call, sync or async; `plain_fixture` / `stream_fixture` are golden fixtures of the same call
that the server replays verbatim.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from adapter_payloads import Fixture, load

from tokentrail.testing.mock_llm import MockLLMServer

USER = "Summarize the recording."


@dataclass(frozen=True)
class Driver:
    name: str  # the SDK name instrument(providers=...) takes
    route: str  # the mock server route its requests take
    plain_fixture: str
    stream_fixture: str
    client: Callable[[MockLLMServer], Any]
    call: Callable[[Any], Any]
    stream: Callable[[Any], Iterable[Any]]
    patched: Callable[[], list[tuple[type, str]]]  # the class attributes instrument() replaces
    error: Callable[[], type[BaseException]]  # what the SDK raises on a server error
    aclient: Callable[[MockLLMServer], Any] | None = None
    acall: Callable[[Any], Awaitable[Any]] | None = None
    astream: Callable[[Any], Awaitable[AsyncIterable[Any]]] | None = None

    def plain(self) -> Fixture:
        return load(self.plain_fixture)

    def streamed(self) -> Fixture:
        return load(self.stream_fixture)

    def __str__(self) -> str:
        return self.name


def _load(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def _methods(module: str, classes: tuple[str, ...], *attrs: str) -> Callable[[], list[tuple[type, str]]]:
    """The (class, attribute) pairs instrument() is expected to replace, imported when asked."""
    return lambda: [(_load(module, cls), attr) for cls in classes for attr in attrs]


def _error(module: str, name: str) -> Callable[[], type[BaseException]]:
    return lambda: _load(module, name)


def queue_fixture(server: MockLLMServer, driver: Driver, fixture: Fixture, **extra: Any) -> None:
    """Make the next request on the driver's route replay `fixture` exactly."""
    if not fixture.is_stream:
        server.queue(body=fixture.payload, route=driver.route, **extra)
    elif fixture.stream_format == "aws-eventstream":
        server.queue(events=fixture.events(), route=driver.route, **extra)
    else:
        server.queue(events=fixture.wire_events(), route=driver.route, **extra)


# -- google-genai -------------------------------------------------------------------------------------------


def _genai(server: MockLLMServer) -> Any:
    from google import genai
    from google.genai import types

    return genai.Client(api_key="test", http_options=types.HttpOptions(base_url=server.base))


async def _genai_astream(client: Any) -> AsyncIterable[Any]:
    stream: AsyncIterable[Any] = await client.aio.models.generate_content_stream(
        model="gemini-2.5-flash", contents=USER
    )
    return stream


GENAI = Driver(
    name="google-genai",
    route="gemini",
    plain_fixture="gemini/generate_content.json",
    stream_fixture="gemini/stream_generate_content.json",
    client=_genai,
    call=lambda c: c.models.generate_content(model="gemini-2.5-flash", contents=USER),
    stream=lambda c: c.models.generate_content_stream(model="gemini-2.5-flash", contents=USER),
    patched=_methods(
        "google.genai.models", ("Models", "AsyncModels"), "generate_content", "generate_content_stream"
    ),
    error=_error("google.genai.errors", "ServerError"),
    aclient=_genai,
    acall=lambda c: c.aio.models.generate_content(model="gemini-2.5-flash", contents=USER),
    astream=_genai_astream,
)

# -- mistralai ----------------------------------------------------------------------------------------------

_MISTRAL_MESSAGES = [{"role": "user", "content": USER}]


def _mistral(server: MockLLMServer) -> Any:
    from mistralai.client import Mistral

    return Mistral(api_key="test", server_url=server.base)


MISTRAL = Driver(
    name="mistralai",
    route="mistral",
    plain_fixture="mistral/chat_completion.json",
    stream_fixture="mistral/chat_completion_stream.json",
    client=_mistral,
    call=lambda c: c.chat.complete(model="mistral-large-latest", messages=_MISTRAL_MESSAGES),
    stream=lambda c: c.chat.stream(model="mistral-large-latest", messages=_MISTRAL_MESSAGES),
    patched=_methods(
        "mistralai.client.chat", ("Chat",), "complete", "stream", "complete_async", "stream_async"
    ),
    error=_error("mistralai.client.errors", "MistralError"),
    aclient=_mistral,
    acall=lambda c: c.chat.complete_async(model="mistral-large-latest", messages=_MISTRAL_MESSAGES),
    astream=lambda c: c.chat.stream_async(model="mistral-large-latest", messages=_MISTRAL_MESSAGES),
)

# -- cohere -------------------------------------------------------------------------------------------------

_COHERE_MESSAGES = [{"role": "user", "content": USER}]


def _cohere(server: MockLLMServer) -> Any:
    import cohere

    return cohere.ClientV2(api_key="test", base_url=server.base, max_retries=0)


def _acohere(server: MockLLMServer) -> Any:
    import cohere

    return cohere.AsyncClientV2(api_key="test", base_url=server.base, max_retries=0)


async def _cohere_astream(client: Any) -> AsyncIterable[Any]:
    stream: AsyncIterable[Any] = client.chat_stream(model="command-a-03-2025", messages=_COHERE_MESSAGES)
    return stream


COHERE = Driver(
    name="cohere",
    route="cohere",
    plain_fixture="cohere/chat_v2.json",
    stream_fixture="cohere/chat_v2_stream.json",
    client=_cohere,
    call=lambda c: c.chat(model="command-a-03-2025", messages=_COHERE_MESSAGES),
    stream=lambda c: c.chat_stream(model="command-a-03-2025", messages=_COHERE_MESSAGES),
    patched=_methods("cohere.v2.raw_client", ("RawV2Client", "AsyncRawV2Client"), "chat", "chat_stream"),
    error=_error("cohere.core.api_error", "ApiError"),
    aclient=_acohere,
    acall=lambda c: c.chat(model="command-a-03-2025", messages=_COHERE_MESSAGES),
    astream=_cohere_astream,
)

# -- ollama -------------------------------------------------------------------------------------------------

_OLLAMA_MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def _ollama(server: MockLLMServer) -> Any:
    import ollama

    return ollama.Client(host=server.base)


def _aollama(server: MockLLMServer) -> Any:
    import ollama

    return ollama.AsyncClient(host=server.base)


OLLAMA = Driver(
    name="ollama",
    route="ollama",
    plain_fixture="ollama/chat.json",
    stream_fixture="ollama/chat_stream.json",
    client=_ollama,
    call=lambda c: c.chat("llama3.2", _OLLAMA_MESSAGES),  # the model passed positionally
    stream=lambda c: c.chat(model="llama3.2", messages=_OLLAMA_MESSAGES, stream=True),
    patched=_methods("ollama", ("Client", "AsyncClient"), "chat", "generate"),
    error=_error("ollama", "ResponseError"),
    aclient=_aollama,
    acall=lambda c: c.chat(model="llama3.2", messages=_OLLAMA_MESSAGES),
    astream=lambda c: c.chat(model="llama3.2", messages=_OLLAMA_MESSAGES, stream=True),
)

# -- boto3 bedrock-runtime (sync only: boto3 has no async client) ------------------------------------------

CONVERSE_MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"
INVOKE_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
_CONVERSE_MESSAGES = [{"role": "user", "content": [{"text": USER}]}]
_INVOKE_BODY = json.dumps(
    {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": USER}],
    }
)


def bedrock_client(server: MockLLMServer) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.base,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def _invoke(client: Any) -> Any:
    response = client.invoke_model(modelId=INVOKE_MODEL, body=_INVOKE_BODY)
    response["decoded"] = json.loads(response["body"].read())  # the caller can still read the body
    return response


CONVERSE = Driver(
    name="boto3",
    route="bedrock",
    plain_fixture="bedrock/converse_cache.json",
    stream_fixture="bedrock/converse_stream.json",
    client=bedrock_client,
    call=lambda c: c.converse(modelId=CONVERSE_MODEL, messages=_CONVERSE_MESSAGES),
    stream=lambda c: c.converse_stream(modelId=CONVERSE_MODEL, messages=_CONVERSE_MESSAGES)["stream"],
    patched=_methods("botocore.client", ("BaseClient",), "_make_api_call"),
    error=_error("botocore.exceptions", "ClientError"),
)

INVOKE = Driver(
    name="boto3",
    route="bedrock",
    plain_fixture="bedrock/invoke_model_claude.json",
    stream_fixture="bedrock/invoke_model_stream.json",
    client=bedrock_client,
    call=_invoke,
    stream=lambda c: c.invoke_model_with_response_stream(modelId=INVOKE_MODEL, body=_INVOKE_BODY)["body"],
    patched=_methods("botocore.client", ("BaseClient",), "_make_api_call"),
    error=_error("botocore.exceptions", "ClientError"),
)

DRIVERS = (GENAI, MISTRAL, COHERE, OLLAMA, CONVERSE, INVOKE)
ASYNC_DRIVERS = tuple(d for d in DRIVERS if d.aclient is not None)


def driver_id(driver: Driver) -> str:
    return driver.plain_fixture.split(".")[0]
