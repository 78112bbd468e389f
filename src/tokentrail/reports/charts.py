"""Charts of a tracker's spend (matplotlib, extra `tokentrail[charts]`): PNG or SVG by file suffix.

    plot(tracker, "cost-by-agent", "cost.png")

Kinds: cost-by-agent, cost-by-model, cost-over-time, tokens-over-time (input vs output), per hour, day or
month. `since`, `until` and filters narrow what is drawn, as in `tracker.summary`.
Unpriced calls have no cost: the cost charts say how many were left out.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from tokentrail._money import UNITS_PER_USD

if TYPE_CHECKING:
    from tokentrail._record import SummaryRow

__all__ = ["CHART_KINDS", "CHART_SUFFIXES", "TIME_BUCKETS", "plot"]


class Summarizes(Protocol):
    """What a chart reads: a `Tracker` (or any object answering `summary` the same way)."""

    def summary(self, by: Any = ..., /, **window: Any) -> list[SummaryRow]: ...


CHART_KINDS = ("cost-by-agent", "cost-by-model", "cost-over-time", "tokens-over-time")


CHART_SUFFIXES = (".png", ".svg")
TIME_BUCKETS = ("auto", "hour", "day", "month")
_AUTO_HOURS = 72  # up to this many hours: hourly points; beyond: daily


def plot(
    tracker: Summarizes,
    kind: str,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    bucket: str = "auto",
    **filters: Any,
) -> str:
    """Draw `kind` for what `tracker` holds over [since, until) and `filters` (the same keywords as
    `tracker.summary`), and write it to `path` (.png or .svg); returns the path written.

    Over time, `bucket` is hour, day, month or auto (hourly up to three days, else daily)."""
    if kind not in CHART_KINDS:
        raise ValueError(f"unknown chart {kind!r}; choose one of {', '.join(CHART_KINDS)}")
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in CHART_SUFFIXES:
        raise ValueError(f"charts are written as .png or .svg, not {suffix or 'a file without suffix'!r}")
    if bucket not in TIME_BUCKETS:
        raise ValueError(f"unknown time bucket {bucket!r}; choose one of {', '.join(TIME_BUCKETS)}")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("charts need matplotlib: pip install 'tokentrail[charts]'") from exc
    window: dict[str, Any] = {"since": since, "until": until, **filters}
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=110)
    try:
        if kind in ("cost-by-agent", "cost-by-model"):
            key = "agent" if kind == "cost-by-agent" else "model"
            rows = sorted(tracker.summary((key,), **window), key=lambda r: r.cost_units, reverse=True)
            _bars(axes, rows, key)
        else:
            time_key = _time_key(tracker, bucket, window)
            rows = sorted(tracker.summary((time_key,), **window), key=lambda r: _order(r.group[time_key]))
            _over_time(axes, rows, time_key, tokens=kind == "tokens-over-time")
        unpriced = sum(r.unpriced_calls for r in rows)
        label = _label(title) if title is not None else kind.replace("-", " ").capitalize()
        if unpriced and kind != "tokens-over-time":
            label += f"  ({unpriced} unpriced call{'s' if unpriced != 1 else ''} not included)"
        if not rows:
            axes.text(0.5, 0.5, "no records", ha="center", va="center", transform=axes.transAxes)
        axes.set_title(label)
        with warnings.catch_warnings():  # names in scripts the bundled font lacks draw as boxes
            warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
            figure.tight_layout()
            figure.savefig(os.fspath(path))
    finally:
        plt.close(figure)
    return os.fspath(path)


def _time_key(tracker: Summarizes, bucket: str, window: dict[str, Any]) -> str:
    if bucket != "auto":
        return bucket
    days = tracker.summary(("day",), **window)
    return "hour" if len(days) * 24 <= _AUTO_HOURS else "day"


def _order(value: object) -> str:
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL_LIMIT = 40


def _label(text: str) -> str:
    """A name as drawn: control characters shown as a space, '$' kept literal (not mathtext), long
    names cut with an ellipsis. Charts only: the ledger and exports keep names verbatim."""
    shown = _CONTROL.sub(" ", text)
    if len(shown) > _LABEL_LIMIT:
        shown = shown[: _LABEL_LIMIT - 1] + "…"
    return shown.replace("$", r"\$")


def _usd(units: int) -> float:
    return float(units / UNITS_PER_USD)  # display only


def _bars(axes: Any, rows: Sequence[SummaryRow], key: str) -> None:
    names = [_label(str(r.group[key])) if r.group[key] is not None else "(none)" for r in rows]
    names = _unique(names)
    values = [_usd(r.cost_units) for r in rows]
    bars = axes.barh(names[::-1], values[::-1], color="#3b6ea8")
    for bar, value in zip(bars, values[::-1], strict=True):
        axes.annotate(f" \\${value:,.4f}", (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center")
    axes.set_xlabel("cost (USD)")
    axes.margins(x=0.25)


def _unique(names: list[str]) -> list[str]:
    """Bar labels made distinct (two long names cut to the same text would share one bar)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _time_label(value: object, time_key: str) -> str:
    if isinstance(value, datetime) and time_key == "hour":
        return value.strftime("%m-%d %H:00")
    if isinstance(value, date):
        return value.strftime("%Y-%m") if time_key == "month" else value.isoformat()
    return str(value)


def _over_time(axes: Any, rows: Sequence[SummaryRow], time_key: str, *, tokens: bool) -> None:
    points = [_time_label(r.group[time_key], time_key) for r in rows]
    if tokens:
        axes.plot(points, [r.input_tokens for r in rows], marker="o", label="input")
        axes.plot(points, [r.output_tokens for r in rows], marker="o", label="output")
        axes.set_ylabel("tokens")
        axes.legend()
    else:
        axes.plot(points, [_usd(r.cost_units) for r in rows], marker="o", color="#3b6ea8")
        axes.set_ylabel("cost (USD)")
    axes.set_xlabel(f"{time_key} (UTC)")
    axes.tick_params(axis="x", rotation=30)
