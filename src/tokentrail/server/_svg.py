"""Server-side SVG bar charts: no JavaScript, no external URLs. Money stays Decimal; only the bar
geometry is computed in floats. A cost bar whose calls paid for more than tokens (requests, searches,
durations, pages, …) ends in a hatched part of another colour for that charge, with a legend."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

__all__ = ["bar_chart", "column_chart", "fill_chart"]

_WIDTH = 720
_COLUMN_HEIGHT = 200
_ROW_HEIGHT = 22
_LABEL_WIDTH = 220
OTHER_LABEL = "other than tokens"  # requests, searches, durations, pages, … priced beside the tokens


def _scale(values: Sequence[Decimal]) -> Decimal:
    top = max(values, default=Decimal(0))
    return top if top > 0 else Decimal(1)


def _other_fill(chart_id: str) -> str:
    """The hatch that marks the part of a bar not paid for tokens (a pattern, so colour is not the only cue)."""
    return (
        f'<defs><pattern id="{escape(chart_id)}-other" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" class="other-base"/>'
        '<rect width="2" height="6" class="other-hatch"/></pattern></defs>'
    )


def _legend(chart_id: str, x: float, y: float) -> str:
    """Which part of a bar is what: tokens, and charges other than tokens."""
    return (
        f'<g class="legend"><rect x="{x:.0f}" y="{y - 9:.0f}" width="10" height="10" class="bar"/>'
        f'<text x="{x + 14:.0f}" y="{y}" class="tick">tokens</text>'
        f'<rect x="{x + 64:.0f}" y="{y - 9:.0f}" width="10" height="10" class="bar-other" '
        f'fill="url(#{escape(chart_id)}-other)"/>'
        f'<text x="{x + 78:.0f}" y="{y}" class="tick">{OTHER_LABEL}</text></g>'
    )


def _tip(label: str, value: Decimal, other: Decimal, split: bool) -> str:
    return f"{escape(label)}: ${value}" + (f" ({OTHER_LABEL} ${other})" if split else "")


def column_chart(chart_id: str, points: Sequence[tuple[str, Decimal, Decimal]], title: str) -> str:
    """Vertical bars, one per point (a time bucket: label, cost, the part of it not paid for tokens), each
    with a tooltip giving its exact value; when some point has such a part, it is stacked on top, hatched."""
    top = _scale([value for _, value, _ in points])
    split = any(other for _, _, other in points)
    count = max(len(points), 1)
    slot = (_WIDTH - 40) / count
    bar = max(slot * 0.8, 1.0)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {_WIDTH} {_COLUMN_HEIGHT + 40}" width="{_WIDTH}" height="{_COLUMN_HEIGHT + 40}" >',
        _other_fill(chart_id) if split else "",
        f'<line x1="30" y1="{_COLUMN_HEIGHT + 5}" x2="{_WIDTH - 10}" y2="{_COLUMN_HEIGHT + 5}" class="axis"/>',
    ]
    for index, (label, value, other) in enumerate(points):
        height = float(value / top) * _COLUMN_HEIGHT
        x = 30 + index * slot + (slot - bar) / 2
        y = _COLUMN_HEIGHT + 5 - height
        data = f' data-other="{other}"' if split else ""
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
            f'data-label="{escape(label)}" data-value="{value}"{data}><title>{_tip(label, value, other, split)}'
            "</title></rect>"
        )
        if other:
            parts.append(
                f'<rect class="bar-other" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{float(other / top) * _COLUMN_HEIGHT:.1f}" fill="url(#{escape(chart_id)}-other)">'
                f"<title>{_tip(label, value, other, split)}</title></rect>"
            )
    if points:
        parts.append(f'<text x="30" y="{_COLUMN_HEIGHT + 25}" class="tick">{escape(points[0][0])}</text>')
        parts.append(
            f'<text x="{_WIDTH - 10}" y="{_COLUMN_HEIGHT + 25}" class="tick" text-anchor="end">'
            f"{escape(points[-1][0])}</text>"
        )
    parts.append(f'<text x="30" y="12" class="tick">max ${top if points else 0}</text>')
    if split:
        parts.append(
            _legend(chart_id, _WIDTH / 2 - 90, _COLUMN_HEIGHT + 25)
        )  # between the first and last tick
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(chart_id: str, rows: Sequence[tuple[str, Decimal, Decimal]], title: str) -> str:
    """Horizontal bars, one per group (label, cost, the part of it not paid for tokens), labelled with the
    group and its exact value; when some group has such a part, it ends its bar, hatched, and its value
    follows the cost ("other $…")."""
    top = _scale([value for _, value, _ in rows])
    split = any(other for _, _, other in rows)
    head = _ROW_HEIGHT if split else 0  # the legend's row
    height = max(len(rows), 1) * _ROW_HEIGHT + 10 + head
    span = _WIDTH - _LABEL_WIDTH - (230 if split else 130)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" >'
    ]
    if split:
        parts += [_other_fill(chart_id), _legend(chart_id, _LABEL_WIDTH, 16)]
    for index, (label, value, other) in enumerate(rows):
        y = 5 + head + index * _ROW_HEIGHT
        width = float(value / top) * span
        tokens = float((value - other) / top) * span
        data = f' data-other="{other}"' if split else ""
        text = f"${value:.4f}" + (f" · other ${other:.4f}" if other else "")
        parts.append(
            f'<text x="{_LABEL_WIDTH - 6}" y="{y + 15}" class="label" text-anchor="end">{escape(label[:40])}</text>'
            f'<rect class="bar" x="{_LABEL_WIDTH}" y="{y + 3}" width="{width:.1f}" height="{_ROW_HEIGHT - 6}" '
            f'data-label="{escape(label)}" data-value="{value}"{data}><title>{_tip(label, value, other, split)}'
            "</title></rect>"
        )
        if other:
            parts.append(
                f'<rect class="bar-other" x="{_LABEL_WIDTH + tokens:.1f}" y="{y + 3}" '
                f'width="{width - tokens:.1f}" height="{_ROW_HEIGHT - 6}" fill="url(#{escape(chart_id)}-other)">'
                f"<title>{_tip(label, value, other, split)}</title></rect>"
            )
        parts.append(f'<text x="{_LABEL_WIDTH + width + 6:.1f}" y="{y + 15}" class="value">{text}</text>')
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
