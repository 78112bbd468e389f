"""The session list shows each session's non-token charges (requests, searches, durations, pages, … beside
the tokens; issue 17 point 3) as their own figure: `non_token_cost_usd` in /api/sessions, an "Other" column
on the sessions page and in `tokentrail sessions` (table, JSON, CSV), over the memory and SQLite stores.

Expected amounts are priced here from the calls as recorded (the plan below), not read from the code under
test.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import tokentrail as tt
from tests.test_cli_sessions import run
from tokentrail.cli import app
from tokentrail.server import create_app
from tokentrail.server._sessions import SESSION_FIELDS

AT = datetime(2026, 5, 4, 10, 0, tzinfo=timezone.utc)
# (session, usage, model, provider): a per-request fee (perplexity/sonar-pro), web searches (openai/gpt-4o),
# tokens only, and a session of unpriced calls only
PLAN = [
    ("searching", tt.Usage(2_000, 100, web_searches=3), "gpt-4o", "openai"),
    ("searching", tt.Usage(1_000, 100, web_searches=1), "gpt-4o", "openai"),
    ("searching", tt.Usage(500, 50), "acme-private", None),
    ("asking", tt.Usage(1_000, 3_000), "sonar-pro", "perplexity"),
    ("asking", tt.Usage(1_000, 100), "gpt-4o", "openai"),
    ("tokens-only", tt.Usage(1_000, 100), "gpt-4o", "openai"),
    ("unpriced-only", tt.Usage(1_000, 100), "acme-private", None),
]


def record_plan(tracker: tt.Tracker) -> None:
    for i, (session, usage, model, provider) in enumerate(PLAN):
        tracker.record(usage, model, provider, session=session, agent="a", at=AT + timedelta(minutes=i))
    tracker.flush()


def expected(session: str) -> tuple[Decimal, Decimal]:
    """(cost, its non-token part) of a session's priced calls, priced here."""
    cost = part = Decimal(0)
    for name, usage, model, provider in PLAN:
        priced = tt.price(usage, model, provider, at=AT)
        if name == session and priced.priced:
            cost += priced.total
            part += priced.non_token
    return cost, part


def test_the_plan_has_each_kind_of_session() -> None:
    assert expected("searching")[1] > 0 and expected("asking")[1] > 0
    assert expected("tokens-only") == (expected("tokens-only")[0], 0) and expected("tokens-only")[0] > 0
    assert expected("unpriced-only") == (0, 0)


@pytest.fixture(params=["memory", "sqlite"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    if request.param == "memory":
        tracker = tt.Tracker()
        record_plan(tracker)
        with TestClient(create_app(tracker)) as found:
            yield found
        return
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = tt.Tracker(store=url)
    record_plan(writer)
    writer.store.close()  # type: ignore[attr-defined]
    with TestClient(create_app(url)) as found:
        yield found


def test_the_api_serves_each_sessions_non_token_cost(client: TestClient) -> None:
    answer = client.get("/api/sessions")
    assert answer.status_code == 200, answer.text
    listed = {row["session"]: row for row in answer.json()["sessions"]}
    assert set(listed) == {name for name, *_ in PLAN}
    for name, row in listed.items():
        assert list(row) == list(SESSION_FIELDS)
        assert (Decimal(row["cost_usd"]), Decimal(row["non_token_cost_usd"])) == expected(name), name


def test_the_api_schema_says_the_list_carries_non_token_charges(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "not paid for tokens" in schema["paths"]["/api/sessions"]["get"]["summary"]


def _other_cells(page: str) -> dict[str, str]:
    """The "Other" column's exact amount (its title) per session row of the sessions page."""
    found = {}
    for session, cell in re.findall(
        r'<tr data-session="([^"]*)">.*?<td class="num non-token" title="\$([^"]*)">', page
    ):
        found[unescape(session)] = cell
    return found


def test_the_sessions_page_has_an_other_column_after_cost(client: TestClient) -> None:
    page = client.get("/sessions").text
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", page)
    assert head is not None
    titles = [unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<th[^>]*>.*?</th>", head[1])]
    assert titles[:3] == ["Session", "Cost", "Other"]
    cells = _other_cells(page)
    assert {name: Decimal(text) for name, text in cells.items()} == {
        name: expected(name)[1] for name, *_ in PLAN
    }
    unpriced_row = re.search(r'<tr data-session="unpriced-only">(.*?)</tr>', page)
    assert unpriced_row is not None and ">—</td>" in unpriced_row[1]  # no priced call: no amount


def test_the_sessions_page_leaves_the_column_out_when_no_session_shown_has_such_a_charge(
    client: TestClient,
) -> None:
    page = client.get("/sessions", params={"q": "tokens-only"}).text
    assert 'data-session="tokens-only"' in page
    assert ">Other</th>" not in page and "non-token" not in page


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = tt.Tracker(store=url)
    record_plan(writer)
    writer.store.close()  # type: ignore[attr-defined]
    return url


def test_cli_sessions_json_and_csv_carry_the_non_token_cost(ledger: str) -> None:
    with TestClient(create_app(ledger)) as client:
        api = client.get("/api/sessions", params={"limit": 20}).json()["sessions"]
    listed = json.loads(run("sessions", "--store", ledger, "--format", "json"))
    assert listed["sessions"] == api
    rows = list(csv.DictReader(io.StringIO(run("sessions", "--store", ledger, "--format", "csv"))))
    assert [row["session"] for row in rows] == [row["session"] for row in api]
    for row, served in zip(rows, api, strict=True):
        assert list(row) == list(SESSION_FIELDS)
        assert (Decimal(row["cost_usd"]), Decimal(row["non_token_cost_usd"])) == expected(row["session"])
        assert row == {**{k: str(v) for k, v in served.items()}, "agents": "; ".join(served["agents"])}


def test_cli_sessions_csv_of_no_session_is_its_header(ledger: str) -> None:
    text = run("sessions", "--store", ledger, "--format", "csv", "--search", "nobody")
    assert text == ",".join(SESSION_FIELDS) + "\n"


def test_cli_sessions_table_shows_other_after_cost(ledger: str) -> None:
    text = run("sessions", "--store", ledger, columns=160)
    header = next(line for line in text.splitlines() if "Session" in line and "Cost" in line)
    assert re.search(r"Cost\W+Other\W+Calls", header)
    searching = next(line for line in text.splitlines() if "searching" in line)
    cost, part = expected("searching")
    assert f"${cost:,.6f}" in searching and f"${part:,.6f}" in searching
    unpriced = next(line for line in text.splitlines() if "unpriced-only" in line)
    assert re.search(r"unpriced\W+-\W", unpriced)
    plain = run("sessions", "--store", ledger, "--search", "tokens-only", columns=160)
    assert "Other" not in plain


def test_cli_sessions_refuses_an_unknown_format(ledger: str) -> None:
    result = CliRunner().invoke(app, ["sessions", "--store", ledger, "--format", "xml"])
    assert result.exit_code != 0
    assert "table, json or csv" in result.output
