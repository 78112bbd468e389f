"""The HTML page and the analytics panel (anomalies, forecast), rendered server-side."""

from __future__ import annotations

import calendar
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

import tokentrail as tt
from tests.server.conftest import NOW, Ledger
from tokentrail.server import create_app

SPIKE_HOUR = datetime(2031, 3, 4, 12, 0, tzinfo=timezone.utc)


def fixed_clock(now: datetime) -> Callable[[], datetime]:
    """The app's clock, stopped at `now`: no test here reads the wall clock."""
    return lambda: now


def spiky_tracker(spike_hour: datetime = SPIKE_HOUR) -> tt.Tracker:
    """48 quiet hours of one agent, then one hour costing a hundred times more (recorded at its first second)."""
    tracker = tt.Tracker()
    for back in range(48, 0, -1):
        tokens = 1000 + 50 * (back % 5)
        tracker.record(
            tt.Usage(tokens, 100),
            model="gpt-4o",
            agent="a",
            at=spike_hour - timedelta(hours=back, minutes=-10),
        )
    tracker.record(tt.Usage(200_000, 10_000), model="gpt-4o", agent="a", at=spike_hour)
    return tracker


def test_page_is_self_contained_and_live(ledger: Ledger) -> None:
    """The overview's one script is the frame's small inline poller (no src, no CDN, no other URL)."""
    from tokentrail.server._layout import LIVE_SCRIPT

    with TestClient(create_app(ledger.url, live_seconds=1.5)) as client:
        html = client.get("/").text
    assert "<svg" in html
    assert html.count("<script") == 1 and f"<script>{LIVE_SCRIPT}</script>" in html
    assert len(LIVE_SCRIPT) < 2500 and "fetch(live.dataset.pulse" in LIVE_SCRIPT
    assert '<div id="live" data-pulse="/api/pulse" data-every="1500">' in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html and " src=" not in html


def test_page_defaults_to_the_last_30_days(ledger: Ledger) -> None:
    with TestClient(create_app(ledger.url, clock=fixed_clock(NOW))) as client:
        html = client.get("/").text
    assert '<b id="total-calls">8</b>' in html  # the call 40 days ago and the one 60 days ago are outside
    assert (
        html.count(
            '<rect class="bar"',
            html.index('id="chart-time"'),
            html.index("</svg>", html.index('id="chart-time"')),
        )
        == 30
    )


@pytest.mark.parametrize(
    ("spike_hour", "into_the_hour"),
    [
        (SPIKE_HOUR, timedelta(seconds=30)),
        (SPIKE_HOUR, timedelta(minutes=59, seconds=59)),
        (datetime(2031, 3, 1, 0, 0, tzinfo=timezone.utc), timedelta(seconds=30)),
    ],
    ids=["first-minute-of-the-hour", "last-second-of-the-hour", "first-minute-of-a-month"],
)
def test_anomalous_hour_is_listed_on_the_page_and_the_api(
    spike_hour: datetime, into_the_hour: timedelta
) -> None:
    """The hour "now" is in, however little of it has passed, is scanned by the 24h range."""
    app = create_app(spiky_tracker(spike_hour), clock=fixed_clock(spike_hour + into_the_hour))
    with TestClient(app) as client:
        found = client.get("/api/anomalies", params={"range": "24h"}).json()["anomalies"]
        html = client.get("/", params={"range": "24h"}).text
    assert sorted(item["metric"] for item in found) == ["cost_per_call", "cost_per_hour"]
    assert {item["period"] for item in found} == {spike_hour.isoformat()}
    assert all(item["value_usd"] == "0.6" for item in found)  # 200k in + 10k out on gpt-4o
    assert '<table id="anomalies">' in html and spike_hour.isoformat() in html


@pytest.mark.parametrize("until", ["0001-01-01T05:00:00", "0001-01-07T00:00:00"])
def test_anomalies_of_a_window_ending_near_year_one_are_none_not_an_error(until: str) -> None:
    """The scan's start (`until` - 24 h, at most 7 days back) would fall before year 1: it starts there."""
    app = create_app(spiky_tracker(SPIKE_HOUR), clock=fixed_clock(SPIKE_HOUR))
    with TestClient(app) as client:
        answer = client.get("/api/anomalies", params={"until": until})
    assert answer.status_code == 200 and answer.json()["anomalies"] == []


def test_forecast_of_a_steady_spend_is_shown_with_its_method() -> None:
    """Ten days at exactly $0.0035 a day: the forecast is flat, its interval collapses to the total."""
    tracker = tt.Tracker()
    noon = datetime(2031, 3, 17, 12, 0, tzinfo=timezone.utc)
    for days in range(1, 11):
        tracker.record(tt.Usage(1000, 100), model="gpt-4o", agent="a", at=noon - timedelta(days=days))
    today = noon.date()
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    days_left = days_in_month - today.day + 1
    expected = Decimal("0.0035") * (min(today.day - 1, 10) + days_left)
    with TestClient(create_app(tracker, clock=fixed_clock(noon))) as client:
        outlook = client.get("/api/forecast").json()["forecast"]
        html = client.get("/").text
    assert Decimal(outlook["total_usd"]) == Decimal(outlook["low_usd"]) == expected
    assert outlook["method"] == "ols-daily-cost" and "method ols-daily-cost" in html


def test_too_little_history_gives_the_reason_instead_of_a_forecast() -> None:
    with TestClient(
        create_app(spiky_tracker(), clock=fixed_clock(SPIKE_HOUR + timedelta(minutes=30)))
    ) as client:
        body = client.get("/api/forecast").json()
        html = client.get("/").text
    assert body["forecast"] is None and "3 complete days" in body["note"]
    assert "No forecast" in html


def test_panel_says_analytics_not_available_when_the_import_fails(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tokentrail.analytics", None)  # makes `import` raise ImportError
    app = create_app(ledger.url)
    with TestClient(app) as client:
        html = client.get("/").text
        assert client.get("/api/anomalies").status_code == 404
    assert "analytics not available" in html
