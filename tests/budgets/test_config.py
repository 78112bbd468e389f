"""Budgets from TOML/JSON files, environment variables and presets; errors at load time."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tokentrail.budgets import BudgetConfigError, BudgetManager
from tokentrail.budgets.config import (
    PRESETS,
    budget_from_mapping,
    config_from_env,
    load_budgets,
    load_config,
    preset,
)

TOML = """
preset = "development"
backend = "sqlite:///{db}"
lease_seconds = 120

[[budgets]]
name = "researcher-daily"
limit_usd = "5"
window = "daily"
tz = "Europe/Berlin"
scope = {{ agent = "researcher" }}
thresholds = [0.5, 0.8]

[[budgets]]
name = "per-user-hourly-tokens"
limit_tokens = 200_000
token_kind = "output"
window = "rolling:1h"
scope = {{ user = "*" }}
action = "warn"
"""


def test_a_toml_file_gives_budgets_backend_and_lease(tmp_path: Path) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(TOML.format(db=tmp_path / "b.db"))
    config = load_config(path)
    names = [b.name for b in config.budgets]
    assert names == [
        "development/daily",
        "development/per-call",
        "researcher-daily",
        "per-user-hourly-tokens",
    ]
    researcher = config.budgets[2]
    assert (researcher.limit_usd, researcher.tz_name, researcher.scope) == (
        Decimal(5),
        "Europe/Berlin",
        (("agent", "researcher"),),
    )
    assert researcher.thresholds == (Decimal("0.5"), Decimal("0.8"))
    tokens = config.budgets[3]
    assert (tokens.limit_tokens, tokens.token_kind, tokens.window.spec, tokens.action) == (
        200_000,
        "output",
        "rolling:1h",
        "warn",
    )
    assert config.lease_seconds == 120
    with config.manager() as manager:
        assert manager.backend.url.endswith("b.db")
        assert manager.lease_seconds == 120


def test_a_json_file_may_be_a_plain_list(tmp_path: Path) -> None:
    path = tmp_path / "budgets.json"
    path.write_text(json.dumps([{"limit_usd": 2.5, "window": "weekly"}]))
    (budget,) = load_budgets(path)
    assert (budget.limit_usd, budget.window.spec) == (Decimal("2.5"), "weekly")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x", "limit_usd": -5}, r"budgets\[0\] \(x\): limit_usd must not be negative"),
        ({"limit_usd": 5, "scope": {"team": "a"}}, "unknown scope key 'team'"),
        ({"limit_usd": 5, "window": "daly"}, "did you mean 'daily'"),
        ({"limit_usd": 5, "windw": "daily"}, "unknown setting 'windw'"),
        ({"limit_usd": 5, "action": "callable"}, "only be given in code"),
        ({"limit_usd": 5, "thresholds": 0.5}, "thresholds must be a list"),
    ],
)
def test_bad_entries_fail_at_load_time_with_their_position(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    path = tmp_path / "budgets.json"
    path.write_text(json.dumps({"budgets": [entry]}))
    with pytest.raises(BudgetConfigError, match=message):
        load_config(path)


def test_broken_files_are_config_errors(tmp_path: Path) -> None:
    bad_toml = tmp_path / "b.toml"
    bad_toml.write_text("[[budgets]\nlimit_usd = 1")
    with pytest.raises(BudgetConfigError, match="not valid TOML"):
        load_config(bad_toml)
    with pytest.raises(BudgetConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    unknown = tmp_path / "u.json"
    unknown.write_text(json.dumps({"budgetz": []}))
    with pytest.raises(BudgetConfigError, match="unknown setting 'budgetz'"):
        load_config(unknown)


def test_environment_variables_add_presets_files_and_inline_budgets(tmp_path: Path) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text('[[budgets]]\nname = "file"\nlimit_usd = "1"\n')
    env = {
        "TOKENTRAIL_BUDGET_PRESET": "production",
        "TOKENTRAIL_BUDGETS_FILE": str(path),
        "TOKENTRAIL_BUDGETS": json.dumps([{"name": "inline", "limit_tokens": 1000, "window": "session"}]),
        "TOKENTRAIL_BUDGET_BACKEND": "memory://",
    }
    config = config_from_env(env)
    assert [b.name for b in config.budgets][-2:] == ["file", "inline"]
    assert config.budgets[0].name == "production/daily"
    assert config.backend == "memory://"
    with pytest.raises(BudgetConfigError, match="TOKENTRAIL_BUDGETS is not valid JSON"):
        config_from_env({"TOKENTRAIL_BUDGETS": "{oops"})


def test_presets_are_named_policy_sets_that_scale() -> None:
    assert set(PRESETS) == {"development", "production", "enterprise"}
    for name in PRESETS:
        BudgetManager(preset(name))  # valid and uniquely named
    doubled = {b.name: b.limit_usd for b in preset("production", scale=2, tz="Asia/Tokyo")}
    assert doubled["production/daily"] == Decimal(200)
    assert all(b.tz_name == "Asia/Tokyo" for b in preset("enterprise", tz="Asia/Tokyo"))
    with pytest.raises(BudgetConfigError, match="unknown budget preset 'prod'"):
        preset("prod")


def test_definitions_round_trip() -> None:
    (original,) = [b for b in preset("enterprise") if b.name == "enterprise/user-monthly"]
    again = budget_from_mapping(original.definition())
    assert again.definition() == original.definition()


def test_backend_urls_carry_their_options(postgres_server: str) -> None:
    from tokentrail.budgets.connect import open_backend
    from tokentrail.budgets.postgres import PostgresBackend

    for bad in ("0", "-1", "four", ""):
        with pytest.raises(BudgetConfigError, match="max_connections must be a positive integer"):
            open_backend(f"{postgres_server}?max_connections={bad}")
    with pytest.raises(BudgetConfigError, match="unknown budget backend URL"):
        open_backend("mysql://localhost/db")
    backend = open_backend(f"{postgres_server}?schema=tt_test_url_options&max_connections=3")
    try:
        assert isinstance(backend, PostgresBackend)
        assert (backend.schema, backend._max_connections, backend.url) == (
            "tt_test_url_options",
            3,
            postgres_server,
        )
    finally:
        backend.drop_schema()
        backend.close()
