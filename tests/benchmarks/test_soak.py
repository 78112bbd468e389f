"""The gateway soak's verdict on memory and its latency histogram (benchmarks/_soak.py): a steady leak, a
slow leak that adds up and a jump at the end are caught; warm-up growth and noise are not a leak."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


def _load_soak() -> ModuleType:
    """benchmarks/ is not a package: load the module from its file (as the benchmark scripts import it)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "_soak.py"
    spec = importlib.util.spec_from_file_location("bench_soak", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


soak = _load_soak()


def samples(seconds: int, every: int, rss: Callable[[int], float]) -> list[tuple[float, float]]:
    return [(float(t), rss(t)) for t in range(0, seconds + 1, every)]


def test_a_steady_leak_of_two_mb_a_minute_is_not_flat() -> None:
    verdict = soak.judge_flat(samples(600, 5, lambda t: 140 + 2 * t / 60), 60)
    assert verdict.slope_mb_per_min == pytest.approx(2.0, abs=1e-9)
    assert (verdict.warm_mb, verdict.final_mb, verdict.samples) == (142.0, 160.0, 109)
    assert verdict.met is False
    assert verdict.verdict == "not met"
    assert verdict.why == "slope +2.00 MB/min ≥ 1; last 160.0 MB > warm-up 142.0 MB + 10%"


def test_a_leak_just_over_the_slope_bound_is_caught_in_a_short_soak() -> None:
    """90 s, warm-up 30 s, a sample every 5 s: 1.2 MB/min is caught though the RSS grew only 1.2 MB."""
    verdict = soak.judge_flat(samples(90, 5, lambda t: 150 + 1.2 * t / 60), 30)
    assert verdict.slope_mb_per_min == pytest.approx(1.2, abs=1e-9)
    assert verdict.met is False


def test_noise_around_a_level_is_flat() -> None:
    sawtooth = samples(600, 5, lambda t: 140 + 0.8 * ((t // 5) % 3 - 1))
    verdict = soak.judge_flat(sawtooth, 60)
    assert abs(verdict.slope_mb_per_min) < 0.05
    assert verdict.met is True
    assert verdict.verdict == "met"


def test_growth_during_the_warm_up_is_not_judged() -> None:
    verdict = soak.judge_flat(samples(600, 5, lambda t: 100 + 0.5 * min(t, 60)), 60)
    assert verdict.warm_mb == 130.0
    assert verdict.slope_mb_per_min == pytest.approx(0.0, abs=1e-9)
    assert verdict.met is True


def test_a_slow_leak_under_the_slope_bound_fails_on_growth() -> None:
    verdict = soak.judge_flat(samples(600, 5, lambda t: 50 + 0.9 * t / 60), 60)
    assert verdict.slope_mb_per_min == pytest.approx(0.9, abs=1e-9)
    assert verdict.final_mb == pytest.approx(59.0)
    assert verdict.met is False
    assert verdict.why == "slope +0.90 MB/min < 1; last 59.0 MB > warm-up 50.9 MB + 10%"


def test_a_jump_at_the_end_fails_on_growth_though_the_slope_is_flat() -> None:
    verdict = soak.judge_flat(samples(600, 5, lambda t: 160.0 if t == 600 else 140.0), 60)
    assert verdict.slope_mb_per_min < 1
    assert verdict.met is False


def test_too_few_samples_after_the_warm_up_are_not_judged() -> None:
    verdict = soak.judge_flat(samples(90, 5, lambda t: 140 + 30 * t / 60), 80)
    assert verdict.samples == 3
    assert verdict.met is None
    assert verdict.verdict == "not judged"
    assert verdict.why == "3 samples over 10 s after the warm-up (judged from 5 over 60 s)"


def test_a_short_window_after_the_warm_up_is_not_judged_however_many_samples() -> None:
    """--quick's 6-second soak sampled every second: a slope over 4 s says nothing."""
    verdict = soak.judge_flat(samples(6, 1, lambda t: 145.0 + (0.4 if t >= 4 else 0.0)), 2)
    assert verdict.samples == 5
    assert verdict.met is None


def test_no_sample_after_the_warm_up() -> None:
    verdict = soak.judge_flat(samples(30, 5, lambda t: 140.0), 60)
    assert (verdict.samples, verdict.met) == (0, None)
    assert math.isnan(verdict.slope_mb_per_min)


def test_slope_is_per_minute_and_needs_three_points() -> None:
    assert soak.slope_per_min([(0.0, 10.0), (60.0, 11.0), (120.0, 12.0)]) == pytest.approx(1.0)
    assert soak.slope_per_min([(0.0, 10.0), (30.0, 9.0), (60.0, 8.0)]) == pytest.approx(-2.0)
    assert math.isnan(soak.slope_per_min([(0.0, 10.0), (60.0, 11.0)]))


def test_histogram_percentiles_are_the_sorted_lists_within_a_quarter_percent() -> None:
    values = [i * 1e-5 for i in range(1, 1001)]  # 10 µs … 10 ms
    histogram = soak.LatencyHistogram()
    for value in reversed(values):
        histogram.append(value)
    for q in (0.0, 0.5, 0.9, 0.99, 0.999):
        exact = values[min(len(values) - 1, int(q * len(values)))]
        assert histogram.percentile(q) == pytest.approx(exact, rel=0.0025)
    assert len(histogram) == 1000


def test_histogram_counts_unanswered_requests_as_infinite() -> None:
    histogram = soak.LatencyHistogram()
    for _ in range(99):
        histogram.append(0.002)
    histogram.append(math.inf)
    assert (histogram.finite, histogram.infinite, len(histogram)) == (99, 1, 100)
    assert histogram.percentile(0.99) == math.inf
    assert histogram.percentile(0.5) == pytest.approx(0.002, rel=0.0025)
    assert math.isnan(soak.LatencyHistogram().percentile(0.5))


def test_histogram_size_does_not_grow_with_the_values() -> None:
    histogram = soak.LatencyHistogram()
    for i in range(100_000):
        histogram.append((i % 5000 + 1) * 1e-6 * 1000)  # 1 ms … 5 s
    histogram.append(1e6)  # beyond the last bucket: counted there
    histogram.append(1e-9)  # below the first: counted as 1 µs
    assert len(histogram.counts) == soak.LatencyHistogram.SIZE
    assert histogram.finite == 100_002
