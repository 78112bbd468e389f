"""The vendored encodings: published bytes, tiktoken's own definitions, caching, no downloads."""

from __future__ import annotations

import threading

import pytest
import tiktoken.load

from tests.tokens.reference import (
    DATA,
    PUBLISHED_SHA256,
    corpus,
    reference_encoding,
    sha256,
    tiktoken_constructor_args,
)
from tokentrail.tokens import encodings
from tokentrail.tokens.encodings import (
    ENCODING_SPECS,
    IntegrityError,
    encoding_name_for_model,
    get_encoding,
    openai_model_name,
)

NAMES = sorted(ENCODING_SPECS)


@pytest.fixture
def fresh_encoders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encodings, "_encoders", {})


@pytest.mark.parametrize("name", NAMES)
def test_vendored_file_has_the_published_sha256(name: str) -> None:
    assert sha256(DATA / f"{name}.tiktoken") == PUBLISHED_SHA256[name] == ENCODING_SPECS[name].sha256


@pytest.mark.parametrize("name", NAMES)
def test_pattern_and_special_tokens_are_tiktokens_own(name: str) -> None:
    expected = tiktoken_constructor_args(name)
    assert ENCODING_SPECS[name].pat_str == expected["pat_str"]
    assert ENCODING_SPECS[name].special_tokens == expected["special_tokens"]


@pytest.mark.parametrize("name", NAMES)
def test_ranks_equal_tiktokens_loader(name: str) -> None:
    built = get_encoding(name)
    assert built._mergeable_ranks == tiktoken_constructor_args(name)["mergeable_ranks"]
    assert built.max_token_value == reference_encoding(name).max_token_value


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("sample", "text"), sorted(corpus().items()))
def test_encodes_the_corpus_exactly_like_tiktoken(name: str, sample: str, text: str) -> None:
    reference = reference_encoding(name)
    assert get_encoding(name).encode_ordinary(text) == reference.encode(text, disallowed_special=())


def test_encoder_is_built_once_per_process(fresh_encoders: None) -> None:
    assert get_encoding("cl100k_base") is get_encoding("cl100k_base")


def test_concurrent_first_use_builds_one_encoder(fresh_encoders: None) -> None:
    seen: list[object] = []
    start = threading.Barrier(6)

    def load() -> None:
        start.wait()
        seen.append(get_encoding("cl100k_base"))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 6 and all(found is seen[0] for found in seen)


def test_tampered_file_is_refused(fresh_encoders: None, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ENCODING_SPECS["cl100k_base"]
    monkeypatch.setitem(
        ENCODING_SPECS,
        "cl100k_base",
        type(spec)(spec.name, spec.filename, "0" * 64, spec.pat_str, spec.special_tokens),
    )
    with pytest.raises(IntegrityError, match="does not match"):
        get_encoding("cl100k_base")


def test_tiktokens_caching_loader_is_not_used(fresh_encoders: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken's loader copies files into a temp cache dir; ours reads the package data only."""

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("tiktoken.load.read_file_cached was called")

    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    assert get_encoding("o200k_base").encode_ordinary("hello") == [24912]


def test_unknown_encoding_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        get_encoding("p50k_base")


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5.1-codex", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini-2025-01-31", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("azure/gpt-4o-2024-08-06", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("openai.gpt-oss-120b-1:0", "o200k_base"),
        ("GPT-4O", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo-2024-04-09", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo-16k", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("ft:gpt-3.5-turbo-0125:acme::x1", "cl100k_base"),
        ("claude-sonnet-4-5", None),
        ("gemini-2.5-pro", None),
        ("o1x", None),
        ("gpt-40", None),
    ],
)
def test_model_to_encoding(model: str, encoding: str | None) -> None:
    assert encoding_name_for_model(model) == encoding


def test_model_name_normalization() -> None:
    assert openai_model_name(" openai/GPT-4o-2024-08-06 ") == "gpt-4o-2024-08-06"
    assert openai_model_name("ft:gpt-4o-mini:acme::abc") == "gpt-4o-mini"
