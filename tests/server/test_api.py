"""The JSON API over a seeded SQLite ledger: exact figures equal the tracker's own queries; read-only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import tokentrail as tt
from tests.server.conftest import NOW, Ledger
from tokentrail.errors import StoreError
from tokentrail.server import ReadOnlyStore, create_app, create_metrics_app, open_read_only


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    with TestClient(create_app(ledger.url)) as test_client:
        yield test_client


def _expected(rows: list[tt.SummaryRow] | list[object]) -> list[tuple[object, ...]]:
    out = []
    for row in rows:
        assert isinstance(row, tt.SummaryRow)
        group = tuple(None if v is None else str(v) for v in row.group.values())
        out.append((group, row.calls, row.unpriced_calls, str(row.cost), row.input_tokens, row.output_tokens))
    return sorted(out, key=repr)


def _served(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    out = []
    for row in rows:
        group = row["group"]
        assert isinstance(group, dict)
        out.append(
            (
                tuple(group.values()),
                row["calls"],
                row["unpriced_calls"],
                row["cost_usd"],
                row["input_tokens"],
                row["output_tokens"],
            )
        )
    return sorted(out, key=repr)


def test_summary_equals_the_tracker_summary(client: TestClient, reader: tt.Tracker) -> None:
    response = client.get("/api/summary", params={"by": ["agent", "model"]})
    assert response.status_code == 200
    body = response.json()
    assert body["by"] == ["agent", "model"]
    assert _served(body["rows"]) == _expected(reader.summary(by=("agent", "model")))
    assert len(body["rows"]) == 6  # researcher x3 models, writer x3 models


def test_summary_time_range_and_scope_filter(client: TestClient, reader: tt.Tracker) -> None:
    since = (NOW - timedelta(days=7)).isoformat()
    response = client.get("/api/summary", params={"by": "user", "since": since, "agent": "researcher"})
    assert response.status_code == 200
    expected = reader.summary(by=("user",), since=NOW - timedelta(days=7), agent="researcher")
    assert _served(response.json()["rows"]) == _expected(expected)
    # researcher calls in the last 7 days: alice x2 (0 and 5 days ago), carol, bob
    calls = {row["group"]["user"]: row["calls"] for row in response.json()["rows"]}
    assert calls == {"alice": 2, "bob": 1, "carol": 1}


def test_preset_range_narrows_the_totals(client: TestClient, reader: tt.Tracker) -> None:
    everything = client.get("/api/totals").json()["totals"]
    last_week = client.get("/api/totals", params={"range": "7d"}).json()["totals"]
    assert everything["calls"] == 10
    assert everything["cost_usd"] == str(reader.totals().cost)
    assert last_week["calls"] == 7
    assert everything["unpriced_calls"] == last_week["unpriced_calls"] == 1


def test_bad_group_key_is_422(client: TestClient) -> None:
    assert client.get("/api/summary", params={"by": "prompt"}).status_code == 422
    assert client.get("/api/summary", params={"by": ["agent", "agent"]}).status_code == 422


def test_unknown_filter_values_are_422(client: TestClient) -> None:
    assert client.get("/api/summary", params={"range": "1y"}).status_code == 422
    assert client.get("/api/summary", params={"status": "bogus"}).status_code == 422
    assert client.get("/api/records", params={"limit": 0}).status_code == 422


def test_records_are_newest_first_paginated_and_without_prompt_text(
    client: TestClient, reader: tt.Tracker
) -> None:
    first = client.get("/api/records", params={"limit": 3}).json()["records"]
    second = client.get("/api/records", params={"limit": 3, "offset": 3}).json()["records"]
    newest = reader.history()[::-1]
    assert [r["id"] for r in first + second] == [f"{record.id:032x}" for record in newest[:6]]
    assert [r["timestamp"] for r in first] == sorted((r["timestamp"] for r in first), reverse=True)
    assert not {"prompt", "messages", "text", "content"} & set(first[0])
    assert first[0]["agent"] == "researcher" and first[0]["model"] == "gpt-4o-mini"


def test_unpriced_call_has_no_cost(client: TestClient) -> None:
    records = client.get("/api/records", params={"model": "my-local-model"}).json()["records"]
    assert len(records) == 1
    assert records[0]["cost_usd"] is None and records[0]["unpriced_reason"]


def test_budgets_show_percent_used() -> None:
    tracker = tt.Tracker(budgets=[tt.Budget(limit_usd="0.01", name="daily", scope={"agent": "a"})])
    tracker.record(tt.Usage(1000, 1000), model="gpt-4o", agent="a")
    expected = tracker.budget_status()[0]
    with TestClient(create_app(tracker)) as client:
        (budget,) = client.get("/api/budgets").json()["budgets"]
    assert budget["budget"] == "daily"
    assert budget["spent_usd"] == str(expected.spent_usd)
    assert budget["percent"] == expected.percent > 0


def test_no_budgets_is_an_empty_list(client: TestClient) -> None:
    assert client.get("/api/budgets").json() == {"budgets": []}


def test_metrics_parse_back_with_the_ledger_figures(client: TestClient, reader: tt.Tracker) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    requests = sum(sample.value for sample in families["tokentrail_requests"].samples)
    assert requests == reader.totals().calls == 10
    unpriced = sum(sample.value for sample in families["tokentrail_unpriced_requests"].samples)
    assert unpriced == 1


def test_openapi_lists_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/summary", "/api/records", "/api/budgets", "/api/totals"} <= set(paths)
    by = next(p for p in paths["/api/summary"]["get"]["parameters"] if p["name"] == "by")
    assert "prompt" not in str(by) and "agent" in str(by)


def test_requests_leave_the_ledger_file_unchanged(ledger: Ledger) -> None:
    before = ledger.digest()
    app = create_app(ledger.url)
    with TestClient(app) as client:
        for path in ("/", "/api/summary", "/api/totals", "/api/records", "/api/budgets", "/metrics"):
            assert client.get(path).status_code == 200
    app.state.tracker.store.close()
    assert ledger.digest() == before


def test_the_served_store_refuses_writes(ledger: Ledger) -> None:
    store = open_read_only(ledger.url)
    try:
        assert isinstance(store, ReadOnlyStore)
        with pytest.raises(StoreError):
            store.reset(tt.Tracker()._query(None, None, True, {}))
        record = tt.Tracker().record(tt.Usage(1, 1), model="gpt-4o")
        with pytest.raises(StoreError):
            store.append(record)
    finally:
        store.close()


def test_a_missing_sqlite_ledger_is_not_created(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StoreError):
        create_app(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()


def test_metrics_only_app_serves_nothing_else(reader: tt.Tracker) -> None:
    with TestClient(create_metrics_app(reader)) as client:
        assert client.get("/api/summary").status_code == 404
        response = client.get("/metrics")
    assert response.status_code == 200
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"tokentrail_tokens", "tokentrail_cost_usd", "tokentrail_requests"} <= families
