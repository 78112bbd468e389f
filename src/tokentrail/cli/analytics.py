"""`tokentrail trends`, `tokentrail forecast`, `tokentrail advise` — registered on the main app by
`tokentrail.cli`; typer and rich are imported here only."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.table import Table

from tokentrail.cli._common import StoreOption, close_ledger, console, open_ledger, parse_when
from tokentrail.reports.fit import Fitted

__all__ = ["advise_command", "forecast_command", "trends_command"]

FormatOption = Annotated[str, typer.Option("--format", "-f", help="table or json.")]
SinceOption = Annotated[str | None, typer.Option("--since", help="From this ISO date/time (UTC).")]
UntilOption = Annotated[str | None, typer.Option("--until", help="Before this ISO date/time (UTC).")]
AgentOption = Annotated[list[str] | None, typer.Option("--agent", help="Only these agents (repeatable).")]
ModelOption = Annotated[list[str] | None, typer.Option("--model", help="Only these models (repeatable).")]


def _filters(agent: list[str] | None, model: list[str] | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if agent:
        found["agent"] = list(agent)
    if model:
        found["model"] = list(model)
    return found


def _check_format(output: str) -> str:
    if output not in ("table", "json"):
        raise typer.BadParameter(f"--format must be table or json, got {output!r}")
    return output


def _usd(amount: Decimal | None, signed: bool = False) -> str:
    from tokentrail.reports.tables import format_usd

    return format_usd(amount, signed=signed)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def trends_command(
    store: StoreOption,
    period: Annotated[str, typer.Option("--period", "-p", help="day, week or month.")] = "day",
    by: Annotated[str, typer.Option("--by", help="Comma-separated: model, provider, agent, …")] = "",
    since: SinceOption = None,
    until: UntilOption = None,
    agent: AgentOption = None,
    model: ModelOption = None,
    output: FormatOption = "table",
) -> None:
    """Cost, tokens and calls per day/week/month, with the change from the previous period."""
    from tokentrail.analytics.trends import PERIODS, trends

    _check_format(output)
    if period not in PERIODS:
        raise typer.BadParameter(f"--period must be one of {', '.join(PERIODS)}, got {period!r}")
    keys = tuple(part.strip() for part in by.split(",") if part.strip())
    tracker = open_ledger(store)
    try:
        try:
            rows = trends(
                tracker,
                period,
                keys,
                parse_when(since, "--since"),
                parse_when(until, "--until"),
                **_filters(agent, model),
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    finally:
        close_ledger(tracker)
    if output == "json":
        _print_json([row.as_dict() for row in rows])
        return
    table = Table(title=f"Trends per {period}", title_justify="left")
    table.add_column(period.capitalize(), style="bold")
    for key in keys:
        table.add_column(key.capitalize())
    for name in ("Calls", "Tokens", "Cost", "Δ cost", "Δ cost %", "Δ tokens %"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row.period.isoformat(),
            *("(none)" if row.group[k] is None else str(row.group[k]) for k in keys),
            f"{row.calls:,}",
            f"{row.total_tokens:,}",
            _usd(row.cost),
            _usd(row.cost_change, signed=True),
            _pct(row.cost_change_pct),
            _pct(row.tokens_change_pct),
        )
    console.print(Fitted(table, drop=("Δ tokens %", "Δ cost %", "Tokens", "Calls")))


def forecast_command(
    store: StoreOption,
    today: Annotated[str | None, typer.Option("--today", help="Forecast as of this ISO date (UTC).")] = None,
    history_days: Annotated[int, typer.Option("--history-days", help="Days of history fitted.")] = 28,
    confidence: Annotated[float, typer.Option("--confidence", help="Interval confidence.")] = 0.95,
    agent: AgentOption = None,
    model: ModelOption = None,
    output: FormatOption = "table",
) -> None:
    """Month-end cost forecast: a line fitted to daily cost, with its prediction interval."""
    from tokentrail.analytics.forecast import forecast_month

    _check_format(output)
    when = parse_when(today, "--today")
    tracker = open_ledger(store)
    try:
        try:
            result = forecast_month(
                tracker,
                today=None if when is None else date(when.year, when.month, when.day),
                history_days=history_days,
                confidence=confidence,
                **_filters(agent, model),
            )
        except ValueError as exc:
            console.print(f"[yellow]No forecast:[/yellow] {exc}")
            raise typer.Exit(code=1) from None
    finally:
        close_ledger(tracker)
    if output == "json":
        _print_json(result.as_dict())
        return
    table = Table(title=f"Forecast for {result.month:%B %Y}", show_header=False, title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    table.add_row("spent (complete days)", _usd(result.spent))
    table.add_row(f"predicted, {result.days_left} days left", _usd(result.predicted_rest))
    table.add_row("month-end forecast", _usd(result.total))
    table.add_row(f"{result.confidence:.0%} interval", f"{_usd(result.low)} – {_usd(result.high)}")
    table.add_row("trend per day", _usd(result.slope_per_day, signed=True))
    table.add_row("method", f"{result.method} over {result.days_observed} days")
    console.print(table)


def advise_command(
    store: StoreOption,
    since: SinceOption = None,
    until: UntilOption = None,
    context_threshold: Annotated[
        float, typer.Option("--context-threshold", help="Window share that counts as hitting the limit.")
    ] = 0.9,
    agent: AgentOption = None,
    model: ModelOption = None,
    output: FormatOption = "table",
) -> None:
    """Savings from the ledger: cheaper models per agent, prompt caching, sessions at context limits."""
    from tokentrail.analytics.advice import advise

    _check_format(output)
    tracker = open_ledger(store)
    try:
        advice = advise(
            tracker,
            parse_when(since, "--since"),
            parse_when(until, "--until"),
            context_threshold=context_threshold,
            **_filters(agent, model),
        )
    finally:
        close_ledger(tracker)
    if output == "json":
        _print_json(advice.as_dict())
        return
    switches = Table(title="Cheaper model (next tier down, same provider and family)", title_justify="left")
    for name in ("Agent", "Model", "Calls", "Cost", "Candidate", "Would cost", "Saving", "Cheapest"):
        switches.add_column(
            name, justify="right" if name in ("Calls", "Cost", "Would cost", "Saving") else "left"
        )
    for s in advice.switches:
        switches.add_row(
            s.agent or "(none)",
            s.model,
            f"{s.calls:,}",
            _usd(s.actual_cost),
            s.candidate,
            _usd(s.candidate_cost),
            f"{_usd(s.saving)} ({s.saving_pct:.0f}%)",
            f"{s.cheapest} {_usd(s.cheapest_cost)}",
        )
    caching = Table(title="Prompt caching", title_justify="left")
    for name in ("Agent", "Model", "Input tokens", "Hit rate", "Saving /Mtok", "Ceiling", "Break-even reads"):
        caching.add_column(name, justify="left" if name in ("Agent", "Model") else "right")
    for c in advice.caching:
        caching.add_row(
            c.agent or "(none)",
            c.model,
            f"{c.input_tokens:,}",
            f"{c.hit_rate:.0%}",
            _usd(c.saving_per_mtok),
            _usd(c.max_saving),
            str(c.break_even_reads),
        )
    context = Table(title="Sessions at context limits", title_justify="left")
    for name in ("Session", "Model", "Calls", "Largest prompt", "Window", "Fill", "Calls over"):
        context.add_column(name, justify="left" if name in ("Session", "Model") else "right")
    for p in advice.context:
        context.add_row(
            p.session or "(none)",
            p.model,
            f"{p.calls:,}",
            f"{p.max_input_tokens:,}",
            f"{p.context_window:,}",
            f"{p.max_utilization:.0%}",
            f"{p.calls_over_threshold:,}",
        )
    for table, rows in ((switches, advice.switches), (caching, advice.caching), (context, advice.context)):
        if rows:
            console.print(table)
        else:
            console.print(f"[dim]{table.title}: nothing to report.[/dim]")
