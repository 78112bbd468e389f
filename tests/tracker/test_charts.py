"""Charts are written as real PNG/SVG files for each kind; unknown kinds are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

import tokentrail as tt
from tokentrail.reports.charts import CHART_KINDS, plot


@pytest.fixture
def tracker() -> tt.Tracker:
    tracker = tt.Tracker()
    with tt.scope(agent="researcher"):
        tracker.record(tt.Usage(12_000, 800), model="gpt-4o")
    with tt.scope(agent="writer"):
        tracker.record(tt.Usage(3_000, 900), model="gpt-4o-mini")
        tracker.record(tt.Usage(10, 10), model="in-house-7b")
    return tracker


@pytest.mark.parametrize("kind", CHART_KINDS)
def test_each_kind_writes_a_png(tracker: tt.Tracker, tmp_path: Path, kind: str) -> None:
    path = plot(tracker, kind, tmp_path / f"{kind}.png")
    assert Path(path).read_bytes().startswith(b"\x89PNG")


def test_svg_by_suffix(tracker: tt.Tracker, tmp_path: Path) -> None:
    path = plot(tracker, "cost-by-model", tmp_path / "cost.svg")
    text = Path(path).read_text()
    assert "<svg" in text and "unpriced call not included" in text


def test_unknown_kind_is_refused(tracker: tt.Tracker, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown chart"):
        plot(tracker, "pie", tmp_path / "x.png")
