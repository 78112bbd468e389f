"""`tokentrail prices …` (a typer sub-app): look up a model's price rule (`prices MODEL`, the default
command, also `prices show MODEL`), fetch fresh prices (`update`), see what they change (`diff`) and which
catalog is in force (`status`).

Mounted with `app.add_typer(prices_app, name="prices")`. Only `update` (and `diff --from URL`) use the
network, and only when run.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from tokentrail.cli._common import console
from tokentrail.pricing.catalog import default_catalog

__all__ = ["prices_app"]


class _DefaultShow(TyperGroup):
    """`tokentrail prices o3 …` reads as `tokentrail prices show o3 …` (the command predates the group)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


prices_app = typer.Typer(
    cls=_DefaultShow,
    help="Model prices: look one up, search, update the catalog, see what changed.",
)

FromOption = Annotated[
    str | None,
    typer.Option("--from", help="URL or file of genai-prices' published JSON data (default: its own URL)."),
]


@prices_app.command("show")
def show_command(
    model: Annotated[str | None, typer.Argument(help="Model name as your SDK sends it.")] = None,
    provider: Annotated[str | None, typer.Option("--provider", "-p", help="Provider id, e.g. azure.")] = None,
    at: Annotated[str | None, typer.Option(help="Price in force at this ISO date/time (UTC).")] = None,
    context: Annotated[
        list[str] | None, typer.Option("--context", "-c", help="Request variant, e.g. service_tier=flex.")
    ] = None,
    search: Annotated[str | None, typer.Option("--search", "-s", help="List models containing TEXT.")] = None,
) -> None:
    """Show the price rule a model resolves to, or search the catalog (the default command)."""
    catalog = default_catalog()
    if search is not None:
        _print_search(catalog.search(search), search)
        return
    if model is None:
        raise typer.BadParameter("give a MODEL or --search TEXT")
    match = catalog.resolve(model, provider)
    if match is None:
        close = catalog.close_matches(model)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        console.print(f"[red]No price known for {model!r}.[/red]{hint}")
        raise typer.Exit(code=1)
    when = _parse_at(at)
    variant = dict(_parse_pair(item) for item in context or ())
    rule = match.select(None if when is None else _timestamp(when), variant or None).rule
    table = Table(title=f"{model} → {rule.provider}/{rule.model}", show_header=True)
    table.add_column("price")
    table.add_column("USD", justify="right")
    for key, value in (rule.prices or {}).items():
        table.add_row(_label(key), _format_price(value))
    console.print(table)
    console.print(f"source: {rule.source}")
    console.print(f"in force since: {rule.price_date or 'undated'}")
    if rule.variant:
        console.print("variant: " + ", ".join(f"{k}={v}" for k, v in rule.variant))
    if match.context_window:
        console.print(f"context window: {match.context_window:,} tokens")


@prices_app.command("update")
def update_command(
    source: FromOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds before the download is abandoned.")] = 10.0,
    allow_removals: Annotated[
        bool, typer.Option("--allow-removals", help="Install even if many models of the catalog are gone.")
    ] = False,
) -> None:
    """Fetch genai-prices' published data, check it and install it in the user cache directory.

    The catalog in force stays when anything fails (download, schema, absurd prices, models dropped).
    """
    from tokentrail.errors import CatalogError
    from tokentrail.pricing.update import DEFAULT_URL, update

    url = source or DEFAULT_URL
    try:
        result = update(url, timeout=timeout, allow_removals=allow_removals)
    except CatalogError as exc:
        from tokentrail.pricing.installed import select_snapshot

        snapshot, _ = select_snapshot()
        console.print(f"[red]Prices not updated:[/red] {exc}", highlight=False)
        console.print(f"Prices in force: {snapshot['source']} {snapshot['version']}", highlight=False)
        raise typer.Exit(code=1) from None
    if result.status == "not-modified":
        console.print(f"Prices up to date: {url} is unchanged (HTTP 304); in force: {result.version}")
        return
    if result.status == "unchanged":
        console.print(f"Prices up to date: same data as the installed {result.version}")
        return
    console.print(f"Installed [bold]{result.version}[/bold] in {result.path}", highlight=False)
    counts = {
        kind: sum(1 for c in result.changes if c.kind == kind) for kind in ("changed", "added", "removed")
    }
    console.print(
        f"  {counts['changed']:,} models changed, {counts['added']:,} added, {counts['removed']:,} removed"
        " (details: tokentrail prices diff)"
    )
    if result.removed:
        shown = ", ".join(f"{p}/{m}" for p, m in result.removed[:10])
        console.print(
            f"  no longer priced: {shown}{' …' if len(result.removed) > 10 else ''}", highlight=False
        )


@prices_app.command("diff")
def diff_command(
    source: Annotated[
        str | None,
        typer.Option(
            "--from", help="Compare the catalog in force with this URL or file instead (nothing installed)."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only models containing TEXT.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before a download is abandoned.")] = 10.0,
) -> None:
    """What the installed catalog changes compared with the bundled one, model by model."""
    from tokentrail.errors import CatalogError
    from tokentrail.pricing.diff import diff_catalogs
    from tokentrail.pricing.installed import bundled_snapshot, read_installed, select_snapshot

    try:
        if source is None:
            old, new = bundled_snapshot(), read_installed()
            if new is None:
                console.print(f"No catalog installed: the bundled {_name(old)} is in force.", highlight=False)
                return
        else:
            from tokentrail.pricing.update import candidate, fetch

            old = select_snapshot()[0]
            new = candidate(fetch(source, timeout=timeout), units=old["units"], checked_against=_name(old))
    except CatalogError as exc:
        console.print(f"[red]Cannot compare:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    changes = diff_catalogs(old, new)
    if model is not None:
        changes = [c for c in changes if model.lower() in c.model.lower()]
    console.print(f"{_name(old)} → {_name(new)}", highlight=False)
    marks = {"added": "+", "removed": "-", "changed": "~"}
    for change in changes:
        console.print(f"{marks[change.kind]} {change.provider}/{change.model}", markup=False, highlight=False)
        for line in change.details:
            console.print(f"    {line}", markup=False, highlight=False)
    counts = {kind: sum(1 for c in changes if c.kind == kind) for kind in ("changed", "added", "removed")}
    console.print(f"{counts['changed']:,} changed, {counts['added']:,} added, {counts['removed']:,} removed")


@prices_app.command("status")
def status_command() -> None:
    """Which catalog is in force and why; where the installed one came from."""
    from tokentrail.errors import CatalogError
    from tokentrail.pricing.installed import catalog_path, read_installed, select_snapshot

    snapshot, reason = select_snapshot()
    console.print(f"in force: {_name(snapshot)} — {reason}", highlight=False)
    try:
        installed = read_installed()
    except CatalogError as exc:
        console.print(f"installed: [red]{exc}[/red]", highlight=False)
        return
    if installed is None:
        console.print(f"installed: none (tokentrail prices update writes {catalog_path()})", highlight=False)
        return
    fetched = installed["fetched"]
    console.print(f"installed: {_name(installed)} at {catalog_path()}", highlight=False)
    for key in ("url", "fetched_at", "etag", "sha256", "checked_against"):
        console.print(f"  {key}: {fetched.get(key)}", highlight=False)


def _name(snapshot: dict[str, Any]) -> str:
    return f"{snapshot['source']} {snapshot['version']}"


def _print_search(found: Any, text: str) -> None:
    table = Table(title=f"models matching {text!r}")
    for column in ("provider", "model", "name"):
        table.add_column(column)
    rows = 0
    for provider_id, model_id, name in found:
        table.add_row(provider_id, model_id, name or "")
        rows += 1
    if rows == 0:
        console.print(f"No catalog model matches {text!r}.")
        raise typer.Exit(code=1)
    console.print(table)


def _label(price_key: str) -> str:
    if price_key.endswith("_mtok"):
        return price_key.removesuffix("_mtok").replace("_", " ") + " / 1M tokens"
    if price_key.endswith("_kcount"):
        return price_key.removesuffix("_kcount").replace("_", " ") + " / 1K"
    return price_key.replace("_", " ")


def _format_price(value: object) -> str:
    if isinstance(value, dict):
        tiers = ", ".join(f"> {t['start']:,}: {Decimal(t['price'])}" for t in value["tiers"])
        return f"{Decimal(value['base'])} ({tiers})"
    return str(Decimal(str(value)))


def _parse_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"--at must be an ISO date or date-time, got {text!r}") from None


def _parse_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"--context takes KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _timestamp(when: datetime) -> int:
    from tokentrail.pricing.index import timestamp_us

    return timestamp_us(when)
