"""`budget status|set|reset` against a back-end URL (the typer sub-app, mounted here as its own app)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

import tokentrail as tt
from tokentrail.budgets import Budget, BudgetManager
from tokentrail.cli.budget import budget_app

MODEL = "gpt-4o-mini"
runner = CliRunner()


def seeded(tmp_path: Path) -> tuple[str, BudgetManager]:
    url = f"sqlite:///{tmp_path / 'budgets.db'}"
    manager = BudgetManager(
        [
            Budget(limit_usd="1", scope={"user": "*"}, name="per-user"),
            Budget(limit_tokens=100_000, name="tokens"),
        ],
        url,
        refresh_seconds=0,
    )
    usage = tt.Usage(input_tokens=10_000, output_tokens=30_000)
    for user in ("alice", "bob"):
        manager.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": user}).settle(usage)
    return url, manager


def test_status_lists_every_budget_instance(tmp_path: Path) -> None:
    url, _ = seeded(tmp_path)
    result = runner.invoke(budget_app, ["status", "--backend", url, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    by_scope = {(r["budget"], r["scope"].get("user")): r for r in rows}
    assert by_scope[("per-user", "alice")]["spent_usd"] == "0.0195"
    assert by_scope[("tokens", None)]["spent_tokens"] == 80_000
    table = runner.invoke(budget_app, ["status", "--backend", url], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "per-user" in table.output and "user=alice" in table.output


def test_set_overrides_a_limit_for_running_managers(tmp_path: Path) -> None:
    url, manager = seeded(tmp_path)
    result = runner.invoke(budget_app, ["set", "per-user", "--usd", "2.50", "--backend", url])
    assert result.exit_code == 0, result.output
    assert {b.name: b.limit_usd for b in manager.budgets}["per-user"] == Decimal("2.5")
    cleared = runner.invoke(budget_app, ["set", "per-user", "--clear", "--backend", url])
    assert cleared.exit_code == 0
    assert {b.name: b.limit_usd for b in manager.budgets}["per-user"] == Decimal(1)


def test_reset_forgets_one_instance_or_all(tmp_path: Path) -> None:
    url, manager = seeded(tmp_path)
    one = runner.invoke(budget_app, ["reset", "per-user", "--scope", "user=alice", "--yes", "--backend", url])
    assert one.exit_code == 0, one.output
    assert {r.scope.get("user") for r in manager.status() if r.budget == "per-user"} == {"bob"}
    unknown = runner.invoke(budget_app, ["reset", "nope", "--yes", "--backend", url])
    assert unknown.exit_code == 1
    assert "no budget named 'nope'" in unknown.output


def test_the_backend_comes_from_the_environment_or_is_required(tmp_path: Path) -> None:
    url, _ = seeded(tmp_path)
    assert (
        runner.invoke(budget_app, ["status", "--json"], env={"TOKENTRAIL_BUDGET_BACKEND": url}).exit_code == 0
    )
    missing = runner.invoke(budget_app, ["status"], env={"TOKENTRAIL_BUDGET_BACKEND": ""})
    assert missing.exit_code != 0
    assert "--backend" in missing.output
