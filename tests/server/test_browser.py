"""The dashboard in headless Chromium against a real `tokentrail serve` (uvicorn) on 127.0.0.1.

Needs Debian's chromium (`apt-get install -y chromium`, or `make chromium`) and playwright. When either is
missing the tests skip loudly on a developer's machine and FAIL under CI=true (see `skip_or_fail`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from tests.server.chromium import ARTIFACTS, launched_page, require_chromium
from tests.server.conftest import Ledger, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()


@pytest.fixture(scope="module")
def server(ledger: Ledger) -> Iterator[str]:
    with running_server("--store", ledger.url, "--host", "127.0.0.1") as base:
        yield base


@pytest.fixture(scope="module")
def browser_page(chromium: str, server: str) -> Iterator[tuple[Page, list[str], list[str]]]:
    with launched_page(chromium, {"width": 1200, "height": 900}) as opened:
        yield opened


def _bars(page: Page, chart: str) -> int:
    return page.locator(f"svg#{chart} rect.bar").count()


def test_dashboard_renders_filters_and_saves_a_screenshot(
    server: str, browser_page: tuple[Page, list[str], list[str]]
) -> None:
    page, errors, requested = browser_page
    page.goto(f"{server}/?range=all")
    assert page.locator("#total-calls").inner_text() == "10"
    first_day = (datetime.now(timezone.utc) - timedelta(days=60, minutes=5)).date()
    days = (datetime.now(timezone.utc).date() - first_day).days + 1
    assert _bars(page, "chart-time") == days  # one bar per UTC day, empty days included
    assert _bars(page, "chart-agent") == 2
    assert _bars(page, "chart-model") == 4
    assert _bars(page, "chart-user") == 3
    cost_all = page.locator("#total-cost").inner_text()

    page.select_option("#f-range", "7d")
    page.click("#apply")
    page.wait_for_load_state()
    assert "range=7d" in page.url
    assert page.locator("#total-calls").inner_text() == "7"
    assert page.locator("#total-cost").inner_text() != cost_all
    assert _bars(page, "chart-time") == 7

    page.select_option("#f-agent", "writer")
    page.click("#apply")
    page.wait_for_load_state()
    assert page.locator("#total-calls").inner_text() == "3"  # writer in the last 7 days: 0, 1 and 3 days ago
    assert _bars(page, "chart-agent") == 1
    assert page.locator("#unpriced").inner_text().count("my-local-model") == 1
    assert page.locator("#insights h2").count() == 1

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    assert errors == []
    assert all(url.startswith(server) or url.startswith("data:") for url in requested), requested
