"""`tokentrail reconcile` and `reports.reconcile`: ledger vs provider reports per day x model."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tokentrail as tt
from tokentrail.reports.reconcile import (
    Figures,
    ReportFormatError,
    model_key,
    parse_report,
    read_report,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "reconcile"
DAY1 = datetime(2025, 8, 1, 12, tzinfo=timezone.utc)
DAY2 = datetime(2025, 8, 2, 12, tzinfo=timezone.utc)
DAY3 = datetime(2025, 8, 3, 12, tzinfo=timezone.utc)


@pytest.fixture
def openai_ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'openai.db'}"
    tracker = tt.Tracker(url)
    tracker.record(tt.Usage(600_000, 60_000, cache_read_tokens=200_000), "gpt-4o", "openai", at=DAY1)
    tracker.record(tt.Usage(400_000, 40_000), "gpt-4o-2024-08-06", "openai", at=DAY1)
    for _ in range(3):
        tracker.record(tt.Usage(10_000, 1_000), "gpt-4o-mini", "openai", at=DAY1)
    tracker.record(tt.Usage(100_000, 10_000), "gpt-4o", "openai", at=DAY2)
    tracker.record(tt.Usage(1_000, 100), "my-finetune", "openai", at=DAY2)
    tracker.record(tt.Usage(5, 5), "gpt-4o", "openai", at=DAY3)
    tracker.record(tt.Usage(9, 9), "claude-sonnet-4-20250514", "anthropic", at=DAY1)  # other provider
    tracker.store.close()  # type: ignore[attr-defined]
    return url


@pytest.fixture
def anthropic_ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'anthropic.db'}"
    tracker = tt.Tracker(url)
    usage = tt.Usage(3_200, 500, cache_read_tokens=200, cache_write_tokens=1_500, cache_write_1h_tokens=1_000)
    tracker.record(usage, "claude-sonnet-4-20250514", "anthropic", at=DAY1)
    tracker.record(tt.Usage(2_000, 100), "claude-sonnet-4-20250514", "anthropic", at=DAY2)
    tracker.store.close()  # type: ignore[attr-defined]
    return url


def _rows(cli: Any, url: str, provider: str, *files: str) -> dict[tuple[str, str | None], dict[str, Any]]:
    combined: dict[str, Any] = {
        name.split(".")[0]: json.loads((FIXTURES / name).read_text(encoding="utf-8")) for name in files
    }
    path = Path(url.removeprefix("sqlite:///")).with_suffix(".report.json")
    path.write_text(json.dumps(combined), encoding="utf-8")
    result = cli("reconcile", "--store", url, "--provider", provider, "--file", str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    return {(row["day"], row["model"]): row for row in json.loads(result.stdout)["rows"]}


def test_the_ledgers_prices_are_the_ones_the_fixtures_assume() -> None:
    four_o = tt.price(tt.Usage(1_000_000, 100_000, cache_read_tokens=200_000), "gpt-4o", at=DAY1)
    mini = tt.price(tt.Usage(10_000, 1_000), "gpt-4o-mini", at=DAY1)
    assert (four_o.total, mini.total) == (Decimal("3.25"), Decimal("0.0021"))


def test_openai_usage_and_costs_reconcile_per_day_and_model(openai_ledger: str, cli: Any) -> None:
    rows = _rows(cli, openai_ledger, "openai", "openai_usage.json", "openai_costs.json")
    assert set(rows) == {
        ("2025-08-01", "gpt-4o"),
        ("2025-08-01", "gpt-4o-mini"),
        ("2025-08-02", "gpt-4o"),
        ("2025-08-02", "my-finetune"),
        ("2025-08-03", "gpt-4o"),
    }
    same = rows[("2025-08-01", "gpt-4o")]
    assert same["matches"] and same["causes"] == []
    assert (same["ledger_requests"], same["provider_requests"]) == (2, 2)
    assert (same["ledger_input_tokens"], same["provider_input_tokens"]) == (1_000_000, 1_000_000)
    assert (same["ledger_cost"], same["provider_cost"], same["difference_cost"]) == ("3.25", "3.25", "0.00")


def test_more_requests_at_the_provider_are_untracked_calls(openai_ledger: str, cli: Any) -> None:
    row = _rows(cli, openai_ledger, "openai", "openai_usage.json", "openai_costs.json")[
        ("2025-08-01", "gpt-4o-mini")
    ]
    assert (row["ledger_requests"], row["provider_requests"], row["difference_requests"]) == (3, 5, 2)
    assert (row["difference_input_tokens"], row["difference_output_tokens"]) == (20_000, 2_000)
    assert (row["ledger_cost"], row["provider_cost"], row["difference_cost"]) == (
        "0.0063",
        "0.0105",
        "0.0042",
    )
    assert row["causes"] == ["untracked calls: 2 more requests at the provider than in the ledger"]


def test_same_tokens_different_dollars_is_price_drift(openai_ledger: str, cli: Any) -> None:
    row = _rows(cli, openai_ledger, "openai", "openai_usage.json", "openai_costs.json")[
        ("2025-08-02", "gpt-4o")
    ]
    assert row["difference_input_tokens"] == 0 and row["difference_output_tokens"] == 0
    assert (row["ledger_cost"], row["provider_cost"], row["difference_cost"]) == ("0.35", "0.4", "0.05")
    (cause,) = row["causes"]
    assert cause.startswith("price drift: same tokens, $+0.05 difference")


def test_an_unpriced_model_in_the_ledger_is_named(openai_ledger: str, cli: Any) -> None:
    row = _rows(cli, openai_ledger, "openai", "openai_usage.json", "openai_costs.json")[
        ("2025-08-02", "my-finetune")
    ]
    assert (row["ledger_cost"], row["provider_cost"], row["ledger_unpriced_calls"]) == ("0", "0.01", 1)
    assert row["causes"] == [
        "unpriced in the ledger: 1 call(s) of my-finetune have no price, so their cost is missing from the "
        "ledger's dollars"
    ]


def test_a_ledger_call_on_a_day_the_provider_saw_nothing_is_flagged(openai_ledger: str, cli: Any) -> None:
    row = _rows(cli, openai_ledger, "openai", "openai_usage.json", "openai_costs.json")[
        ("2025-08-03", "gpt-4o")
    ]
    assert (row["ledger_requests"], row["provider_requests"], row["provider_cost"]) == (1, 0, "0")
    assert row["causes"][0].startswith("not in the provider report")


def test_usage_alone_compares_tokens_and_leaves_dollars_open(openai_ledger: str, cli: Any) -> None:
    rows = _rows(cli, openai_ledger, "openai", "openai_usage.json")
    drift = rows[("2025-08-02", "gpt-4o")]
    assert drift["provider_cost"] is None and drift["difference_cost"] is None and drift["matches"]


def test_anthropic_usage_and_cost_reports_in_cents(anthropic_ledger: str, cli: Any) -> None:
    rows = _rows(cli, anthropic_ledger, "anthropic", "anthropic_usage.json", "anthropic_cost.json")
    first = rows[("2025-08-01", "claude-sonnet-4")]
    assert first["matches"], first["causes"]
    assert (first["provider_input_tokens"], first["provider_cache_write_tokens"]) == (3_200, 1_500)
    assert (first["ledger_cost"], first["provider_cost"]) == ("0.019935", "0.019935")
    assert first["provider_requests"] is None  # Anthropic's usage report has no request count
    model_row = rows[("2025-08-02", "claude-sonnet-4")]
    assert model_row["provider_cost"] is None and model_row["matches"]
    day = rows[("2025-08-02", None)]  # the day's cost is not broken out by model
    assert (day["ledger_cost"], day["provider_cost"], day["difference_cost"]) == ("0.0075", "1", "0.9925")
    assert day["causes"][0].startswith("price drift: same tokens")


def test_table_output_lists_each_difference_and_its_cause(openai_ledger: str, cli: Any) -> None:
    result = cli(
        "reconcile",
        "--store",
        openai_ledger,
        "--provider",
        "openai",
        "--file",
        str(FIXTURES / "openai_usage.json"),
    )
    assert result.exit_code == 0
    assert "2025-08-01 gpt-4o-mini:" in result.stdout and "untracked calls: 2 more requests" in result.stdout


def test_strict_mode_exits_1_when_anything_differs(openai_ledger: str, cli: Any) -> None:
    args = ("reconcile", "--store", openai_ledger, "--provider", "openai", "--strict", "-f", "csv")
    result = cli(*args, "--file", str(FIXTURES / "openai_usage.json"))
    assert result.exit_code == 1 and result.stdout.splitlines()[0].startswith("day,model,ledger_requests")
    matching = cli(*args, "--file", str(FIXTURES / "openai_usage.json"), "--until", "2025-08-01T23:00:00")
    lines = matching.stdout.splitlines()
    assert any(line.startswith("2025-08-01,gpt-4o,") and ",True," in line for line in lines)


# -- parsing ---------------------------------------------------------------------------------------------------


def test_csv_usage_reads_like_the_json_report() -> None:
    from_csv = read_report(FIXTURES / "openai_usage.csv", "openai")
    from_json = read_report(FIXTURES / "openai_usage.json", "openai")
    assert from_csv.figures == from_json.figures
    assert from_csv.figures[(date(2025, 8, 1), "gpt-4o")] == Figures(
        2, 1_000_000, 100_000, 200_000, None, None
    )


def test_money_is_read_exactly() -> None:
    page = {
        "object": "page",
        "data": [
            {
                "start_time": 1754006400,
                "results": [
                    {
                        "object": "organization.costs.result",
                        "amount": {
                            "value": Decimal("0.1000000000000000055511151231257827"),
                            "currency": "usd",
                        },
                        "line_item": "gpt-4o, input",
                    }
                ],
            }
        ],
    }
    (figure,) = parse_report(page, "openai").figures.values()
    assert figure.cost == Decimal("0.1000000000000000055511151231257827")
    cents = {
        "data": [
            {"starting_at": "2025-08-01T00:00:00Z", "results": [{"amount": "123.45", "currency": "USD"}]}
        ]
    }
    assert parse_report(cents, "anthropic").figures[(date(2025, 8, 1), None)].cost == Decimal("1.2345")


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/GPT-4o", "gpt-4o"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("my-finetune", "my-finetune"),
        (None, None),
    ],
)
def test_model_names_meet_across_snapshots_and_prefixes(name: str | None, key: str | None) -> None:
    assert model_key(name) == key


def test_a_report_of_the_other_provider_is_refused(tmp_path: Path, openai_ledger: str, cli: Any) -> None:
    result = cli(
        "reconcile",
        "--store",
        openai_ledger,
        "--provider",
        "openai",
        "--file",
        str(FIXTURES / "anthropic_usage.json"),
    )
    assert result.exit_code == 1 and "anthropic report, not openai" in result.output
    with pytest.raises(ReportFormatError, match="no usage or cost results"):
        parse_report({"hello": "world"}, "openai")


def test_bad_reconcile_input_gives_clear_errors(tmp_path: Path, openai_ledger: str, cli: Any) -> None:
    report = str(FIXTURES / "openai_usage.json")
    assert cli("reconcile", "--store", openai_ledger, "--provider", "gemini", "--file", report).exit_code == 2
    missing = cli(
        "reconcile", "--store", openai_ledger, "--provider", "openai", "--file", str(tmp_path / "x.json")
    )
    assert missing.exit_code == 1 and "no file" in missing.output
    junk = tmp_path / "junk.json"
    junk.write_text("{not json", encoding="utf-8")
    bad = cli("reconcile", "--store", openai_ledger, "--provider", "openai", "--file", str(junk))
    assert bad.exit_code == 1 and "not JSON" in bad.output
    euros = tmp_path / "eur.json"
    euros.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "start_time": 1754006400,
                        "results": [
                            {"object": "organization.costs.result", "amount": {"value": 1, "currency": "eur"}}
                        ],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    eur = cli("reconcile", "--store", openai_ledger, "--provider", "openai", "--file", str(euros))
    assert eur.exit_code == 1 and "only USD" in eur.output
    no_ledger = cli(
        "reconcile", "--store", f"sqlite:///{tmp_path / 'none.db'}", "--provider", "openai", "--file", report
    )
    assert no_ledger.exit_code == 1
    assert (
        cli(
            "reconcile",
            "--store",
            openai_ledger,
            "--provider",
            "openai",
            "--file",
            report,
            "--tolerance",
            "abc",
        ).exit_code
        == 2
    )
