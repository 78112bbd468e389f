"""The estimator for families without an offline tokenizer: error below its documented bound and
far below chars/4, measured against the real tokenizers' counts recorded for the shipped corpus."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from tests.tokens.reference import corpus
from tokentrail.tokens.estimate import (
    CLASSES,
    chars_per_4_estimate,
    class_tokens,
    estimate_text_tokens,
    family_for_model,
    family_profile,
    family_profiles,
    split_runs,
)

REFERENCE = json.loads((Path(__file__).parent / "fixtures/reference_counts.json").read_text("utf-8"))
SAMPLES = corpus()
MEASURED = sorted(REFERENCE["sources"])


def _truth(sample: str, family: str) -> int:
    return int(REFERENCE["samples"][sample]["tokens"][family])


def _mean_error(estimate: dict[str, float], family: str) -> float:
    errors = [abs(estimate[name] - _truth(name, family)) / _truth(name, family) for name in SAMPLES]
    return math.fsum(errors) / len(errors)


def test_reference_counts_match_the_shipped_corpus() -> None:
    """Editing a corpus sample needs `benchmarks/calibrate_tokens.py` to be run again."""
    recorded = {name: entry["sha256"] for name, entry in REFERENCE["samples"].items()}
    actual = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in SAMPLES.items()}
    assert recorded == actual


def test_corpus_covers_the_hard_cases() -> None:
    for needed in (
        "english_prose",
        "python_code",
        "chinese_prose",
        "japanese_prose",
        "emoji",
        "whitespace_runs",
    ):
        assert needed in SAMPLES
    assert "<|endoftext|>" in SAMPLES["special_tokens"]


@pytest.mark.parametrize("family", MEASURED)
def test_estimate_error_is_within_the_documented_bound(family: str) -> None:
    estimates = {name: float(estimate_text_tokens(text, family)) for name, text in SAMPLES.items()}
    error = _mean_error(estimates, family)
    assert error <= family_profile(family).expected_error


@pytest.mark.parametrize("family", MEASURED)
def test_estimate_beats_chars_per_4_by_far(family: str) -> None:
    ours = _mean_error({n: float(estimate_text_tokens(t, family)) for n, t in SAMPLES.items()}, family)
    rule_of_thumb = _mean_error({n: float(chars_per_4_estimate(t)) for n, t in SAMPLES.items()}, family)
    assert ours * 3 < rule_of_thumb


@pytest.mark.parametrize("family", MEASURED)
def test_cjk_estimates_beat_chars_per_4(family: str) -> None:
    for name in ("chinese_prose", "japanese_prose", "korean_prose"):
        truth = _truth(name, family)
        ours = abs(estimate_text_tokens(SAMPLES[name], family) - truth)
        rule_of_thumb = abs(chars_per_4_estimate(SAMPLES[name]) - truth)
        assert ours < rule_of_thumb / 2, name


@pytest.mark.parametrize("held_out", MEASURED)
def test_unmeasured_family_bound_holds_for_a_tokenizer_left_out(held_out: str) -> None:
    """Claude and Gemini use the mean of the measured families; their documented error is how well
    that mean predicts a tokenizer it did not include."""
    others = [f for f in MEASURED if f != held_out]
    factors = {k: math.fsum(family_profile(f).factors[k] for f in others) / len(others) for k in CLASSES}
    estimates = {
        name: math.fsum(factors[k] * n for k, n in class_tokens(text).items())
        for name, text in SAMPLES.items()
    }
    assert _mean_error(estimates, held_out) <= family_profile("claude").expected_error


def test_every_family_has_a_profile_for_every_class() -> None:
    profiles = family_profiles()
    for family in ("claude", "gemini", "generic", *MEASURED):
        assert set(profiles[family].factors) == set(CLASSES)
        assert 0 < profiles[family].expected_error < 0.5


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("claude-3-5-sonnet-20240620", "claude"),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", "claude"),
        ("models/gemini-2.5-pro", "gemini"),
        ("gemma-3-27b-it", "gemini"),
        ("meta-llama/Llama-3.3-70B-Instruct", "llama3"),
        ("llama-4-maverick", "llama4"),
        ("meta.llama4-scout-17b-instruct-v1:0", "llama4"),
        ("mistral-large-latest", "mistral"),
        ("codestral-2501", "mistral"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen"),
        ("deepseek-chat", "generic"),
    ],
)
def test_family_for_model(model: str, family: str) -> None:
    assert family_for_model(model) == family


def test_runs_cover_the_text_in_order() -> None:
    for text in SAMPLES.values():
        assert "".join(run for _, run in split_runs(text)) == text


def test_runs_are_split_by_writing_system() -> None:
    kinds = [kind for kind, _ in split_runs("Hello 世界 and 2024 café Привет 🚀 한국어 ひらがな")]
    assert kinds == [
        "latin",
        "han",
        "latin",
        "digit",
        "latin",
        "latin_ext",
        "cyrillic",
        "symbol",
        "hangul",
        "kana",
    ]


def test_class_tokens_add_up_to_the_o200k_count() -> None:
    from tokentrail.tokens import count_tokens

    for text in SAMPLES.values():
        if text.isascii():
            assert sum(class_tokens(text).values()) == count_tokens(text, "gpt-4o")


def test_estimates_never_raise_on_special_token_text() -> None:
    assert estimate_text_tokens("<|endoftext|><|im_start|>", "qwen") > 5
    assert estimate_text_tokens("", "claude") == 0
