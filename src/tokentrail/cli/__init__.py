"""The `tokentrail` command line (typer): `report` and `stats` here; each other command group
in its own module of this package — `prices` (show, update, diff, status), `ledger` (export, import,
tail, reconcile, chart), `sessions` (sessions, session), `maintenance` (reprice, prune), `analytics` (trends, forecast, advise), `serve`,
`count`, `budget`, `collect` — sharing `_common`.
Each imports what it drives only when it runs, so `tokentrail --help` stays quick."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from tokentrail.cli._common import StoreOption, close_ledger, console, open_ledger, parse_when
from tokentrail.cli.analytics import advise_command, forecast_command, trends_command
from tokentrail.cli.budget import budget_app
from tokentrail.cli.collect import collect_command
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
from tokentrail.cli.prices import prices_app
from tokentrail.cli.serve import serve_command
from tokentrail.cli.sessions import session_command, sessions_command

app = typer.Typer(help="Exact token usage and cost tracking for LLM agents.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """tokentrail: exact token usage and cost for LLM agent systems."""


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
    watch: Annotated[
        str | None,
        typer.Option(
            "--watch", help="Redraw the table every INTERVAL (e.g. 2s) as calls arrive, until Ctrl-C."
        ),
    ] = None,
    watch_for: Annotated[
        str | None, typer.Option("--for", help="With --watch: stop after this long.")
    ] = None,
) -> None:
    """Usage and exact cost from a ledger, grouped and filtered (--watch: kept up to date)."""
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
    if watch is not None and output_format != "table":
        raise typer.BadParameter("--watch redraws the table: leave --format at table")
    tracker = open_ledger(store)

    def figures() -> tuple[list[Any], Any]:
        try:
            return (
                tracker.summary(keys, **window, **filters, prices=prices),
                tracker.totals(**window, **filters, prices=prices),
            )
        except ValueError as exc:  # an unknown price version
            console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(code=1) from None

    def draw() -> None:
        _print_summary(keys, *figures())
        console.print(f"Prices: {prices or 'original (as recorded)'}", highlight=False)

    try:
        if watch is not None:
            from tokentrail.cli._watch import watch_every

            watch_every(draw, watch, watch_for)
            return
        if output_format == "table":
            draw()
            return
        rows, totals = figures()
    finally:
        close_ledger(tracker)
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
app.add_typer(prices_app, name="prices")
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
    ("collect", collect_command),
    ("doctor", doctor_command),
    ("gateway", gateway_command),
    ("sessions", sessions_command),
    ("session", session_command),
):
    app.command(_name)(_command)
