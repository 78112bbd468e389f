"""The sessions and budgets pages in headless Chromium against a real `tokentrail serve` (uvicorn): filter
the list, click a session, open a call, walk it by keyboard, watch a call written during the test appear
without a reload, and check every page with axe-core (no violation of serious or critical impact).

Needs Debian's chromium, playwright, and axe-core from tests/node (`make node`); when one is missing the
tests skip loudly on a developer's machine and FAIL under CI=true. Screenshots go to tests/server/artifacts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

import tokentrail as tt
from tests.server.chromium import ARTIFACTS, axe_checked_page, axe_violations
from tests.server.conftest import running_server

if TYPE_CHECKING:
    from playwright.sync_api import Page

START = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)


def _seed(url: str) -> None:
    writer = tt.Tracker(store=url)
    for number in range(3):
        session = f"run-{number}"
        with tt.scope(session=session, user="alice"), tt.scope(agent="planner"):
            for step in range(4):
                at = START + timedelta(minutes=number * 20, seconds=step * 7)
                writer.record(
                    tt.Usage(25_000 * (step + 1), 400),
                    model="gpt-4o",
                    duration_ms=800.0,
                    ttft_ms=150.0,
                    at=at,
                )
                with tt.scope(agent="researcher"):
                    writer.record(
                        tt.Usage(900, 90),
                        model="gpt-4o-mini",
                        duration_ms=300.0,
                        at=at + timedelta(seconds=2),
                    )
    writer.record(tt.Usage(50, 50), model="my-local-model", session="run-local", agent="tinkerer", at=START)
    writer.store.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def ledger_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sessions-browser') / 'ledger.db'}"
    _seed(url)
    return url


@pytest.fixture(scope="module")
def budgets_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sessions-browser-budgets') / 'budgets.db'}"
    manager = tt.BudgetManager(
        [tt.Budget(limit_usd="1", name="team-a", scope={"agent": "planner"}, thresholds=(0.5,))], url
    )
    manager.record({"agent": "planner"}, tt.Usage(10, 10), 7 * 10**23)  # $0.70 of $1
    manager.close()
    return url


@pytest.fixture(scope="module")
def server(ledger_url: str, budgets_url: str) -> Iterator[str]:
    with running_server("--store", ledger_url, "--budget-backend", budgets_url) as base:
        yield base


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Page]:
    with axe_checked_page({"width": 1280, "height": 900}) as opened:
        yield opened


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_filter_the_list_then_click_a_session_and_open_a_call(server: str, page: Page) -> None:
    page.goto(f"{server}/sessions")
    rows = page.locator("#sessions tbody tr")
    assert rows.count() == 4
    assert rows.first.get_attribute("data-session") == "run-2"  # the newest first
    page.fill("#q", "local")
    page.click("#apply")
    page.wait_for_url("**/sessions?*q=local*")
    assert [rows.nth(i).get_attribute("data-session") for i in range(rows.count())] == ["run-local"]
    assert "unpriced" in rows.first.inner_text()
    page.fill("#q", "")
    page.select_option("#f-sort", "cost")
    page.click("#apply")
    page.wait_for_url("**sort=cost**")
    _shot(page, "sessions.png")
    assert axe_violations(page) == []

    page.click("a.session-link >> text=run-1")
    page.wait_for_url("**/sessions/run-1")
    assert page.locator("#run-calls").inner_text() == "8"
    assert page.locator("#tree .node-name", has_text="researcher").count() == 1
    assert page.locator("svg#chart-context polyline.fill").get_attribute("data-points") == "8"
    assert page.locator("svg#chart-context circle.warnmark").count() >= 1  # 100k of a 128k window: past 75 %
    page.locator("#timeline-table a.call-link").nth(6).click()
    page.wait_for_url("**call=*")
    detail = page.locator("#call")
    assert "Call #7" in detail.locator("h2").inner_text()
    assert "genai-prices" in detail.inner_text() and "input_tokens" in detail.inner_text()
    _shot(page, "session.png")
    assert axe_violations(page) == []


def test_the_keyboard_reaches_a_session_and_its_calls(server: str, page: Page) -> None:
    page.goto(f"{server}/sessions?sort=session&order=asc")
    for _ in range(40):  # skip link, navigation, the form, the sortable headers, then the rows
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.className") == "session-link":
            break
    assert page.evaluate("document.activeElement.textContent") == "run-0"
    page.keyboard.press("Enter")
    page.wait_for_url("**/sessions/run-0")
    summary = page.locator("#tree summary").first
    summary.focus()
    page.keyboard.press("Enter")  # a tree node folds and unfolds from the keyboard
    assert page.evaluate("document.querySelector('#tree details').open") is False
    page.keyboard.press("Enter")
    assert page.evaluate("document.querySelector('#tree details').open") is True


def test_a_call_written_now_appears_on_the_open_pages(server: str, page: Page, ledger_url: str) -> None:
    page.goto(f"{server}/sessions/run-0")
    assert page.locator("#run-calls").inner_text() == "8"
    browser = page.context.browser
    assert browser is not None
    list_page = browser.new_page()
    list_page.goto(f"{server}/sessions?sort=calls")
    writer = tt.Tracker(store=ledger_url)
    with tt.scope(session="run-0", agent="late-joiner"):
        writer.record(tt.Usage(100, 10), model="gpt-4o", duration_ms=50.0)
    writer.store.close()  # type: ignore[attr-defined]
    page.wait_for_function("document.getElementById('run-calls').textContent === '9'", timeout=30_000)
    assert page.locator("#tree .node-name", has_text="late-joiner").count() == 1
    assert page.evaluate("document.getElementById('live').dataset.updates") == "1"
    list_page.wait_for_function(
        "document.querySelector('#sessions tbody tr').dataset.session === 'run-0'", timeout=30_000
    )
    list_page.close()


def test_the_budgets_page_is_live_and_accessible(server: str, page: Page, budgets_url: str) -> None:
    page.goto(f"{server}/budgets")
    row = page.locator("#budgets-table tr[data-budget='team-a']")
    assert row.locator(".budget-percent").inner_text().startswith("70.0%")
    assert "50%" in page.locator("#alerts").inner_text()
    _shot(page, "budgets.png")
    assert axe_violations(page) == []
    manager = tt.BudgetManager(
        [tt.Budget(limit_usd="1", name="team-a", scope={"agent": "planner"}, thresholds=(0.5,))], budgets_url
    )
    manager.record({"agent": "planner"}, tt.Usage(10, 10), 2 * 10**23)  # $0.20 more
    manager.close()
    page.wait_for_function(
        "document.querySelector(\"#budgets-table tr[data-budget='team-a'] .budget-percent\").textContent.startsWith('90.0%')",
        timeout=30_000,
    )


def test_the_overview_links_to_the_new_pages_and_passes_axe(server: str, page: Page) -> None:
    page.goto(f"{server}/?range=all")
    page.click("nav >> text=Sessions")
    page.wait_for_url("**/sessions")
    page.goto(f"{server}/?range=all")
    assert axe_violations(page) == []


def test_the_overview_is_live(server: str, page: Page, ledger_url: str) -> None:
    page.goto(f"{server}/?range=all")
    before = int(page.locator("#total-calls").inner_text().replace(",", ""))
    assert page.locator("script").count() == 1 and page.locator("script[src]").count() == 0
    writer = tt.Tracker(store=ledger_url)
    writer.record(tt.Usage(120, 12), model="gpt-4o", session="run-overview", agent="planner")
    writer.store.close()  # type: ignore[attr-defined]
    page.wait_for_function(
        f"document.getElementById('total-calls').textContent === '{before + 1}'", timeout=30_000
    )
    assert page.evaluate("document.getElementById('live').dataset.updates") == "1"
    assert page.locator("#f-range").input_value() == "all"  # the filters (outside the live region) stay
    _shot(page, "overview-live.png")
