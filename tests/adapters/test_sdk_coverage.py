"""The coverage guard for openai and anthropic: every public method of the installed SDK that returns a
usage-bearing type is tracked by `instrument()` or listed, with a reason, as not tracked — so an SDK
release that adds a billable method fails here until it is tracked or reviewed."""

from __future__ import annotations

import dataclasses

import pytest

from tokentrail.adapters import _coverage
from tokentrail.adapters._instrument_stainless import StainlessTarget


@pytest.mark.parametrize(
    "sdk", ["openai", "anthropic", "google-genai", "cohere", "mistralai", "ollama", "boto3"]
)
def test_every_usage_bearing_method_is_tracked_or_reviewed(sdk: str) -> None:
    report = _coverage.coverage(sdk)
    assert report.installed, f"{sdk} is a test dependency"
    assert report.methods, f"the walk found no usage-bearing method in {sdk}"
    assert report.gaps == [], f"{sdk} methods neither tracked nor reviewed: {report.gaps}"


def test_the_calls_users_make_are_tracked() -> None:
    tracked = {m.name for m in _coverage.coverage("openai").methods if m.status == "tracked"}
    tracked |= {m.name for m in _coverage.coverage("anthropic").methods if m.status == "tracked"}
    for name in (
        "OpenAI.chat.completions.create",
        "OpenAI.chat.completions.parse",
        "AsyncOpenAI.chat.completions.parse",
        "OpenAI.responses.create",
        "OpenAI.responses.parse",
        "OpenAI.responses.retrieve",
        "OpenAI.beta.responses.create",
        "OpenAI.embeddings.create",
        "OpenAI.images.generate",
        "OpenAI.audio.transcriptions.create",
        "Anthropic.messages.create",
        "Anthropic.beta.messages.create",
        "AsyncAnthropic.beta.messages.create",
    ):
        assert name in tracked, name


def test_a_method_whose_path_leaves_the_table_is_a_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokentrail.adapters import _instrument_openai as table

    target = table.TARGETS[0]
    assert isinstance(target, StainlessTarget)
    endpoints = {key: value for key, value in table.ENDPOINTS.items() if key != ("post", "/embeddings")}
    shrunk = dataclasses.replace(target, endpoints=endpoints)
    monkeypatch.setattr(table, "TARGETS", (shrunk, *table.TARGETS[1:]))
    assert "OpenAI.embeddings.create" in _coverage.coverage("openai").gaps


def test_an_unreviewed_method_is_a_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokentrail.adapters import _instrument_anthropic as table

    monkeypatch.setattr(table, "NOT_TRACKED", {})
    assert "Anthropic.messages.count_tokens" in _coverage.coverage("anthropic").gaps


def test_the_tested_versions_doctor_prints_are_the_pinned_ones() -> None:
    from pathlib import Path

    pins = dict(
        line.split("==", 1)
        for line in (Path(__file__).parents[2] / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    assert {sdk: pins.get(sdk) for sdk in _coverage.TESTED_VERSIONS} == _coverage.TESTED_VERSIONS
