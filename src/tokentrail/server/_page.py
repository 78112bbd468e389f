"""The HTML dashboard overview: one self-contained page (inline CSS, server-side SVG, no external URL; the
frame, navigation and live refresh it shares with the other pages are in `_layout`).

Filters are a plain GET form, so every figure on the page is recomputed for the chosen range and scope.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING, Any

from tokentrail._money import units_to_decimal
from tokentrail.server._insights import Insights, insights
from tokentrail.server._layout import frame
from tokentrail.server._params import RANGES, Selection
from tokentrail.server._svg import bar_chart, column_chart
from tokentrail.server._views import group_text

if TYPE_CHECKING:
    from tokentrail.tracker import Tracker

__all__ = ["SCOPE_FILTERS", "render_page"]

SCOPE_FILTERS = ("agent", "user", "model", "provider")
TOP_GROUPS = 15
RECENT_CALLS = 20
MAX_DAYS = 400


def _usd(value: Decimal) -> str:
    return f"${value:,.4f}" if value else "$0"


def _options(tracker: Tracker, key: str) -> list[str]:
    values = {group_text(row.group.get(key)) for row in tracker.summary(by=(key,))}
    return sorted(value for value in values if value is not None)


def _filters_form(tracker: Tracker, picked: Selection) -> str:
    parts = ['<form method="get" action="/" id="filters"><label>Time range<select name="range" id="f-range">']
    for name in RANGES:
        chosen = " selected" if name == picked.range else ""
        parts.append(f'<option value="{name}"{chosen}>{name}</option>')
    parts.append("</select></label>")
    for key in SCOPE_FILTERS:
        current = picked.filters.get(key)
        parts.append(f'<label>{key}<select name="{key}" id="f-{key}"><option value="">(all)</option>')
        for value in _options(tracker, key):
            chosen = " selected" if value == current else ""
            parts.append(f'<option value="{escape(value)}"{chosen}>{escape(value)}</option>')
        parts.append("</select></label>")
    parts.append('<button type="submit" id="apply">Apply</button></form>')
    return "".join(parts)


def _time_points(tracker: Tracker, picked: Selection, now: datetime) -> list[tuple[str, Decimal, Decimal]]:
    """Cost, and the part of it not paid for tokens, per time bucket over the whole selection, empty
    buckets included."""
    bucket = picked.bucket
    rows = tracker.summary(by=(bucket,), since=picked.since, until=picked.until, **picked.filters)
    costs: dict[Any, tuple[Decimal, Decimal]] = {
        row.group[bucket]: (row.cost, row.non_token_cost) for row in rows
    }
    end = picked.until - timedelta(microseconds=1) if picked.until is not None else now
    if bucket == "hour":
        step = timedelta(hours=1)
        first: datetime | date = (picked.since or now).replace(minute=0, second=0, microsecond=0)
        last: datetime | date = end.replace(minute=0, second=0, microsecond=0)
    else:
        step = timedelta(days=1)
        known = [key for key in costs if isinstance(key, date)]
        first = picked.since.date() if picked.since is not None else min(known, default=end.date())
        last = end.date()
        first = max(first, last - timedelta(days=MAX_DAYS - 1))
    points: list[tuple[str, Decimal, Decimal]] = []
    cursor = first
    while cursor <= last:
        label = cursor.strftime("%m-%d %H:00") if bucket == "hour" else cursor.isoformat()
        points.append((label, *costs.get(cursor, (Decimal(0), Decimal(0)))))
        cursor = cursor + step
    return points


def _group_rows(tracker: Tracker, picked: Selection, key: str) -> list[tuple[str, Decimal, Decimal]]:
    """The top groups by cost: label, cost, and the part of it not paid for tokens."""
    rows = tracker.summary(by=(key,), since=picked.since, until=picked.until, **picked.filters)
    rows.sort(key=lambda row: (-row.cost_units, -row.calls))
    return [
        (group_text(row.group.get(key)) or "(none)", row.cost, row.non_token_cost)
        for row in rows[:TOP_GROUPS]
    ]


def _totals(tracker: Tracker, picked: Selection) -> str:
    row = tracker.totals(since=picked.since, until=picked.until, **picked.filters)
    figures = [
        ("total-cost", "Cost (priced calls)", _usd(row.cost)),
        ("total-calls", "Calls", f"{row.calls:,}"),
        ("total-tokens", "Tokens", f"{row.total_tokens:,}"),
        ("total-unpriced", "Unpriced calls", f"{row.unpriced_calls:,}"),
    ]
    if row.non_token_cost_units:  # requests, searches, durations, pages, … beside the tokens
        figures.insert(1, ("total-non-token", "Other than tokens", _usd(row.non_token_cost)))
    cells = "".join(
        f'<div class="figure">{escape(title)}<b id="{ident}">{escape(text)}</b></div>'
        for ident, title, text in figures
    )
    return f'<section id="totals"><h2>Totals</h2><div class="figures">{cells}</div></section>'


def _budgets(tracker: Tracker) -> str:
    statuses = tracker.budget_status()
    if not statuses:
        return '<section id="budgets"><h2>Budgets</h2><p class="muted">No budgets configured.</p></section>'
    rows = []
    for status in statuses:
        scope = ", ".join(f"{k}={v}" for k, v in sorted(status.scope.items())) or "(everything)"
        limit = "—" if status.limit_usd is None else _usd(status.limit_usd)
        rows.append(
            f"<tr><td>{escape(status.budget)}</td><td>{escape(status.window)}</td><td>{escape(scope)}</td>"
            f'<td class="num">{_usd(status.spent_usd)}</td><td class="num">{limit}</td>'
            f'<td class="num budget-percent">{status.percent:.1f}%</td>'
            f'<td><meter min="0" max="100" value="{min(status.percent, 100):.1f}"></meter></td></tr>'
        )
    head = (
        "<tr><th>Budget</th><th>Window</th><th>Scope</th><th class=num>Spent</th><th class=num>Limit</th>"
        "<th class=num>Used</th><th></th></tr>"
    )
    return f'<section id="budgets"><h2>Budgets</h2><table>{head}{"".join(rows)}</table></section>'


def _recent(tracker: Tracker, picked: Selection) -> str:
    records = tracker.history(since=picked.since, until=picked.until, limit=RECENT_CALLS, **picked.filters)
    other = any(record.non_token_units for record in records)  # an "Other" column when a call has some
    rows = []
    for record in reversed(records):
        when = datetime.fromtimestamp(record.timestamp_us / 1_000_000, timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
        cost = "unpriced" if record.cost_units is None else _usd(units_to_decimal(record.cost_units))
        if other:
            part = "—" if record.non_token_cost is None else _usd(record.non_token_cost)
            cost += f'</td><td class="num non-token">{part}'
        rows.append(
            f"<tr><td>{when}</td><td>{escape(record.agent or '')}</td><td>{escape(record.user or '')}</td>"
            f"<td>{escape(record.model or '')}</td><td class=num>{record.usage.input_tokens:,}</td>"
            f"<td class=num>{record.usage.output_tokens:,}</td><td class=num>{cost}</td></tr>"
        )
    head = (
        "<tr><th>Time (UTC)</th><th>Agent</th><th>User</th><th>Model</th><th class=num>In</th>"
        "<th class=num>Out</th><th class=num>Cost</th>"
        + (
            '<th class=num title="requests, searches, durations, pages, … beside the tokens">Other</th>'
            if other
            else ""
        )
        + "</tr>"
    )
    body = "".join(rows) or '<tr><td colspan="7" class="muted">No calls in this selection.</td></tr>'
    return f'<section id="recent"><h2>Recent calls</h2><table>{head}{body}</table></section>'


def _unpriced(tracker: Tracker, picked: Selection) -> str:
    filters = {**picked.filters, "priced": False}
    rows = tracker.summary(by=("provider", "model"), since=picked.since, until=picked.until, **filters)
    if not rows:
        return '<section id="unpriced"><h2>Unpriced models</h2><p class="muted">None.</p></section>'
    items = "".join(
        f"<tr><td>{escape(group_text(row.group.get('provider')) or '')}</td>"
        f"<td>{escape(group_text(row.group.get('model')) or '(none)')}</td><td class=num>{row.calls:,}</td></tr>"
        for row in rows
    )
    head = "<tr><th>Provider</th><th>Model</th><th class=num>Calls</th></tr>"
    return f'<section id="unpriced"><h2>Unpriced models</h2><table>{head}{items}</table></section>'


def _insights_panel(found: Insights) -> str:
    title = "<h2>Anomalies and forecast</h2>"
    if not found.available:
        return f'<section id="insights">{title}<p class="warn">analytics not available</p></section>'
    if found.forecast is not None:
        outlook = found.forecast
        forecast = (
            f'<p id="forecast">Month {escape(outlook["month"])}: forecast '
            f"{_usd(Decimal(outlook['total_usd']))} ({int(outlook['confidence'] * 100)}% interval "
            f"{_usd(Decimal(outlook['low_usd']))} – {_usd(Decimal(outlook['high_usd']))}; "
            f"method {escape(outlook['method'])}, {outlook['days_observed']} days observed).</p>"
        )
    else:
        forecast = f'<p id="forecast" class="muted">No forecast: {escape(found.forecast_note or "")}</p>'
    if found.anomalies:
        rows = "".join(
            f"<tr><td>{escape(item['period'])}</td><td>{escape(item['metric'])}</td>"
            f"<td class=num>{_usd(Decimal(item['value_usd']))}</td>"
            f"<td class=num>{_usd(Decimal(item['baseline_median_usd']))}</td>"
            f"<td class=num>{item['score']:.1f}</td></tr>"
            for item in found.anomalies
        )
        head = "<tr><th>Hour</th><th>Metric</th><th class=num>Value</th><th class=num>Baseline</th><th class=num>Score</th></tr>"
        table = f'<table id="anomalies">{head}{rows}</table>'
    else:
        table = '<p id="anomalies" class="muted">No anomalies in this selection.</p>'
    return f'<section id="insights">{title}{forecast}{table}</section>'


def render_page(tracker: Tracker, picked: Selection, every_ms: int = 2000) -> str:
    """The whole dashboard for one selection; live like the other pages (the frame's small script polls
    `/api/pulse` every `every_ms` and swaps the figures in when a call arrived)."""
    controls = f"<section><h2>Filters</h2>{_filters_form(tracker, picked)}</section>"
    sections = [
        _totals(tracker, picked),
        "<section><h2>Cost over time (UTC "
        + picked.bucket
        + ")</h2>"
        + column_chart("chart-time", _time_points(tracker, picked, picked.now), "Cost over time")
        + "</section>",
    ]
    for key in ("agent", "model", "user"):
        chart = bar_chart(f"chart-{key}", _group_rows(tracker, picked, key), f"Cost by {key}")
        sections.append(f"<section><h2>Cost by {key}</h2>{chart}</section>")
    sections += [
        _budgets(tracker),
        _insights_panel(insights(tracker, picked)),
        _unpriced(tracker, picked),
        _recent(tracker, picked),
    ]
    return frame("Overview", "/", controls, "".join(sections), "/api/pulse", every_ms)
