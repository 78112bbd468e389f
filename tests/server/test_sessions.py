"""/api/sessions, /api/sessions/{id}, /api/pulse and the session pages, over the memory and SQLite stores.

Expected figures are summed here from the calls as recorded (the plan below), not from the code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import tokentrail as tt
from tokentrail.server import create_app

BASE = datetime(2026, 5, 4, 10, 0, tzinfo=timezone.utc)

# (session, agent path, model, input, output, seconds after BASE, duration ms, ttft ms)
PLAN = [
    ("alpha", ("planner",), "gpt-4o", 1000, 200, 0, 900.0, 120.0),
    ("alpha", ("planner", "researcher"), "gpt-4o-mini", 3000, 300, 5, 400.0, None),
    ("alpha", ("planner", "researcher"), "gpt-4o-mini", 5000, 100, 9, 300.0, None),
    ("alpha", ("planner", "writer"), "my-local-model", 700, 700, 12, 200.0, None),
    ("beta", ("solo",), "gpt-4o", 200, 50, 60 * 25, 100.0, 30.0),  # 10:25
    ("beta", ("solo",), "gpt-4o", 300, 50, 60 * 40, 100.0, 30.0),  # 10:40, same hour as gamma's last
    ("gamma", ("scout",), "gpt-4o-mini", 10, 5, 60 * 35, 50.0, None),  # 10:35
    ("delta", ("archivist",), "gpt-4o", 50_000, 5000, -3 * 86400, 2000.0, None),  # three days before
]


def record_plan(tracker: tt.Tracker) -> None:
    for session, path, model, tokens_in, tokens_out, seconds, duration, ttft in PLAN:
        with tt.scope(session=session):
            scopes = [tt.scope(agent=name) for name in path]
            for entered in scopes:
                entered.__enter__()
            try:
                tracker.record(
                    tt.Usage(tokens_in, tokens_out),
                    model=model,
                    duration_ms=duration,
                    ttft_ms=ttft,
                    at=BASE + timedelta(seconds=seconds),
                )
            finally:
                for entered in reversed(scopes):
                    entered.__exit__(None, None, None)
    tracker.record(tt.Usage(5, 5), model="gpt-4o", at=BASE)  # no session: never listed
    tracker.flush()


def price(model: str, tokens_in: int, tokens_out: int) -> Decimal | None:
    cost = tt.price(tt.Usage(tokens_in, tokens_out), model)
    return cost.total if cost.priced else None


def expected_cost(session: str) -> Decimal:
    return sum((price(m, i, o) or Decimal(0) for s, _, m, i, o, *_ in PLAN if s == session), start=Decimal(0))


@pytest.fixture(params=["memory", "sqlite"])
def tracker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tt.Tracker]:
    if request.param == "memory":
        found = tt.Tracker()
        record_plan(found)
        yield found
        return
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = tt.Tracker(store=url)
    record_plan(writer)
    writer.store.close()  # type: ignore[attr-defined]
    reader = tt.Tracker(store=url)
    yield reader
    reader.store.close()  # type: ignore[attr-defined]


@pytest.fixture
def client(tracker: tt.Tracker) -> Iterator[TestClient]:
    with TestClient(create_app(tracker)) as found:
        yield found


def sessions(client: TestClient, **params: object) -> list[dict[str, object]]:
    answer = client.get("/api/sessions", params=params)
    assert answer.status_code == 200, answer.text
    listed: list[dict[str, object]] = answer.json()["sessions"]
    return listed


def test_the_list_has_each_sessions_exact_totals(client: TestClient) -> None:
    listed = {row["session"]: row for row in sessions(client)}
    assert set(listed) == {"alpha", "beta", "gamma", "delta"}
    alpha = listed["alpha"]
    assert Decimal(str(alpha["cost_usd"])) == expected_cost("alpha")
    assert alpha["calls"] == 4 and alpha["unpriced_calls"] == 1
    assert alpha["total_tokens"] == 1200 + 3300 + 5100 + 1400
    assert alpha["agents"] == ["planner", "researcher", "writer"]
    assert alpha["first_call"] == BASE.isoformat()
    assert alpha["last_call"] == (BASE + timedelta(seconds=12)).isoformat()
    assert alpha["span_ms"] == 12_000
    assert alpha["call_time_ms"] == 1800.0
    assert listed["beta"]["last_call"] == (BASE + timedelta(minutes=40)).isoformat()


def test_the_newest_session_comes_first_even_within_one_hour(client: TestClient) -> None:
    # beta's last call (10:40) and gamma's (10:35) share an hour: the exact times decide
    assert [row["session"] for row in sessions(client)] == ["beta", "gamma", "alpha", "delta"]
    assert [row["session"] for row in sessions(client, order="asc")] == ["delta", "alpha", "gamma", "beta"]
    assert [row["session"] for row in sessions(client, sort="first", order="desc")] == [
        "gamma",
        "beta",
        "alpha",
        "delta",
    ]


@pytest.mark.parametrize(
    ("sort", "order", "expected"),
    [
        ("cost", "desc", ["delta", "alpha", "beta", "gamma"]),
        ("calls", "desc", ["alpha", "beta", "delta", "gamma"]),
        ("tokens", "asc", ["gamma", "beta", "alpha", "delta"]),
        ("unpriced", "desc", ["alpha", "beta", "delta", "gamma"]),
        ("span", "desc", ["beta", "alpha", "delta", "gamma"]),
        ("session", "asc", ["alpha", "beta", "delta", "gamma"]),
    ],
)
def test_every_sort_key(client: TestClient, sort: str, order: str, expected: list[str]) -> None:
    assert [row["session"] for row in sessions(client, sort=sort, order=order)] == expected


def test_search_matches_session_ids_and_agents(client: TestClient) -> None:
    assert [row["session"] for row in sessions(client, q="ALP")] == ["alpha"]
    assert [row["session"] for row in sessions(client, q="scout")] == ["gamma"]
    assert sessions(client, q="nobody") == []


def test_pages_do_not_overlap(client: TestClient) -> None:
    first = sessions(client, limit=2)
    second = sessions(client, limit=2, offset=2)
    assert [r["session"] for r in first + second] == ["beta", "gamma", "alpha", "delta"]
    assert client.get("/api/sessions", params={"limit": 2}).json()["total"] == 4


def test_a_window_lists_the_sessions_active_in_it_with_their_whole_totals(client: TestClient) -> None:
    since = (BASE + timedelta(seconds=10)).isoformat()
    until = (BASE + timedelta(minutes=30)).isoformat()
    listed = {row["session"]: row for row in sessions(client, since=since, until=until)}
    assert set(listed) == {"alpha", "beta"}  # alpha's last call (10:00:12), beta's first (10:25)
    assert listed["alpha"]["calls"] == 4  # all of alpha, not only the call in the window


def test_the_run_tree_has_exact_subtree_costs_and_shares(client: TestClient) -> None:
    run = client.get("/api/sessions/alpha").json()
    tree = run["tree"]
    assert Decimal(tree["cost_usd"]) == expected_cost("alpha") and tree["share_percent"] == 100.0
    (planner,) = tree["children"]
    researcher = next(node for node in planner["children"] if node["name"] == "researcher")
    writer = next(node for node in planner["children"] if node["name"] == "writer")
    researcher_cost = price("gpt-4o-mini", 3000, 300) + price("gpt-4o-mini", 5000, 100)  # type: ignore[operator]
    assert Decimal(researcher["cost_usd"]) == researcher_cost
    assert researcher["share_percent"] == round(float(researcher_cost * 100 / expected_cost("alpha")), 2)
    assert researcher["path"] == ["planner", "researcher"] and len(researcher["call_ids"]) == 2
    assert writer["unpriced_calls"] == 1 and Decimal(writer["cost_usd"]) == 0
    assert planner["calls"] == 4 and len(planner["call_ids"]) == 1


def test_the_timeline_has_start_duration_and_time_to_first_token(client: TestClient) -> None:
    timeline = client.get("/api/sessions/alpha").json()["timeline"]
    assert [call["index"] for call in timeline] == [0, 1, 2, 3]
    first, second = timeline[0], timeline[1]
    assert first["started"] == (BASE - timedelta(milliseconds=900)).isoformat()
    assert first["duration_ms"] == 900.0 and first["ttft_ms"] == 120.0
    assert second["offset_ms"] == 900 + 5000 - 400
    page = client.get("/api/sessions/alpha", params={"limit": 2, "offset": 2}).json()["timeline"]
    assert [call["index"] for call in page] == [2, 3]


def test_an_unknown_session_is_404(client: TestClient) -> None:
    assert client.get("/api/sessions/nobody").status_code == 404
    assert client.get("/sessions/nobody").status_code == 404


def test_the_pulse_changes_when_a_call_arrives() -> None:
    tracker = tt.Tracker()
    record_plan(tracker)
    with TestClient(create_app(tracker)) as client:
        before = client.get("/api/pulse", params={"session": "beta"}).json()
        other = client.get("/api/pulse", params={"session": "alpha"}).json()
        tracker.record(tt.Usage(10, 10), model="gpt-4o", session="beta", at=BASE + timedelta(hours=1))
        after = client.get("/api/pulse", params={"session": "beta"}).json()
        assert client.get("/api/pulse", params={"session": "alpha"}).json() == other
    assert (before["calls"], after["calls"]) == (2, 3)


# -- one call's detail --------------------------------------------------------------------------------------


def test_a_calls_detail_has_every_unit_the_rule_and_both_costs() -> None:
    tracker = tt.Tracker()
    usage = tt.Usage(
        2000,
        300,
        cache_read_tokens=500,
        input_audio_tokens=100,
        reasoning_tokens=50,
        web_searches=2,
        audio_ms=1500,
        input_audio_ms=1500,
    )
    tracker.record(usage, model="gpt-4o", session="s", provider_cost="0.01", at=BASE)
    tracker.record(tt.Usage.unknown("stream closed before usage"), model="gpt-4o", session="s", at=BASE)
    tracker.record(tt.Usage(10, 10), model="my-local-model", session="s", at=BASE + timedelta(seconds=1))
    with TestClient(create_app(tracker)) as client:
        first, unknown, unpriced = client.get("/api/sessions/s").json()["timeline"]
        html = client.get("/sessions/s", params={"call": first["id"]}).text
    assert first["units"] == {
        "input_tokens": 2000,
        "output_tokens": 300,
        "cache_read_tokens": 500,
        "input_audio_tokens": 100,
        "reasoning_tokens": 50,
        "web_searches": 2,
        "audio_ms": 1500,
        "input_audio_ms": 1500,
        "requests": 1,
    }
    ours = tt.price(usage, "gpt-4o").total
    assert Decimal(first["cost_usd"]) == ours
    assert first["provider_cost_usd"] == "0.01"
    assert Decimal(first["cost_difference_usd"]) == Decimal("0.01") - ours
    assert (
        first["catalog_version"] == first["price_rule"]["source"] and first["price_rule"]["model"] == "gpt-4o"
    )
    assert first["context_window"] == 128_000 and first["context_fill"] == round(2000 / 128_000, 6)
    assert (unknown["status"], unknown["reason"]) == ("unknown", "stream closed before usage")
    assert unpriced["cost_usd"] is None and unpriced["unpriced_reason"]
    assert unpriced["context_window"] is None and unpriced["context_fill"] is None
    detail = html.split('id="call"', 1)[1].split("</section>", 1)[0]
    for text in ("input_audio_tokens", "web_searches", "audio_ms", "$0.01", first["price_rule"]["source"]):
        assert text in detail


def test_context_warnings_are_the_ones_the_context_monitor_raises() -> None:
    live = tt.Tracker()
    raised: list[tt.ContextWarning] = []
    live.context(on_warning=raised.append)  # the monitor a running application would attach
    for step in range(1, 9):
        live.record(
            tt.Usage(step * 15_000, 500), model="gpt-4o", session="long", at=BASE + timedelta(seconds=step)
        )
    live.flush()
    assert raised  # the plan does cross the thresholds
    with TestClient(create_app(live)) as client:
        run = client.get("/api/sessions/long").json()
        html = client.get("/sessions/long").text
    shown = run["context"]["warnings"]
    assert [(w["threshold"], w["tokens"], w["message"]) for w in shown] == [
        (w.threshold, w.tokens, str(w)) for w in raised
    ]
    assert run["context"]["thresholds"] == [0.75, 0.9]
    assert html.count('class="warnmark"') == len(raised)
    assert 'data-points="8"' in html  # every call's fill is known (gpt-4o: 128k window)


# -- the pages ------------------------------------------------------------------------------------------


def test_the_list_page_links_every_session_and_sorts_by_header(client: TestClient) -> None:
    html = client.get("/sessions", params={"sort": "cost"}).text
    assert html.index('data-session="delta"') < html.index('data-session="alpha"')
    assert 'href="/sessions/alpha"' in html
    assert 'aria-sort="descending"' in html
    searched = client.get("/sessions", params={"q": "scout"}).text
    assert 'data-session="gamma"' in searched and 'data-session="alpha"' not in searched


def test_the_session_page_shows_tree_context_and_timeline(client: TestClient) -> None:
    html = client.get("/sessions/alpha").text
    for section in ('id="run-totals"', 'id="tree"', 'id="context"', 'id="timeline"', 'id="chart-context"'):
        assert section in html
    assert html.count('class="call-link"') == 4 + 4  # each call in the tree and in the timeline
    assert "researcher" in html.split('id="tree"', 1)[1]
    assert "http://" not in html and "https://" not in html
