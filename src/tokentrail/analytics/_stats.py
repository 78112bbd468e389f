"""Small exact statistics the analytics share: median, MAD, robust z-score, least squares, t quantile.

Money stays `Decimal`; only scores (dimensionless) are floats. Median, MAD and robust z take exact
numbers: `Fraction`s, or plain ints, which are much faster and stay ints wherever a median needs no half
(integers that are all multiples of 4 keep every median and MAD an integer; see `scaled`).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from decimal import Decimal, localcontext
from fractions import Fraction
from statistics import NormalDist

__all__ = ["SCALE", "LinearFit", "SortedWindow", "fit_line", "mad", "median", "robust_z", "t_quantile"]

SCALE = 4  # integers scaled by this keep their medians and MADs integral (halves of halves)

MAD_TO_Z = Fraction(6745, 10000)  # 0.6745 = Φ⁻¹(0.75): makes MAD comparable to a standard deviation
MEAN_AD_TO_Z = Fraction(7979, 10000)  # 0.7979 = √(2/π): the same for the mean absolute deviation


def _half(total: int | Fraction) -> int | Fraction:
    """total / 2, exactly: an int when it is one."""
    if isinstance(total, int) and not total & 1:
        return total >> 1
    return Fraction(total, 2)


def median(values: Sequence[int | Fraction]) -> int | Fraction:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of no values")
    middle = n // 2
    return ordered[middle] if n % 2 else _half(ordered[middle - 1] + ordered[middle])


def mad(values: Sequence[int | Fraction], center: int | Fraction) -> int | Fraction:
    """Median absolute deviation from `center`."""
    return median([_distance(v, center) for v in values])


def _distance(a: int | Fraction, b: int | Fraction) -> int | Fraction:
    return a - b if a >= b else b - a


def robust_z(value: int | Fraction, baseline: Sequence[int | Fraction]) -> tuple[float, int | Fraction]:
    """(modified z-score of `value` against `baseline`, baseline median).

    Iglewicz & Hoaglin's modified z-score 0.6745 (x − median) / MAD; when MAD is 0 (more than half the
    baseline equal) the mean absolute deviation is used instead (0.7979 (x − median) / MeanAD), and when
    that is 0 too any value above the median scores +inf.
    """
    center = median(baseline)
    return _score(value, center, mad(baseline, center), baseline), center


def _score(
    value: int | Fraction,
    center: int | Fraction,
    spread: int | Fraction,
    baseline: Sequence[int | Fraction],
) -> float:
    """The modified z-score of `value` given the baseline's median and MAD (see `robust_z`)."""
    scale = MAD_TO_Z
    if spread == 0:
        spread = Fraction(sum(_distance(v, center) for v in baseline), len(baseline))
        scale = MEAN_AD_TO_Z
    if spread == 0:
        if value == center:
            return 0.0
        return float("inf") if value > center else float("-inf")
    return float(scale * (value - center) / spread)


class SortedWindow:
    """A multiset of values kept sorted, for robust z-scores over a sliding baseline: `add`/`remove`
    cost a binary search, and `robust_z` gives exactly what `robust_z(value, list(window))` gives
    without sorting the baseline again (median read off the middle, MAD by merging the deviations on
    each side of it, which are already in order)."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: list[int | Fraction] = []

    def __len__(self) -> int:
        return len(self.values)

    def add(self, value: int | Fraction) -> None:
        insort(self.values, value)

    def remove(self, value: int | Fraction) -> None:
        del self.values[bisect_left(self.values, value)]

    def robust_z(self, value: int | Fraction) -> tuple[float, int | Fraction]:
        ordered = self.values
        n = len(ordered)
        if n == 0:
            raise ValueError("median of no values")
        middle = n // 2
        center = ordered[middle] if n % 2 else _half(ordered[middle - 1] + ordered[middle])
        return _score(value, center, self._mad(center), ordered), center

    def _mad(self, center: int | Fraction) -> int | Fraction:
        """Median of |v − center|: the deviations below the center, read outwards, and those above it,
        read outwards, are two ascending runs; walk their merge to its middle."""
        ordered = self.values
        n = len(ordered)
        split = bisect_left(ordered, center)
        low, high = split - 1, split  # next candidates below and at/above the center
        below = center - ordered[low] if low >= 0 else None
        above = ordered[high] - center if high < n else None
        first, last = (n - 1) // 2, n // 2
        picked: list[int | Fraction] = []
        for rank in range(last + 1):
            if above is None or (below is not None and below < above):
                deviation = below
                low -= 1
                below = center - ordered[low] if low >= 0 else None
            else:
                deviation = above
                high += 1
                above = ordered[high] - center if high < n else None
            if rank >= first:
                picked.append(deviation)  # type: ignore[arg-type]
        return picked[0] if len(picked) == 1 else _half(picked[0] + picked[1])


class LinearFit:
    """Ordinary least squares y = a + b·x over exact values, with what prediction intervals need."""

    __slots__ = ("intercept", "n", "residual_ss", "slope", "sxx", "x_mean")

    def __init__(self, xs: Sequence[Fraction], ys: Sequence[Fraction]) -> None:
        n = len(xs)
        if n < 3 or n != len(ys):
            raise ValueError("a line with an interval needs at least 3 points")
        self.n = n
        self.x_mean = sum(xs, Fraction(0)) / n
        y_mean = sum(ys, Fraction(0)) / n
        self.sxx = sum(((x - self.x_mean) ** 2 for x in xs), Fraction(0))
        sxy = sum(((x - self.x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True)), Fraction(0))
        self.slope = sxy / self.sxx if self.sxx else Fraction(0)
        self.intercept = y_mean - self.slope * self.x_mean
        self.residual_ss = sum(((y - self.predict(x)) ** 2 for x, y in zip(xs, ys, strict=True)), Fraction(0))

    def predict(self, x: Fraction) -> Fraction:
        return self.intercept + self.slope * x

    def sum_prediction_sd(self, future: Sequence[Fraction]) -> Fraction:
        """Standard deviation of the error of the sum of new observations at `future`:
        σ̂ √(m + m²/n + (Σ(x − x̄))² / Sxx), σ̂² = residual SS / (n − 2); the square root to 40 digits."""
        m = len(future)
        sigma2 = self.residual_ss / (self.n - 2)
        spread = sum((x - self.x_mean for x in future), Fraction(0))
        variance = sigma2 * (m + Fraction(m * m, self.n) + (spread**2 / self.sxx if self.sxx else 0))
        with localcontext() as ctx:
            ctx.prec = 40
            root = (Decimal(variance.numerator) / Decimal(variance.denominator)).sqrt()
        return Fraction(root)


def fit_line(xs: Sequence[Fraction], ys: Sequence[Fraction]) -> LinearFit:
    return LinearFit(xs, ys)


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t with `df` degrees of freedom (Abramowitz & Stegun 26.7.5 expansion around
    the normal quantile; within 0.01 of the exact value from df = 3 at p = 0.975)."""
    if df <= 0:
        raise ValueError("df must be positive")
    z = NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
