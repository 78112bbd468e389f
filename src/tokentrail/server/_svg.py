"""Server-side SVG bar charts: no JavaScript, no external URLs. Money stays Decimal; only the bar
geometry is computed in floats."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

__all__ = ["bar_chart", "column_chart", "fill_chart"]

_WIDTH = 720
_COLUMN_HEIGHT = 200
_ROW_HEIGHT = 22
_LABEL_WIDTH = 220


def _scale(values: Sequence[Decimal]) -> Decimal:
    top = max(values, default=Decimal(0))
    return top if top > 0 else Decimal(1)


def column_chart(chart_id: str, points: Sequence[tuple[str, Decimal]], title: str) -> str:
    """Vertical bars, one per point (a time bucket), each with a tooltip giving its exact value."""
    top = _scale([value for _, value in points])
    count = max(len(points), 1)
    slot = (_WIDTH - 40) / count
    bar = max(slot * 0.8, 1.0)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {_WIDTH} {_COLUMN_HEIGHT + 40}" width="{_WIDTH}" height="{_COLUMN_HEIGHT + 40}" >',
        f'<line x1="30" y1="{_COLUMN_HEIGHT + 5}" x2="{_WIDTH - 10}" y2="{_COLUMN_HEIGHT + 5}" class="axis"/>',
    ]
    for index, (label, value) in enumerate(points):
        height = float(value / top) * _COLUMN_HEIGHT
        x = 30 + index * slot + (slot - bar) / 2
        y = _COLUMN_HEIGHT + 5 - height
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
            f'data-label="{escape(label)}" data-value="{value}"><title>{escape(label)}: ${value}</title></rect>'
        )
    if points:
        parts.append(f'<text x="30" y="{_COLUMN_HEIGHT + 25}" class="tick">{escape(points[0][0])}</text>')
        parts.append(
            f'<text x="{_WIDTH - 10}" y="{_COLUMN_HEIGHT + 25}" class="tick" text-anchor="end">'
            f"{escape(points[-1][0])}</text>"
        )
    parts.append(f'<text x="30" y="12" class="tick">max ${top if points else 0}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(chart_id: str, rows: Sequence[tuple[str, Decimal]], title: str) -> str:
    """Horizontal bars, one per group, labelled with the group and its exact value."""
    top = _scale([value for _, value in rows])
    height = max(len(rows), 1) * _ROW_HEIGHT + 10
    span = _WIDTH - _LABEL_WIDTH - 130
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" >'
    ]
    for index, (label, value) in enumerate(rows):
        y = 5 + index * _ROW_HEIGHT
        width = float(value / top) * span
        parts.append(
            f'<text x="{_LABEL_WIDTH - 6}" y="{y + 15}" class="label" text-anchor="end">{escape(label[:40])}</text>'
            f'<rect class="bar" x="{_LABEL_WIDTH}" y="{y + 3}" width="{width:.1f}" height="{_ROW_HEIGHT - 6}" '
            f'data-label="{escape(label)}" data-value="{value}"><title>{escape(label)}: ${value}</title></rect>'
            f'<text x="{_LABEL_WIDTH + width + 6:.1f}" y="{y + 15}" class="value">${value:.4f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def fill_chart(
    chart_id: str,
    fills: Sequence[float | None],
    thresholds: Sequence[float],
    marks: Sequence[tuple[int, str]],
    title: str,
) -> str:
    """Context-window fill per call (0–100 %, calls in order): a line through the known fills, dashed
    lines at the warning thresholds, and a marker with its message at each call in `marks`."""
    height = _COLUMN_HEIGHT
    count = max(len(fills), 1)
    step = (_WIDTH - 50) / max(count - 1, 1)

    def at(index: int, fraction: float) -> tuple[float, float]:
        return 40 + index * step, 10 + height * (1 - min(fraction, 1.0))

    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {_WIDTH} {height + 40}" width="{_WIDTH}" height="{height + 40}">',
        f'<line x1="40" y1="{height + 10}" x2="{_WIDTH - 10}" y2="{height + 10}" class="axis"/>',
        f'<text x="4" y="{height + 14}" class="tick">0%</text><text x="4" y="14" class="tick">100%</text>',
    ]
    for threshold in thresholds:
        _, y = at(0, threshold)
        parts.append(
            f'<line class="limit" x1="40" y1="{y:.1f}" x2="{_WIDTH - 10}" y2="{y:.1f}" '
            f'data-threshold="{threshold}"/><text x="{_WIDTH - 12}" y="{y - 3:.1f}" class="tick" '
            f'text-anchor="end">{threshold:.0%}</text>'
        )
    points = [at(i, f) for i, f in enumerate(fills) if f is not None]
    if points:
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline class="fill" points="{line}" data-points="{len(points)}"/>')
    for index, message in marks:
        fill = fills[index] if index < len(fills) else None
        x, y = at(index, fill if fill is not None else 1.0)
        parts.append(
            f'<circle class="warnmark" cx="{x:.1f}" cy="{y:.1f}" r="4" data-call="{index}">'
            f"<title>{escape(message)}</title></circle>"
        )
    parts.append(
        f'<text x="40" y="{height + 28}" class="tick">call 1</text>'
        f'<text x="{_WIDTH - 10}" y="{height + 28}" class="tick" text-anchor="end">call {len(fills)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
