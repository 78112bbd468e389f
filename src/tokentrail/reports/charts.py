"""Charts of a tracker's spend (matplotlib, extra `tokentrail[charts]`): PNG or SVG by file suffix.

    plot(tracker, "cost-by-agent", "cost.png")

Kinds: cost-by-agent, cost-by-model, cost-over-time (hourly), tokens-over-time (hourly, input vs output).
Unpriced calls have no cost: the cost charts say how many were left out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tokentrail._money import UNITS_PER_USD

if TYPE_CHECKING:
    from tokentrail._record import SummaryRow
    from tokentrail.tracker import Tracker

__all__ = ["CHART_KINDS", "plot"]

CHART_KINDS = ("cost-by-agent", "cost-by-model", "cost-over-time", "tokens-over-time")


def plot(tracker: Tracker, kind: str, path: str | os.PathLike[str], *, title: str | None = None) -> str:
    """Draw `kind` for everything `tracker` holds and write it to `path`; returns the path written."""
    if kind not in CHART_KINDS:
        raise ValueError(f"unknown chart {kind!r}; choose one of {', '.join(CHART_KINDS)}")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("charts need matplotlib: pip install 'tokentrail[charts]'") from exc
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=110)
    try:
        if kind in ("cost-by-agent", "cost-by-model"):
            key = "agent" if kind == "cost-by-agent" else "model"
            rows = sorted(tracker.summary(by=(key,)), key=lambda r: r.cost_units, reverse=True)
            _bars(axes, rows, key)
        else:
            rows = sorted(tracker.summary(by=("hour",)), key=lambda r: _hour_label(r.group["hour"]))
            _over_time(axes, rows, tokens=kind == "tokens-over-time")
        unpriced = sum(r.unpriced_calls for r in rows)
        label = title or kind.replace("-", " ").capitalize()
        if unpriced and kind != "tokens-over-time":
            label += f"  ({unpriced} unpriced call{'s' if unpriced != 1 else ''} not included)"
        axes.set_title(label)
        figure.tight_layout()
        figure.savefig(os.fspath(path))
    finally:
        plt.close(figure)
    return os.fspath(path)


def _usd(units: int) -> float:
    return float(units / UNITS_PER_USD)  # display only


def _bars(axes: Any, rows: Sequence[SummaryRow], key: str) -> None:
    names = [str(r.group[key]) if r.group[key] is not None else "(none)" for r in rows]
    values = [_usd(r.cost_units) for r in rows]
    bars = axes.barh(names[::-1], values[::-1], color="#3b6ea8")
    for bar, value in zip(bars, values[::-1], strict=True):
        axes.annotate(f" ${value:,.4f}", (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center")
    axes.set_xlabel("cost (USD)")
    axes.margins(x=0.25)


def _hour_label(value: object) -> str:
    return value.strftime("%m-%d %H:00") if hasattr(value, "strftime") else str(value)


def _over_time(axes: Any, rows: Sequence[SummaryRow], *, tokens: bool) -> None:
    hours = [_hour_label(r.group["hour"]) for r in rows]
    if tokens:
        axes.plot(hours, [r.input_tokens for r in rows], marker="o", label="input")
        axes.plot(hours, [r.output_tokens for r in rows], marker="o", label="output")
        axes.set_ylabel("tokens")
        axes.legend()
    else:
        axes.plot(hours, [_usd(r.cost_units) for r in rows], marker="o", color="#3b6ea8")
        axes.set_ylabel("cost (USD)")
    axes.set_xlabel("hour (UTC)")
    axes.tick_params(axis="x", rotation=30)
