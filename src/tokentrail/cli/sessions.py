"""`tokentrail sessions` (the session list) and `tokentrail session ID` (one run as a tree): the same
figures as the dashboard's `/api/sessions` and `/api/sessions/{id}`, as tables that fit any width or as
the same JSON (the list also as CSV)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tokentrail.cli._common import StoreOption, close_ledger, console, open_ledger, parse_when

if TYPE_CHECKING:
    from tokentrail.server._session import Node, Run
    from tokentrail.server._sessions import SessionPage

__all__ = ["session_command", "sessions_command"]

Format = Annotated[str, typer.Option("--format", "-f", help="table or json.")]
ListFormat = Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")]
# "Other": the part of a session's cost not paid for tokens (requests, searches, durations, pages, …),
# shown after Cost when some session on the page has one
OTHER = "Other"


def _check_format(output_format: str, known: tuple[str, ...] = ("table", "json")) -> None:
    if output_format not in known:
        named = f"{', '.join(known[:-1])} or {known[-1]}"
        raise typer.BadParameter(f"--format must be {named}, got {output_format!r}")


def _when(timestamp_us: int) -> str:
    return datetime.fromtimestamp(timestamp_us / 1_000_000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _usd(units: int) -> str:
    from tokentrail._money import units_to_decimal

    return f"${units_to_decimal(units):,.6f}"


def _seconds(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:,.1f}s" if ms >= 1000 else f"{ms:,.0f}ms"


def sessions_command(
    store: StoreOption,
    since: Annotated[
        str | None, typer.Option(help="Sessions with a call since this (ISO date/time, or an age: 1d, 6h).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Sessions with a call before this.")] = None,
    search: Annotated[
        str | None, typer.Option("--search", "-q", help="Only sessions whose id or an agent contains this.")
    ] = None,
    sort: Annotated[
        str, typer.Option(help="last, first, cost, calls, tokens, span, unpriced or session.")
    ] = "last",
    ascending: Annotated[bool, typer.Option("--ascending", help="Smallest first.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="How many.")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    output_format: ListFormat = "table",
) -> None:
    """Sessions: cost (and its part not paid for tokens), calls, tokens, span, agents, unpriced calls,
    first and last call."""
    from tokentrail.server._sessions import SORT_KEYS, SessionListing, list_sessions, session_row_view

    _check_format(output_format, ("table", "json", "csv"))
    if sort not in SORT_KEYS:
        raise typer.BadParameter(f"--sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")
    listing = SessionListing(
        parse_when(since, "--since"),
        parse_when(until, "--until"),
        search or None,
        sort,  # checked against SORT_KEYS above
        not ascending,
        limit,
        offset,
    )
    tracker = open_ledger(store)
    try:
        page = list_sessions(tracker, listing)
    finally:
        close_ledger(tracker)
    rows = [session_row_view(row) for row in page.rows]
    if output_format == "json":
        typer.echo(json.dumps({"total": page.total, "sessions": rows}, ensure_ascii=False))
        return
    if output_format == "csv":
        typer.echo(_sessions_csv(rows), nl=False)
        return
    _print_sessions(page, offset)


def _sessions_csv(rows: list[dict[str, Any]]) -> str:
    """The list as CSV: the JSON's fields as columns (agents joined by "; ")."""
    import csv
    import io

    from tokentrail.server._sessions import SESSION_FIELDS

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SESSION_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "agents": "; ".join(row["agents"])})
    return buffer.getvalue()


def _print_sessions(page: SessionPage, offset: int) -> None:
    from tokentrail.reports.fit import Fitted

    if not page.rows:
        console.print("No sessions.")
        return
    other = any(row.non_token_units for row in page.rows)
    table = Table(title=f"Sessions {offset + 1}–{offset + len(page.rows)} of {page.total}")
    table.add_column("Session")
    for name in ("Cost", *((OTHER,) if other else ()), "Calls", "Tokens", "Span", "Unpriced"):
        table.add_column(name, justify="right")
    table.add_column("Agents")
    table.add_column("Last call (UTC)", justify="right")
    for row in page.rows:
        all_unpriced = row.calls == row.unpriced_calls
        cost = ["unpriced" if all_unpriced else _usd(row.cost_units)]
        if other:
            cost.append("-" if all_unpriced else _usd(row.non_token_units))
        table.add_row(
            row.session,
            *cost,
            f"{row.calls:,}",
            f"{row.total_tokens:,}",
            _seconds(row.span_ms),
            f"{row.unpriced_calls:,}",
            ", ".join(row.agents) or "-",
            _when(row.last_us),
        )
    console.print(Fitted(table, drop=("Agents", OTHER, "Unpriced", "Tokens", "Span", "Last call (UTC)")))


def session_command(
    session: Annotated[str, typer.Argument(help="The session id.")],
    store: StoreOption,
    calls: Annotated[bool, typer.Option("--calls", help="Also list every call in time order.")] = False,
    output_format: Format = "table",
) -> None:
    """One session as a tree (node path or agent → calls) with each subtree's exact cost and share."""
    from tokentrail.server._session import load_run, run_view

    _check_format(output_format)
    tracker = open_ledger(store)
    try:
        run = load_run(tracker, session)
    finally:
        close_ledger(tracker)
    if run is None:
        console.print(f"[red]No calls of session {session!r} in this ledger.[/red]", highlight=False)
        raise typer.Exit(code=1)
    if output_format == "json":
        typer.echo(json.dumps(run_view(run, len(run.records), 0), ensure_ascii=False))
        return
    _print_run(run, calls)


def _tree_rows(table: Table, run: Run, node: Node, depth: int) -> None:
    from tokentrail.server._session import share_percent, sorted_children

    label = ("  " * depth + ("└ " if depth else "")) + node.name
    table.add_row(
        label,
        _usd(node.cost_units),
        f"{share_percent(node.cost_units, run.root.cost_units):.2f}%",
        f"{node.call_count:,}",
        f"{node.total_tokens:,}",
        f"{node.unpriced_calls:,}",
    )
    for child in sorted_children(node):
        _tree_rows(table, run, child, depth + 1)


def _print_run(run: Run, with_calls: bool) -> None:
    from tokentrail.reports.fit import Fitted

    records = run.records
    span = (records[-1].timestamp_us - run.first_start_us) / 1000
    console.print(
        f"Session {run.session}: {len(records):,} calls, {_usd(run.root.cost_units)} "
        f"({run.root.unpriced_calls:,} unpriced), {_seconds(span)} from "
        f"{_when(records[0].timestamp_us)} to {_when(records[-1].timestamp_us)} UTC",
        highlight=False,
        soft_wrap=True,
    )
    tree = Table(title="Run tree (node path or agent)")
    tree.add_column("Node")
    for name in ("Cost", "Share", "Calls", "Tokens", "Unpriced"):
        tree.add_column(name, justify="right")
    _tree_rows(tree, run, run.root, 0)
    console.print(Fitted(tree, drop=("Unpriced", "Tokens", "Calls")))
    for index, warning in run.warnings:
        console.print(f"[yellow]context: call #{index + 1}: {warning}[/yellow]", highlight=False)
    if with_calls:
        console.print(Fitted(_calls_table(run), drop=("First token", "Tokens", "Agent", "Duration")))


def _calls_table(run: Run) -> Table:
    from tokentrail.server._session import start_us

    table = Table(title="Calls in time order")
    table.add_column("#", justify="right")
    table.add_column("Start", justify="right")
    table.add_column("Agent")
    table.add_column("Model")
    for name in ("Duration", "First token", "Tokens", "Cost"):
        table.add_column(name, justify="right")
    for index, record in enumerate(run.records):
        offset = (start_us(record) - run.first_start_us) / 1000
        cost = "unpriced" if record.cost_units is None else _usd(record.cost_units)
        table.add_row(
            f"{index + 1}",
            f"+{_seconds(offset)}",
            record.agent or "-",
            record.model or "-",
            _seconds(record.duration_ms),
            _seconds(record.ttft_ms),
            f"{record.usage.total_tokens:,}",
            cost,
        )
    return table
