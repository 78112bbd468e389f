"""Model-name normalization: the spellings SDKs and gateways use resolve to the right catalog entry."""

from __future__ import annotations

import pytest

import tokentrail as tt
from tokentrail.pricing.names import candidates, slug

NAMES = [
    ("gpt-4o", None, "openai", "gpt-4o"),
    ("GPT-4o", None, "openai", "gpt-4o"),
    ("openai/gpt-4o", None, "openai", "gpt-4o"),
    ("gpt-4o-2024-08-06", None, "openai", "gpt-4o"),
    ("gpt-4o-mini-2024-07-18", None, "openai", "gpt-4o-mini"),
    ("azure/gpt-4o", None, "azure", "gpt-4o"),
    ("gpt-4o", "azure", "azure", "gpt-4o"),
    ("gpt-4.1", None, "openai", "gpt-4.1"),
    ("gpt-4.1-mini", None, "openai", "gpt-4.1-mini"),
    ("gpt-5", None, "openai", "gpt-5"),
    ("gpt-5-mini", None, "openai", "gpt-5-mini"),
    ("o1", None, "openai", "o1"),
    ("o3-mini", None, "openai", "o3-mini"),
    ("o4-mini", None, "openai", "o4-mini"),
    ("claude-3-5-sonnet-20241022", None, "anthropic", "claude-3-5-sonnet"),
    ("claude-3.5-sonnet", None, "anthropic", "claude-3-5-sonnet"),
    ("anthropic/claude-3.5-sonnet", None, "anthropic", "claude-3-5-sonnet"),
    ("claude-3-5-haiku-latest", None, "anthropic", "claude-3-5-haiku-latest"),
    ("claude-sonnet-4-20250514", None, "anthropic", "claude-sonnet-4-0"),
    ("claude-opus-4-1-20250805", None, "anthropic", "claude-opus-4-1"),
    ("claude-haiku-4-5", None, "anthropic", "claude-haiku-4-5"),
    (
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "bedrock",
        "aws",
        "regional.anthropic.claude-3-5-sonnet-20240620-v1:0",
    ),
    (
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        None,
        "aws",
        "regional.anthropic.claude-3-5-sonnet-20240620-v1:0",
    ),
    (
        "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
        None,
        "aws",
        "regional.anthropic.claude-3-7-sonnet-20250219-v1:0",
    ),
    (
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        None,
        "aws",
        "regional.anthropic.claude-3-5-sonnet-20240620-v1:0",
    ),
    (
        "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
        None,
        "aws",
        "regional.anthropic.claude-3-haiku-20240307-v1:0",
    ),
    ("models/gemini-1.5-pro", None, "google", "gemini-1.5-pro"),
    ("gemini-1.5-flash", None, "google", "gemini-1.5-flash"),
    ("gemini-2.0-flash-001", None, "google", "gemini-2.0-flash"),
    ("gemini/gemini-2.5-flash", None, "google", "gemini-2.5-flash"),
    ("vertex_ai/gemini-2.5-pro", None, "google", "gemini-2.5-pro"),
    (
        "projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash-001",
        None,
        "google",
        "gemini-2.0-flash",
    ),
    ("publishers/anthropic/models/claude-sonnet-4@20250514", None, "google", "claude-4-sonnet"),
    ("claude-sonnet-4@20250514", "vertex_ai", "google", "claude-4-sonnet"),
    ("mistral-large-latest", None, "mistral", "mistral-large"),
    ("mistral/mistral-small-latest", None, "mistral", "mistral-small-latest"),
    ("deepseek-chat", None, "deepseek", "deepseek-chat"),
]


@pytest.mark.parametrize(("name", "provider", "expected_provider", "expected_model"), NAMES)
def test_name_resolves_to_catalog_entry(
    name: str, provider: str | None, expected_provider: str, expected_model: str
) -> None:
    cost = tt.price(tt.Usage(100, 100), name, provider)
    assert cost.priced, cost.reason
    assert (cost.provider, cost.model) == (expected_provider, expected_model)


def test_exact_name_is_tried_before_any_normalization() -> None:
    found = list(candidates("openai/gpt-4o-2024-08-06", None, lambda p: p == "openai"))
    assert found[0] == ("openai/gpt-4o-2024-08-06", None)
    assert ("gpt-4o-2024-08-06", "openai") in found
    assert found.index(("gpt-4o-2024-08-06", "openai")) < found.index(("gpt-4o", "openai"))


def test_unknown_prefix_is_not_taken_for_a_provider() -> None:
    found = list(candidates("my-org/my-model", None, lambda p: False))
    assert all(provider is None for _, provider in found)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("gpt-4o", "gpt_4o"), ("GPT_4O", "gpt_4o"), (" Claude 3.5 Sonnet ", "claude_3_5_sonnet")],
)
def test_slug(name: str, expected: str) -> None:
    assert slug(name) == expected
