"""The budgets page and `/api/budgets`: every budget instance in its current window (spent, reserved,
remaining, percent, reset time), the alert thresholds already fired in it, and the instances closest to
their limit.

The figures are the budget back-end's own counters, read through the `BudgetManager` the app was given
(`tokentrail serve --budget-backend URL`): SQLite, Redis and Postgres back-ends answer alike, and what a
gateway or an application reserves and spends shows here while it happens.
"""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING, Any

from tokentrail.server._layout import frame, usd

if TYPE_CHECKING:
    from tokentrail.budgets.events import BudgetStatus
    from tokentrail.tracker import Tracker

__all__ = ["CLOSEST", "budget_rows", "closest", "render_budgets"]

CLOSEST = 5  # instances listed as closest to their limit


def _levels(tracker: Tracker) -> dict[str, tuple[Decimal, ...]]:
    manager = tracker.budgets
    if manager is None:
        return {}
    return {budget.name: budget.alert_levels() for budget in manager.budgets}


def budget_rows(tracker: Tracker) -> list[dict[str, Any]]:
    """Every budget instance as JSON, with the alert thresholds fired in its current window."""
    levels = _levels(tracker)
    rows = []
    for status in tracker.budget_status():
        fired = levels.get(status.budget, ())[: status.alerts_fired]
        rows.append(_row(status, [str(level) for level in fired]))
    return rows


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _row(status: BudgetStatus, alerts: list[str]) -> dict[str, Any]:
    return {
        "budget": status.budget,
        "window": status.window,
        "window_key": status.window_key,
        "scope": dict(status.scope),
        "action": status.action,
        "limit_usd": _text(status.limit_usd),
        "spent_usd": str(status.spent_usd),
        "reserved_usd": str(status.reserved_usd),
        "remaining_usd": _text(status.remaining_usd),
        "limit_tokens": status.limit_tokens,
        "spent_tokens": status.spent_tokens,
        "reserved_tokens": status.reserved_tokens,
        "remaining_tokens": status.remaining_tokens,
        "token_kind": status.token_kind,
        "percent": status.percent,
        "committed_percent": _committed(status),
        "exhausted": status.exhausted,
        "resets_at": None if status.resets_at is None else status.resets_at.isoformat(),
        "alerts": alerts,
    }


def _share(used: Decimal | int, limit: Decimal | int | None) -> float:
    if limit is None:
        return 0.0
    if limit == 0:
        return 100.0 if used else 0.0
    return float(Decimal(used) * 100 / Decimal(limit))


def _committed(status: BudgetStatus) -> float:
    """Spent plus reserved as a percentage of the limit (the larger of USD and tokens)."""
    return max(
        _share(status.spent_usd + status.reserved_usd, status.limit_usd),
        _share(status.spent_tokens + status.reserved_tokens, status.limit_tokens),
    )


def closest(rows: list[dict[str, Any]], count: int = CLOSEST) -> list[dict[str, Any]]:
    """The instances nearest their limit: highest committed percentage (spent + reserved) first."""
    ranked = sorted(rows, key=lambda row: (-row["committed_percent"], -row["percent"], row["budget"]))
    return ranked[:count]


def _scope(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(row["scope"].items())) or "(everything)"


def _amount(row: dict[str, Any], kind: str) -> str:
    money = row[f"{kind}_usd"]
    if row["limit_usd"] is not None and money is not None:
        return usd(money)
    tokens = row[f"{kind}_tokens"]
    return "—" if tokens is None else f"{tokens:,} tokens"


def _table(rows: list[dict[str, Any]], ident: str, caption: str) -> str:
    head = (
        '<tr><th scope="col">Budget</th><th scope="col">Scope</th><th scope="col">Window</th>'
        '<th scope="col" class=num>Spent</th><th scope="col" class=num>Reserved</th>'
        '<th scope="col" class=num>Remaining</th><th scope="col" class=num>Limit</th>'
        '<th scope="col" class=num>Used</th><th scope="col">Resets at (UTC)</th><th scope="col">Alerts fired</th></tr>'
    )
    body = []
    for row in rows:
        limit = usd(row["limit_usd"]) if row["limit_usd"] is not None else f"{row['limit_tokens']:,} tokens"
        alerts = ", ".join(f"{Decimal(level):.0%}" for level in row["alerts"]) or "none"
        meter = (
            f'<meter min="0" max="100" value="{min(row["percent"], 100):.1f}" '
            f'aria-label="{escape(row["budget"])} {row["percent"]:.1f}% used"></meter>'
        )
        css = ' class="warn"' if row["exhausted"] else ""
        body.append(
            f'<tr data-budget="{escape(row["budget"])}"><td>{escape(row["budget"])}</td>'
            f"<td>{escape(_scope(row))}</td><td>{escape(row['window'])}</td>"
            f'<td class="num spent">{_amount(row, "spent")}</td><td class="num reserved">{_amount(row, "reserved")}</td>'
            f'<td class="num remaining">{_amount(row, "remaining")}</td><td class="num">{limit}</td>'
            f'<td class="num budget-percent"><span{css}>{row["percent"]:.1f}%</span> {meter}</td>'
            f"<td>{escape((row['resets_at'] or '—')[:16].replace('T', ' '))}</td>"
            f'<td class="alerts">{escape(alerts)}</td></tr>'
        )
    return f'<table id="{ident}"><caption>{escape(caption)}</caption><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def render_budgets(tracker: Tracker, every_ms: int) -> str:
    """The budgets page: closest to the limit, every budget, and the alerts that fired."""
    rows = budget_rows(tracker)
    if tracker.budgets is None:
        body = (
            '<section id="budgets"><h2>Budgets</h2><p class="muted">No budget back-end is attached: start '
            "the dashboard with <code>tokentrail serve --budget-backend URL</code> (SQLite, Redis or "
            "Postgres) to see the budgets a gateway or an application uses.</p></section>"
        )
        return frame("Budgets", "/budgets", "", body, None, every_ms)
    near = closest(rows)
    fired = [row for row in rows if row["alerts"]]
    alert_items = "".join(
        f"<li><b>{escape(row['budget'])}</b> ({escape(_scope(row))}, window {escape(row['window_key'] or row['window'])}): "
        f"{escape(', '.join(f'{Decimal(level):.0%}' for level in row['alerts']))} of the limit reached</li>"
        for row in fired
    )
    sections = [
        '<section id="closest" aria-labelledby="closest-title"><h2 id="closest-title">Closest to their limit</h2>'
        + (
            _table(near, "closest-table", "Spent plus reserved, highest share of the limit first")
            if near
            else '<p class="muted">No budgets.</p>'
        )
        + "</section>",
        '<section id="budgets" aria-labelledby="budgets-title"><h2 id="budgets-title">Every budget</h2>'
        + (
            _table(rows, "budgets-table", "Every budget instance in its current window")
            if rows
            else '<p class="muted">No budgets are registered in this back-end.</p>'
        )
        + "</section>",
        '<section id="alerts" aria-labelledby="alerts-title"><h2 id="alerts-title">Alerts that fired</h2>'
        + (
            f"<ul>{alert_items}</ul>"
            if alert_items
            else '<p class="muted">No alert has fired in the current windows.</p>'
        )
        + "</section>",
    ]
    return frame("Budgets", "/budgets", "", "".join(sections), "/api/budgets", every_ms)
