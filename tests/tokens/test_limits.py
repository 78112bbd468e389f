"""Context window and max output: the catalog's numbers, and the user's, which win."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tokentrail.tokens import ModelLimits, clear_model_limits, context_window, model_limits, set_model_limits


@pytest.fixture(autouse=True)
def no_user_limits() -> Iterator[None]:
    clear_model_limits()
    yield
    clear_model_limits()


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("gpt-4o", 128_000),
        ("openai/gpt-4o-2024-08-06", 128_000),
        ("gpt-4", 8192),
        ("claude-sonnet-4-5", 200_000),
    ],
)
def test_window_comes_from_the_price_catalog(model: str, window: int) -> None:
    assert context_window(model) == window
    assert model_limits(model) == ModelLimits(window, None, "catalog")


def test_unknown_model_has_no_window_rather_than_a_guess() -> None:
    assert model_limits("my-local-model") == ModelLimits(None, None, "unknown")


def test_user_limits_win_over_the_catalog() -> None:
    set_model_limits("gpt-4o", context_window=64_000, max_output_tokens=4096)
    assert model_limits("gpt-4o") == ModelLimits(64_000, 4096, "user")


def test_user_limits_reach_other_spellings_of_a_catalog_model() -> None:
    set_model_limits("gpt-4o", context_window=64_000)
    assert context_window("openai/gpt-4o-2024-08-06") == 64_000


def test_max_output_alone_keeps_the_catalog_window() -> None:
    set_model_limits("gpt-4o", max_output_tokens=16_384)
    assert model_limits("gpt-4o") == ModelLimits(128_000, 16_384, "user+catalog")


def test_user_limits_for_an_unknown_model() -> None:
    set_model_limits("my-local-model", context_window=32_768)
    assert context_window("my-local-model") == 32_768


def test_provider_specific_limits() -> None:
    set_model_limits("gpt-4o", context_window=50_000, provider="azure")
    assert context_window("gpt-4o", provider="azure") == 50_000
    assert context_window("gpt-4o") == 128_000


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1000"])
def test_limits_must_be_positive_ints(bad: object) -> None:
    with pytest.raises(ValueError):
        set_model_limits("gpt-4o", context_window=bad)  # type: ignore[arg-type]
