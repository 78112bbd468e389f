"""`tokentrail chart` and `reports.charts.plot`: PNG and SVG of a ledger's spend, filtered."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

matplotlib = pytest.importorskip("matplotlib")

import tokentrail as tt  # noqa: E402
from tokentrail.reports.charts import CHART_KINDS, plot  # noqa: E402

from .conftest import HOSTILE, T0, record_sample  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind", CHART_KINDS)
@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_every_kind_draws_as_png_and_svg(
    kind: str, suffix: str, ledger: str, tmp_path: Path, cli: Any
) -> None:
    out = tmp_path / f"{kind}{suffix}"
    result = cli("chart", "--store", ledger, "--kind", kind, "-o", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    if suffix == ".png":
        assert data.startswith(PNG)
    else:
        assert ET.fromstring(data).tag.endswith("svg")


def _svg_text(tracker: tt.Tracker, kind: str, path: Path, **options: Any) -> str:
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # keep text as text to read it back
        plot(tracker, kind, path, **options)
    return "".join(ET.parse(path).getroot().itertext())


def test_filters_choose_what_is_drawn(tmp_path: Path) -> None:
    tracker = tt.Tracker()
    record_sample(tracker)
    text = _svg_text(tracker, "cost-by-agent", tmp_path / "a.svg", model="gpt-4o")
    assert "researcher" in text and "writer" in text and "gpt-4o-mini" not in text
    only = _svg_text(tracker, "cost-by-agent", tmp_path / "b.svg", agent="researcher")
    assert "researcher" in only and "writer" not in only
    late = _svg_text(tracker, "cost-by-model", tmp_path / "c.svg", since=T0 + timedelta(hours=2))
    assert "claude-sonnet-4-20250514" in late and "gpt-4o-mini" not in late


def test_hostile_names_draw_literally_and_cut_short(tmp_path: Path) -> None:
    tracker = tt.Tracker()
    tracker.record(tt.Usage(100, 10), "gpt-4o", agent="$x$ costs $y$")
    tracker.record(tt.Usage(100, 10), "gpt-4o", agent=HOSTILE["long"] + "\x00")
    tracker.record(tt.Usage(100, 10), "gpt-4o", agent=HOSTILE["sql"])
    text = _svg_text(tracker, "cost-by-agent", tmp_path / "h.svg")
    assert "$x$ costs $y$" in text and HOSTILE["sql"] in text
    assert "L" * 39 + "…" in text and "L" * 41 not in text


def test_time_buckets_follow_the_span(tmp_path: Path) -> None:
    tracker = tt.Tracker()
    for day in range(10):
        tracker.record(tt.Usage(100, 10), "gpt-4o", at=T0 + timedelta(days=day))
    daily = _svg_text(tracker, "cost-over-time", tmp_path / "d.svg")
    assert "day (UTC)" in daily and "2025-08-10" in daily
    hourly = _svg_text(tracker, "tokens-over-time", tmp_path / "h.svg", until=T0 + timedelta(days=1))
    assert "hour (UTC)" in hourly
    monthly = _svg_text(tracker, "cost-over-time", tmp_path / "m.svg", bucket="month")
    assert "2025-08" in monthly


def test_plot_refuses_unknown_kinds_suffixes_and_buckets(tmp_path: Path) -> None:
    tracker = tt.Tracker()
    with pytest.raises(ValueError, match="unknown chart"):
        plot(tracker, "pie", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plot(tracker, "cost-by-agent", tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="time bucket"):
        plot(tracker, "cost-over-time", tmp_path / "x.png", bucket="week")


def test_an_empty_ledger_still_draws(tmp_path: Path) -> None:
    assert Path(plot(tt.Tracker(), "cost-over-time", tmp_path / "e.png")).read_bytes().startswith(PNG)


def test_bad_chart_options_are_usage_errors_and_bad_places_exit_1(
    ledger: str, tmp_path: Path, cli: Any
) -> None:
    assert cli("chart", "--store", ledger, "--kind", "pie", "-o", str(tmp_path / "x.png")).exit_code == 2
    assert (
        cli("chart", "--store", ledger, "--kind", "cost-by-agent", "-o", str(tmp_path / "x.gif")).exit_code
        == 2
    )
    assert (
        cli(
            "chart",
            "--store",
            ledger,
            "--kind",
            "cost-over-time",
            "--bucket",
            "week",
            "-o",
            str(tmp_path / "x.png"),
        )
    ).exit_code == 2
    nowhere = cli("chart", "--store", ledger, "--kind", "cost-by-agent", "-o", str(tmp_path / "no" / "x.png"))
    assert nowhere.exit_code == 1 and "no directory" in nowhere.output
    missing = cli(
        "chart",
        "--store",
        f"sqlite:///{tmp_path / 'none.db'}",
        "--kind",
        "cost-by-agent",
        "-o",
        str(tmp_path / "x.png"),
    )
    assert missing.exit_code == 1 and "No ledger" in missing.output


def test_tracker_plot_draws_a_node_alone(tmp_path: Path) -> None:
    tracker = tt.Tracker()
    tracker.child("researcher").record(tt.Usage(100, 10), "gpt-4o")
    tracker.child("writer").record(tt.Usage(100, 10), "gpt-4o-mini")
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        written = tracker.child("writer").plot("cost-by-model", tmp_path / "w.svg")
    text = "".join(ET.parse(written).getroot().itertext())
    assert "gpt-4o-mini" in text and "gpt-4o" not in text.replace("gpt-4o-mini", "")
    assert "researcher" not in text
    assert Path(tracker.plot("cost-by-agent", tmp_path / "all.png")).read_bytes().startswith(PNG)
    with pytest.raises(ValueError, match="unknown chart"):
        tracker.plot("pie", tmp_path / "x.png")
