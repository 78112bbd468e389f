"""Per-run limits for agent loops, checked before and after each request."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

import tokentrail as tt
from tokentrail.budgets import BudgetConfigError
from tokentrail.budgets.limits import RunLimits
from tokentrail.errors import BudgetExceeded

MODEL = "gpt-4o-mini"


def test_max_requests_is_checked_before_the_next_request() -> None:
    run = RunLimits(max_requests=2).start()
    for _ in range(2):
        run.check_before_request()
        run.add(tt.Usage(input_tokens=10, output_tokens=10))
    with pytest.raises(BudgetExceeded, match="requests") as refused:
        run.check_before_request()
    assert (refused.value.spent, refused.value.limit, refused.value.window) == (2, 2, "run")


def test_token_limits_are_checked_after_each_response() -> None:
    run = RunLimits(max_tokens=1_000, max_output_tokens=300).start()
    run.add(tt.Usage(input_tokens=500, output_tokens=200))
    with pytest.raises(BudgetExceeded, match="output tokens"):
        run.add(tt.Usage(input_tokens=10, output_tokens=200))
    assert run.total_tokens == 910


def test_usd_limit_counts_exact_costs_and_refuses_an_estimate_that_would_pass_it() -> None:
    run = RunLimits(max_usd="0.05").start()
    usage = tt.Usage(input_tokens=10_000, output_tokens=30_000)
    cost = tt.price(usage, MODEL)
    run.check_before_request(cost)
    run.add(usage, cost)
    run.add(usage, cost)
    assert run.cost == Decimal("0.039")
    with pytest.raises(BudgetExceeded) as refused:
        run.check_before_request(cost)
    assert refused.value.unit == "usd"
    assert refused.value.requested == Decimal("0.0195")
    with pytest.raises(BudgetExceeded):
        run.add(usage, cost)


def test_unpriced_requests_are_counted_apart() -> None:
    run = RunLimits(max_usd=1).start()
    run.add(
        tt.Usage(input_tokens=1, output_tokens=1),
        tt.price(tt.Usage(input_tokens=1, output_tokens=1), "no-such-model"),
    )
    assert (run.requests, run.unpriced_requests, run.cost) == (1, 1, 0)


def test_run_usage_is_exact_under_threads() -> None:
    run = RunLimits(max_requests=10_000).start()

    def work() -> None:
        for _ in range(250):
            run.add(tt.Usage(input_tokens=1, output_tokens=2), 3)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (run.requests, run.input_tokens, run.output_tokens, run.cost_units) == (2000, 2000, 4000, 6000)


def test_bad_limits_fail_at_construction() -> None:
    with pytest.raises(BudgetConfigError):
        RunLimits(max_requests=-1)
    with pytest.raises(BudgetConfigError):
        RunLimits(max_usd="-1")
