"""Stream accumulators: final usage is complete, a cut-short stream is partial, no usage is unknown."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from adapter_payloads import Fixture, fixture_id, load, stream_fixtures

from tokentrail import Usage, UsageStatus
from tokentrail.adapters import capture_stream, stream_accumulator, usage_from_stream
from tokentrail.adapters.anthropic import MessageStream
from tokentrail.adapters.gemini import GenerateContentStream
from tokentrail.adapters.openai import ChatStream

STREAMS = stream_fixtures()


def anthropic_events() -> list[Any]:
    return load("anthropic/message_cache_stream.json").events()


# -- complete, partial, unknown -----------------------------------------------------------------------


@pytest.mark.parametrize("fixture", STREAMS, ids=fixture_id)
def test_stream_cut_after_the_second_event_is_never_reported_complete(fixture: Fixture) -> None:
    usage = usage_from_stream(fixture.events()[:2], fixture.capture_provider, aborted=True)
    assert usage.status in (UsageStatus.PARTIAL, UsageStatus.UNKNOWN)
    assert usage.reason


@pytest.mark.parametrize("fixture", STREAMS, ids=fixture_id)
def test_stream_with_every_event_but_closed_as_aborted_keeps_the_final_usage(fixture: Fixture) -> None:
    # The final usage report arrived; stopping after it (e.g. before [DONE]) loses nothing.
    events = [e for e in fixture.events() if e != "[DONE]"]
    usage = usage_from_stream(events, fixture.capture_provider, aborted=True)
    if fixture.name == "mistral/chat_completion_stream.json":
        # Mistral's usage rides on the last content chunk, which cannot be told from a middle one.
        assert usage.status is UsageStatus.PARTIAL
    else:
        assert usage == fixture.expected_usage()


def test_anthropic_cut_after_message_start_is_partial_with_the_input_seen() -> None:
    usage = usage_from_stream(anthropic_events()[:2], aborted=True)
    assert usage.status is UsageStatus.PARTIAL
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (12050, 10000, 1)
    assert "closed early" in (usage.reason or "")


def test_anthropic_stream_ending_without_message_delta_is_partial() -> None:
    events = [e for e in anthropic_events() if e["type"] != "message_delta"]
    assert usage_from_stream(events).status is UsageStatus.PARTIAL


def test_anthropic_cumulative_message_deltas_are_not_added_up() -> None:
    events = anthropic_events()
    delta = next(e for e in events if e["type"] == "message_delta")
    early = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 150}}
    with_two_deltas = [*events[:-2], early, delta, events[-1]]
    assert usage_from_stream(with_two_deltas).output_tokens == 400


def test_anthropic_delta_with_only_output_keeps_the_cache_counts_of_message_start() -> None:
    events = anthropic_events()
    for event in events:
        if event["type"] == "message_delta":
            event["usage"] = {"output_tokens": 400}
    assert usage_from_stream(events) == load("anthropic/message_cache.json").expected_usage()


def test_gemini_takes_the_last_cumulative_usage_not_the_sum() -> None:
    usage = usage_from_stream(load("gemini/stream_generate_content.json").events())
    assert (
        usage.output_tokens == 200 + 800
    )  # last chunk's candidates + thoughts, not 50 + 120 + 200 + 3 * 800


def test_gemini_cut_before_the_finish_reason_is_partial_with_the_last_usage() -> None:
    usage = usage_from_stream(load("gemini/stream_generate_content.json").events()[:2], aborted=True)
    assert (usage.status, usage.output_tokens) == (UsageStatus.PARTIAL, 120 + 800)


def test_openai_chat_stream_without_include_usage_is_unknown_and_says_how_to_fix_it() -> None:
    events = [
        e for e in load("openai/chat_completion_stream.json").events() if e == "[DONE]" or not e["usage"]
    ]
    usage = usage_from_stream(events)
    assert usage.status is UsageStatus.UNKNOWN
    assert "include_usage" in (usage.reason or "")


def test_openai_chat_stream_cut_early_is_unknown_without_the_include_usage_hint() -> None:
    usage = usage_from_stream(load("openai/chat_completion_stream.json").events()[:2], aborted=True)
    assert usage.status is UsageStatus.UNKNOWN
    assert "closed early after 2 events" in (usage.reason or "")
    assert "include_usage" not in (usage.reason or "")


def test_stream_never_closed_reports_that_it_is_still_open() -> None:
    accumulator = stream_accumulator()
    for event in anthropic_events()[:3]:
        accumulator.feed(event)
    usage = accumulator.usage()
    assert usage.status is UsageStatus.PARTIAL
    assert "still open" in (usage.reason or "")


def test_empty_stream_is_unknown() -> None:
    usage = usage_from_stream([])
    assert usage.status is UsageStatus.UNKNOWN
    assert "0 events" in (usage.reason or "")


def test_stream_that_raises_while_iterated_counts_as_aborted() -> None:
    def events() -> Iterator[Any]:
        yield from anthropic_events()[:2]
        raise ConnectionError("peer reset")

    usage = usage_from_stream(events())
    assert usage.status is UsageStatus.PARTIAL
    assert "closed early" in (usage.reason or "")


# -- robustness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "junk",
    [
        None,
        42,
        "not json",
        b"\xff\xfe",
        "data: {broken",
        {"type": 7},
        [],
        object(),
        "event: ping\n\n",
        ": keep-alive",
    ],
)
def test_junk_events_never_raise_and_do_not_spoil_a_good_stream(junk: Any) -> None:
    events = anthropic_events()
    events.insert(3, junk)
    assert usage_from_stream(events) == load("anthropic/message_cache.json").expected_usage()


def test_malformed_final_usage_makes_the_stream_unknown_with_the_reason() -> None:
    events = load("openai/chat_completion_stream.json").events()
    events[-2]["usage"]["completion_tokens"] = -5
    usage = usage_from_stream(events)
    assert usage.status is UsageStatus.UNKNOWN
    assert "completion_tokens is negative" in (usage.reason or "")


def test_gemini_malformed_last_chunk_does_not_leave_an_older_usage_standing() -> None:
    events = load("gemini/stream_generate_content.json").events()
    events[-1]["usageMetadata"]["candidatesTokenCount"] = "200"
    assert usage_from_stream(events).status is UsageStatus.UNKNOWN


def test_accumulator_can_be_chosen_directly() -> None:
    accumulator = MessageStream()
    accumulator.feed_all(anthropic_events())
    accumulator.close()
    assert accumulator.usage() == load("anthropic/message_cache.json").expected_usage()


def test_explicit_provider_names_the_pricing_provider() -> None:
    captured = capture_stream(load("anthropic/message_cache_stream.json").events(), provider="vertex_ai")
    assert captured.provider == "google"
    assert captured.usage == load("anthropic/message_cache.json").expected_usage()


def test_anthropic_events_under_bedrock_are_priced_through_bedrock() -> None:
    captured = capture_stream(anthropic_events(), provider="bedrock")
    assert captured.provider == "bedrock"


def test_mistral_sdk_events_wrapping_chunks_are_unwrapped() -> None:
    chunks = load("mistral/chat_completion_stream.json").events()
    wrapped = [SimpleNamespace(event="message", data=chunk) for chunk in chunks if chunk != "[DONE]"]
    captured = capture_stream(wrapped)
    assert (captured.provider, captured.usage) == (
        "mistral",
        load("mistral/chat_completion.json").expected_usage(),
    )


def test_usage_chunk_before_the_end_is_final_only_when_it_has_no_choices() -> None:
    accumulator = ChatStream()
    accumulator.feed(
        {"choices": [{"delta": {"content": "a"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    )
    accumulator.close(aborted=True)
    assert accumulator.usage().status is UsageStatus.PARTIAL


def test_gemini_stream_closed_normally_after_usage_is_complete() -> None:
    accumulator = GenerateContentStream()
    accumulator.feed({"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}})
    accumulator.close()
    assert accumulator.usage() == Usage(input_tokens=3, output_tokens=2)


def test_ollama_stream_without_the_done_line_is_unknown() -> None:
    events = load("ollama/chat_stream.json").events()[:-1]
    usage = usage_from_stream(events)
    assert usage.status is UsageStatus.UNKNOWN
    assert "ended after 3 events" in (usage.reason or "")
