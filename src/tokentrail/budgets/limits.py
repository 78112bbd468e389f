"""Per-run limits for agent loops, in the manner of pydantic-ai's `UsageLimits`.

    limits = RunLimits(max_requests=20, max_tokens=200_000, max_usd="0.50")
    run = limits.start()
    while not done:
        run.check_before_request()           # raises BudgetExceeded before request 21
        response = call_model(...)
        run.add(usage, cost)                 # raises BudgetExceeded once tokens or dollars pass a limit

A run is one object in one process: no back-end, no windows. Use `Budget(window="run")` for limits
that must hold across processes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal

from tokentrail._money import units_to_decimal
from tokentrail._types import Cost, Usage, UsageStatus
from tokentrail.budgets.policy import BudgetConfigError, _limit_units
from tokentrail.errors import BudgetExceeded

__all__ = ["RunLimits", "RunUsage"]


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Caps for one agent run: requests, tokens (total, input, output) and USD. None: no cap."""

    max_requests: int | None = None
    max_tokens: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_usd: Decimal | str | int | None = None

    def __post_init__(self) -> None:
        for name in ("max_requests", "max_tokens", "max_input_tokens", "max_output_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise BudgetConfigError(f"{name} must be a non-negative int or None, got {value!r}")
        if self.max_usd is not None:
            object.__setattr__(self, "max_usd", units_to_decimal(_max_units(self.max_usd)))

    @property
    def max_units(self) -> int | None:
        return None if self.max_usd is None else _max_units(self.max_usd)

    def start(self) -> RunUsage:
        """A fresh counter for one run under these limits."""
        return RunUsage(self)


def _max_units(value: Decimal | str | int) -> int:
    units = _limit_units(value)
    assert units is not None
    return units


class RunUsage:
    """What one run has used so far, checked against its `RunLimits`. Safe to share between threads."""

    __slots__ = (
        "_lock",
        "cost_units",
        "input_tokens",
        "limits",
        "output_tokens",
        "requests",
        "unpriced_requests",
    )

    def __init__(self, limits: RunLimits) -> None:
        self.limits = limits
        self.requests = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_units = 0
        self.unpriced_requests = 0
        self._lock = threading.Lock()

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost(self) -> Decimal:
        """USD spent by the priced requests of the run."""
        return units_to_decimal(self.cost_units)

    def check_before_request(self, estimate: Cost | int | None = None) -> None:
        """Raise `BudgetExceeded` if one more request would pass `max_requests`, or if the run's spend
        plus `estimate` (a worst-case Cost or 10**-24 USD units) would pass `max_usd`."""
        limits = self.limits
        with self._lock:
            if limits.max_requests is not None and self.requests + 1 > limits.max_requests:
                raise _exceeded("requests", self.requests, limits.max_requests, 1)
            max_units = limits.max_units
            if max_units is None:
                return
            extra = _units_of(estimate)
            if self.cost_units + extra > max_units or (extra == 0 and self.cost_units >= max_units > 0):
                raise _usd_exceeded(self.cost_units, max_units, extra)

    def add(self, usage: Usage, cost: Cost | int | None = None) -> None:
        """Count one finished request, then raise `BudgetExceeded` if a token or USD cap is passed."""
        units = _units_of(cost)
        with self._lock:
            self.requests += usage.requests if usage.status is not UsageStatus.UNKNOWN else 1
            self.input_tokens += usage.input_tokens
            self.output_tokens += usage.output_tokens
            self.cost_units += units
            if cost is None or (isinstance(cost, Cost) and not cost.priced):
                self.unpriced_requests += 1
        self.check_after_response()

    def check_after_response(self) -> None:
        """Raise `BudgetExceeded` if the run has passed a token or USD cap."""
        limits = self.limits
        for name, used, cap in (
            ("tokens", self.total_tokens, limits.max_tokens),
            ("input tokens", self.input_tokens, limits.max_input_tokens),
            ("output tokens", self.output_tokens, limits.max_output_tokens),
        ):
            if cap is not None and used > cap:
                raise _exceeded(name, used, cap, 0)
        max_units = limits.max_units
        if max_units is not None and self.cost_units > max_units:
            raise _usd_exceeded(self.cost_units, max_units, 0)

    def __repr__(self) -> str:
        return (
            f"RunUsage(requests={self.requests}, input_tokens={self.input_tokens}, "
            f"output_tokens={self.output_tokens}, cost={self.cost})"
        )


def _units_of(cost: Cost | int | None) -> int:
    if cost is None:
        return 0
    if isinstance(cost, Cost):
        return cost.total_units if cost.priced else 0
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise ValueError(f"cost must be a Cost or non-negative units, got {cost!r}")
    return cost


def _exceeded(what: str, used: int, cap: int, requested: int) -> BudgetExceeded:
    return BudgetExceeded(
        f"run limit on {what} reached: {used} used of {cap}"
        + (f", {requested} more requested" if requested else ""),
        budget=f"run max {what}",
        window="run",
        spent=used,
        reserved=0,
        limit=cap,
        requested=requested,
        unit="requests" if what == "requests" else "tokens",
    )


def _usd_exceeded(used: int, cap: int, requested: int) -> BudgetExceeded:
    return BudgetExceeded(
        budget="run max usd",
        window="run",
        spent=units_to_decimal(used),
        reserved=Decimal(0),
        limit=units_to_decimal(cap),
        requested=units_to_decimal(requested),
        unit="usd",
    )
