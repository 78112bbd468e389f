"""count_tokens / count: exact for OpenAI models, the cookbook's chat rules, labelled approximations."""

from __future__ import annotations

import base64
import struct
import sys
from typing import Any

import pytest

from tests.tokens.reference import corpus, num_tokens_for_tools, num_tokens_from_messages, reference_encoding
from tokentrail import UsageStatus
from tokentrail.tokens import TokenCount, count, count_tokens

CORPUS = sorted(corpus().items())

EXAMPLE_MESSAGES = [
    {"role": "system", "content": "You translate release notes into plain language for customers."},
    {
        "role": "system",
        "name": "example_user",
        "content": "Latency p99 regressed 40% after the scheduler change.",
    },
    {"role": "system", "name": "example_assistant", "content": "Some slow requests got slower; we fixed it."},
    {"role": "user", "content": "The new tier-aware cache lowers cold-start time by 35% on average."},
    {"role": "assistant", "content": "Apps start faster now, about a third quicker when nothing is cached."},
    {"role": "user", "content": "日本語でも説明してください。絵文字もOK 🚀 <|endoftext|>"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and country, e.g. Lyon, France"},
                "unit": {
                    "type": "string",
                    "description": "The unit of temperature to return",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_orders",
        "description": "Find orders by customer and status",
        "parameters": {
            "type": "object",
            "properties": {
                "customer_id": {"type": "string", "description": "Customer id."},
                "status": {"type": "string", "description": "Order status", "enum": ["open", "shipped"]},
            },
        },
    },
}


@pytest.mark.parametrize(("model", "encoding"), [("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")])
@pytest.mark.parametrize(("sample", "text"), CORPUS)
def test_text_count_equals_tiktoken(model: str, encoding: str, sample: str, text: str) -> None:
    expected = len(reference_encoding(encoding).encode(text, disallowed_special=()))
    assert count_tokens(text, model) == expected
    result = count(text, model)
    assert (result.tokens, result.exact, result.method, result.expected_error) == (
        expected,
        True,
        encoding,
        0.0,
    )


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
def test_special_token_text_counts_as_plain_text(model: str) -> None:
    encoding = "o200k_base" if model == "gpt-4o" else "cl100k_base"
    text = "<|endoftext|><|fim_prefix|><|endofprompt|>"
    assert count_tokens(text, model) == len(reference_encoding(encoding).encode(text, disallowed_special=()))
    assert count_tokens(text, model) > 3


def test_empty_text_is_zero_tokens() -> None:
    assert count_tokens("", "gpt-4o") == 0
    assert count_tokens("", "claude-sonnet-4-5") == 0


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "gpt-4o-mini",
        "gpt-4-0613",
        "gpt-4",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo-0301",
    ],
)
def test_chat_count_equals_cookbook(model: str) -> None:
    result = count(EXAMPLE_MESSAGES, model)
    assert result.tokens == num_tokens_from_messages(EXAMPLE_MESSAGES, model)
    assert result.exact and result.method.endswith("+chat")


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
@pytest.mark.parametrize(("sample", "text"), CORPUS)
def test_chat_count_of_corpus_equals_cookbook(model: str, sample: str, text: str) -> None:
    messages = [
        {"role": "system", "content": "Count me."},
        {"role": "user", "name": "tester", "content": text},
    ]
    assert count_tokens(messages, model) == num_tokens_from_messages(messages, model)


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "gpt-4", "gpt-3.5-turbo"])
def test_tool_definitions_follow_the_cookbook(model: str) -> None:
    messages = [*EXAMPLE_MESSAGES[:1], {"role": "user", "content": "What's the weather like in Lyon?"}]
    tools = [WEATHER_TOOL, SEARCH_TOOL]
    result = count(messages, model, tools=tools)
    assert result.tokens == num_tokens_for_tools(tools, messages, model)
    assert not result.exact
    assert "tool definitions: OpenAI cookbook approximation" in result.notes


def test_other_openai_models_use_the_cookbook_rule_flagged_inexact() -> None:
    result = count(EXAMPLE_MESSAGES, "gpt-5")
    assert result.tokens == num_tokens_from_messages(EXAMPLE_MESSAGES, "gpt-4o")
    assert not result.exact and result.expected_error == 0.0


def test_tool_calls_count_name_arguments_and_overhead() -> None:
    encoding = reference_encoding("o200k_base")
    arguments = '{"location": "Lyon, France"}'
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": arguments},
            }
        ],
    }
    tool_reply = {"role": "tool", "tool_call_id": "call_1", "content": "18 C, clear"}
    result = count([message, tool_reply], "gpt-4o")
    expected = (
        3 + len(encoding.encode("assistant"))
        + 3 + len(encoding.encode("get_current_weather")) + len(encoding.encode(arguments))
        + 3 + sum(len(encoding.encode(v)) for v in tool_reply.values())
        + 3
    )  # fmt: skip
    assert result.tokens == expected
    assert not result.exact


def test_content_parts_are_counted_part_by_part() -> None:
    encoding = reference_encoding("o200k_base")
    parts = [{"type": "text", "text": "First part."}, {"type": "text", "text": " Second part."}]
    result = count([{"role": "user", "content": parts}], "gpt-4o")
    text_tokens = len(encoding.encode("First part.")) + len(encoding.encode(" Second part."))
    expected = 3 + len(encoding.encode("user")) + text_tokens + 3
    assert result.tokens == expected
    assert not result.exact


def _png(width: int, height: int) -> str:
    header = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + struct.pack(">II", width, height)
        + b"\x08\x02"
    )
    return "data:image/png;base64," + base64.b64encode(header + b"\x00" * 8).decode()


@pytest.mark.parametrize(("detail", "image_tokens"), [("high", 765), ("low", 85)])
def test_inline_image_costs_its_tiles(detail: str, image_tokens: int) -> None:
    question = [{"type": "text", "text": "What is in this picture?"}]
    image = [{"type": "image_url", "image_url": {"url": _png(1024, 1024), "detail": detail}}]
    with_image = count([{"role": "user", "content": question + image}], "gpt-4o").tokens
    without = count([{"role": "user", "content": question}], "gpt-4o").tokens
    assert with_image - without == image_tokens


def test_image_without_size_assumes_1024_square_and_says_so() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    result = count([{"role": "user", "content": [image]}], "gpt-4o")
    assert result.tokens == 3 + 1 + 765 + 3
    assert any("1024x1024 assumed" in note for note in result.notes)
    assert any("'auto'" in note for note in result.notes)


def test_unknown_content_part_is_flagged_not_guessed() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    result = count([{"role": "user", "content": [part]}], "gpt-4o")
    assert result.tokens == 3 + 1 + 3
    assert any("input_audio" in note for note in result.notes)


@pytest.mark.parametrize(
    ("model", "family"),
    [("claude-sonnet-4-5", "claude"), ("gemini-2.5-flash", "gemini"), ("meta-llama/llama-3.1-8b", "llama3"),
     ("mistral-large-latest", "mistral"), ("qwen-max", "qwen"), ("deepseek-chat", "generic")],
)  # fmt: skip
def test_other_families_are_estimated_with_their_error(model: str, family: str) -> None:
    result = count("The quick brown fox jumps over the lazy dog.", model)
    assert not result.exact
    assert result.method == f"estimate:{family}"
    assert 0 < result.expected_error < 0.5
    assert result.tokens > 0
    assert result.status is UsageStatus.ESTIMATED


def test_estimated_chat_adds_the_message_overhead() -> None:
    text = count("hello there", "claude-sonnet-4-5").tokens
    role = count("user", "claude-sonnet-4-5").tokens
    chat = count([{"role": "user", "content": "hello there"}], "claude-sonnet-4-5")
    assert chat.tokens == 3 + role + text + 3
    assert chat.method == "estimate:claude+chat"


def test_sdk_message_objects_are_accepted() -> None:
    class Message:
        def __init__(self, **fields: Any) -> None:
            self.fields = fields

        def model_dump(self, exclude_none: bool = False) -> dict[str, Any]:
            return dict(self.fields)

    messages = [Message(role="user", content="hi")]
    assert count_tokens(messages, "gpt-4o") == num_tokens_from_messages(
        [{"role": "user", "content": "hi"}], "gpt-4o"
    )


def test_count_converts_to_usage_for_pricing() -> None:
    result = count("hello world", "gpt-4o")
    usage = result.as_usage()
    assert (usage.input_tokens, usage.output_tokens, usage.status) == (2, 0, UsageStatus.ESTIMATED)
    assert int(result) == 2
    assert isinstance(result, TokenCount)


@pytest.mark.parametrize("bad", [b"bytes", 42, None])
def test_wrong_input_types_are_rejected(bad: Any) -> None:
    with pytest.raises(TypeError):
        count(bad, "gpt-4o")


def test_model_is_required() -> None:
    with pytest.raises(TypeError):
        count("hi", "")


def test_texts_counted_again_give_the_same_count_and_the_memory_of_them_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = sys.modules["tokentrail.tokens.count"]  # the package's `count` is the function
    monkeypatch.setattr(module, "_counted", {})
    monkeypatch.setattr(module, "_counted_chars", 0)
    monkeypatch.setattr(module, "_MAX_COUNTED_CHARS", 2000)
    texts = [f"Release note {i}: the scheduler change made p99 {i}% slower. 日本語 🚀" for i in range(120)]
    for model, encoding in (("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")):
        reference = reference_encoding(encoding)
        for _ in range(2):
            for text in texts:
                assert count_tokens(text, model) == len(reference.encode(text, disallowed_special=()))
                kept = sum(len(text) for _, text in module._counted)
                assert kept <= 2000
    huge = "word " * 100
    assert count_tokens(huge, "gpt-4o") == len(reference_encoding("o200k_base").encode(huge))
    assert ("o200k_base", huge) not in module._counted  # over an eighth of the bound: not kept
    emoji = "🚀" * 40
    assert count(emoji, "gpt-4o").tokens != count(emoji, "gpt-4").tokens  # kept per encoding
