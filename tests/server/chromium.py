"""Headless Chromium for the browser tests (Debian's chromium driven by playwright) and the axe-core check
they run on each page, shared by the browser tests of tests/server.

When chromium or playwright is missing the tests skip loudly on a developer's machine and FAIL under
CI=true (see `skip_or_fail`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.conftest import require_module, skip_or_fail
from tests.nodejs import NODE_DIR

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, ViewportSize

ARTIFACTS = Path(__file__).parent / "artifacts"
AXE = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """The chromium executable: $TOKENTRAIL_CHROMIUM, else `chromium` on PATH, else /usr/bin/chromium."""
    return os.environ.get("TOKENTRAIL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def require_chromium() -> str:
    """The chromium executable, or a loud skip (a failure under CI=true) naming how to install it."""
    path = chromium_path()
    if not Path(path).is_file():
        looked = (
            f"no chromium at {path!r} (looked at $TOKENTRAIL_CHROMIUM, `chromium` on PATH, /usr/bin/chromium)"
        )
        skip_or_fail("CHROMIUM (browser)", looked, "apt-get install -y chromium (or `make chromium`)")
    return path


@contextlib.contextmanager
def launched_page(executable: str, viewport: ViewportSize) -> Iterator[tuple[Page, list[str], list[str]]]:
    """A page of a freshly launched headless Chromium, with the errors it reports (console errors and
    uncaught exceptions) and every URL it requests, collected as it runs; the browser closes after."""
    sync_api = require_module(
        "playwright.sync_api", "CHROMIUM (browser)", "pip install playwright (the test extra)"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=viewport)
        errors: list[str] = []
        requested: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda request: requested.append(request.url))
        try:
            yield page, errors, requested
        finally:
            browser.close()


def require_axe() -> None:
    """axe-core from tests/node, or a loud skip (a failure under CI=true) naming how to install it."""
    if not AXE.is_file():
        skip_or_fail("axe-core (tests/node)", f"{AXE} is not installed", "make node")


@contextlib.contextmanager
def axe_checked_page(viewport: ViewportSize) -> Iterator[Page]:
    """A page for the tests that run axe-core on what they open (chromium and axe-core required); the page
    must have reported no error by the time it closes."""
    path = require_chromium()
    require_axe()
    with launched_page(path, viewport) as (page, errors, _):
        yield page
    assert errors == []


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is (WCAG 2 A and AA rules)."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'best-practice']}}))"
        ".violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]
