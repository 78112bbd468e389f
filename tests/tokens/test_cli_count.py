"""`tokentrail count FILE|- --model M`: tokens, exact or estimated, cost as input, window use."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import tokentrail as tt
from tokentrail.cli import app
from tokentrail.tokens import context_window, count

runner = CliRunner()
TEXT = "Hello, world! Token counting, offline: 数えます 🙂\n    def f(x): return x ** 2\n"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "name": "ann", "content": "How many tokens is this?"},
]


def _json(args: list[str], stdin: str | None = None) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--format", "json"], input=stdin)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_stdin_exact_count_cost_and_window() -> None:
    data = _json(["count", "-", "--model", "gpt-4o"], TEXT)
    expected = count(TEXT, "gpt-4o")
    assert data["tokens"] == expected.tokens and data["exact"] is True
    assert data["method"] == "o200k_base" and data["expected_error"] == 0.0
    cost = tt.price(tt.Usage(input_tokens=expected.tokens), "gpt-4o")
    assert Decimal(data["input_cost_usd"]) == cost.total
    window = context_window("gpt-4o")
    assert window and data["context_window"] == window
    assert data["window_percent"] == round(expected.tokens * 100 / window, 4)
    assert data["unpriced_reason"] is None and data["provider"] == "openai"


def test_file_and_table_output(tmp_path: Path) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert _json(["count", str(path), "--model", "gpt-4o"])["tokens"] == count(TEXT, "gpt-4o").tokens
    result = runner.invoke(app, ["count", str(path), "-m", "gpt-4o"])
    assert result.exit_code == 0, result.output
    assert "exact (o200k_base)" in result.output
    assert "cost as input" in result.output and "$" in result.output
    assert "128,000 tokens" in result.output and "window used" in result.output


def test_messages_from_stdin_and_file(tmp_path: Path) -> None:
    expected = count(MESSAGES, "gpt-4o")
    data = _json(["count", "-", "--model", "gpt-4o", "--messages"], json.dumps(MESSAGES))
    assert data["tokens"] == expected.tokens and data["method"] == expected.method
    tools = [{"type": "function", "function": {"name": "get_time", "description": "Now.", "parameters": {}}}]
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"messages": MESSAGES, "tools": tools}), encoding="utf-8")
    with_tools = _json(["count", str(path), "--model", "gpt-4o", "--messages"])
    assert with_tools["tokens"] == count(MESSAGES, "gpt-4o", tools=tools).tokens > expected.tokens


def test_estimated_family_shows_expected_error() -> None:
    data = _json(["count", "-", "--model", "claude-sonnet-4-5"], TEXT)
    expected = count(TEXT, "claude-sonnet-4-5")
    assert data["exact"] is False and data["method"] == "estimate:claude"
    assert data["tokens"] == expected.tokens and data["expected_error"] == expected.expected_error > 0
    assert data["input_cost_usd"] is not None and data["context_window"]
    result = runner.invoke(app, ["count", "-", "--model", "claude-sonnet-4-5"], input=TEXT)
    assert result.exit_code == 0, result.output
    assert f"estimated ±{expected.expected_error * 100:.0f}%" in result.output
    assert "no Claude tokenizer" in result.output


def test_unknown_model_counts_but_is_unpriced() -> None:
    data = _json(["count", "-", "--model", "no-such-model-xyz"], TEXT)
    assert data["tokens"] > 0 and data["exact"] is False
    assert data["input_cost_usd"] is None and "no-such-model-xyz" in data["unpriced_reason"]
    assert data["context_window"] is None and data["window_percent"] is None
    result = runner.invoke(app, ["count", "-", "--model", "no-such-model-xyz"], input=TEXT)
    assert result.exit_code == 0, result.output
    assert "unpriced" in result.output and "unknown" in result.output


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["count", str(tmp_path / "nope.txt"), "--model", "gpt-4o"])
    assert missing.exit_code == 1 and "cannot read" in missing.output
    not_json = runner.invoke(app, ["count", "-", "--model", "gpt-4o", "--messages"], input="hello")
    assert not_json.exit_code == 1 and "expects JSON" in not_json.output
    not_list = runner.invoke(app, ["count", "-", "--model", "gpt-4o", "--messages"], input='{"a": 1}')
    assert not_list.exit_code == 1 and "list of message objects" in not_list.output
    bad_format = runner.invoke(app, ["count", "-", "--model", "gpt-4o", "--format", "csv"], input="x")
    assert bad_format.exit_code == 2
    no_model = runner.invoke(app, ["count", "-"], input="x")
    assert no_model.exit_code == 2
