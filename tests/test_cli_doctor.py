"""`tokentrail doctor` prints, per installed SDK, what instrument() tracks, what it does not and why."""

from __future__ import annotations

from typer.testing import CliRunner

from tokentrail.cli import app


def test_doctor_lists_every_sdk_and_the_reviewed_reasons() -> None:
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for sdk in ("openai", "anthropic", "google-genai", "mistralai", "cohere", "ollama", "boto3", "litellm"):
        assert sdk in result.output
    assert "counting tokens is free" in result.output  # anthropic count_tokens, with its reason
    assert "neither tracked nor reviewed" not in result.output


def test_doctor_all_lists_the_tracked_methods() -> None:
    result = CliRunner().invoke(app, ["doctor", "--all"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "OpenAI.chat.completions.create" in result.output and "tracked" in result.output
