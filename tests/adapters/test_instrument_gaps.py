"""The methods `instrument()` used to list as "not tracked yet", made by the real SDKs against the local
MockLLMServer: Mistral's Responses API and text-to-speech (mistralai 3.7.0), Bedrock InvokeGuardrailChecks
(boto3), Ollama System One (ollama 0.6.3). Plain, async and streamed where the SDK has them: one record per
request the server counted, with exactly the usage the response reports (or `unknown` with the reason).
`tracker` (conftest) is fed by `instrument()` on its capture worker."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest
from instrument_drivers import bedrock_client
from sdk_calls import complete, one_call

import tokentrail as tt
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

MODEL = "mistral-medium-latest"
TTS = "voxtral-mini-tts-2603"
SPOKEN = "Your order shipped this morning."  # 32 characters


def mistral(server: MockLLMServer) -> Any:
    from mistralai.client import Mistral

    return Mistral(api_key="test", server_url=server.base)


async def drain(stream: Any) -> list[Any]:
    return [event async for event in stream]


# -- mistralai Responses API ----------------------------------------------------------------------------


def test_mistral_responses_create_plain_reads_the_responses_usage(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = mistral(server)
    server.queue(input=40, output=9, cache_read=16, cache_write=8, reasoning=3, route="mistral.responses")
    response: list[Any] = []
    record = one_call(
        server,
        tracker,
        "/v1/responses",
        lambda: response.append(client.responses.create(model=MODEL, input="Summarize the recording.")),
    )
    complete(record, 40, 9)
    assert (record.usage.cache_read_tokens, record.usage.cache_write_tokens) == (16, 8)
    assert record.usage.reasoning_tokens == 3
    assert (record.provider, record.model) == ("mistral", MODEL)
    assert response[0].usage.input_tokens == 40  # the caller's response is the SDK's own, untouched
    assert record.cost is not None and record.cost > 0


def test_mistral_responses_create_async(server: MockLLMServer, tracker: Tracker) -> None:
    client = mistral(server)
    server.queue(input=12, output=4, route="mistral.responses")
    record = one_call(
        server,
        tracker,
        "/v1/responses",
        lambda: asyncio.run(client.responses.create_async(model=MODEL, input="hi")),
    )
    complete(record, 12, 4)


def test_mistral_responses_stream_sync_records_the_completed_usage_once(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = mistral(server)
    server.queue(input=25, output=7, cache_read=5, route="mistral.responses")
    events: list[Any] = []
    record = one_call(
        server,
        tracker,
        "/v1/responses",
        lambda: events.extend(client.responses.create(model=MODEL, input="hi", stream=True)),
    )
    complete(record, 25, 7)
    assert record.usage.cache_read_tokens == 5
    assert record.model == MODEL
    assert record.ttft_ms is not None  # the first text delta was seen
    assert events[0].event == "response.created"  # the caller read every event
    assert events[-1].event == "response.completed"


def test_mistral_responses_stream_async(server: MockLLMServer, tracker: Tracker) -> None:
    client = mistral(server)
    server.queue(input=30, output=11, route="mistral.responses")

    async def call() -> list[Any]:
        return await drain(await client.responses.create_async(model=MODEL, input="hi", stream=True))

    events: list[Any] = []
    record = one_call(server, tracker, "/v1/responses", lambda: events.extend(asyncio.run(call())))
    complete(record, 30, 11)
    assert events[-1].event == "response.completed"


def test_mistral_responses_without_usage_is_unknown_not_zero(server: MockLLMServer, tracker: Tracker) -> None:
    client = mistral(server)
    server.queue(omit_usage=True, route="mistral.responses")
    record = one_call(
        server, tracker, "/v1/responses", lambda: client.responses.create(model=MODEL, input="x")
    )
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert "has no usage" in (record.usage.reason or "")


def test_mistral_responses_stream_left_early_is_partial_or_unknown_never_complete(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = mistral(server)
    server.queue(input=30, output=11, route="mistral.responses")

    def call() -> None:
        stream = client.responses.create(model=MODEL, input="hi", stream=True)
        next(iter(stream))
        stream.close()

    record = one_call(server, tracker, "/v1/responses", call)
    assert record.usage.status != tt.UsageStatus.COMPLETE


# -- mistralai text-to-speech ---------------------------------------------------------------------------


def test_mistral_speech_plain_is_unknown_with_the_characters_sent(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = mistral(server)
    response: list[Any] = []
    record = one_call(
        server,
        tracker,
        "/v1/audio/speech",
        lambda: response.append(client.audio.speech.complete(model=TTS, input=SPOKEN, voice_id="gb_jane")),
    )
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert "priced per character of input (32 characters)" in (record.usage.reason or "")
    assert (record.provider, record.model, record.cost) == ("mistral", TTS, None)
    assert response[0].audio_data  # the caller still gets its audio


def test_mistral_speech_async(server: MockLLMServer, tracker: Tracker) -> None:
    client = mistral(server)
    record = one_call(
        server,
        tracker,
        "/v1/audio/speech",
        lambda: asyncio.run(client.audio.speech.complete_async(model=TTS, input="Hi")),
    )
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert "(2 characters)" in (record.usage.reason or "")


def test_mistral_speech_stream_sync_and_async_name_the_reported_tokens(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = mistral(server)
    server.queue(input=9, output=310, route="mistral.speech")
    events: list[Any] = []
    record = one_call(
        server,
        tracker,
        "/v1/audio/speech",
        lambda: events.extend(client.audio.speech.complete(model=TTS, input=SPOKEN, stream=True)),
    )
    assert record.usage.status == tt.UsageStatus.UNKNOWN  # not `partial`: the stream was read to its end
    assert "the stream reported 9 prompt and 310 completion tokens" in (record.usage.reason or "")
    assert events[-1].event == "speech.audio.done"
    assert record.model == TTS
    server.queue(input=3, output=90, route="mistral.speech")

    async def call() -> list[Any]:
        return await drain(await client.audio.speech.complete_async(model=TTS, input="Hi", stream=True))

    record = one_call(server, tracker, "/v1/audio/speech", lambda: asyncio.run(call()))
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert "3 prompt and 90 completion tokens" in (record.usage.reason or "")


def test_mistral_wrap_tracks_speech_and_responses_of_that_client_only(server: MockLLMServer) -> None:
    tracker = Tracker(capture="sync")
    wrapped = tt.wrap(mistral(server), tracker)
    other = mistral(server)
    server.queue(input=6, output=2, route="mistral.responses")
    complete(
        one_call(server, tracker, "/v1/responses", lambda: wrapped.responses.create(model=MODEL, input="a")),
        6,
        2,
    )
    record = one_call(
        server, tracker, "/v1/audio/speech", lambda: wrapped.audio.speech.complete(model=TTS, input="abc")
    )
    assert "(3 characters)" in (record.usage.reason or "")
    before = len(server.requests)
    other.audio.speech.complete(model=TTS, input="abc")
    other.responses.create(model=MODEL, input="a")
    assert len(server.requests) == before + 2
    assert len(tracker.history()) == 2  # the unwrapped client's calls are not recorded


# -- ollama System One ----------------------------------------------------------------------------------

QUESTIONS: dict[str, Any] = {
    "label": {
        "type": "choice",
        "instructions": "Which label fits this ticket?",
        "criteria": {"billing": "Payments and refunds", "bug": "Software errors"},
    },
    "urgent": {"type": "noul", "instructions": "Does it need action today?"},
    "severity": {"type": "score", "instructions": "How severe is it?", "criteria": ["low", "high"]},
}


def test_ollama_systemone_sync_and_async_record_the_reported_usage(
    server: MockLLMServer, tracker: Tracker
) -> None:
    import ollama

    server.queue(input=174, route="systemone.ollama")
    answer: list[Any] = []
    record = one_call(
        server,
        tracker,
        "/v1/systemone",
        lambda: answer.append(
            ollama.Client(host=server.base).systemone("nimble", "Checkout returns 500s.", QUESTIONS)
        ),
    )
    complete(record, 174, 3)  # one output token per question
    assert (record.provider, record.model) == ("ollama", "nimble")
    assert answer[0].usage.input_tokens == 174
    assert record.cost is None  # a local model: unpriced, never $0
    server.queue(input=40, output=1, route="systemone.ollama")
    aclient = ollama.AsyncClient(host=server.base)
    record = one_call(
        server,
        tracker,
        "/v1/systemone",
        lambda: asyncio.run(
            aclient.systemone(model="nimble", state={"ticket": 1}, questions={"urgent": QUESTIONS["urgent"]})
        ),
    )
    complete(record, 40, 1)


# -- boto3 bedrock-runtime InvokeGuardrailChecks --------------------------------------------------------


def test_bedrock_invoke_guardrail_checks_is_unknown_with_its_text_units(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = bedrock_client(server)
    response: dict[str, Any] = {}

    def call() -> None:
        response.update(
            client.invoke_guardrail_checks(
                messages=[{"role": "user", "content": [{"text": "x" * 1500}]}],
                checks={
                    "contentFilter": {"categories": [{"category": "HATE"}]},
                    "promptAttack": {"categories": [{"category": "JAILBREAK"}]},
                },
            )
        )

    record = one_call(server, tracker, "/guardrail-checks/invoke", call)
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert "text units (contentFilter=2, promptAttack=2)" in (record.usage.reason or "")
    assert (record.provider, record.cost) == ("bedrock", None)
    assert response["usage"] == {"contentFilter": {"textUnits": 2}, "promptAttack": {"textUnits": 2}}


def test_bedrock_guardrail_checks_without_text_units_is_unknown_saying_so() -> None:
    usage = tt.usage_from_response({"usage": {"sensitiveInformation": {}}}, provider="bedrock")
    assert usage.status == tt.UsageStatus.UNKNOWN
    assert "textUnits" in (usage.reason or "")


# -- the coverage tables --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "methods"),
    [
        (
            "_instrument_mistral",
            {"Responses.create", "Responses.create_async", "Speech.complete", "Speech.complete_async"},
        ),
        ("_instrument_ollama", {"Client.systemone", "AsyncClient.systemone"}),
        ("_instrument_bedrock", {"InvokeGuardrailChecks"}),
    ],
)
def test_the_gaps_are_on_the_surface_and_tracked(table: str, methods: set[str]) -> None:
    module = importlib.import_module(f"tokentrail.adapters.{table}")
    assert methods <= set(module.surface())
    assert methods <= module.tracked()
    assert not methods & set(module.NOT_TRACKED)
