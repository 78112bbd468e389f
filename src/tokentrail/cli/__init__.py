"""The `tokentrail` command line (typer): `prices`, `report` and `stats` here; each other command group
in its own module of this package — `ledger` (export, import, tail, reconcile, chart), `maintenance`
(reprice, prune), `analytics` (trends, forecast, advise), `serve`, `count`, `budget` — sharing `_common`.
Each imports what it drives only when it runs, so `tokentrail --help` stays quick."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.table import Table

from tokentrail.cli._common import StoreOption, close_ledger, console, open_ledger, parse_when
from tokentrail.cli.analytics import advise_command, forecast_command, trends_command
from tokentrail.cli.budget import budget_app
from tokentrail.cli.count import count_command
from tokentrail.cli.doctor import doctor_command
from tokentrail.cli.gateway import gateway_command, keys_app
from tokentrail.cli.ledger import (
    chart_command,
    export_command,
    import_command,
    reconcile_command,
    tail_command,
)
from tokentrail.cli.maintenance import prune_command, reprice_command
from tokentrail.cli.serve import serve_command
from tokentrail.pricing.catalog import default_catalog

app = typer.Typer(help="Exact token usage and cost tracking for LLM agents.", no_args_is_help=True)


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


@app.command()
def report(
    store: StoreOption,
    by: Annotated[str, typer.Option("--by", help="Comma-separated group keys.")] = "agent,model",
    since: Annotated[str | None, typer.Option(help="From this ISO date/time (UTC), inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this ISO date/time (UTC), exclusive.")] = None,
    agent: Annotated[list[str] | None, typer.Option(help="Only this agent (repeatable).")] = None,
    session: Annotated[list[str] | None, typer.Option(help="Only this session (repeatable).")] = None,
    user: Annotated[list[str] | None, typer.Option(help="Only this user (repeatable).")] = None,
    tool: Annotated[list[str] | None, typer.Option(help="Only this tool (repeatable).")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only this model (repeatable).")] = None,
    provider: Annotated[list[str] | None, typer.Option(help="Only this provider (repeatable).")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only records with this tag (repeatable).")] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    prices: Annotated[
        str | None,
        typer.Option("--prices", help="Price version made by `tokentrail reprice` (default: original)."),
    ] = None,
) -> None:
    """Usage and exact cost from a ledger, grouped and filtered."""
    from tokentrail.stores.base import GROUP_KEYS

    keys = tuple(part.strip() for part in by.split(",") if part.strip())
    unknown = [key for key in keys if key not in GROUP_KEYS]
    if unknown:
        raise typer.BadParameter(f"cannot group by {', '.join(unknown)}; known: {', '.join(GROUP_KEYS)}")
    if output_format not in ("table", "json", "csv"):
        raise typer.BadParameter(f"--format must be table, json or csv, got {output_format!r}")
    window = {"since": parse_when(since, "--since"), "until": parse_when(until, "--until")}
    given = {"agent": agent, "session": session, "user": user, "tool": tool, "model": model}
    given |= {"provider": provider, "tag": tag}
    filters: dict[str, Any] = {name: values for name, values in given.items() if values}
    tracker = open_ledger(store)
    try:
        try:
            rows = tracker.summary(keys, **window, **filters, prices=prices)
            totals = tracker.totals(**window, **filters, prices=prices)
        except ValueError as exc:  # an unknown price version
            console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(code=1) from None
    finally:
        close_ledger(tracker)
    if output_format == "table":
        _print_summary(keys, rows, totals)
        console.print(f"Prices: {prices or 'original (as recorded)'}", highlight=False)
        return
    import json

    from tokentrail.reports.export import summary_row_to_dict

    data = [summary_row_to_dict(row) for row in rows]
    if output_format == "json":
        typer.echo(
            json.dumps(
                {
                    "by": list(keys),
                    "prices": prices or "original",
                    "rows": data,
                    "totals": summary_row_to_dict(totals),
                },
                ensure_ascii=False,
            )
        )
        return
    import csv
    import io

    buffer = io.StringIO()
    columns = list(data[0]) if data else [*keys, "calls", "cost"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for item in data:
        item["status_counts"] = json.dumps(item["status_counts"])
        writer.writerow({name: "" if value is None else value for name, value in item.items()})
    typer.echo(buffer.getvalue(), nl=False)


def _print_summary(keys: tuple[str, ...], rows: list[Any], totals: Any) -> None:
    from tokentrail.reports.tables import summary_table, totals_table

    console.print(totals_table(totals))
    console.print(summary_table(f"By {', '.join(keys) or 'everything'}", keys, rows, totals))
    if totals.unpriced_calls:
        console.print(
            f"[bold red]⚠ {totals.unpriced_calls} of {totals.calls} calls could not be priced and are not "
            "in the cost totals.[/bold red]"
        )


@app.command()
def stats(store: StoreOption) -> None:
    """Ledger size: records, unpriced records, file size."""
    tracker = open_ledger(store)
    try:
        measure = getattr(tracker.store, "stats", None)
        if callable(measure):
            figures: dict[str, int] = measure()
        else:
            totals = tracker.totals()
            figures = {"records": totals.calls, "unpriced": totals.unpriced_calls}
    finally:
        close_ledger(tracker)
    table = Table(title=f"Ledger {store}", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    labels = {"records": "records", "unpriced": "unpriced records", "rollup_rows": "rollup rows"}
    for name, value in figures.items():
        table.add_row(labels.get(name, name.replace("_", " ")), f"{value:,}")
    console.print(table)


def main() -> None:
    app()


app.add_typer(budget_app, name="budget")
app.add_typer(keys_app, name="keys")
app.command("count")(count_command)
for _name, _command in (
    ("export", export_command),
    ("tail", tail_command),
    ("import", import_command),
    ("reconcile", reconcile_command),
    ("chart", chart_command),
    ("reprice", reprice_command),
    ("prune", prune_command),
    ("trends", trends_command),
    ("forecast", forecast_command),
    ("advise", advise_command),
    ("serve", serve_command),
    ("doctor", doctor_command),
    ("gateway", gateway_command),
):
    app.command(_name)(_command)
