"""The dashboard and API show non-token charges (requests, searches, durations, pages, …) as their own
figure: summary rows and records in the API, the overview's totals and recent calls, a call's detail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import tokentrail as tt
from tokentrail.server import create_app

NOW = datetime.now(timezone.utc)
SONAR = tt.Usage(1_000, 3_000)  # perplexity/sonar-pro: a per-request fee
SEARCHED = tt.Usage(2_000, 100, web_searches=3)  # openai/gpt-4o: web searches
PLAIN = tt.Usage(1_000, 100)


@pytest.fixture
def tracker_and_client(tmp_path: Path) -> Iterator[tuple[tt.Tracker, TestClient]]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = tt.Tracker(store=url)
    at = NOW - timedelta(hours=2)
    writer.record(SONAR, "sonar-pro", "perplexity", agent="researcher", session="s1", at=at)
    writer.record(
        SEARCHED, "gpt-4o", "openai", agent="researcher", session="s1", at=at + timedelta(minutes=1)
    )
    writer.record(PLAIN, "gpt-4o", "openai", agent="writer", session="s1", at=at + timedelta(minutes=2))
    writer.record(PLAIN, "acme-private", agent="writer", session="s1", at=at + timedelta(minutes=3))
    writer.store.close()  # type: ignore[attr-defined]
    reader = tt.Tracker(store=url)
    with TestClient(create_app(url)) as client:
        yield reader, client


def expected(tracker: tt.Tracker) -> dict[str, Decimal]:
    return {
        record.model or "": record.non_token_cost or Decimal(0)
        for record in tracker.history()
        if record.non_token_units
    }


def test_the_api_serves_the_non_token_cost_of_rows_and_records(
    tracker_and_client: tuple[tt.Tracker, TestClient],
) -> None:
    tracker, client = tracker_and_client
    parts = expected(tracker)
    assert set(parts) == {"sonar-pro", "gpt-4o"} and all(parts.values())
    rows = client.get("/api/summary", params={"by": "model", "range": "all"}).json()["rows"]
    served = {row["group"]["model"]: Decimal(row["non_token_cost_usd"]) for row in rows}
    assert served == {row.group["model"]: row.non_token_cost for row in tracker.summary("model")}
    assert served["sonar-pro"] == parts["sonar-pro"] and served["acme-private"] == 0
    totals = client.get("/api/totals", params={"range": "all"}).json()
    assert Decimal(totals["totals"]["non_token_cost_usd"]) == sum(parts.values())
    records = client.get("/api/records", params={"range": "all"}).json()["records"]
    by_model = {r["model"]: r["non_token_cost_usd"] for r in records if r["agent"] == "researcher"}
    assert {m: Decimal(v) for m, v in by_model.items()} == parts
    assert next(r for r in records if r["model"] == "acme-private")["non_token_cost_usd"] is None
    run = client.get("/api/sessions/s1").json()
    calls = {c["model"]: c["non_token_cost_usd"] for c in run["timeline"]}
    assert Decimal(calls["sonar-pro"]) == parts["sonar-pro"] and calls["acme-private"] is None


def test_the_overview_shows_the_charges_beside_the_cost(
    tracker_and_client: tuple[tt.Tracker, TestClient],
) -> None:
    tracker, client = tracker_and_client
    html = client.get("/", params={"range": "7d"}).text
    figure = re.search(r'id="total-non-token">([^<]+)<', html)
    assert figure is not None and "Other than tokens" in html
    total = tracker.totals().non_token_cost
    assert unescape(figure.group(1)) == f"${total:,.4f}"
    recent = html[html.index('id="recent"') :]
    assert ">Other</th>" in recent and recent.count('class="num non-token"') == 4


def test_a_call_detail_says_what_was_not_tokens(tracker_and_client: tuple[tt.Tracker, TestClient]) -> None:
    tracker, client = tracker_and_client
    record = next(r for r in tracker.history() if r.model == "sonar-pro")
    html = client.get("/sessions/s1", params={"call": f"{record.id:032x}"}).text
    detail = unescape(html[html.index('id="call"') :])
    assert "Of which not tokens" in detail and f"${record.non_token_cost}" in detail


def test_without_such_charges_the_overview_has_no_other_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    writer = tt.Tracker(store=url)
    writer.record(PLAIN, "gpt-4o", "openai", agent="a", at=NOW - timedelta(hours=1))
    writer.store.close()  # type: ignore[attr-defined]
    with TestClient(create_app(url)) as client:
        html = client.get("/", params={"range": "7d"}).text
    assert 'id="total-non-token"' not in html and ">Other</th>" not in html
