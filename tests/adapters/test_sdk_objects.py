"""Real SDK response objects (built offline from the golden fixtures) read exactly like the JSON bodies."""

from __future__ import annotations

from typing import Any

import pytest
from adapter_payloads import Fixture, fixture_id, load, response_fixtures, stream_fixtures

from tokentrail.adapters import capture, capture_stream

openai_types = pytest.importorskip("openai.types")
anthropic_types = pytest.importorskip("anthropic.types")
pydantic = pytest.importorskip("pydantic")

from anthropic.types import Message, RawMessageStreamEvent  # noqa: E402
from anthropic.types.messages import MessageBatchIndividualResponse  # noqa: E402
from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402
from openai.types.responses import Response, ResponseStreamEvent  # noqa: E402


def openai_object(body: dict[str, Any]) -> Any:
    if body.get("object") == "response":
        return Response.model_validate(body)
    return ChatCompletion.model_validate(body)


def openai_event(event: Any) -> Any:
    if isinstance(event, dict) and str(event.get("type", "")).startswith("response."):
        return pydantic.TypeAdapter(ResponseStreamEvent).validate_python(event)
    return ChatCompletionChunk.model_validate(event)


def anthropic_event(event: dict[str, Any]) -> Any:
    return pydantic.TypeAdapter(RawMessageStreamEvent).validate_python(event)


def is_plain_message(fixture: Fixture) -> bool:
    return fixture.payload.get("type") == "message"


OPENAI_RESPONSES = [
    f for f in response_fixtures() if f.name.startswith("openai/") and "custom_id" not in f.payload
]
ANTHROPIC_MESSAGES = [
    f for f in response_fixtures() if f.name.startswith(("anthropic/", "bedrock/")) and is_plain_message(f)
]
OPENAI_STREAMS = [f for f in stream_fixtures() if f.name.startswith("openai/")]
ANTHROPIC_STREAMS = [f for f in stream_fixtures() if f.name.startswith("anthropic/")]


@pytest.mark.parametrize("fixture", OPENAI_RESPONSES, ids=fixture_id)
def test_openai_sdk_object_reads_like_its_json_body(fixture: Fixture) -> None:
    assert capture(openai_object(fixture.payload)) == capture(fixture.payload)


@pytest.mark.parametrize("fixture", ANTHROPIC_MESSAGES, ids=fixture_id)
def test_anthropic_sdk_message_reads_like_its_json_body(fixture: Fixture) -> None:
    message = Message.model_validate(fixture.payload)
    assert capture(message, fixture.capture_provider) == capture(fixture.payload, fixture.capture_provider)


def test_anthropic_sdk_message_is_recognized_without_a_provider() -> None:
    message = Message.model_validate(load("anthropic/message_cache.json").payload)
    assert capture(message).provider == "anthropic"


def test_azure_extra_fields_on_an_sdk_object_still_reveal_azure() -> None:
    completion = ChatCompletion.model_validate(load("openai/azure_chat_completion.json").payload)
    assert capture(completion).provider == "azure"


def test_anthropic_sdk_batch_result_is_priced_as_batch() -> None:
    fixture = load("anthropic/batch_result.json")
    result = MessageBatchIndividualResponse.model_validate(fixture.payload)
    captured = capture(result)
    assert captured.usage == fixture.expected_usage()
    assert captured.price_context == fixture.doc["expected_price_context"]


@pytest.mark.parametrize("fixture", OPENAI_STREAMS, ids=fixture_id)
def test_openai_sdk_stream_events_read_like_json_events(fixture: Fixture) -> None:
    events = [openai_event(e) for e in fixture.events() if e != "[DONE]"]
    assert capture_stream(events) == capture_stream(fixture.events())


@pytest.mark.parametrize("fixture", ANTHROPIC_STREAMS, ids=fixture_id)
def test_anthropic_sdk_stream_events_read_like_json_events(fixture: Fixture) -> None:
    events = [anthropic_event(e) for e in fixture.events() if e["type"] != "ping"]
    assert capture_stream(events) == capture_stream(fixture.events())


def test_anthropic_sdk_stream_cut_after_message_start_is_partial() -> None:
    events = [anthropic_event(e) for e in load("anthropic/message_cache_stream.json").events()[:2]]
    captured = capture_stream(events, aborted=True)
    assert captured.usage.status.value == "partial"
    assert captured.usage.input_tokens == 12050


def _outcome(read: Any, response: Any) -> Any:
    """What an extractor makes of `response`: its Captured, or the reason it could not read it."""
    from tokentrail.adapters._base import Malformed

    try:
        return read(response, "openai")
    except Malformed as exc:
        return ("malformed", exc.reason)


CHAT_COMPLETIONS = [f for f in OPENAI_RESPONSES if f.payload.get("object") == "chat.completion"]

# values the SDK hands over unvalidated (it builds responses without validation) at each count's place
ODD_COUNTS: list[Any] = [None, -1, 2**63, 2**64, 3.0, 2.5, float("nan"), True, "12", [1], {"a": 1}]
COUNT_PLACES = [
    ("prompt_tokens",),
    ("completion_tokens",),
    ("total_tokens",),
    ("prompt_tokens_details", "cached_tokens"),
    ("prompt_tokens_details", "audio_tokens"),
    ("prompt_tokens_details", "image_tokens"),
    ("completion_tokens_details", "reasoning_tokens"),
    ("completion_tokens_details", "image_tokens"),
]


@pytest.mark.parametrize("fixture", CHAT_COMPLETIONS, ids=fixture_id)
def test_openai_sdk_chat_completion_fast_read_matches_the_field_by_field_read(fixture: Fixture) -> None:
    from tokentrail.adapters import openai as adapter

    completion = ChatCompletion.model_validate(fixture.payload)
    assert adapter.sdk_chat_completion(completion, "openai") is not None  # the fast path was taken
    assert _outcome(adapter.extract, completion) == _outcome(adapter.extract_fields, completion)


@pytest.mark.parametrize("place", COUNT_PLACES, ids=".".join)
@pytest.mark.parametrize("value", ODD_COUNTS, ids=repr)
def test_openai_sdk_chat_completion_with_an_odd_count_reads_like_the_field_by_field_read(
    place: tuple[str, ...], value: Any
) -> None:
    from tokentrail.adapters import openai as adapter

    body = load("openai/chat_completion.json").payload
    usage = dict(body["usage"])
    body = {**body, "usage": usage}
    if len(place) == 1:
        usage[place[0]] = value
    else:
        usage[place[0]] = {**(usage.get(place[0]) or {}), place[1]: value}
    completion = ChatCompletion.construct(**body)  # unvalidated, as the SDK builds its responses
    completion.usage = openai_types.CompletionUsage.construct(**usage)
    for name in ("prompt_tokens_details", "completion_tokens_details"):
        details = usage.get(name)
        if isinstance(details, dict):
            kind = openai_types.completion_usage
            model = kind.PromptTokensDetails if name.startswith("prompt") else kind.CompletionTokensDetails
            setattr(completion.usage, name, model.construct(**details))
    assert _outcome(adapter.extract, completion) == _outcome(adapter.extract_fields, completion)


def test_openai_sdk_chat_completion_extra_fields_are_read_like_declared_ones() -> None:
    from tokentrail.adapters import openai as adapter

    body = load("openai/chat_completion.json").payload
    usage = {**body["usage"], "completion_tokens_details": {"reasoning_tokens": 3, "image_tokens": 2}}
    completion = ChatCompletion.model_validate({**body, "usage": usage})
    captured = adapter.sdk_chat_completion(completion, "openai")
    assert captured is not None
    assert captured.usage.output_image_tokens == 2
    assert captured == adapter.extract_fields(completion, "openai")


@pytest.mark.parametrize("fixture", CHAT_COMPLETIONS, ids=fixture_id)
def test_openai_json_chat_completion_fast_read_matches_the_field_by_field_read(fixture: Fixture) -> None:
    from tokentrail.adapters import openai as adapter

    body = fixture.payload
    assert adapter.plain_chat_completion(body, dict.get, adapter._is_dict, "openai") is not None
    assert _outcome(adapter.extract, body) == _outcome(adapter.extract_fields, body)


def _with_count(body: dict[str, Any], place: tuple[str, ...], value: Any) -> dict[str, Any]:
    usage = dict(body["usage"])
    if len(place) == 1:
        usage[place[0]] = value
    else:
        usage[place[0]] = {**(usage.get(place[0]) or {}), place[1]: value}
    return {**body, "usage": usage}


@pytest.mark.parametrize("place", COUNT_PLACES, ids=".".join)
@pytest.mark.parametrize("value", [*ODD_COUNTS, 0, 10**9], ids=repr)
def test_openai_json_chat_completion_with_an_odd_count_reads_like_the_field_by_field_read(
    place: tuple[str, ...], value: Any
) -> None:
    from tokentrail.adapters import openai as adapter

    body = _with_count(load("openai/chat_completion.json").payload, place, value)
    assert _outcome(adapter.extract, body) == _outcome(adapter.extract_fields, body)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": [1]},
        {"prompt_tokens": 10, "completion_tokens": 4, "completion_tokens_details": None},
        {"prompt_tokens": 5, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 6}},
        {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "total_tokens": 24,
            "completion_tokens_details": {"reasoning_tokens": 10},
        },
        {
            "prompt_tokens": 10,
            "completion_tokens": 2**63 - 5,
            "completion_tokens_details": {"reasoning_tokens": 2**63 - 1},
        },
    ],
    ids=[
        "details-not-an-object",
        "null-details",
        "more-cached-than-prompt",
        "reasoning-outside",
        "sum-too-large",
    ],
)
@pytest.mark.parametrize("model", ["gpt-4o", "grok-3-mini"])
def test_openai_chat_usage_fast_read_matches_the_field_by_field_read(
    usage: dict[str, Any], model: str
) -> None:
    """A chat stream's usage chunk (and any `chat_usage` caller) reads a JSON usage like `chat_counts`."""
    from tokentrail.adapters import openai as adapter
    from tokentrail.adapters._base import Fields, build_usage

    def fast() -> Any:
        return adapter.chat_usage(Fields(usage, "usage"), "openai", model)

    def full() -> Any:
        return build_usage(**adapter.chat_counts(Fields(usage, "usage"), "openai", model))

    assert _outcome(lambda _response, _provider: fast(), None) == _outcome(lambda _r, _p: full(), None)


def test_openrouter_cost_is_read_from_an_sdk_chat_completion_too() -> None:
    from decimal import Decimal

    from tokentrail.adapters import openai as adapter

    body = load("openai/chat_completion.json").payload
    completion = ChatCompletion.model_validate({**body, "usage": {**body["usage"], "cost": 0.00042}})
    assert adapter.extract(completion, "openrouter").provider_cost == Decimal("0.00042")
    assert adapter.extract(completion, "openrouter") == adapter.extract_fields(completion, "openrouter")
