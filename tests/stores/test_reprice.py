"""Price versions: `Store.reprice` costs records again into a named version, keeping the original;
summaries and history read the version on request; `tokentrail reprice` and `report --prices`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tokentrail as tt
from tokentrail._record import Record, to_timestamp_us
from tokentrail._types import Cost
from tokentrail.cli import app
from tokentrail.stores.base import PruningStore, Query, RepricingStore, Store
from tokentrail.tracker import Tracker

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=timezone.utc)
USAGE = tt.Usage(input_tokens=1000, output_tokens=100)
GPT_4O = tt.price(USAGE, "gpt-4o").total_units  # 2.5 $/M in, 10 $/M out → $0.0035
MINI = tt.price(USAGE, "gpt-4o-mini").total_units
FLAT = 7 * 10**21  # $0.007 in yocto-dollars

runner = CliRunner()


def repricing(make_store: Callable[[], Store]) -> Tracker:
    store = make_store()
    assert isinstance(store, RepricingStore)
    return Tracker(store=store)


def flat(units: int) -> Callable[[Record], Cost]:
    """A price function costing every record `units` yocto-dollars."""
    return lambda record: Cost(priced=True, parts=(units,))


def doubled(record: Record) -> Cost:
    return Cost(priced=True, parts=(2 * (record.cost_units or 0),)) if record.priced else Cost.unpriced("no")


def ledger(tracker: Tracker) -> None:
    """Three gpt-4o calls (researcher, writer, researcher a day later) and one unpriced call."""
    tracker.record(USAGE, "gpt-4o", agent="researcher", at=T0)
    tracker.record(USAGE, "gpt-4o", agent="writer", at=T0 + timedelta(minutes=30))
    tracker.record(USAGE, "gpt-4o", agent="researcher", at=T0 + timedelta(days=1))
    tracker.record(USAGE, "acme-private", agent="writer", at=T0)


def reprice(tracker: Tracker, price_fn: Callable[[Record], Cost], label: str, **window: datetime) -> int:
    query = Query.build(
        {}, *(to_timestamp_us(window[k]) if k in window else None for k in ("since", "until"))
    )
    return tracker.store.reprice(query, price_fn, label)  # type: ignore[attr-defined,no-any-return]


def test_repriced_version_is_read_on_request_and_original_kept(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    ledger(tracker)
    assert reprice(tracker, doubled, "v2") == 3  # the unpriced call stays unpriced: unchanged
    assert tracker.totals().cost_units == 3 * GPT_4O
    version = tracker.totals(prices="v2")
    assert version.cost_units == 6 * GPT_4O
    assert (version.calls, version.unpriced_calls) == (4, 1)
    assert version.input_tokens == 4000
    assert tracker.totals(prices="original").cost_units == 3 * GPT_4O
    by_agent = {row.group["agent"]: row.cost_units for row in tracker.summary("agent", prices="v2")}
    assert by_agent == {"researcher": 4 * GPT_4O, "writer": 2 * GPT_4O}
    assert tracker.store.price_versions() == ["v2"]  # type: ignore[attr-defined]


def test_history_shows_the_version_cost_and_rule(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    ledger(tracker)
    reprice(tracker, flat(FLAT), "flat")
    original = [r.cost_units for r in tracker.history()]
    repriced = [r.cost_units for r in tracker.history(prices="flat")]
    assert original == [GPT_4O, None, GPT_4O, GPT_4O]
    assert repriced == [FLAT, FLAT, FLAT, FLAT]
    assert {r.cost for r in tracker.history(prices="flat")} == {Decimal("0.007")}


def test_only_the_selected_time_range_is_repriced(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    ledger(tracker)
    changed = reprice(tracker, flat(FLAT), "june-1", since=T0, until=T0 + timedelta(hours=1))
    assert changed == 3  # the two gpt-4o calls and the unpriced one of June 1
    version = tracker.totals(prices="june-1")
    assert version.cost_units == 3 * FLAT + GPT_4O
    assert version.unpriced_calls == 0
    assert version.priced_tokens == 4 * 1100


def test_unpriced_call_priced_by_a_version_moves_between_counts(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    ledger(tracker)

    def price_private(record: Record) -> Cost:
        return Cost(priced=True, parts=(FLAT,)) if record.model == "acme-private" else Cost.unpriced("gone")

    assert reprice(tracker, price_private, "swap") == 4
    totals = tracker.totals(prices="swap")
    assert (totals.calls, totals.unpriced_calls, totals.cost_units) == (4, 3, FLAT)
    assert totals.priced_tokens == 1100
    priced_only = tracker.totals(priced=True, prices="swap")
    assert (priced_only.calls, priced_only.cost_units) == (1, FLAT)
    by_model = {
        row.group["model"]: (row.calls, row.unpriced_calls) for row in tracker.summary("model", prices="swap")
    }
    assert by_model == {"gpt-4o": (3, 3), "acme-private": (1, 0)}
    assert tracker.totals(priced=True).calls == 3  # the recorded costs are untouched


def test_repricing_a_version_again_replaces_it(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    ledger(tracker)
    reprice(tracker, flat(FLAT), "v")
    reprice(tracker, flat(2 * FLAT), "v")
    assert tracker.totals(prices="v").cost_units == 8 * FLAT
    back = reprice(
        tracker, lambda r: Cost(priced=True, parts=(GPT_4O,)) if r.priced else Cost.unpriced("x"), "v"
    )
    assert back == 0  # every record back at its recorded cost
    assert tracker.totals(prices="v").cost_units == 3 * GPT_4O
    assert tracker.totals(prices="v").unpriced_calls == 1


def test_summary_cut_mid_hour_reads_the_version_from_raw_rows(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    ledger(tracker)
    reprice(tracker, flat(FLAT), "v")
    window = {"since": T0 + timedelta(minutes=10), "until": T0 + timedelta(hours=25)}
    assert tracker.totals(**window, prices="v").cost_units == 2 * FLAT  # writer at 10:30, researcher day 2
    assert tracker.totals(**window).cost_units == 2 * GPT_4O


def test_unknown_version_is_refused(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    ledger(tracker)
    with pytest.raises(ValueError, match="no price version 'nope'"):
        tracker.totals(prices="nope")
    with pytest.raises(ValueError, match="names the recorded costs"):
        reprice(tracker, doubled, "original")


def test_failing_price_function_changes_nothing(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    ledger(tracker)

    def broken(record: Record) -> Cost:
        if record.model == "acme-private":
            raise RuntimeError("catalog exploded")
        return Cost(priced=True, parts=(FLAT,))

    with pytest.raises(RuntimeError):
        reprice(tracker, broken, "half")
    assert "half" not in tracker.store.price_versions()  # type: ignore[attr-defined]
    assert tracker.totals().cost_units == 3 * GPT_4O


def test_reset_forgets_the_version_cost_of_removed_records(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    ledger(tracker)
    reprice(tracker, flat(FLAT), "v")
    assert tracker.reset(agent="writer") == 2
    totals = tracker.totals(prices="v")
    assert (totals.calls, totals.cost_units) == (2, 2 * FLAT)


def test_catalog_with_override_reprices_exactly(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    ledger(tracker)
    catalog = tt.Catalog.from_snapshot()
    catalog.set_price("gpt-4o", input="1.25", output="5")  # half the recorded price

    def price(record: Record) -> Cost:
        return catalog.price(record.usage, record.model, record.provider, record.timestamp)

    assert reprice(tracker, price, "half") == 3
    assert tracker.totals(prices="half").cost == Decimal("0.00525")  # 3 × $0.00175
    assert tracker.totals(prices="half").unpriced_calls == 1


# -- SQLite file and CLI ------------------------------------------------------------------------------


def sqlite_ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    tracker = Tracker(store=url)
    ledger(tracker)
    tracker.store.close()  # type: ignore[attr-defined]
    return url


def test_version_survives_reopening_the_file(tmp_path: Path) -> None:
    url = sqlite_ledger(tmp_path)
    tracker = Tracker(store=url)
    reprice(tracker, doubled, "v2")
    tracker.store.close()  # type: ignore[attr-defined]
    again = Tracker(store=url)
    assert again.totals(prices="v2").cost_units == 6 * GPT_4O
    assert again.totals().cost_units == 3 * GPT_4O
    again.store.close()  # type: ignore[attr-defined]


def test_cli_reprice_with_prices_file_and_report(tmp_path: Path) -> None:
    url = sqlite_ledger(tmp_path)
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[[price]]\nmodel = "gpt-4o"\ninput = "1.25"\noutput = "5"\n\n'
        '[[price]]\nmodel = "acme-private"\ninput = "1"\noutput = "2"\n'
    )
    since = T0.date().isoformat()
    result = runner.invoke(
        app, ["reprice", "--store", url, "--since", since, "--prices", str(prices), "--label", "q3"]
    )
    assert result.exit_code == 0, result.output
    assert "records costed differently: 4" in result.output
    # recorded $0.0105 (3 × 0.0035); q3: 3 × 0.00175 + acme 1000 × 1/M + 100 × 2/M = 0.00525 + 0.0012
    assert "$0.010500" in result.output and "$0.006450" in result.output
    assert "exact: -$0.00405" in result.output
    report = runner.invoke(
        app, ["report", "--store", url, "--by", "model", "--format", "json", "--prices", "q3"]
    )
    assert report.exit_code == 0, report.output
    data = json.loads(report.output)
    assert data["prices"] == "q3"
    assert Decimal(data["totals"]["cost"]) == Decimal("0.00645")
    original = json.loads(runner.invoke(app, ["report", "--store", url, "--format", "json"]).output)
    assert original["prices"] == "original"
    assert Decimal(original["totals"]["cost"]) == Decimal("0.0105")


def test_cli_report_unknown_prices_is_a_clear_error(tmp_path: Path) -> None:
    url = sqlite_ledger(tmp_path)
    result = runner.invoke(app, ["report", "--store", url, "--prices", "missing"])
    assert result.exit_code == 1
    assert "no price version 'missing'" in result.output


def test_cli_reprice_bad_prices_file(tmp_path: Path) -> None:
    url = sqlite_ledger(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["reprice", "--store", url, "--since", "2025-06-01", "--prices", str(bad)])
    assert result.exit_code == 1
    assert "Cannot read the prices file" in result.output


def test_version_with_tag_filter_and_hour_groups(make_store: Callable[[], Store]) -> None:
    tracker = repricing(make_store)
    tracker.record(USAGE, "gpt-4o", agent="a", tags=["eval"], at=T0)
    tracker.record(USAGE, "gpt-4o", agent="a", tags=["prod"], at=T0 + timedelta(hours=1))
    tracker.record(USAGE, "gpt-4o", agent="b", tags=["eval", "prod"], at=T0 + timedelta(hours=1))
    eval_only = Query.build({"tag": "eval"})
    assert tracker.store.reprice(eval_only, flat(FLAT), "eval-flat") == 2  # type: ignore[attr-defined]
    by_hour = {row.group["hour"]: row.cost_units for row in tracker.summary("hour", prices="eval-flat")}
    assert by_hour == {T0: FLAT, T0 + timedelta(hours=1): GPT_4O + FLAT}
    by_tag = {row.group["tag"]: row.cost_units for row in tracker.summary("tag", prices="eval-flat")}
    assert by_tag == {"eval": 2 * FLAT, "prod": GPT_4O + FLAT}
    assert tracker.totals(tag="prod", agent="b", prices="eval-flat").cost_units == FLAT


def test_price_rules_are_stored_once_and_read_back(tmp_path: Path) -> None:
    url = sqlite_ledger(tmp_path)
    tracker = Tracker(store=url)
    catalog = tt.Catalog.from_snapshot()
    catalog.set_price("acme-private", input="1", output="2")

    def price(record: Record) -> Cost:
        return catalog.price(record.usage, record.model, record.provider, record.timestamp)

    reprice(tracker, price, "acme")
    recorded = {r.model: r.price_rule for r in tracker.history()}
    repriced = {r.model: r.price_rule for r in tracker.history(prices="acme")}
    assert recorded["gpt-4o"] == tt.price(USAGE, "gpt-4o").rule
    assert recorded["acme-private"] is None
    assert repriced["acme-private"] is not None and repriced["acme-private"].source.startswith("override")
    tracker.store.close()  # type: ignore[attr-defined]
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    rules = conn.execute("SELECT count(*) FROM rules").fetchone()[0]
    references = {row[0] for row in conn.execute("SELECT DISTINCT rule FROM records WHERE rule IS NOT NULL")}
    conn.close()
    assert rules == 2  # gpt-4o's rule (three records) and the override (one version cost)
    assert all(reference.isdigit() for reference in references)


# -- every store agrees with the in-memory reference -----------------------------------------------------


def _mixed(record: Record) -> Cost:
    """A price function that leaves some records as recorded, prices others anew, unprices a few and
    prices the unpriced ones."""
    kind = record.id % 4
    if record.cost_units is None:
        return Cost(priced=True, parts=(FLAT + record.usage.input_tokens,))
    if kind == 0:
        return Cost(priced=True, parts=(record.cost_units,))
    if kind == 1:
        return Cost(priced=True, parts=(3 * record.cost_units + 1,))
    if kind == 2:
        return Cost.unpriced("dropped from the catalog")
    return Cost(priced=True, parts=(FLAT,))


def _units(cost: Cost) -> int | None:
    return cost.total_units if cost.priced else None


def _fill_both(tracker: Tracker, reference: Tracker) -> None:
    """The same 60 records (4 agents, 3 models incl. an unpriced one, 5 hours, some with a provider-
    reported cost and tags) in the store under test and in a memory store."""
    models = ["gpt-4o", "gpt-4o-mini", "acme-private"]
    for i in range(60):
        record = tracker.record(
            tt.Usage(input_tokens=100 + i, output_tokens=10 + i % 7),
            models[i % 3],
            agent=f"agent-{i % 4}",
            tags=["eval"] if i % 5 == 0 else None,
            provider_cost="0.0001" if i % 6 == 0 else None,
            duration_ms=float(i) if i % 2 else None,
            at=T0 + timedelta(minutes=7 * i),
        )
        reference.store.append(record)


def _view(tracker: Tracker, prices: str | None, **window: datetime) -> list[tuple[object, ...]]:
    rows = tracker.summary(("agent", "model", "hour"), **window, prices=prices)
    return sorted(
        (
            tuple(str(v) for v in row.group.values()),
            row.calls,
            row.unpriced_calls,
            row.cost_units,
            row.priced_tokens,
            row.usage.input_tokens,
            row.usage.output_tokens,
            row.provider_cost_units,
            row.provider_cost_calls,
            row.compared_provider_units,
            row.compared_cost_units,
        )
        for row in rows
    )


def _costs(tracker: Tracker, prices: str | None) -> list[tuple[int, int | None, str | None]]:
    return [(r.id, r.cost_units, r.unpriced_reason) for r in tracker.history(prices=prices)]


def test_versions_after_reprice_reset_and_prune_match_the_memory_store(
    make_store: Callable[[], Store],
) -> None:
    tracker = repricing(make_store)
    reference = Tracker(store="memory")
    _fill_both(tracker, reference)
    mid = {"since": T0 + timedelta(minutes=20), "until": T0 + timedelta(hours=4, minutes=40)}
    cut = Query.build(
        {"agent": "agent-1"},
        to_timestamp_us(T0 + timedelta(minutes=30)),
        to_timestamp_us(T0 + timedelta(hours=3)),
    )
    differing = sum(1 for r in reference.history() if _units(_mixed(r)) != r.cost_units)
    assert 0 < differing < 60
    for target in (tracker, reference):
        assert reprice(target, _mixed, "mixed") == differing
        assert reprice(target, flat(FLAT), "later", since=T0 + timedelta(hours=2)) > 0
        reprice(target, doubled, "later", **mid)  # again over part of the same version
        assert target.store.reset(cut) > 0  # cuts through hours, and through repriced records
        assert target.reset(agent="agent-2") > 0
    assert len({str(_view(tracker, prices)) for prices in (None, "mixed", "later")}) == 3
    for prices in (None, "mixed", "later"):
        assert _view(tracker, prices) == _view(reference, prices), prices
        assert _view(tracker, prices, **mid) == _view(reference, prices, **mid), prices
        assert _costs(tracker, prices) == _costs(reference, prices), prices
    assert isinstance(tracker.store, PruningStore) and isinstance(reference.store, PruningStore)
    for store in (tracker.store, reference.store):
        store.prune(to_timestamp_us(T0 + timedelta(hours=2)))
    for prices in (None, "mixed", "later"):
        assert _view(tracker, prices) == _view(reference, prices), prices
        assert _costs(tracker, prices) == _costs(reference, prices), prices
