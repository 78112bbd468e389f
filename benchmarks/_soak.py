"""The soak's arithmetic, apart from its processes so it can be tested: a fixed-size latency histogram (the
load generator must not grow over ten minutes at 500 requests/s), the least-squares slope of RSS samples,
and what "memory flat" means.

Flat: over the samples taken after the warm-up, the least-squares RSS slope is below `MAX_SLOPE_MB_PER_MIN`
and the last RSS is at most `MAX_GROWTH` above the RSS at the end of the warm-up (judged from
`MIN_SAMPLES` samples over `MIN_SPAN` seconds). The slope catches a
steady leak however small the soak; the growth bound catches a slow one that a long soak adds up (and a
jump at the end that a slope over many flat samples hides).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_GROWTH",
    "MAX_SLOPE_MB_PER_MIN",
    "MIN_SAMPLES",
    "MIN_SPAN",
    "Flatness",
    "LatencyHistogram",
    "judge_flat",
    "slope_per_min",
]

MAX_SLOPE_MB_PER_MIN = 1.0
MAX_GROWTH = 0.10  # the last RSS ≤ the warm-up RSS × 1.10
MIN_SAMPLES = 5  # after the warm-up, over at least MIN_SPAN seconds; fewer or shorter: not judged
MIN_SPAN = 60.0  # a slope over a few seconds is noise: a 0.5 MB step in 5 s is 6 MB/min


class LatencyHistogram:
    """Seconds in log buckets 0.5 % wide from 1 µs to ~100 s (3,700 counters whatever the number of
    values); values below 1 µs count as 1 µs, ∞ (unanswered) apart. A percentile is its bucket's
    midpoint, within 0.25 % of the value it stands for."""

    __slots__ = ("counts", "infinite", "sum")

    FLOOR = 1e-6
    RATIO = 1.005
    _LOG = math.log(RATIO)
    SIZE = 3700  # FLOOR × RATIO ** SIZE ≈ 100 s; larger values land in the last bucket

    def __init__(self) -> None:
        self.counts = [0] * self.SIZE
        self.infinite = 0
        self.sum = 0.0

    def append(self, seconds: float) -> None:
        if math.isinf(seconds):
            self.infinite += 1
            return
        self.sum += seconds
        index = int(math.log(max(seconds, self.FLOOR) / self.FLOOR) / self._LOG)
        self.counts[min(index, self.SIZE - 1)] += 1

    def add_infinite(self, count: int) -> None:
        self.infinite += count

    @property
    def finite(self) -> int:
        return sum(self.counts)

    def __len__(self) -> int:
        return self.finite + self.infinite

    def percentile(self, q: float) -> float:
        """The value at rank ⌊q·n⌋ of the sorted values (as `pct` in bench_gateway.py), ∞ when it is an
        unanswered request, NaN when there are none."""
        n = len(self)
        if n == 0:
            return float("nan")
        rank = min(n - 1, int(q * n))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen > rank:
                return self.FLOOR * self.RATIO ** (index + 0.5)
        return math.inf


def slope_per_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value units per minute (NaN under 3 points)."""
    if len(points) < 3:
        return float("nan")
    xs = [t for t, _ in points]
    ys = [v for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if not var:
        return float("nan")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 60


@dataclass(frozen=True)
class Flatness:
    """The verdict on one process's RSS samples; `met` is None when there are too few samples to judge."""

    warm_mb: float  # RSS at the first sample at or after the warm-up's end
    final_mb: float  # RSS at the last sample
    slope_mb_per_min: float  # over the samples at or after the warm-up's end
    samples: int  # how many those are
    met: bool | None
    why: str

    @property
    def verdict(self) -> str:
        return "not judged" if self.met is None else ("met" if self.met else "not met")


def judge_flat(
    points: Sequence[tuple[float, float]],
    warmup_seconds: float,
    *,
    max_slope: float = MAX_SLOPE_MB_PER_MIN,
    max_growth: float = MAX_GROWTH,
    min_samples: int = MIN_SAMPLES,
    min_span: float = MIN_SPAN,
) -> Flatness:
    """Whether (seconds, RSS MB) samples are flat after `warmup_seconds` (see the module docstring)."""
    after = [p for p in points if p[0] >= warmup_seconds]
    if not after:
        return Flatness(math.nan, math.nan, math.nan, 0, None, "no sample after the warm-up")
    warm, final = after[0][1], after[-1][1]
    slope = slope_per_min(after)
    span = after[-1][0] - after[0][0]
    if len(after) < min_samples or span < min_span:
        why = (
            f"{len(after)} samples over {span:g} s after the warm-up (judged from {min_samples} over "
            f"{min_span:g} s)"
        )
        return Flatness(warm, final, slope, len(after), None, why)
    slope_ok = slope < max_slope
    growth_ok = final <= warm * (1 + max_growth)
    why = (
        f"slope {slope:+.2f} MB/min {'<' if slope_ok else '≥'} {max_slope:g}; "
        f"last {final:.1f} MB {'≤' if growth_ok else '>'} warm-up {warm:.1f} MB + {max_growth:.0%}"
    )
    return Flatness(warm, final, slope, len(after), slope_ok and growth_ok, why)
