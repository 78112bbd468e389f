"""In headless Chromium against a real `tokentrail serve`: a ledger with an OpenAI Responses call that made
one web search shows that search's $0.01 as the hatched "other than tokens" part of its chart bars and in
the session page's "Other" column and totals; axe-core finds no serious or critical violation.

Needs Debian's chromium, playwright and axe-core from tests/node (`make node`); when one is missing the
tests skip loudly on a developer's machine and FAIL under CI=true. Screenshots go to tests/server/artifacts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.server.chromium import ARTIFACTS, axe_checked_page, axe_violations
from tests.server.conftest import running_server
from tests.server.test_non_token_charts import record_web_search_run

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('non-token-browser') / 'ledger.db'}"
    record_web_search_run(url)
    with running_server("--store", url) as base:
        yield base


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Page]:
    with axe_checked_page({"width": 1280, "height": 900}) as opened:
        yield opened


def test_the_charts_show_the_search_charge_beside_the_token_cost(server: str, page: Page) -> None:
    page.goto(f"{server}/?range=all")
    for chart in ("#chart-agent", "#chart-model"):
        searched = page.locator(f"{chart} rect.bar[data-other='0.01']")
        assert searched.count() == 1 and searched.get_attribute("data-value") == "0.042892"
        assert page.locator(f"{chart} text.value", has_text="$0.0429 · other $0.0100").count() == 1
        assert page.locator(f"{chart} .legend", has_text="other than tokens").count() == 1
        hatched = page.locator(f"{chart} > rect.bar-other").bounding_box()
        whole = searched.bounding_box()
        assert hatched is not None and whole is not None
        assert hatched["width"] == pytest.approx(whole["width"] * 0.01 / 0.042892, abs=0.5)  # its share
        assert hatched["x"] + hatched["width"] == pytest.approx(whole["x"] + whole["width"], abs=0.5)
    assert page.locator("#total-non-token").inner_text() == "$0.0100"
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#chart-agent").screenshot(path=str(ARTIFACTS / "chart-non-token.png"))
    assert axe_violations(page) == []


def test_the_session_page_shows_the_other_column_and_total(server: str, page: Page) -> None:
    page.goto(f"{server}/sessions/web-run")
    assert page.locator("#run-non-token").inner_text() == "$0.0100"
    heads = page.locator("#timeline-table thead th").all_inner_texts()
    assert heads[heads.index("Cost") + 1] == "Other"
    assert page.locator("#timeline-table td.non-token").all_inner_texts() == ["$0.0100", "$0", "—"]
    page.screenshot(path=str(ARTIFACTS / "session-non-token.png"), full_page=True)
    assert axe_violations(page) == []


def test_the_session_list_shows_the_other_column(server: str, page: Page) -> None:
    page.goto(f"{server}/sessions?range=all")
    heads = page.locator("#sessions thead th").all_inner_texts()
    assert heads[heads.index("Cost") + 1] == "Other"
    row = page.locator('#sessions tr[data-session="web-run"]')
    assert row.locator("td.non-token").inner_text() == "$0.0100"
    assert row.locator("td.non-token").get_attribute("title") == "$0.01"
    page.screenshot(path=str(ARTIFACTS / "sessions-non-token.png"), full_page=True)
    assert axe_violations(page) == []
