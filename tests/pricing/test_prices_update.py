"""`tokentrail prices update / diff`: fresh prices without a release, against a real local HTTP server.

The served data is genai-prices' published format (the JSON array of providers its updater fetches from
https://raw.githubusercontent.com/pydantic/genai-prices/refs/heads/main/prices/new_data/v2/data.json),
made from the pinned genai-prices package (`genai.published_providers`), then edited per test: a price
change, a new model, half the models dropped, a negative or absurd price, a cut or corrupt body.
Whatever fails, the catalog in force stays and the error says why.
"""

from __future__ import annotations

import copy
import gzip
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import tokentrail as tt
from tokentrail.cli import app
from tokentrail.errors import CatalogError
from tokentrail.pricing.catalog import Catalog, set_default_catalog
from tokentrail.pricing.genai import dumps_published, published_providers
from tokentrail.pricing.index import PriceIndex
from tokentrail.pricing.installed import bundled_snapshot, install, read_installed, select_snapshot
from tokentrail.pricing.refresh import Refresher, parse_interval, start_from_env
from tokentrail.pricing.update import update

FETCHED_ON = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)  # after the bundled snapshot was built
HAIKU = ("anthropic", "claude-3-haiku")  # published prices: input 0.25, output 1.25 per million tokens
USAGE = tt.Usage(1_000_000, 1_000_000)

Handler = Callable[[BaseHTTPRequestHandler], None]


# -- a real local HTTP server --------------------------------------------------------------------------


class Server:
    """A local HTTP server; each path answers with its handler; every request's headers are kept."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()  # a stalled route waits for this, never for the clock
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers.items())))
                server.routes[self.path](self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve(self, path: str, body: bytes, etag: str | None = None) -> str:
        """`path` answers 200 with `body` (304 to a matching If-None-Match when it has an ETag)."""

        def handle(request: BaseHTTPRequestHandler) -> None:
            if etag is not None and request.headers.get("If-None-Match") == etag:
                request.send_response(304)
                request.send_header("ETag", etag)
                request.end_headers()
                return
            request.send_response(200)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(body)))
            if etag is not None:
                request.send_header("ETag", etag)
            request.end_headers()
            request.wfile.write(body)

        self.routes[path] = handle
        return self.url(path)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


@pytest.fixture(scope="module")
def published() -> list[dict[str, Any]]:
    return published_providers()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty user cache directory for this test; the process default catalog chosen afresh."""
    monkeypatch.setenv("TOKENTRAIL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TOKENTRAIL_CATALOG", raising=False)
    set_default_catalog(None)
    yield tmp_path / "cache" / "prices" / "catalog.json.gz"
    set_default_catalog(None)


def _model(providers: list[dict[str, Any]], provider: str, model: str) -> dict[str, Any]:
    found = next(p for p in providers if p["id"] == provider)
    return next(m for m in found["models"] if m["id"] == model)


def _newer(published: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The published data a day later: claude-3-haiku input down to 0.2, one new model."""
    data = copy.deepcopy(published)
    _model(data, *HAIKU)["prices"]["input_mtok"] = Decimal("0.2")
    anthropic = next(p for p in data if p["id"] == "anthropic")
    anthropic["models"].append(
        {
            "id": "claude-next",
            "match": {"equals": "claude-next"},
            "prices": {"input_mtok": 1, "output_mtok": 2},
        }
    )
    return data


def _install_newer(server: Server, published: list[dict[str, Any]], cache: Path) -> str:
    url = server.serve("/v1/data.json", dumps_published(_newer(published)), etag='"v1"')
    result = update(url, now=FETCHED_ON)
    assert result.status == "installed" and result.path == cache
    return result.version


def _cost(catalog: Catalog, model: str = "claude-3-haiku") -> Decimal:
    return catalog.price(USAGE, model, "anthropic").total


# -- 200: fetched, checked, installed, in force -----------------------------------------------------------


def test_update_installs_the_fetched_catalog_and_the_default_catalog_prices_with_it(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    assert tt.price(USAGE, "claude-3-haiku", "anthropic").total == Decimal("1.5")  # bundled: 0.25 + 1.25
    set_default_catalog(None)

    version = _install_newer(server, published, cache)

    installed = read_installed(cache)
    assert installed is not None
    assert version.startswith("genai-prices data 2030-01-02 ")
    assert installed["fetched"]["url"] == server.url("/v1/data.json")
    assert installed["fetched"]["etag"] == '"v1"'
    assert installed["fetched"]["fetched_at"] == "2030-01-02T03:04:05+00:00"
    assert len(installed["fetched"]["sha256"]) == 64 and installed["fetched"]["sha256"][:12] in version
    cost = tt.price(USAGE, "claude-3-haiku", "anthropic")
    assert cost.total == Decimal("1.45")  # the new input price 0.2
    assert cost.rule is not None and cost.rule.source == version  # the record names its catalog
    assert tt.price(USAGE, "claude-next", "anthropic").total == Decimal(3)


def test_the_update_lists_what_changed_per_model(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    url = server.serve("/data.json", dumps_published(_newer(published)))
    result = update(url, now=FETCHED_ON)
    changes = {(c.provider, c.model): c for c in result.changes}
    assert set(changes) == {HAIKU, ("anthropic", "claude-next")}
    assert changes[HAIKU].kind == "changed" and changes[HAIKU].details == ("undated: input_mtok 0.25 → 0.2",)
    assert changes["anthropic", "claude-next"].kind == "added"


# -- 304 with ETag ----------------------------------------------------------------------------------------


def test_a_second_update_sends_the_etag_and_a_304_changes_nothing(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    version = _install_newer(server, published, cache)
    before = cache.read_bytes()

    result = update(server.url("/v1/data.json"), now=datetime(2030, 2, 1, tzinfo=timezone.utc))

    assert result.status == "not-modified" and result.version == version
    assert server.requests[-1][1].get("If-None-Match") == '"v1"'
    assert "If-None-Match" not in server.requests[0][1]
    assert cache.read_bytes() == before


def test_the_same_bytes_from_elsewhere_keep_the_installed_version(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    version = _install_newer(server, published, cache)
    mirror = server.serve("/mirror.json", dumps_published(_newer(published)))
    result = update(mirror, now=datetime(2030, 2, 1, tzinfo=timezone.utc))
    assert result.status == "unchanged" and result.version == version


# -- failures: the old catalog stays in force, the error is clear -----------------------------------------


def _refused(url: str, cache: Path, message: str, **options: Any) -> None:
    """`update(url)` raises a CatalogError containing `message`; the installed catalog is untouched."""
    before = cache.read_bytes()
    in_force = select_snapshot()[0]["version"]
    with pytest.raises(CatalogError) as raised:
        update(url, timeout=options.pop("timeout", 5.0), now=datetime(2030, 2, 1, tzinfo=timezone.utc))
    assert message in str(raised.value), str(raised.value)
    assert cache.read_bytes() == before
    assert select_snapshot()[0]["version"] == in_force


def test_a_timeout_keeps_the_old_catalog(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    _install_newer(server, published, cache)

    def stall(request: BaseHTTPRequestHandler) -> None:
        server.release.wait(30)  # released when the test ends: the client gives up first

    server.routes["/slow.json"] = stall
    _refused(server.url("/slow.json"), cache, "timed out after 0.3 s", timeout=0.3)
    set_default_catalog(None)
    assert _cost(tt.default_catalog()) == Decimal("1.45")  # the installed catalog's price, still


def test_a_body_cut_short_of_its_content_length_is_refused(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    _install_newer(server, published, cache)
    body = dumps_published(published)

    def cut(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body[: len(body) // 2])
        request.wfile.flush()
        request.close_connection = True

    server.routes["/cut.json"] = cut
    _refused(server.url("/cut.json"), cache, "truncated download")


def test_a_truncated_json_file_is_refused(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    _install_newer(server, published, cache)
    body = dumps_published(published)
    _refused(server.serve("/half-file.json", body[: len(body) * 2 // 3]), cache, "not valid JSON")


def test_corrupt_files_are_refused(server: Server, published: list[dict[str, Any]], cache: Path) -> None:
    _install_newer(server, published, cache)
    _refused(server.serve("/garbage.json", b"\x00\x17 not json at all"), cache, "not valid JSON")
    damaged_gzip = gzip.compress(dumps_published(published))[:500]
    _refused(server.serve("/data.json.gz", damaged_gzip), cache, "damaged gzip data")
    _refused(server.serve("/object.json", b'{"providers": []}'), cache, "expected a non-empty JSON array")
    _refused(server.serve("/empty.json", b""), cache, "empty file")


def test_an_http_error_is_refused(server: Server, published: list[dict[str, Any]], cache: Path) -> None:
    _install_newer(server, published, cache)

    def missing(request: BaseHTTPRequestHandler) -> None:
        request.send_error(404)

    server.routes["/gone.json"] = missing
    _refused(server.url("/gone.json"), cache, "HTTP 404")


def test_a_file_that_drops_half_the_models_is_refused(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    _install_newer(server, published, cache)
    data = copy.deepcopy(_newer(published))
    for provider in data:
        provider["models"] = provider["models"][: len(provider["models"]) // 2 + 1]
    url = server.serve("/half.json", dumps_published(data))

    _refused(url, cache, "a partial or broken file? (--allow-removals installs it anyway)")
    with pytest.raises(CatalogError, match=r"drops \d+ of the \d+ models the catalog in force prices"):
        update(url)


def test_a_few_models_removed_upstream_are_accepted_and_listed(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    data = copy.deepcopy(published)
    anthropic = next(p for p in data if p["id"] == "anthropic")
    anthropic["models"] = [m for m in anthropic["models"] if m["id"] not in ("claude-2", "claude-v1")]
    result = update(server.serve("/pruned.json", dumps_published(data)), now=FETCHED_ON)
    assert result.status == "installed"
    assert result.removed == [("anthropic", "claude-2"), ("anthropic", "claude-v1")]
    assert {(c.provider, c.model, c.kind) for c in result.changes} == {
        ("anthropic", "claude-2", "removed"),
        ("anthropic", "claude-v1", "removed"),
    }


def test_a_whole_provider_missing_is_refused(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    data = [p for p in published if p["id"] != "avian"]  # 24 models: few, but a whole provider
    with pytest.raises(CatalogError, match="drops providers avian and 24 of the"):
        update(server.serve("/no-avian.json", dumps_published(data)))
    assert not cache.exists()


def test_negative_and_absurd_prices_are_refused(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    _install_newer(server, published, cache)
    for price, message in (
        (Decimal("-0.25"), "('claude-3-haiku').prices.input_mtok: negative price -0.25"),
        (
            Decimal(25_000),
            "absurd prices: anthropic/claude-3-haiku input_mtok 25000 (undated) is above 10000",
        ),
        (Decimal(250), "input_mtok 0.2 → 250 (undated) is more than 100× the old price"),
    ):
        data = _newer(published)
        _model(data, *HAIKU)["prices"]["input_mtok"] = price
        _refused(server.serve(f"/price-{price}.json", dumps_published(data)), cache, message)


def test_schema_errors_name_the_field(server: Server, published: list[dict[str, Any]], cache: Path) -> None:
    _install_newer(server, published, cache)
    data = _newer(published)
    del _model(data, *HAIKU)["match"]
    _refused(
        server.serve("/no-match.json", dumps_published(data)), cache, "('claude-3-haiku').match: expected"
    )
    data = _newer(published)
    _model(data, *HAIKU)["prices"]["input_mtok"] = "cheap"
    _refused(
        server.serve("/text.json", dumps_published(data)), cache, "input_mtok: expected a number, got 'cheap'"
    )
    data = _newer(published)
    _model(data, *HAIKU)["prices"]["input_flops"] = 1
    _refused(server.serve("/unit.json", dumps_published(data)), cache, "unknown price unit 'input_flops'")
    _refused(
        server.serve("/nan.json", dumps_published(published).replace(b":0.25,", b":NaN,", 1)), cache, "NaN"
    )


def test_a_local_file_is_read_like_a_download(
    tmp_path: Path, published: list[dict[str, Any]], cache: Path
) -> None:
    source = tmp_path / "data.json.gz"
    source.write_bytes(gzip.compress(dumps_published(_newer(published))))
    result = update(str(source), now=FETCHED_ON)
    assert result.status == "installed"
    with pytest.raises(CatalogError, match="cannot read"):
        update(str(tmp_path / "missing.json"))


# -- selection: the newest valid of bundled and installed -------------------------------------------------


def test_no_installed_catalog_means_the_bundled_one(cache: Path) -> None:
    snapshot, reason = select_snapshot()
    assert snapshot["version"] == bundled_snapshot()["version"] and "no catalog installed" in reason


def test_a_catalog_fetched_before_the_bundled_one_was_built_is_not_used(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    url = server.serve("/old.json", dumps_published(_newer(published)))
    update(url, now=datetime(2020, 1, 1, tzinfo=timezone.utc))
    snapshot, reason = select_snapshot()
    assert snapshot["source"] == "genai-prices" and "older than the bundled one" in reason
    assert _cost(tt.default_catalog()) == Decimal("1.5")


def test_a_damaged_installed_catalog_falls_back_to_the_bundled_one(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    _install_newer(server, published, cache)
    cache.write_bytes(cache.read_bytes()[:1000])
    snapshot, reason = select_snapshot()
    assert snapshot["source"] == "genai-prices" and "damaged" in reason
    assert _cost(tt.default_catalog()) == Decimal("1.5")


def test_a_catalog_checked_against_another_release_must_still_cover_the_bundled_models(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    _install_newer(server, published, cache)
    installed = read_installed(cache)
    assert installed is not None
    installed["fetched"]["checked_against"] = "genai-prices 0.0.1"
    assert select_snapshot()[0]["source"] == "genai-prices data"  # still covers every bundled model
    installed["providers"] = installed["providers"][:3]
    install(installed, cache)
    snapshot, reason = select_snapshot()
    assert snapshot["source"] == "genai-prices" and "lacks" in reason


def test_tokentrail_catalog_bundled_pins_the_shipped_snapshot(
    server: Server, published: list[dict[str, Any]], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_newer(server, published, cache)
    monkeypatch.setenv("TOKENTRAIL_CATALOG", "bundled")
    assert _cost(tt.default_catalog()) == Decimal("1.5")


# -- no network at import or in default use ---------------------------------------------------------------


def test_import_and_default_pricing_open_no_connection(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    _install_newer(server, published, cache)
    probe = """
import socket, sys
def refuse(*args, **kwargs):
    raise AssertionError(f"network call: {args!r}")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import tokentrail as tt
cost = tt.price(tt.Usage(1_000_000, 1_000_000), "claude-3-haiku", "anthropic")
tracker = tt.Tracker()
tracker.record(tt.Usage(10, 10), model="gpt-4o")
print(cost.total, cost.rule.source)
print(sorted(m for m in ("urllib.request", "http.client", "tokentrail.pricing.update") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    total, source = done.stdout.splitlines()[0].split(" ", 1)
    assert total == "1.45" and source.startswith("genai-prices data 2030-01-02")
    assert done.stdout.splitlines()[1] == "[]"
    assert len(server.requests) == 1  # the update itself, nothing since


# -- the opt-in background refresh (an injected clock: no real waiting) -----------------------------------


class FakeTime:
    """`clock` and `wait` for a Refresher: each wait moves time on at once; stops after `rounds` waits."""

    def __init__(self, rounds: int) -> None:
        self.now = 1000.0
        self.rounds = rounds
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return len(self.waits) >= self.rounds


def test_the_refresh_thread_switches_the_catalog_and_counts_failures(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    catalog = Catalog.from_snapshot()
    catalog.set_price("my-model", input="1", output="1")
    answers = [dumps_published(_newer(published)), b"{broken", dumps_published(_newer(published))]

    def next_answer(request: BaseHTTPRequestHandler) -> None:
        body = answers.pop(0)
        request.send_response(200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    server.routes["/data.json"] = next_answer
    fake = FakeTime(rounds=3)
    refresher = Refresher(
        catalog,
        3600,
        update=lambda: update(server.url("/data.json"), now=FETCHED_ON),
        clock=fake.clock,
        wait=fake.wait,
    )
    assert _cost(catalog) == Decimal("1.5")
    refresher.start()
    refresher.join(timeout=60)  # the fake clock ends the loop after three rounds

    assert fake.waits == [3600.0, 3600.0, 3600.0]
    assert refresher.checks == 3 and refresher.installed == 1 and refresher.failures == 1
    assert refresher.last_error is None  # the third check succeeded (same bytes: unchanged)
    assert _cost(catalog) == Decimal("1.45") and catalog.source.startswith("genai-prices data")
    assert catalog.price(USAGE, "my-model").total == Decimal(2)  # the user's prices survive the switch


def test_a_refresh_failure_is_logged_never_raised(
    server: Server, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = Catalog.from_snapshot()

    def unreachable(request: BaseHTTPRequestHandler) -> None:
        request.send_error(503)

    server.routes["/down.json"] = unreachable
    refresher = Refresher(catalog, 3600, update=lambda: update(server.url("/down.json")))
    refresher.refresh_once()
    assert refresher.failures == 1 and refresher.last_error is not None and "HTTP 503" in refresher.last_error
    assert "price refresh failed" in caplog.text
    assert catalog.source == "genai-prices " + bundled_snapshot()["version"]


def test_refresh_intervals() -> None:
    assert parse_interval("1h") == 3600 and parse_interval("30m") == 1800 and parse_interval("1d") == 86400
    assert parse_interval("90") == 90
    for bad in ("soon", "10s", "-1h"):
        with pytest.raises(ValueError):
            parse_interval(bad)


def test_a_malformed_refresh_setting_starts_nothing(caplog: pytest.LogCaptureFixture) -> None:
    assert start_from_env(Catalog.from_snapshot(), "every hour") is None
    assert "TOKENTRAIL_PRICES_REFRESH ignored" in caplog.text


# -- the CLI ---------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_update_then_diff_and_status(
    server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    url = server.serve("/data.json", dumps_published(_newer(published)), etag='"abc"')

    done = runner.invoke(app, ["prices", "update", "--from", url])
    assert done.exit_code == 0, done.output
    assert "Installed genai-prices data" in done.output
    assert "1 models changed, 1 added, 0 removed" in done.output

    again = runner.invoke(app, ["prices", "update", "--from", url])
    assert again.exit_code == 0 and "unchanged (HTTP 304)" in again.output

    diff = runner.invoke(app, ["prices", "diff"])
    assert diff.exit_code == 0, diff.output
    lines = diff.output.splitlines()
    assert lines[0].startswith("genai-prices 0.2.3 → genai-prices data ")
    assert "~ anthropic/claude-3-haiku" in lines and "    undated: input_mtok 0.25 → 0.2" in lines
    assert "+ anthropic/claude-next" in lines
    assert lines[-1] == "1 changed, 1 added, 0 removed"

    status = runner.invoke(app, ["prices", "status"])
    assert "in force: genai-prices data" in status.output and f"url: {url}" in status.output

    shown = runner.invoke(app, ["prices", "claude-3-haiku", "-p", "anthropic"])
    assert "source: genai-prices data" in shown.output


def test_cli_diff_from_a_file_compares_without_installing(
    tmp_path: Path, published: list[dict[str, Any]], cache: Path
) -> None:
    source = tmp_path / "data.json"
    source.write_bytes(dumps_published(_newer(published)))
    diff = runner.invoke(app, ["prices", "diff", "--from", str(source), "--model", "haiku"])
    assert diff.exit_code == 0, diff.output
    assert "~ anthropic/claude-3-haiku" in diff.output and "claude-next" not in diff.output
    assert not cache.exists()
    assert runner.invoke(app, ["prices", "diff"]).output.startswith("No catalog installed")


def test_cli_update_failure_says_why_and_what_stays(server: Server, cache: Path) -> None:
    done = runner.invoke(app, ["prices", "update", "--from", server.serve("/bad.json", b"[1, 2")])
    assert done.exit_code == 1
    assert "Prices not updated:" in done.output and "not valid JSON" in done.output
    assert "Prices in force: genai-prices 0.2.3" in done.output


def test_cli_reprice_with_a_pinned_catalog_names_it(
    tmp_path: Path, server: Server, published: list[dict[str, Any]], cache: Path
) -> None:
    _install_newer(server, published, cache)
    ledger = f"sqlite:///{tmp_path / 'usage.db'}"
    tracker = tt.Tracker(store=ledger, catalog=Catalog(PriceIndex(bundled_snapshot())))
    tracker.record(
        USAGE, model="claude-3-haiku", provider="anthropic", at=datetime(2026, 1, 5, tzinfo=timezone.utc)
    )
    tracker.store.close()

    done = runner.invoke(
        app,
        ["reprice", "--store", ledger, "--since", "2026-01-01", "--catalog", "installed", "--label", "fresh"],
    )
    assert done.exit_code == 0, done.output
    assert "catalog: genai-prices data 2030-01-02" in done.output
    pinned = runner.invoke(
        app, ["reprice", "--store", ledger, "--since", "2026-01-01", "--catalog", "bundled", "--label", "old"]
    )
    assert "catalog: genai-prices 0.2.3" in pinned.output and "records costed differently: 0" in pinned.output
    reopened = tt.Tracker(store=ledger)
    (original,) = reopened.history()
    (fresh,) = reopened.history(prices="fresh")
    assert original.price_rule is not None and original.price_rule.source == "genai-prices 0.2.3"
    assert original.cost == Decimal("1.5")
    assert fresh.cost == Decimal("1.45") and fresh.price_rule is not None
    assert fresh.price_rule.source.startswith("genai-prices data 2030-01-02")
    reopened.store.close()
