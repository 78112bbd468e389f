"""The whole openai / anthropic surface under `instrument()`: however a method is called — plain,
`with_raw_response`, `with_streaming_response`, `.parse()`, `beta.*` — each call reaching the mock server
is recorded exactly once with the usage the server sent, and the caller reads exactly what it would
have read without tokentrail."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import anthropic
import openai
import pytest
from pydantic import BaseModel
from stainless_clients import CLAUDE, GPT, MESSAGES, ant, oai

import tokentrail as tt
from tokentrail.adapters import wrap
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker


def usages(tracker: Tracker) -> list[tt.Usage]:
    return [record.usage for record in tracker.history()]


def made(server: MockLLMServer, before: int) -> int:
    return len(server.requests) - before


# -- with_raw_response: what LangChain's invoke and stream do ------------------------------------------------


def test_raw_response_plain_call_is_recorded_when_parsed(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(input=1200, output=80, cache_read=1024, route="openai.chat")
    raw = oai(server).chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES)
    completion = raw.parse()
    assert type(completion).__name__ == "ChatCompletion" and completion.usage.prompt_tokens == 1200
    assert raw.http_response.json()["usage"]["completion_tokens"] == 80  # the body is still the caller's
    (record,) = tracker.history()
    assert record.usage == tt.Usage(1200, 80, cache_read_tokens=1024)
    assert record.model == GPT and record.provider == "openai" and record.priced


def test_raw_response_recorded_even_if_never_parsed(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(input=300, output=20, route="anthropic")
    raw = ant(server).messages.with_raw_response.create(model=CLAUDE, max_tokens=64, messages=MESSAGES)
    assert raw.status_code == 200
    assert usages(tracker) == [tt.Usage(300, 20)]


def test_raw_response_stream_is_recorded_as_the_caller_reads_it(
    server: MockLLMServer, tracker: Tracker
) -> None:
    server.queue(input=900, output=60, cache_read=512, route="openai.chat")
    raw = oai(server).chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES, stream=True)
    assert tracker.history() == []  # nothing read yet
    chunks = list(raw.parse())
    assert chunks[-1].usage.prompt_tokens == 900  # include_usage asked for: the usage chunk arrives
    assert server.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    (record,) = tracker.history()
    assert record.usage == tt.Usage(900, 60, cache_read_tokens=512)
    assert record.usage.status is tt.UsageStatus.COMPLETE
    assert record.ttft_ms is not None and record.ttft_ms <= record.duration_ms  # type: ignore[operator]


def test_anthropic_raw_stream_and_beta_messages(server: MockLLMServer, tracker: Tracker) -> None:
    client = ant(server)
    server.queue(input=1500, output=50, cache_read=1000, cache_write=200, route="anthropic")
    raw = client.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=99, messages=MESSAGES, stream=True
    )
    events = list(raw.parse())
    assert events[0].type == "message_start"
    server.queue(input=400, output=25, route="anthropic")
    message = client.beta.messages.create(model=CLAUDE, max_tokens=99, messages=MESSAGES)
    assert message.usage.output_tokens == 25
    server.queue(input=700, output=35, route="anthropic")
    raw = client.beta.messages.with_raw_response.create(model=CLAUDE, max_tokens=99, messages=MESSAGES)
    raw.parse()
    assert usages(tracker) == [
        tt.Usage(1500, 50, cache_read_tokens=1000, cache_write_tokens=200),
        tt.Usage(400, 25),
        tt.Usage(700, 35),
    ]


def test_raw_responses_api_sync_and_async(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(input=500, output=40, route="openai.responses")
    oai(server).responses.with_raw_response.create(model=GPT, input="Summarize the ledger").parse()

    async def run() -> None:
        client = oai(server, openai.AsyncOpenAI)
        server.queue(input=600, output=30, route="openai.responses")
        raw = await client.responses.with_raw_response.create(model=GPT, input="hi", stream=True)
        async for _ in raw.parse():
            pass
        claude = ant(server, anthropic.AsyncAnthropic)
        server.queue(input=200, output=20, route="anthropic")
        raw = await claude.messages.with_raw_response.create(model=CLAUDE, max_tokens=9, messages=MESSAGES)
        raw.parse()

    asyncio.run(run())
    assert usages(tracker) == [tt.Usage(500, 40), tt.Usage(600, 30), tt.Usage(200, 20)]


# -- with_streaming_response: what the Agents SDK's streamed runs do ------------------------------------------


def test_streaming_response_parsed_into_a_stream(server: MockLLMServer, tracker: Tracker) -> None:
    async def run() -> list[Any]:
        client = oai(server, openai.AsyncOpenAI)
        server.queue(input=700, output=30, route="openai.responses")
        async with client.responses.with_streaming_response.create(model=GPT, input="hi", stream=True) as raw:
            stream = await raw.parse()
            return [event async for event in stream]

    events = asyncio.run(run())
    assert events[-1].type == "response.completed"
    (record,) = tracker.history()
    assert record.usage == tt.Usage(700, 30) and record.usage.status is tt.UsageStatus.COMPLETE


def test_streaming_response_read_line_by_line(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(input=400, output=25, route="anthropic")
    client = ant(server)
    with client.messages.with_streaming_response.create(
        model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True
    ) as raw:
        lines = list(raw.iter_lines())
    data = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    assert data[0]["type"] == "message_start" and data[-1]["type"] == "message_stop"
    assert usages(tracker) == [tt.Usage(400, 25)]


def test_streaming_response_of_a_plain_call(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(input=800, output=10, route="openai.chat")
    with oai(server).chat.completions.with_streaming_response.create(model=GPT, messages=MESSAGES) as raw:
        body = raw.json()
    assert body["usage"]["prompt_tokens"] == 800
    server.queue(input=100, output=5, route="openai.chat")
    with oai(server).chat.completions.with_streaming_response.create(model=GPT, messages=MESSAGES) as raw:
        pass  # closed without reading the body: the call is still there, its usage unknown
    gc.collect()
    first, second = tracker.history()
    assert first.usage == tt.Usage(800, 10)
    assert second.usage.status is tt.UsageStatus.UNKNOWN and second.usage.reason
    assert second.cost is None


def test_streaming_response_cut_short_is_partial(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(input=800, output=40, route="anthropic")
    with ant(server).messages.with_streaming_response.create(
        model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True
    ) as raw:
        stream = raw.parse()
        for index, _ in enumerate(stream):
            if index == 1:
                break
        stream.close()
    gc.collect()
    (record,) = tracker.history()
    assert record.usage.status is tt.UsageStatus.PARTIAL and record.usage.input_tokens == 800


# -- parse() helpers, beta namespaces --------------------------------------------------------------------------


class Answer(BaseModel):
    text: str


def test_structured_output_parse_helpers(server: MockLLMServer, tracker: Tracker) -> None:
    client = oai(server)
    server.queue(input=300, output=12, route="openai.chat", text='{"text": "ok"}')
    parsed = client.chat.completions.parse(model=GPT, messages=MESSAGES, response_format=Answer)
    assert parsed.choices[0].message.parsed == Answer(text="ok")
    server.queue(input=310, output=13, route="openai.responses", text='{"text": "ok"}')
    response = client.responses.parse(model=GPT, input="hi", text_format=Answer)
    assert response.output_parsed == Answer(text="ok")
    assert usages(tracker) == [tt.Usage(300, 12), tt.Usage(310, 13)]


# -- one record per call, whatever the layering -------------------------------------------------------------


def test_every_way_of_calling_gives_one_record_per_request(server: MockLLMServer, tracker: Tracker) -> None:
    client, claude = oai(server), ant(server)
    before = len(server.requests)
    client.chat.completions.create(model=GPT, messages=MESSAGES)
    list(client.chat.completions.create(model=GPT, messages=MESSAGES, stream=True))
    client.chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES).parse()
    with client.chat.completions.stream(model=GPT, messages=MESSAGES) as stream:
        stream.get_final_completion()
    with client.responses.stream(model=GPT, input="hi") as stream:
        stream.get_final_response()
    with claude.messages.stream(model=CLAUDE, max_tokens=9, messages=MESSAGES) as stream:
        stream.get_final_message()
    with claude.beta.messages.stream(model=CLAUDE, max_tokens=9, messages=MESSAGES) as stream:
        stream.get_final_message()
    records = tracker.history()
    assert len(records) == made(server, before) == 7
    assert all(r.usage.status is tt.UsageStatus.COMPLETE for r in records)


def test_requests_that_are_not_billable_pass_untouched(server: MockLLMServer, tracker: Tracker) -> None:
    client = oai(server)
    with pytest.raises(openai.NotFoundError):
        client.models.list()  # not a billable path: not tracked, and the error is the SDK's own
    assert tracker.history() == []
    assert tracker._shared.error_counts.get("call_errors", 0) == 0


def test_wrapped_client_copies_stay_wrapped(server: MockLLMServer) -> None:
    mine = Tracker(capture="sync")
    client = wrap(oai(server), mine)
    client.with_options(timeout=5).chat.completions.create(model=GPT, messages=MESSAGES)
    client.chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES).parse()
    assert len(mine.history()) == 2


# -- the other usage-bearing endpoints -------------------------------------------------------------------------


def test_embeddings_sync_and_async(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(input=42, route="openai.embeddings")
    result = oai(server).embeddings.create(model="text-embedding-3-small", input="ledger")
    assert result.usage.prompt_tokens == 42

    async def run() -> None:
        server.queue(input=17, route="openai.embeddings")
        await oai(server, openai.AsyncOpenAI).embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["a", "b"]
        )

    asyncio.run(run())
    first, second = tracker.history()
    assert (first.usage, second.usage) == (tt.Usage(42, 0), tt.Usage(17, 0))
    assert first.model == "text-embedding-3-small" and first.priced
    assert first.cost == tt.price(tt.Usage(42, 0), "text-embedding-3-small", "openai").total


def test_legacy_completions_plain_and_streamed(server: MockLLMServer, tracker: Tracker) -> None:
    client = oai(server)
    server.queue(input=120, output=30, route="openai.completions")
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    server.queue(input=120, output=30, route="openai.completions")
    list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True))
    assert server.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    assert usages(tracker) == [tt.Usage(120, 30), tt.Usage(120, 30)]
    assert all(r.usage.status is tt.UsageStatus.COMPLETE for r in tracker.history())


def test_images_report_text_and_image_tokens(server: MockLLMServer, tracker: Tracker) -> None:
    client = oai(server)
    result = client.images.generate(model="gpt-image-1", prompt="a ledger")
    (record,) = tracker.history()
    usage = result.usage
    assert usage is not None
    assert record.usage.input_tokens == usage.input_tokens
    assert record.usage.input_image_tokens == usage.input_tokens_details.image_tokens
    assert record.usage.output_tokens == record.usage.output_image_tokens == usage.output_tokens
    client.images.generate(model="dall-e-3", prompt="a ledger")  # reports no usage: unknown, never $0
    dalle = tracker.history()[1]
    assert dalle.usage.status is tt.UsageStatus.UNKNOWN and dalle.cost is None


def test_transcriptions_plain_and_streamed(server: MockLLMServer, tracker: Tracker) -> None:
    client = oai(server)
    audio = ("speech.wav", b"RIFF" + bytes(64), "audio/wav")
    result = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio)
    stream = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio, stream=True)
    events = list(stream)
    assert events[-1].type == "transcript.text.done"
    plain, streamed = tracker.history()
    assert result.usage is not None and result.usage.type == "tokens"
    assert plain.usage.input_tokens == result.usage.input_tokens
    assert plain.usage.input_audio_tokens == result.usage.input_token_details.audio_tokens  # type: ignore[union-attr]
    assert streamed.usage == plain.usage and streamed.usage.status is tt.UsageStatus.COMPLETE


def test_whisper_transcription_billed_by_duration_is_unknown_with_the_reason(
    server: MockLLMServer, tracker: Tracker
) -> None:
    oai(server).audio.transcriptions.create(
        model="whisper-1", file=("a.wav", b"RIFF" + bytes(64), "audio/wav")
    )
    (record,) = tracker.history()
    assert record.usage.status is tt.UsageStatus.UNKNOWN and "duration" in (record.usage.reason or "")


# -- a response fetched again is recorded once -------------------------------------------------------------------


def test_background_response_is_recorded_once_when_seen_finished(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = oai(server)
    server.queue(input=900, output=45, route="openai.responses", pending_polls=1)
    queued = client.responses.create(model=GPT, input="long task", background=True)
    assert queued.status == "queued" and tracker.history() == []
    assert client.responses.retrieve(queued.id).status == "in_progress"
    assert tracker.history() == []
    done = client.responses.retrieve(queued.id)
    assert done.status == "completed"
    client.responses.retrieve(queued.id)  # fetched again: the same response, not another call
    client.responses.with_raw_response.retrieve(queued.id).parse()
    (record,) = tracker.history()
    assert record.usage == tt.Usage(900, 45) and record.model == GPT


def test_a_resumed_background_stream_is_recorded_once(server: MockLLMServer, tracker: Tracker) -> None:
    client = oai(server)
    server.queue(input=500, output=40, route="openai.responses")
    stream = client.responses.create(model=GPT, input="long task", background=True, stream=True)
    seen = []
    for event in stream:
        seen.append(event)
        if len(seen) == 3:
            break  # the connection drops part-way
    stream.close()
    assert tracker.history() == []  # a background response goes on: not recorded as partial
    response_id = seen[0].response.id
    resumed = client.responses.retrieve(response_id, stream=True, starting_after=seen[-1].sequence_number)
    rest = list(resumed)
    assert rest[-1].type == "response.completed"
    client.responses.retrieve(response_id)
    (record,) = tracker.history()
    assert record.usage == tt.Usage(500, 40) and record.usage.status is tt.UsageStatus.COMPLETE


def test_a_foreground_response_retrieved_later_is_not_counted_again(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = oai(server)
    server.queue(input=300, output=30, route="openai.responses")
    response = client.responses.create(model=GPT, input="hi")
    client.responses.retrieve(response.id)
    assert usages(tracker) == [tt.Usage(300, 30)]


def test_streamed_image_generation(server: MockLLMServer, tracker: Tracker) -> None:
    events = list(
        oai(server).images.generate(model="gpt-image-1", prompt="a ledger", stream=True, partial_images=1)
    )
    completed = events[-1]
    assert completed.type == "image_generation.completed"
    (record,) = tracker.history()
    assert record.usage.status is tt.UsageStatus.COMPLETE
    assert record.usage.output_tokens == completed.usage.output_tokens
    assert record.ttft_ms is not None  # the partial image is the first content


def test_speech_reports_usage_only_as_server_sent_events(server: MockLLMServer, tracker: Tracker) -> None:
    client = oai(server)
    audio = client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Tokens are counted.")
    assert len(audio.content) == 4096
    client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Tokens.", stream_format="sse")
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input="Tokens.", stream_format="sse"
    ) as raw:
        lines = list(raw.iter_lines())
    assert any("speech.audio.done" in line for line in lines)

    async def run() -> None:
        aclient = oai(server, openai.AsyncOpenAI)
        await aclient.audio.speech.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Tokens.", stream_format="sse"
        )

    asyncio.run(run())
    plain, sse, streamed, asynchronous = tracker.history()
    assert plain.usage.status is tt.UsageStatus.UNKNOWN and "stream_format" in (plain.usage.reason or "")
    for record in (sse, streamed, asynchronous):
        assert record.usage.status is tt.UsageStatus.COMPLETE, record.usage
        assert record.usage.output_audio_tokens == record.usage.output_tokens > 0
        assert record.model == "gpt-4o-mini-tts"
    assert sse.usage == streamed.usage == asynchronous.usage
