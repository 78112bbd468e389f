"""More billable SDK methods made by the real SDKs against the local MockLLMServer under `instrument()`:
mistralai conversations (plain and streamed, sync and async), cohere v1 generate / summarize / classify,
and what else issue 16 lists. One record per request the server counted, with exactly the usage the
response reports (or `unknown` with the reason, never 0)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sdk_calls import complete, made, one_call

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


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def drain(stream: Any) -> list[Any]:
    return [event async for event in stream]


# -- mistralai conversations ----------------------------------------------------------------------------


def mistral(server: MockLLMServer) -> Any:
    from mistralai.client import Mistral

    return Mistral(api_key="test", server_url=server.base)


CONVERSATION_CALLS = {
    "start": ("/v1/conversations", {"model": "mistral-medium-latest"}),
    "append": ("/v1/conversations/conv_1", {"conversation_id": "conv_1"}),
    "restart": ("/v1/conversations/conv_1/restart", {"conversation_id": "conv_1", "from_entry_id": "msg_1"}),
}


@pytest.mark.parametrize("verb", CONVERSATION_CALLS)
def test_mistral_conversation_plain_sync_and_async(
    server: MockLLMServer, tracker: Tracker, verb: str
) -> None:
    client = mistral(server)
    suffix, arguments = CONVERSATION_CALLS[verb]
    conversations = client.beta.conversations
    server.queue(input=25, output=8, route="mistral.conversation")
    record = one_call(server, tracker, suffix, lambda: getattr(conversations, verb)(inputs="hi", **arguments))
    complete(record, 25, 8)
    server.queue(input=26, output=9, route="mistral.conversation")
    call = getattr(conversations, f"{verb}_async")
    record = one_call(server, tracker, suffix, lambda: asyncio.run(call(inputs="hi", **arguments)))
    complete(record, 26, 9)


@pytest.mark.parametrize("verb", CONVERSATION_CALLS)
def test_mistral_conversation_stream_sync_and_async(
    server: MockLLMServer, tracker: Tracker, verb: str
) -> None:
    client = mistral(server)
    suffix, arguments = CONVERSATION_CALLS[verb]
    conversations = client.beta.conversations
    server.queue(input=31, output=11, route="mistral.conversation")
    events: list[Any] = []
    stream = getattr(conversations, f"{verb}_stream")
    record = one_call(server, tracker, suffix, lambda: events.extend(stream(inputs="hi", **arguments)))
    kinds = [e.event for e in events]  # every event reached the caller
    assert (kinds[0], kinds[-1]) == ("conversation.response.started", "conversation.response.done")
    assert "message.output.delta" in kinds
    complete(record, 31, 11)
    assert record.ttft_ms is not None
    server.queue(input=32, output=12, route="mistral.conversation")
    astream = getattr(conversations, f"{verb}_stream_async")

    async def run() -> list[Any]:
        return await drain(await astream(inputs="hi", **arguments))

    record = one_call(server, tracker, suffix, lambda: events.extend(asyncio.run(run())))
    complete(record, 32, 12)


def test_mistral_conversation_stream_closed_early_is_not_complete(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = mistral(server)
    server.queue(input=40, output=10, route="mistral.conversation")
    before = len(server.requests)
    stream = client.beta.conversations.start_stream(inputs="hi", model="mistral-medium-latest")
    next(iter(stream))
    stream.close()
    assert made(server, before, "/v1/conversations") == 1
    (record,) = tracker.history()
    assert record.usage.status is tt.UsageStatus.UNKNOWN
    assert record.usage.reason


# -- mistralai transcriptions: billed per audio minute ----------------------------------------------------

AUDIO = {"file_name": "a.mp3", "content": b"ID3 mock audio"}


def audio_minutes(record: tt.Record, seconds: int) -> None:
    """Recorded unknown (never 0 tokens) with the audio seconds in the reason."""
    assert record.usage.status is tt.UsageStatus.UNKNOWN
    assert f"({seconds} s of audio)" in (record.usage.reason or "")
    assert record.usage.input_tokens == 0 and record.cost is None


def test_mistral_transcription_plain_sync_and_async(server: MockLLMServer, tracker: Tracker) -> None:
    transcriptions = mistral(server).audio.transcriptions
    server.queue(input=42, output=7, route="mistral.transcription")
    record = one_call(
        server,
        tracker,
        "/audio/transcriptions",
        lambda: transcriptions.complete(model="voxtral-mini-latest", file=AUDIO),
    )
    audio_minutes(record, 42)
    assert record.model == "voxtral-mini-latest"
    server.queue(input=43, output=7, route="mistral.transcription")
    record = one_call(
        server,
        tracker,
        "/audio/transcriptions",
        lambda: asyncio.run(transcriptions.complete_async(model="voxtral-mini-latest", file=AUDIO)),
    )
    audio_minutes(record, 43)


def test_mistral_transcription_stream_sync_and_async(server: MockLLMServer, tracker: Tracker) -> None:
    transcriptions = mistral(server).audio.transcriptions
    server.queue(input=44, output=7, route="mistral.transcription")
    events: list[Any] = []
    record = one_call(
        server,
        tracker,
        "/audio/transcriptions",
        lambda: events.extend(transcriptions.stream(model="voxtral-mini-latest", file=AUDIO)),
    )
    assert events[-1].event == "transcription.done"  # every event reached the caller
    audio_minutes(record, 44)
    assert record.model == "voxtral-mini-latest"
    server.queue(input=45, output=7, route="mistral.transcription")

    async def run() -> list[Any]:
        return await drain(await transcriptions.stream_async(model="voxtral-mini-latest", file=AUDIO))

    record = one_call(server, tracker, "/audio/transcriptions", lambda: asyncio.run(run()))
    audio_minutes(record, 45)


# -- cohere v1 legacy endpoints -------------------------------------------------------------------------


def cohere_clients(server: MockLLMServer) -> tuple[Any, Any]:
    import cohere

    return (
        cohere.Client(api_key="test", base_url=server.base, max_retries=0),
        cohere.AsyncClient(api_key="test", base_url=server.base, max_retries=0),
    )


def test_cohere_v1_generate_sync_and_async(server: MockLLMServer, tracker: Tracker) -> None:
    client, aclient = cohere_clients(server)
    server.queue(input=18, output=6, route="cohere.generate_v1")
    record = one_call(server, tracker, "/v1/generate", lambda: client.generate(model="command", prompt="hi"))
    complete(record, 18, 6)
    assert record.model == "command"
    server.queue(input=19, output=5, route="cohere.generate_v1")
    record = one_call(
        server, tracker, "/v1/generate", lambda: asyncio.run(aclient.generate(model="command", prompt="hi"))
    )
    complete(record, 19, 5)


def test_cohere_v1_summarize_sync_and_async(server: MockLLMServer, tracker: Tracker) -> None:
    client, aclient = cohere_clients(server)
    text = "A long text that needs a summary. " * 10
    server.queue(input=120, output=15, route="cohere.summarize_v1")
    record = one_call(server, tracker, "/v1/summarize", lambda: client.summarize(text=text, model="command"))
    complete(record, 120, 15)
    server.queue(input=121, output=16, route="cohere.summarize_v1")
    record = one_call(server, tracker, "/v1/summarize", lambda: asyncio.run(aclient.summarize(text=text)))
    complete(record, 121, 16)


def test_cohere_v1_classify_is_recorded_unknown_with_its_classifications(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client, aclient = cohere_clients(server)
    inputs = ["great", "awful", "fine"]
    record = one_call(
        server, tracker, "/v1/classify", lambda: client.classify(inputs=inputs, model="embed-english-v3.0")
    )
    assert record.usage.status is tt.UsageStatus.UNKNOWN
    assert "classifications=3" in (record.usage.reason or "")
    record = one_call(
        server, tracker, "/v1/classify", lambda: asyncio.run(aclient.classify(inputs=inputs[:1]))
    )
    assert "classifications=1" in (record.usage.reason or "")
