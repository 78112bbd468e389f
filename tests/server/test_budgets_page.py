"""The budgets page and /api/budgets over the budget back-ends a gateway or an application shares: SQLite, a
real Redis and a real Postgres (each test its own key prefix or schema).

An "application" BudgetManager spends and reserves; the dashboard reads the same back-end the way
`tokentrail serve --budget-backend URL` does (definitions from the back-end, nothing registered).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import tokentrail as tt
from tokentrail.budgets import Budget, BudgetManager
from tokentrail.budgets.config import budget_from_mapping
from tokentrail.budgets.connect import open_backend
from tokentrail.server import create_app

# One instant for the application and the dashboard alike (both read the same windows). It is the real
# time the module loaded: Redis expires a window's keys by the real clock, so a made-up date would vanish.
NOW = time.time()
USD = 10**24  # budget counters count 10**-24 USD


def clock() -> float:
    return NOW


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    unique = uuid.uuid4().hex[:12]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'budgets.db'}"
        return
    if request.param == "redis":  # own key prefix, dropped after
        url, drop = f"{request.getfixturevalue('redis_server')}?prefix=tt-page-{unique}:", "drop"
    else:  # own schema, dropped after
        url, drop = f"{request.getfixturevalue('postgres_server')}?schema=tt_page_{unique}", "drop_schema"
    yield url
    backend = open_backend(url)
    getattr(backend, drop)()
    backend.close()


def _application(url: str) -> BudgetManager:
    budgets = [
        Budget(limit_usd="1", name="team-a", scope={"agent": "a"}, thresholds=(0.5, 0.8), window="daily"),
        Budget(limit_usd="10", name="everyone", window="monthly"),
        Budget(limit_tokens=1000, name="per-user", scope={"user": "*"}, window="daily", action="warn"),
    ]
    return BudgetManager(budgets, url, clock=clock)


def _dashboard(url: str) -> tt.Tracker:
    """What `tokentrail serve --budget-backend URL` builds: the stored definitions, registered by nobody."""
    backend = open_backend(url)
    try:
        stored = backend.definitions()
    finally:
        backend.close()
    budgets = [budget_from_mapping(definition, name) for name, definition in stored.items()]
    return tt.Tracker(budgets=BudgetManager(budgets, url, register=False, clock=clock))


def _spend(manager: BudgetManager) -> None:
    usage = tt.Usage(300, 100)
    manager.record({"agent": "a", "user": "ann"}, usage, 6 * USD // 10, NOW)  # $0.60 of team-a's $1
    manager.record({"agent": "b", "user": "bob"}, usage, 2 * USD, NOW)  # $2 of everyone's $10
    held = manager.reserve(None, scope={"agent": "a"}, estimate_units=USD // 10)  # $0.10 in flight
    assert held.budgets  # the reservation stays open: the dashboard shows it as reserved


def test_api_budgets_shows_spent_reserved_remaining_and_fired_alerts(backend_url: str) -> None:
    application = _application(backend_url)
    _spend(application)
    dashboard = _dashboard(backend_url)
    with TestClient(create_app(dashboard)) as client:
        rows = {
            (row["budget"], tuple(sorted(row["scope"].items()))): row
            for row in client.get("/api/budgets").json()["budgets"]
        }
    team = rows[("team-a", (("agent", "a"),))]
    assert (team["spent_usd"], team["reserved_usd"], team["remaining_usd"]) == ("0.6", "0.1", "0.3")
    assert team["limit_usd"] == "1" and team["percent"] == pytest.approx(60.0)
    assert team["alerts"] == ["0.5"]  # 50 % reached, 80 % not yet
    assert team["committed_percent"] == pytest.approx(70.0)
    midnight = datetime.fromtimestamp(NOW, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    assert team["resets_at"] == (midnight + timedelta(days=1)).isoformat()
    everyone = rows[("everyone", ())]
    assert (everyone["spent_usd"], everyone["reserved_usd"]) == ("2.6", "0.1")
    assert everyone["alerts"] == []
    users = {row["scope"]["user"]: row for (name, _), row in rows.items() if name == "per-user"}
    assert users["ann"]["spent_tokens"] == users["bob"]["spent_tokens"] == 400
    assert users["ann"]["remaining_tokens"] == 600
    expected = {(s.budget, tuple(sorted(s.scope.items()))): s for s in application.status()}
    assert set(expected) == set(rows)
    for key, status in expected.items():
        assert Decimal(rows[key]["spent_usd"]) == status.spent_usd
        assert Decimal(rows[key]["reserved_usd"]) == status.reserved_usd
    application.close()


def test_closest_to_the_limit_comes_first(backend_url: str) -> None:
    application = _application(backend_url)
    _spend(application)
    with TestClient(create_app(_dashboard(backend_url))) as client:
        closest = client.get("/api/budgets", params={"order": "closest"}).json()["budgets"]
        html = client.get("/budgets").text
    assert [row["budget"] for row in closest[:2]] == ["team-a", "per-user"]  # 70 %, then 40 %
    assert [row["committed_percent"] for row in closest] == sorted(
        (row["committed_percent"] for row in closest), reverse=True
    )
    closest_section = html.split('id="closest"', 1)[1].split("</section>", 1)[0]
    assert closest_section.index('data-budget="team-a"') < closest_section.index('data-budget="everyone"')
    alerts = html.split('id="alerts"', 1)[1].split("</section>", 1)[0]
    assert "team-a" in alerts and "50%" in alerts and "everyone" not in alerts
    application.close()


def test_the_page_follows_the_back_end_as_spend_arrives(backend_url: str) -> None:
    application = _application(backend_url)
    with TestClient(create_app(_dashboard(backend_url))) as client:
        before = client.get("/api/budgets").json()["budgets"]
        application.record({"agent": "a"}, tt.Usage(10, 10), 9 * USD // 10, NOW)  # $0.90: past 80 %
        after = {row["budget"]: row for row in client.get("/api/budgets").json()["budgets"]}
        html = client.get("/budgets").text
    assert {row["budget"]: row["spent_usd"] for row in before}["team-a"] == "0"
    assert after["team-a"]["spent_usd"] == "0.9"
    assert after["team-a"]["alerts"] == ["0.5", "0.8"]
    assert "80%" in html.split('id="alerts"', 1)[1]
    application.close()


def test_without_a_budget_back_end_the_page_says_how_to_attach_one() -> None:
    with TestClient(create_app(tt.Tracker())) as client:
        page = client.get("/budgets")
        api = client.get("/api/budgets").json()
    assert page.status_code == 200 and "--budget-backend" in page.text
    assert api == {"budgets": []}
