"""The human report: rich tables of totals, spend by agent, by model (share of cost) and by node,
and, when records carry pre-call estimates, how far those were from the billed input tokens.

    from tokentrail.reports.tables import print_report
    print_report(tracker)

`report()` returns a rich renderable, so it can be printed, exported to text/HTML or tested.
Calls that could not be priced are flagged, never shown as $0.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tokentrail._money import units_to_decimal
from tokentrail._record import SummaryRow
from tokentrail.reports.fit import Fitted

if TYPE_CHECKING:
    from tokentrail.tokens.drift import DriftRow
    from tokentrail.tracker import Tracker

__all__ = ["drift_table", "format_usd", "print_report", "render_text", "report", "summary_table"]

UNPRICED_STYLE = "bold red"
NUMBER_COLUMNS = ("Calls", "Input", "Output", "Cost", "Share", "Unpriced")
# "Other": the part of the cost not paid for tokens (requests, searches, durations, pages, …), shown after
# Cost when some row has one
OTHER = "Other"
# the columns a narrow terminal loses first (the cost never goes; the unpriced count is also in the footer)
DROP_FIRST = ("Share", OTHER, "Unpriced", "Input", "Output", "Calls")


def report(
    tracker: Tracker,
    *,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    title: str = "Token usage",
) -> Group:
    """Totals, by-agent, by-model and (when there is one) hierarchy tables for `tracker`."""
    totals = tracker.totals(since=since, until=until)
    parts: list[Table | Fitted | Text] = [Text(title, style="bold underline"), totals_table(totals)]
    if totals.calls:
        parts.append(breakdown_table("By agent", "agent", tracker.summary(("agent",), since, until), totals))
        parts.append(
            breakdown_table("By model", "model", tracker.summary(("model", "provider"), since, until), totals)
        )
        tools = tracker.summary(("tool",), since, until)
        if any(row.group["tool"] is not None for row in tools):
            parts.append(breakdown_table("By tool", "tool", tools, totals))
        nodes = tracker.summary(("path",), since, until)
        if any(row.group["path"] for row in nodes):
            parts.append(hierarchy_table(nodes, totals))
        from tokentrail.tokens.drift import drift

        drift_rows = drift(tracker.history(since=since, until=until, estimated=True))
        if drift_rows:
            parts.append(drift_table(drift_rows))
    if totals.unpriced_calls:
        parts.append(
            Text(
                f"⚠ {totals.unpriced_calls} of {totals.calls} calls could not be priced and are not in "
                "the cost totals (see the Unpriced column); price them with Catalog.set_price().",
                style=UNPRICED_STYLE,
            )
        )
    return Group(*parts)


def print_report(tracker: Tracker, console: Console | None = None, **options: object) -> None:
    """Print `report(tracker, **options)` to `console` (stdout by default)."""
    (console or Console()).print(report(tracker, **options))  # type: ignore[arg-type]


def render_text(tracker: Tracker, width: int = 120, **options: object) -> str:
    """The report as plain text (no colour), e.g. for logs and tests."""
    console = Console(width=width, record=True, color_system=None, force_terminal=False, file=io.StringIO())
    console.print(report(tracker, **options))  # type: ignore[arg-type]
    return console.export_text()


def totals_table(totals: SummaryRow) -> Table:
    table = Table(title="Totals", box=box.SIMPLE_HEAVY, show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    usage = totals.usage
    table.add_row("Calls", f"{totals.calls:,}")
    table.add_row("Unpriced calls", _unpriced_text(totals.unpriced_calls))
    table.add_row("Input tokens", f"{usage.input_tokens:,}")
    table.add_row("  cache reads / writes", f"{usage.cache_read_tokens:,} / {usage.cache_write_tokens:,}")
    table.add_row("Output tokens", f"{usage.output_tokens:,}")
    table.add_row("  reasoning", f"{usage.reasoning_tokens:,}")
    table.add_row("Cost", format_usd(totals.cost, exact=True))
    if totals.non_token_cost_units:
        table.add_row("  other than tokens", format_usd(totals.non_token_cost, exact=True))
    table.add_row("Cost per call", format_usd(totals.cost_per_call))
    table.add_row("Cost per 1k tokens", format_usd(totals.cost_per_1k_tokens))
    table.add_row("Cache hit ratio", _percent(totals.cache_hit_ratio))
    table.add_row(
        "Average duration",
        "-" if totals.average_duration_ms is None else f"{totals.average_duration_ms:,.0f} ms",
    )
    table.add_row(
        "Output tokens / s", "-" if totals.tokens_per_second is None else f"{totals.tokens_per_second:,.1f}"
    )
    if totals.provider_cost_calls:
        table.add_row(
            "Provider-reported cost",
            f"{format_usd(totals.provider_cost)} on {totals.provider_cost_calls:,} calls",
        )
        table.add_row("  provider − ours", format_usd(totals.provider_cost_difference, signed=True))
    return table


def breakdown_table(title: str, label: str, rows: Iterable[SummaryRow], totals: SummaryRow) -> Fitted:
    """One row per group: calls, tokens, cost, share of the total cost, unpriced calls (and the provider
    beside the label when the rows have one)."""
    rows = list(rows)
    with_provider = any(row.group.get("provider") is not None for row in rows)
    return summary_table(title, (label, "provider") if with_provider else (label,), rows, totals)


def summary_table(title: str, keys: Sequence[str], rows: Iterable[SummaryRow], totals: SummaryRow) -> Fitted:
    """One row per group of `keys`: calls, tokens, cost, the part of it not paid for tokens ("Other",
    when some row has one), share of the total cost, unpriced calls; shaped to the terminal's width (names
    shortened with "…", never broken; low-value columns left out first)."""
    rows = list(rows)
    other = any(row.non_token_cost_units for row in rows)
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    for position, key in enumerate(keys):
        table.add_column(key.capitalize(), style="bold" if position == 0 else "")
    for name in NUMBER_COLUMNS:
        table.add_column(name, justify="right", no_wrap=True)
        if name == "Cost" and other:
            table.add_column(OTHER, justify="right", no_wrap=True)
    for row in rows:
        all_unpriced = row.calls and row.unpriced_calls == row.calls
        cost: list[str | Text] = [
            Text("unpriced", style=UNPRICED_STYLE) if all_unpriced else format_usd(row.cost)
        ]
        if other:
            cost.append("-" if all_unpriced else format_usd(row.non_token_cost))
        table.add_row(
            *(_label(row.group.get(key)) for key in keys),
            f"{row.calls:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            *cost,
            "-" if all_unpriced else _share(row.cost_units, totals.cost_units),
            _unpriced_text(row.unpriced_calls),
        )
    return Fitted(table, drop=DROP_FIRST)


def hierarchy_table(nodes: Iterable[SummaryRow], totals: SummaryRow) -> Fitted:
    """Each node of the hierarchy with its subtree's totals (a parent includes its children)."""
    inclusive: dict[tuple[str, ...], list[int]] = {}  # path → [calls, cost units, unpriced]
    for row in nodes:
        text = str(row.group["path"] or "")
        path = tuple(text.split("/")) if text else ()
        for depth in range(len(path) + 1):
            sums = inclusive.setdefault(path[:depth], [0, 0, 0])
            sums[0] += row.calls
            sums[1] += row.cost_units
            sums[2] += row.unpriced_calls
    table = Table(title="By node (children included)", box=box.SIMPLE_HEAVY, title_justify="left")
    table.add_column("Node", style="bold")
    for name in ("Calls", "Cost", "Share", "Unpriced"):
        table.add_column(name, justify="right", no_wrap=True)
    for path in sorted(inclusive):
        calls, units, unpriced = inclusive[path]
        name = "  " * (len(path) - 1) + path[-1] if path else "(all)"
        table.add_row(
            name,
            f"{calls:,}",
            format_usd(units_to_decimal(units)),
            _share(units, totals.cost_units),
            _unpriced_text(unpriced),
        )
    return Fitted(table, drop=("Share", "Unpriced", "Calls"))


def drift_table(rows: Iterable[DriftRow]) -> Fitted:
    """Pre-call estimates vs billed input tokens, per model (see `tokens.drift`)."""
    table = Table(title="Estimate vs billed input tokens", box=box.SIMPLE_HEAVY, title_justify="left")
    table.add_column("Model", style="bold")
    for name in ("Calls", "Estimated", "Billed", "Difference", "Mean error", "Max error", "Bias"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            _label(row.model),
            f"{row.calls:,}",
            f"{row.estimated_input_tokens:,}",
            f"{row.billed_input_tokens:,}",
            f"{row.difference:+,}",
            _percent(row.mean_relative_error),
            _percent(row.max_relative_error),
            "-" if row.bias is None else f"{row.bias * 100:+.1f}%",
        )
    return Fitted(table, drop=("Max error", "Bias", "Estimated", "Calls", "Mean error"))


def format_usd(amount: Decimal | None, *, exact: bool = False, signed: bool = False) -> str:
    """Dollars for display: 6 decimal places (all of them when `exact`), "-" for None."""
    if amount is None:
        return "-"
    shown = amount if exact else amount.quantize(Decimal("0.000001"))
    sign = "+" if signed and shown > 0 else ""
    return f"{sign}${shown:,}" if shown >= 0 else f"-${-shown:,}"


def _share(part: int, whole: int) -> str:
    return f"{part * 100 / whole:.1f}%" if whole else "-"


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def _label(value: object) -> str:
    if value is None:
        return "(none)"
    return value.isoformat() if isinstance(value, date) else str(value)


def _unpriced_text(count: int) -> str | Text:
    return Text(f"⚠ {count:,}", style=UNPRICED_STYLE) if count else "0"
