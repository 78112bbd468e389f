"""BudgetManager behaviour on the in-process back-end: reserve, settle, release, alerts, windows."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

import tokentrail as tt
from tests.budgets.conftest import FakeClock
from tokentrail._record import Attribution, Record
from tokentrail.budgets import (
    Budget,
    BudgetAlert,
    BudgetBreach,
    BudgetConfigError,
    BudgetManager,
    active_reservation,
)
from tokentrail.errors import BudgetExceeded

MODEL = "gpt-4o-mini"  # $0.15 / M input, $0.60 / M output
BERLIN = ZoneInfo("Europe/Berlin")


def usage(input_tokens: int, output_tokens: int) -> tt.Usage:
    return tt.Usage(input_tokens=input_tokens, output_tokens=output_tokens)


def manager(*budgets: Budget, clock: FakeClock | None = None, **options: object) -> BudgetManager:
    return BudgetManager(budgets, clock=clock or FakeClock(), **options)  # type: ignore[arg-type]


def spent(m: BudgetManager, name: str | None = None) -> Decimal:
    rows = [row for row in m.status() if name is None or row.budget == name]
    return sum((row.spent_usd for row in rows), Decimal(0))


# -- reserve and settle -----------------------------------------------------------------------------------------


def test_reserve_holds_the_worst_case_and_settle_counts_the_actual_cost() -> None:
    m = manager(Budget(limit_usd="1"))
    reservation = m.reserve(MODEL, "openai", input_tokens=10_000, max_output_tokens=30_000, scope={})
    assert reservation.estimate == Decimal("0.0195")
    (row,) = m.status()
    assert row.reserved_usd == Decimal("0.0195")
    assert row.remaining_usd == Decimal("0.9805")
    reservation.settle(usage(10_000, 1_000))
    (row,) = m.status()
    assert (row.spent_usd, row.reserved_usd) == (Decimal("0.0021"), Decimal(0))
    assert row.spent_tokens == 11_000


def test_a_call_that_would_pass_a_hard_limit_is_refused_with_the_numbers() -> None:
    clock = FakeClock(datetime(2031, 3, 4, 15, tzinfo=BERLIN))
    m = manager(Budget(limit_usd="0.03", scope={"agent": "researcher"}, tz="Europe/Berlin"), clock=clock)
    held = m.reserve(MODEL, "openai", 10_000, 30_000, scope={"agent": "researcher"})
    with pytest.raises(BudgetExceeded) as refused:
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={"agent": "researcher"})
    error = refused.value
    assert error.budget == "agent=researcher/daily"
    assert error.window == "daily"
    assert (error.spent, error.reserved, error.limit, error.requested) == (
        Decimal(0),
        Decimal("0.0195"),
        Decimal("0.03"),
        Decimal("0.0195"),
    )
    assert error.resets_at == datetime(2031, 3, 5, tzinfo=BERLIN)
    assert error.scope == {"agent": "researcher"}
    assert "would pass its limit" in str(error)
    held.release()
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={"agent": "researcher"}).release()


def test_budgets_apply_only_to_the_scope_they_name() -> None:
    m = manager(Budget(limit_usd="0.01", scope={"agent": "researcher"}))
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={"agent": "writer"}).settle(usage(10_000, 30_000))
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={"agent": "researcher"})


def test_wildcard_scopes_keep_one_budget_per_value() -> None:
    m = manager(Budget(limit_usd="0.02", scope={"user": "*"}))
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": "alice"}).settle(usage(10_000, 30_000))
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": "bob"}).settle(usage(10_000, 30_000))
    with pytest.raises(BudgetExceeded) as refused:
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": "alice"})
    assert refused.value.scope == {"user": "alice"}
    assert {tuple(row.scope.items()) for row in m.status()} == {(("user", "alice"),), (("user", "bob"),)}


def test_a_refusal_by_one_budget_reserves_nothing_in_the_others() -> None:
    m = manager(
        Budget(limit_usd="10", name="roomy"), Budget(limit_usd="0.01", scope={"agent": "a"}, name="tight")
    )
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={"agent": "a"})
    assert all(row.reserved_usd == 0 for row in m.status())


def test_token_limits_count_the_chosen_token_kind() -> None:
    m = manager(Budget(limit_tokens=1_000, token_kind="output"))
    m.reserve(MODEL, "openai", 50_000, 600, scope={}).settle(usage(50_000, 600))
    with pytest.raises(BudgetExceeded) as refused:
        m.reserve(MODEL, "openai", 10, 500, scope={})
    assert refused.value.unit == "tokens"
    assert (refused.value.spent, refused.value.limit, refused.value.requested) == (600, 1_000, 500)


def test_leaving_the_block_without_settle_releases() -> None:
    m = manager(Budget(limit_usd="1"))
    with pytest.raises(RuntimeError), m.reserve(MODEL, "openai", 10_000, 30_000, scope={}):
        raise RuntimeError("provider error")
    (row,) = m.status()
    assert (row.spent_usd, row.reserved_usd) == (0, 0)


def test_settling_twice_counts_once() -> None:
    m = manager(Budget(limit_usd="1"))
    reservation = m.reserve(MODEL, "openai", 1_000, 1_000, scope={})
    reservation.settle(usage(1_000, 1_000))
    reservation.settle(usage(1_000, 1_000))
    assert spent(m) == Decimal("0.00075")


def test_unknown_usage_charges_the_estimate_not_zero() -> None:
    m = manager(Budget(limit_usd="1"))
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(tt.Usage.unknown("stream lost"))
    assert spent(m) == Decimal("0.0195")


def test_settle_accepts_a_cost_or_units() -> None:
    m = manager(Budget(limit_usd="1"))
    cost = tt.price(usage(1_000, 1_000), MODEL, "openai")
    m.reserve(MODEL, "openai", 1_000, 1_000, scope={}).settle(cost)
    m.reserve(MODEL, "openai", 1_000, 1_000, scope={}).settle(
        usage(1_000, 1_000), cost_units=cost.total_units
    )
    assert spent(m) == Decimal("0.0015")


def test_async_reservations_release_on_cancellation() -> None:
    m = manager(Budget(limit_usd="1"))

    async def call() -> None:
        async with await m.areserve(MODEL, "openai", 10_000, 30_000, scope={}):
            await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(call())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (row,) = m.status()
    assert row.reserved_usd == 0


def test_the_scope_defaults_to_the_current_tokentrail_scope() -> None:
    from tokentrail.scope import scope

    m = manager(Budget(limit_usd="1", scope={"agent": "researcher"}))
    with scope(agent="researcher"):
        reservation = m.reserve(MODEL, "openai", 10_000, 30_000)
    assert reservation.budgets == ["agent=researcher/daily"]
    reservation.release()


# -- per-call budgets, unpriced models, actions -------------------------------------------------------------------


def test_a_per_call_budget_refuses_a_single_call_above_its_limit() -> None:
    m = manager(Budget(limit_usd="0.01", window="call"))
    m.reserve(MODEL, "openai", 1_000, 1_000, scope={}).settle(usage(1_000, 1_000))
    with pytest.raises(BudgetExceeded) as refused:
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    assert refused.value.window == "call"
    assert refused.value.requested == Decimal("0.0195")


def test_unpriced_models_fail_open_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    m = manager(Budget(limit_usd="0.01"))
    with caplog.at_level(logging.WARNING, "tokentrail.budgets"):
        reservation = m.reserve("my-finetune-xyz", None, 1_000, 1_000, scope={})
    assert reservation.estimate is None
    assert "cannot price model 'my-finetune-xyz'" in caplog.text
    reservation.settle(usage(1_000, 1_000))
    assert spent(m) == 0


def test_unpriced_models_fail_closed_when_asked() -> None:
    m = manager(Budget(limit_usd="100", on_unpriced="fail_closed"))
    with pytest.raises(BudgetExceeded, match="cannot be priced"):
        m.reserve("my-finetune-xyz", None, 1_000, 1_000, scope={})


def test_warn_action_lets_the_call_through_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    m = manager(Budget(limit_usd="0.01", action="warn"))
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    with caplog.at_level(logging.WARNING, "tokentrail.budgets"):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    assert "is over its limit" in caplog.text
    assert spent(m) == Decimal("0.039")


def test_callable_action_decides_and_its_exception_releases_the_reservation() -> None:
    seen: list[BudgetBreach] = []

    def degrade(breach: BudgetBreach) -> None:
        seen.append(breach)
        if breach.spent > Decimal("0.02"):
            raise RuntimeError("switch to a cheaper model")

    m = manager(Budget(limit_usd="0.01", action=degrade))
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    with pytest.raises(RuntimeError, match="cheaper"):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    assert [b.spent for b in seen] == [Decimal(0), Decimal("0.0195"), Decimal("0.039")]
    assert seen[0].model == MODEL
    (row,) = m.status()
    assert row.reserved_usd == 0


# -- alerts -------------------------------------------------------------------------------------------------------


def test_each_threshold_alerts_exactly_once_per_window() -> None:
    clock = FakeClock(datetime(2031, 3, 4, 12, tzinfo=BERLIN))
    m = manager(Budget(limit_usd="1", tz="Europe/Berlin", action="warn"), clock=clock)
    alerts: list[BudgetAlert] = []
    m.subscribe(alerts.append)
    for _ in range(120):  # $0.0195 each: crosses 50 %, 80 %, 90 %, 100 % and keeps going
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    assert [a.threshold for a in alerts] == [Decimal("0.5"), Decimal("0.8"), Decimal("0.9"), Decimal("1")]
    assert [a.kind for a in alerts] == ["threshold", "threshold", "threshold", "limit"]
    assert alerts[0].spent_usd == Decimal("0.507")
    assert alerts[0].resets_at == datetime(2031, 3, 5, tzinfo=BERLIN)
    clock.set(datetime(2031, 3, 5, 0, 0, 1, tzinfo=BERLIN))  # the next day: armed again
    for _ in range(30):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    assert [a.threshold for a in alerts[4:]] == [Decimal("0.5")]


def test_one_call_crossing_several_thresholds_fires_each_once() -> None:
    m = manager(Budget(limit_usd="0.02", action="warn"))
    alerts: list[BudgetAlert] = []
    m.subscribe(alerts.append)
    m.record({}, usage(10_000, 30_000), tt.price(usage(10_000, 30_000), MODEL).total_units, model=MODEL)
    assert [a.threshold for a in alerts] == [Decimal("0.5"), Decimal("0.8"), Decimal("0.9")]


def test_failing_subscribers_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    m = manager(Budget(limit_usd="0.01"))

    def broken(alert: BudgetAlert) -> None:
        raise ValueError("subscriber bug")

    received: list[BudgetAlert] = []
    m.subscribe(broken)
    m.subscribe(received.append)
    with caplog.at_level(logging.ERROR, "tokentrail.budgets"):
        m.reserve(MODEL, "openai", 10_000, 10_000, scope={}).settle(usage(10_000, 10_000))
    assert "subscriber" in caplog.text
    assert received


def test_async_subscribers_run_on_the_running_loop_or_a_background_loop() -> None:
    got: list[Decimal] = []
    done = threading.Event()

    async def notify(alert: BudgetAlert) -> None:
        got.append(alert.threshold)
        done.set()

    m = manager(Budget(limit_usd="0.01"))
    m.subscribe(notify)
    m.reserve(MODEL, "openai", 10_000, 10_000, scope={}).settle(usage(10_000, 10_000))  # no loop running
    assert done.wait(5)

    async def in_loop() -> None:
        m.reset()
        m.reserve(MODEL, "openai", 10_000, 10_000, scope={}).settle(usage(10_000, 10_000))
        await asyncio.sleep(0.05)

    asyncio.run(in_loop())
    assert got == [Decimal("0.5"), Decimal("0.5")]
    m.close()


def test_unsubscribe_stops_alerts() -> None:
    m = manager(Budget(limit_usd="0.01"))
    alerts: list[BudgetAlert] = []
    unsubscribe = m.subscribe(alerts.append)
    unsubscribe()
    m.reserve(MODEL, "openai", 10_000, 10_000, scope={}).settle(usage(10_000, 10_000))
    assert alerts == []


# -- windows with an injectable clock -------------------------------------------------------------------------------


def test_daily_window_rolls_over_at_midnight_in_its_zone() -> None:
    clock = FakeClock(datetime(2031, 3, 4, 23, 59, 30, tzinfo=BERLIN))  # 22:59:30 UTC
    m = manager(Budget(limit_usd="0.02", tz="Europe/Berlin"), clock=clock)
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    clock.advance(31)  # 00:00:01 in Berlin, still 23:00 UTC
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).release()
    (row,) = m.status()
    assert row.window_key == "2031-03-05T00:00+01:00"
    assert row.spent_usd == 0


def test_monthly_window_rolls_over_at_month_end() -> None:
    clock = FakeClock(datetime(2031, 1, 31, 23, 0, tzinfo=BERLIN))
    m = manager(Budget(limit_usd="0.02", window="monthly", tz="Europe/Berlin"), clock=clock)
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    with pytest.raises(BudgetExceeded) as refused:
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    assert refused.value.resets_at == datetime(2031, 2, 1, tzinfo=BERLIN)
    clock.set(datetime(2031, 2, 1, 0, 0, 1, tzinfo=BERLIN))
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    (row,) = m.status()
    assert (row.window_key, row.spent_usd) == ("2031-02-01T00:00+01:00", Decimal("0.0195"))


def test_a_call_counts_in_the_window_it_was_reserved_in() -> None:
    clock = FakeClock(datetime(2031, 3, 4, 23, 59, 59, tzinfo=BERLIN))
    m = manager(Budget(limit_usd="1", tz="Europe/Berlin"), clock=clock)
    reservation = m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    clock.advance(5)
    reservation.settle(usage(10_000, 30_000))
    (row,) = m.status()
    assert row.spent_usd == 0  # the new day is clean; yesterday holds the call


def test_rolling_window_forgets_spend_after_its_length() -> None:
    clock = FakeClock()
    m = manager(Budget(limit_usd="0.02", window="rolling:30m"), clock=clock)
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    clock.advance(29 * 60)
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    clock.advance(3 * 60)  # 32 minutes later: past the length plus one 90 s bucket
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).release()


def test_session_windows_keep_one_budget_per_session() -> None:
    m = manager(Budget(limit_tokens=50_000, window="session"))
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={"session": "s1"}).settle(usage(10_000, 30_000))
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={"session": "s1"})
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={"session": "s2"}).release()
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).release()  # no session: not counted
    rows = {row.scope["session"]: row for row in m.status()}
    assert sorted(rows) == ["s1", "s2"]
    assert (rows["s1"].spent_tokens, rows["s2"].spent_tokens) == (40_000, 0)
    assert rows["s1"].resets_at is None


def test_lease_expiry_frees_a_crashed_callers_reservation() -> None:
    clock = FakeClock()
    m = manager(Budget(limit_usd="0.03"), clock=clock, lease_seconds=60)
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={})  # never settled: its process "died"
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    clock.advance(61)
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).release()
    (row,) = m.status()
    assert row.reserved_usd == 0


# -- tracker integration, overrides, resets -------------------------------------------------------------------------


def _record(cost_units: int | None, agent: str = "researcher") -> Record:
    return Record(
        id=1,
        timestamp_us=int(FakeClock().now * 1_000_000),
        usage=usage(10_000, 30_000),
        model=MODEL,
        provider="openai",
        cost_units=cost_units,
        attribution=Attribution(agent=agent),
    )


def test_observe_records_spend_without_a_reservation() -> None:
    m = manager(Budget(limit_usd="1", scope={"agent": "researcher"}))
    m.observe(_record(tt.price(usage(10_000, 30_000), MODEL).total_units))
    assert spent(m) == Decimal("0.0195")


def test_observe_settles_the_reservation_the_call_runs_in() -> None:
    m = manager(Budget(limit_usd="1", scope={"agent": "researcher"}))
    with m.reserve(MODEL, "openai", 10_000, 40_000, scope={"agent": "researcher"}) as reservation:
        assert active_reservation() is reservation
        m.observe(_record(tt.price(usage(10_000, 30_000), MODEL).total_units))
        reservation.settle(usage(10_000, 30_000))  # already settled by the tracker: ignored
    assert active_reservation() is None
    (row,) = m.status()
    assert (row.spent_usd, row.reserved_usd) == (Decimal("0.0195"), 0)


def test_set_limit_overrides_for_every_manager_on_the_backend() -> None:
    first = manager(Budget(limit_usd="0.01", name="team"))
    second = BudgetManager(
        [Budget(limit_usd="0.01", name="team")], first.backend, clock=FakeClock(), refresh_seconds=0
    )
    first.set_limit("team", limit_usd="1")
    second.reserve(MODEL, "openai", 10_000, 30_000, scope={}).release()
    first.clear_limit("team")
    with pytest.raises(BudgetExceeded):
        second.reserve(MODEL, "openai", 10_000, 30_000, scope={})


def test_reset_forgets_spend_and_fired_alerts() -> None:
    m = manager(Budget(limit_usd="0.02"))
    alerts: list[BudgetAlert] = []
    m.subscribe(alerts.append)
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    assert m.reset() == 1
    assert spent(m) == 0
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    assert len(alerts) == 6  # 50 %, 80 %, 90 % twice


def test_duplicate_budget_names_are_a_config_error() -> None:
    with pytest.raises(BudgetConfigError, match="share the name"):
        BudgetManager([Budget(limit_usd=1), Budget(limit_tokens=5)])


def test_reserve_validates_its_counts() -> None:
    m = manager(Budget(limit_usd="1"))
    with pytest.raises(ValueError, match="input_tokens"):
        m.reserve(MODEL, "openai", -1, 10, scope={})


def test_a_repeated_call_reserves_its_own_estimate_units_not_the_cached_worst_case() -> None:
    m = manager(Budget(limit_usd="10", name="team"))
    m.reserve(MODEL, "openai", 1000, 500, scope={}).settle(cost_units=0)  # the call is now cached
    held = m.reserve(MODEL, "openai", 1000, 500, scope={}, estimate_units=7)
    assert held.estimate_units == 7
    assert held.charges[0][0] == 7
    held.release()
    again = m.reserve(MODEL, "openai", 1000, 500, scope={})
    assert again.estimate_units == (1000 * 15 + 500 * 60) * 10**16  # $0.15 / M in, $0.60 / M out
    again.release()


def test_a_lowered_limit_refuses_a_call_reserved_before_from_the_cache() -> None:
    m = manager(Budget(limit_usd="10", name="team"))
    m.reserve(MODEL, "openai", 1000, 500, scope={}).settle(cost_units=0)  # the call is now cached
    m.set_limit("team", limit_usd="0.00001")
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 1000, 500, scope={})
