"""`tokentrail prices`: look up a model's price rule or search the catalog."""

from __future__ import annotations

from typer.testing import CliRunner

from tokentrail.cli import app

runner = CliRunner()


def test_prices_shows_rule_date_and_per_million_prices() -> None:
    result = runner.invoke(app, ["prices", "o3", "--at", "2025-06-10"])
    assert result.exit_code == 0, result.output
    assert "o3 → openai/o3" in result.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.output.splitlines()
        if "│" in line
    }
    assert rows["input / 1M tokens"] == "2" and rows["output / 1M tokens"] == "8"
    assert "in force since: 2025-06-10" in result.output
    assert "genai-prices" in result.output


def test_prices_before_a_change_shows_the_old_rule() -> None:
    result = runner.invoke(app, ["prices", "o3", "--at", "2025-06-09"])
    assert "in force since: undated" in result.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.output.splitlines()
        if "│" in line
    }
    assert rows["output / 1M tokens"] == "40"


def test_prices_with_variant_and_provider() -> None:
    result = runner.invoke(app, ["prices", "gpt-5", "--provider", "openai", "-c", "service_tier=priority"])
    assert result.exit_code == 0, result.output
    assert "variant: service_tier=priority" in result.output


def test_prices_tiers_are_listed() -> None:
    result = runner.invoke(app, ["prices", "claude-sonnet-4-5", "-p", "anthropic"])
    assert "> 200,000: 6" in result.output


def test_search_lists_matches() -> None:
    result = runner.invoke(app, ["prices", "--search", "gpt-4o-mini"])
    assert result.exit_code == 0
    assert "openai" in result.output and "gpt-4o-mini" in result.output


def test_unknown_model_exits_1_with_suggestions() -> None:
    result = runner.invoke(app, ["prices", "gpt-4oo"])
    assert result.exit_code == 1
    assert "No price known for 'gpt-4oo'" in result.output and "gpt-4o" in result.output


def test_bad_context_is_a_usage_error() -> None:
    result = runner.invoke(app, ["prices", "gpt-5", "-c", "flex"])
    assert result.exit_code == 2
