"""Properties that hold for any payload: capture never raises; valid counts map by the documented rules;
a stream and the same call unstreamed agree."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tokentrail import Usage, UsageStatus
from tokentrail.adapters import capture, stream_accumulator, usage_from_response, usage_from_stream

COUNT = st.integers(min_value=0, max_value=10**9)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
USAGE_KEYS = st.sampled_from(
    [
        "usage",
        "usageMetadata",
        "prompt_tokens",
        "completion_tokens",
        "input_tokens",
        "output_tokens",
        "prompt_tokens_details",
        "cached_tokens",
        "cache_read_input_tokens",
        "cache_creation",
        "promptTokenCount",
        "promptTokensDetails",
        "modality",
        "tokenCount",
        "inputTokens",
        "cacheDetails",
        "ttl",
        "billed_units",
        "eval_count",
        "done",
        "type",
        "object",
        "model",
        "custom_id",
        "response",
        "result",
        "body",
        "message",
        "chunk",
        "bytes",
        "_hidden_params",
    ]
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(USAGE_KEYS, children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(
    payload=JSON, provider=st.none() | st.sampled_from(["openai", "anthropic", "gemini", "bedrock", "cohere"])
)
def test_capture_never_raises_and_unknown_always_has_a_reason(payload: Any, provider: str | None) -> None:
    usage = capture(payload, provider).usage
    assert isinstance(usage, Usage)
    if usage.status is UsageStatus.UNKNOWN:
        assert usage.reason


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(JSON | st.text(max_size=30) | st.binary(max_size=30), max_size=8), aborted=st.booleans()
)
def test_stream_accumulators_never_raise(events: list[Any], aborted: bool) -> None:
    accumulator = stream_accumulator()
    for event in events:
        accumulator.feed(event)
    accumulator.close(aborted=aborted)
    usage = accumulator.usage()
    assert isinstance(usage, Usage)
    if usage.status is not UsageStatus.COMPLETE:
        assert usage.reason


@given(prompt=COUNT, completion=COUNT, data=st.data())
def test_openai_counts_pass_through_with_subsets_inside(
    prompt: int, completion: int, data: st.DataObject
) -> None:
    cached = data.draw(st.integers(0, prompt))
    reasoning = data.draw(st.integers(0, completion))
    usage = usage_from_response(
        {
            "object": "chat.completion",
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "prompt_tokens_details": {"cached_tokens": cached},
                "completion_tokens_details": {"reasoning_tokens": reasoning},
            },
        }
    )
    assert usage == Usage(
        input_tokens=prompt, output_tokens=completion, cache_read_tokens=cached, reasoning_tokens=reasoning
    )


@given(uncached=COUNT, read=COUNT, five_minutes=COUNT, one_hour=COUNT, output=COUNT)
def test_anthropic_input_is_the_sum_of_its_three_disjoint_parts(
    uncached: int, read: int, five_minutes: int, one_hour: int, output: int
) -> None:
    usage = usage_from_response(
        {
            "type": "message",
            "usage": {
                "input_tokens": uncached,
                "cache_read_input_tokens": read,
                "cache_creation_input_tokens": five_minutes + one_hour,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": five_minutes,
                    "ephemeral_1h_input_tokens": one_hour,
                },
                "output_tokens": output,
            },
        }
    )
    assert usage.input_tokens == uncached + read + five_minutes + one_hour
    assert usage.uncached_input_tokens == uncached
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (five_minutes + one_hour, one_hour)


@given(prompt=COUNT, candidates=COUNT, thoughts=COUNT, tool_prompt=COUNT, data=st.data())
def test_gemini_output_adds_thoughts_and_input_adds_tool_prompts(
    prompt: int, candidates: int, thoughts: int, tool_prompt: int, data: st.DataObject
) -> None:
    cached = data.draw(st.integers(0, prompt))
    usage = usage_from_response(
        {
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": candidates,
                "thoughtsTokenCount": thoughts,
                "toolUsePromptTokenCount": tool_prompt,
                "cachedContentTokenCount": cached,
            }
        }
    )
    assert (usage.input_tokens, usage.output_tokens) == (prompt + tool_prompt, candidates + thoughts)
    assert (usage.cache_read_tokens, usage.reasoning_tokens) == (cached, thoughts)


@given(uncached=COUNT, read=COUNT, write=COUNT, output=COUNT)
def test_bedrock_input_adds_cache_reads_and_writes(uncached: int, read: int, write: int, output: int) -> None:
    usage = usage_from_response(
        {
            "usage": {
                "inputTokens": uncached,
                "outputTokens": output,
                "cacheReadInputTokens": read,
                "cacheWriteInputTokens": write,
            }
        }
    )
    assert usage.input_tokens == uncached + read + write
    assert usage.uncached_input_tokens == uncached


@given(uncached=COUNT, read=COUNT, write=COUNT, output=COUNT, steps=st.lists(COUNT, max_size=4))
def test_anthropic_stream_equals_the_same_message_unstreamed(
    uncached: int, read: int, write: int, output: int, steps: list[int]
) -> None:
    base = {"input_tokens": uncached, "cache_read_input_tokens": read, "cache_creation_input_tokens": write}
    events: list[Any] = [
        {"type": "message_start", "message": {"model": "claude-x", "usage": {**base, "output_tokens": 1}}}
    ]
    events += [{"type": "message_delta", "usage": {"output_tokens": min(step, output)}} for step in steps]
    events += [{"type": "message_delta", "usage": {"output_tokens": output}}, {"type": "message_stop"}]
    unstreamed = usage_from_response({"type": "message", "usage": {**base, "output_tokens": output}})
    assert usage_from_stream(events) == unstreamed


@given(cumulative=st.lists(st.tuples(COUNT, COUNT), min_size=1, max_size=5))
def test_gemini_stream_takes_the_last_cumulative_usage(cumulative: list[tuple[int, int]]) -> None:
    events = [
        {"usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": candidates}}
        for prompt, candidates in cumulative
    ]
    prompt, candidates = cumulative[-1]
    assert usage_from_stream(events) == Usage(input_tokens=prompt, output_tokens=candidates)


@given(
    value=st.integers(min_value=2**63)
    | st.integers(max_value=-1)
    | st.floats().filter(lambda f: not f.is_integer())
)
def test_out_of_range_counts_are_unknown(value: Any) -> None:
    usage = usage_from_response(
        {"object": "chat.completion", "usage": {"prompt_tokens": value, "completion_tokens": 0}}
    )
    assert usage.status is UsageStatus.UNKNOWN
    assert "usage.prompt_tokens" in (usage.reason or "")
