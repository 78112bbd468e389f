"""Ledger maintenance commands: `tokentrail reprice` (a new price version) and `tokentrail prune` (retention).

Registered on the main app by `tokentrail.cli`; typer and rich are imported here only.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokentrail.cli._common import StoreOption, close_ledger, console, open_ledger, parse_age, parse_when

if TYPE_CHECKING:
    from tokentrail._types import Cost
    from tokentrail.pricing.catalog import Catalog

__all__ = ["parse_age", "prune_command", "reprice_command"]


def prune_command(
    store: StoreOption,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of the rows to drop, e.g. 90d, 12w, 36h.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count the rows that would be dropped.")
    ] = False,
) -> None:
    """Drop raw records older than an age, keeping the rollups.

    Reports over the pruned period still answer from the rollups (to the hour); `history` and exports
    no longer list the pruned records. Rows go by whole UTC hours: an hour is dropped once it ended
    before the cut.
    """
    from tokentrail._record import to_timestamp_us
    from tokentrail.stores.base import PruningStore

    cut = datetime.now(timezone.utc) - parse_age(older_than)
    before_us = to_timestamp_us(cut)
    tracker = open_ledger(store)
    try:
        ledger = tracker.store
        if not isinstance(ledger, PruningStore):
            console.print(f"[red]The {type(ledger).__name__} cannot prune raw rows.[/red]")
            raise typer.Exit(code=1)
        hour_cut = datetime.fromtimestamp(before_us // 3_600_000_000 * 3600, timezone.utc)
        if dry_run:
            count = ledger.raw_count(before_us)
            console.print(
                f"Would drop {count:,} raw records from before {hour_cut:%Y-%m-%d %H:%M} UTC (dry run)."
            )
            return
        count = ledger.prune(before_us)
    finally:
        close_ledger(tracker)
    console.print(f"Dropped {count:,} raw records from before {hour_cut:%Y-%m-%d %H:%M} UTC; rollups kept.")


def reprice_command(
    store: StoreOption,
    since: Annotated[str, typer.Option(help="Reprice records from this ISO date/time (UTC), inclusive.")],
    until: Annotated[str | None, typer.Option(help="… up to this ISO date/time (UTC), exclusive.")] = None,
    prices: Annotated[
        str | None, typer.Option("--prices", help="TOML or JSON file of price overrides to apply.")
    ] = None,
    label: Annotated[
        str | None,
        typer.Option("--label", help="Name of the new price version (default: reprice-<UTC time>)."),
    ] = None,
    catalog_name: Annotated[
        str | None,
        typer.Option(
            "--catalog",
            help="bundled, installed, or a file of genai-prices' published data (default: the one in force).",
        ),
    ] = None,
) -> None:
    """Cost records again with the current catalog (and overrides) into a new price version.

    Each record is priced as the catalog now prices a call at its time; the recorded costs are kept,
    each naming the catalog version it was priced with. `--catalog` pins the catalog, so the same
    command gives the same costs on any machine. `tokentrail report --prices LABEL` reads the version.
    """
    from tokentrail.errors import TokentrailError
    from tokentrail.reports.tables import format_usd
    from tokentrail.stores.base import Query, RepricingStore

    started = parse_when(since, "--since")
    ended = parse_when(until, "--until")
    name = label or f"reprice-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    try:
        catalog = _catalog(prices, catalog_name)
    except (OSError, TokentrailError, ValueError) as exc:
        console.print(f"[red]Cannot read the prices file or catalog:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    window: dict[str, Any] = {"since": started, "until": ended}
    tracker = open_ledger(store)
    try:
        ledger = tracker.store
        if not isinstance(ledger, RepricingStore):
            console.print(f"[red]The {type(ledger).__name__} cannot reprice records.[/red]")
            raise typer.Exit(code=1)
        query = Query.build({}, _us(started), _us(ended))
        before = tracker.totals(**window)
        try:
            changed = ledger.reprice(query, _price_function(catalog), name)
        except ValueError as exc:
            console.print(f"[red]Cannot reprice:[/red] {exc}", highlight=False)
            raise typer.Exit(code=1) from None
        after = tracker.totals(**window, prices=name)
    finally:
        close_ledger(tracker)
    difference = after.cost - before.cost
    console.print(
        f"Price version [bold]{name}[/bold]: {before.calls:,} records from {since}", highlight=False
    )
    console.print(f"  catalog: {catalog.source}", highlight=False)
    console.print(f"  records costed differently: {changed:,}")
    console.print(f"  cost as recorded: {format_usd(before.cost)}  ({before.unpriced_calls:,} unpriced)")
    console.print(
        f"  cost in {name}: {format_usd(after.cost)}  ({after.unpriced_calls:,} unpriced)", highlight=False
    )
    console.print(
        f"  difference: {format_usd(difference, signed=True)} (exact: {format_usd(difference, exact=True, signed=True)})"
    )
    console.print(f"Read it with: tokentrail report --store {store} --prices {name}", highlight=False)


def _catalog(prices_file: str | None, catalog_name: str | None = None) -> Catalog:
    """A private catalog: the chosen catalog (default: the one in force), the environment's overrides
    and the given file's."""
    from tokentrail.pricing.catalog import Catalog, default_catalog
    from tokentrail.pricing.overrides import parse_env

    catalog = Catalog(default_catalog().index if catalog_name is None else _named_index(catalog_name))
    env_file = os.environ.get("TOKENTRAIL_PRICES_FILE")
    if env_file:
        catalog.load(env_file)
    catalog.add_overrides(parse_env(os.environ))
    if prices_file is not None:
        catalog.load(prices_file)
    return catalog


def _named_index(name: str) -> Any:
    """The price index of `bundled`, `installed` or a published-data file (`CatalogError` if unusable)."""
    from tokentrail.errors import CatalogError
    from tokentrail.pricing.index import PriceIndex
    from tokentrail.pricing.installed import bundled_snapshot, read_installed

    bundled = bundled_snapshot()
    if name == "bundled":
        return PriceIndex(bundled)
    if name == "installed":
        installed = read_installed()
        if installed is None:
            raise CatalogError("no catalog installed (tokentrail prices update installs one)")
        return PriceIndex(installed)
    from tokentrail.pricing.update import candidate, fetch

    source = f"{bundled['source']} {bundled['version']}"
    return PriceIndex(candidate(fetch(name), units=bundled["units"], checked_against=source))


def _price_function(catalog: Catalog) -> Any:
    from tokentrail._record import Record
    from tokentrail._types import Cost
    from tokentrail.errors import TokentrailError

    def price(record: Record) -> Cost:
        try:
            return catalog.price(
                record.usage, record.model, record.provider, record.timestamp, record.context
            )
        except TokentrailError as exc:  # a record the catalog cannot read stays unpriced, with the reason
            return Cost.unpriced(f"pricing failed: {exc}")

    return price


def _us(when: datetime | None) -> int | None:
    from tokentrail._record import to_timestamp_us

    return None if when is None else to_timestamp_us(when)
