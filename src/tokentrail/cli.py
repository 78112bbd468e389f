"""The `tokentrail` command line."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tokentrail.budgets.cli import budget_app
from tokentrail.pricing.catalog import default_catalog

app = typer.Typer(help="Exact token usage and cost tracking for LLM agents.", no_args_is_help=True)
console = Console()


@app.callback()
def _root() -> None:
    """tokentrail: exact token usage and cost for LLM agent systems."""


@app.command()
def prices(
    model: Annotated[str | None, typer.Argument(help="Model name as your SDK sends it.")] = None,
    provider: Annotated[str | None, typer.Option("--provider", "-p", help="Provider id, e.g. azure.")] = None,
    at: Annotated[str | None, typer.Option(help="Price in force at this ISO date/time (UTC).")] = None,
    context: Annotated[
        list[str] | None, typer.Option("--context", "-c", help="Request variant, e.g. service_tier=flex.")
    ] = None,
    search: Annotated[str | None, typer.Option("--search", "-s", help="List models containing TEXT.")] = None,
) -> None:
    """Show the price rule a model resolves to, or search the catalog."""
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


def main() -> None:
    app()


app.add_typer(budget_app, name="budget")
