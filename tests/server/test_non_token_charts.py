"""The overview's charts and a session's page show the part of the cost not paid for tokens (requests,
searches, durations, pages, …) beside it: a hatched part of each chart bar with its exact value, an "Other"
column in the timeline and an "Other than tokens" figure in the session's totals — only when some call of
what is shown has such a charge, as the `report` table does."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import tokentrail as tt
from tokentrail.server import create_app

FIXTURES = Path(__file__).parents[1] / "fixtures"
AT = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
PLAIN = tt.Usage(1_000, 100)


def record_web_search_run(url: str) -> None:
    """One session: an OpenAI Responses call with one web_search_call ($0.01 of its cost is that search),
    a plain gpt-4o call and an unpriced one."""
    fixture = json.loads((FIXTURES / "openai" / "responses.json").read_text())
    writer = tt.Tracker(store=url)
    usage = tt.usage_from_response(fixture["response"])
    context = fixture["expected_price_context"]
    model = fixture["expected_model"]
    writer.record(usage, model, "openai", context=context, agent="researcher", session="web-run", at=AT)
    writer.record(PLAIN, "gpt-4o", "openai", agent="writer", session="web-run", at=AT + timedelta(minutes=1))
    writer.record(PLAIN, "acme-private", agent="writer", session="web-run", at=AT + timedelta(minutes=2))
    writer.store.close()  # type: ignore[attr-defined]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    record_web_search_run(url)
    with TestClient(create_app(url)) as served:
        yield served


@pytest.fixture
def plain_client(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    writer = tt.Tracker(store=url)
    writer.record(PLAIN, "gpt-4o", "openai", agent="writer", session="plain-run", at=AT)
    writer.store.close()  # type: ignore[attr-defined]
    with TestClient(create_app(url)) as served:
        yield served


def chart(html: str, chart_id: str) -> str:
    start = html.index(f'<svg id="{chart_id}"')
    return html[start : html.index("</svg>", start)]


def bars(svg: str) -> dict[str, tuple[str, str]]:
    """Each bar's label → (data-value, data-other), the exact figures it was drawn from."""
    found = re.findall(
        r'<rect class="bar" [^>]*data-label="([^"]*)" data-value="([^"]*)" data-other="([^"]*)"', svg
    )
    return {label: (value, other) for label, value, other in found}


@pytest.mark.parametrize("key", ["agent", "model"])
def test_each_chart_bar_carries_the_exact_non_token_part_the_api_serves(client: TestClient, key: str) -> None:
    rows = client.get("/api/summary", params={"by": key, "range": "all"}).json()["rows"]
    served = {row["group"][key]: (row["cost_usd"], row["non_token_cost_usd"]) for row in rows}
    assert bars(chart(client.get("/", params={"range": "all"}).text, f"chart-{key}")) == served
    searched = "researcher" if key == "agent" else "gpt-5-2025-08-07"
    assert served[searched] == ("0.042892", "0.01")  # the one web search, at $10 per 1,000


def test_the_non_token_part_of_a_bar_is_hatched_labelled_and_in_the_legend(client: TestClient) -> None:
    svg = chart(client.get("/", params={"range": "all"}).text, "chart-agent")
    assert svg.count('class="bar-other"') == 2  # the legend's swatch and the researcher's bar
    assert 'fill="url(#chart-agent-other)"' in svg and '<pattern id="chart-agent-other"' in svg
    assert ">tokens</text>" in svg and ">other than tokens</text>" in svg
    assert ">$0.0429 · other $0.0100</text>" in svg and ">$0.0035</text>" in svg
    assert "<title>researcher: $0.042892 (other than tokens $0.01)</title>" in svg


def test_the_cost_over_time_chart_stacks_the_non_token_part(client: TestClient) -> None:
    svg = chart(client.get("/", params={"range": "24h"}).text, "chart-time")
    others = re.findall(r'<rect class="bar" [^>]*data-value="([^"]*)" data-other="([^"]*)"', svg)
    assert sum(Decimal(other) for _, other in others) == Decimal("0.01")
    assert sum(Decimal(value) for value, _ in others) == Decimal("0.042892") + Decimal("0.0035")
    assert svg.count('class="bar-other"') == 2


def test_without_non_token_charges_the_charts_have_one_part(plain_client: TestClient) -> None:
    html = plain_client.get("/", params={"range": "all"}).text
    for chart_id in ("chart-time", "chart-agent", "chart-model", "chart-user"):
        svg = chart(html, chart_id)
        assert "data-other" not in svg and "bar-other" not in svg and "<pattern" not in svg


def test_the_session_page_shows_the_other_column_and_total(client: TestClient) -> None:
    html = client.get("/sessions/web-run").text
    assert re.search(r'id="run-non-token">([^<]+)<', html).group(1) == "$0.0100"  # type: ignore[union-attr]
    timeline = html[html.index('id="timeline-table"') :]
    assert ">Other</th>" in timeline
    assert re.findall(r'<td class="num non-token">([^<]*)</td>', timeline) == ["$0.0100", "$0", "—"]


def test_the_session_api_carries_the_exact_non_token_totals(client: TestClient) -> None:
    run = client.get("/api/sessions/web-run").json()
    assert run["non_token_cost_usd"] == "0.01" and run["cost_usd"] == "0.046392"
    tree = run["tree"]
    assert tree["non_token_cost_usd"] == "0.01"
    assert {node["name"]: node["non_token_cost_usd"] for node in tree["children"]} == {
        "researcher": "0.01",
        "writer": "0",
    }
    assert [call["non_token_cost_usd"] for call in run["timeline"]] == ["0.01", "0", None]


def test_without_non_token_charges_the_session_page_has_no_other_column(plain_client: TestClient) -> None:
    html = plain_client.get("/sessions/plain-run").text
    assert 'id="run-non-token"' not in html and ">Other</th>" not in html and "non-token" not in html
    assert plain_client.get("/api/sessions/plain-run").json()["non_token_cost_usd"] == "0"
