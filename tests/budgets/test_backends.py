"""The same budget semantics on every back-end: memory, SQLite, real Redis and real Postgres."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

import tokentrail as tt
from tests.budgets.conftest import FakeClock, delivered
from tests.conftest import require_module
from tokentrail._money import UNITS_PER_USD, units_to_decimal
from tokentrail.budgets import Budget, BudgetAlert, BudgetBackend, BudgetManager
from tokentrail.budgets.quota import LocalQuota
from tokentrail.errors import BudgetExceeded

MODEL = "gpt-4o-mini"


def usage(input_tokens: int, output_tokens: int) -> tt.Usage:
    return tt.Usage(input_tokens=input_tokens, output_tokens=output_tokens)


def test_reserve_settle_release_are_exact(backend: BudgetBackend, clock: FakeClock) -> None:
    m = BudgetManager([Budget(limit_usd="1", limit_tokens=1_000_000)], backend, clock=clock)
    first = m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    second = m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    (row,) = m.status()
    if isinstance(backend, LocalQuota):  # grants of one call, then two, are held while calls run in them
        assert (row.reserved_usd, row.reserved_tokens) == (Decimal("0.0195") * 3, 40_000 * 3)
    else:
        assert (row.reserved_usd, row.reserved_tokens) == (Decimal("0.039"), 80_000)
    first.settle(usage(10_000, 1_234))
    second.release()
    (row,) = m.status()
    assert (row.spent_usd, row.reserved_usd) == (Decimal("0.0022404"), 0)
    assert (row.spent_tokens, row.reserved_tokens, row.remaining_tokens) == (11_234, 0, 988_766)


def test_refusal_reserves_nothing_anywhere(backend: BudgetBackend, clock: FakeClock) -> None:
    m = BudgetManager(
        [Budget(limit_usd="10", name="roomy"), Budget(limit_usd="0.03", scope={"agent": "a"}, name="tight")],
        backend,
        clock=clock,
    )
    held = m.reserve(MODEL, "openai", 10_000, 30_000, scope={"agent": "a"})
    with pytest.raises(BudgetExceeded) as refused:
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={"agent": "a"})
    assert refused.value.budget == "tight"
    assert refused.value.reserved == Decimal("0.0195")
    held.release()
    assert all(row.reserved_usd == 0 and row.spent_usd == 0 for row in m.status())


def test_amounts_beyond_64_bits_and_doubles_stay_exact(backend: BudgetBackend, clock: FakeClock) -> None:
    limit = Decimal("123456789.123456789012345678901234")
    m = BudgetManager([Budget(limit_usd=limit)], backend, clock=clock)
    big = 98_765_432 * UNITS_PER_USD + 987_654_321_098_765_432_109_876  # $98,765,432.98765432…
    m.reserve(MODEL, "openai", 1, 1, scope={}, estimate_units=big).settle(cost_units=big)
    m.reserve(MODEL, "openai", 1, 1, scope={}, estimate_units=7).settle(cost_units=7)
    (row,) = m.status()
    assert row.spent_usd == units_to_decimal(big + 7)
    left = 123_456_789_123_456_789_012_345_678_901_234 - big - 7
    assert row.remaining_usd == units_to_decimal(left)
    too_much = left + 1
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 1, 1, scope={}, estimate_units=too_much)
    m.reserve(MODEL, "openai", 1, 1, scope={}, estimate_units=too_much - 1).release()


def test_expired_leases_give_their_room_back(backend: BudgetBackend, clock: FakeClock) -> None:
    m = BudgetManager([Budget(limit_usd="0.03")], backend, clock=clock, lease_seconds=30)
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={})  # its caller "crashed"
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    clock.advance(31)
    late = m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    (row,) = m.status()
    assert row.reserved_usd == Decimal("0.0195")
    late.settle(usage(10_000, 30_000))
    (row,) = m.status()
    assert (row.spent_usd, row.reserved_usd) == (Decimal("0.0195"), 0)


def test_thresholds_fire_once_per_window_across_managers(backend: BudgetBackend, clock: FakeClock) -> None:
    budget = Budget(limit_usd="0.1", action="warn", name="shared")
    first, second = (BudgetManager([budget], backend, clock=clock) for _ in range(2))
    alerts: list[BudgetAlert] = []
    first.subscribe(alerts.append)
    second.subscribe(alerts.append)
    for turn in range(12):
        m = first if turn % 2 else second
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    delivered(backend)
    assert [a.threshold for a in alerts] == [Decimal("0.5"), Decimal("0.8"), Decimal("0.9"), Decimal("1")]
    clock.advance(86_400)
    first.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    delivered(backend)
    assert len(alerts) == 4
    for _ in range(3):
        first.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    delivered(backend)
    assert [a.threshold for a in alerts[4:]] == [Decimal("0.5")]


def test_rolling_windows_count_recent_buckets_only(backend: BudgetBackend, clock: FakeClock) -> None:
    m = BudgetManager([Budget(limit_tokens=100_000, window="rolling:1h")], backend, clock=clock)
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    clock.advance(30 * 60)
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    (row,) = m.status()
    assert row.spent_tokens == 80_000
    clock.advance(34 * 60)  # the first call is now 64 minutes old
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).release()
    (row,) = m.status()
    assert row.spent_tokens == 40_000


def test_definitions_overrides_and_resets_are_shared(backend: BudgetBackend, clock: FakeClock) -> None:
    budgets = [Budget(limit_usd="0.03", scope={"user": "*"}, name="per-user")]
    m = BudgetManager(budgets, backend, clock=clock, refresh_seconds=0)
    assert backend.definitions()["per-user"]["scope"] == {"user": "*"}
    for user in ("alice", "bob"):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": user}).settle(usage(10_000, 30_000))
    with pytest.raises(BudgetExceeded):
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": "alice"})
    m.set_limit("per-user", limit_usd="1")
    assert backend.limits() == {"per-user": (UNITS_PER_USD, None)}
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": "alice"}).release()
    m.clear_limit("per-user")
    assert m.reset("per-user", {"user": "alice"}) == 1
    by_user = {row.scope["user"]: row.spent_usd for row in m.status()}
    assert by_user == {"bob": Decimal("0.0195")}
    assert m.reset("per-user") == 1
    assert m.status() == []


def test_record_counts_spend_without_a_reservation(backend: BudgetBackend, clock: FakeClock) -> None:
    m = BudgetManager([Budget(limit_usd="1", scope={"agent": "*"})], backend, clock=clock)
    cost = tt.price(usage(10_000, 30_000), MODEL)
    m.record({"agent": "writer"}, usage(10_000, 30_000), cost.total_units, clock.now - 10, model=MODEL)
    m.record({"agent": "writer"}, usage(10_000, 30_000), None, model="unknown-model")  # unpriced: tokens only
    (row,) = m.status()
    assert (row.scope, row.spent_usd, row.spent_tokens) == ({"agent": "writer"}, Decimal("0.0195"), 80_000)


def test_check_refuses_when_the_budget_is_used_up(backend: BudgetBackend, clock: FakeClock) -> None:
    m = BudgetManager([Budget(limit_usd="0.0195", scope={"user": "*"})], backend, clock=clock)
    m.check({"user": "alice"})
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": "alice"}).settle(usage(10_000, 30_000))
    with pytest.raises(BudgetExceeded) as refused:
        m.check({"user": "alice"})
    assert refused.value.remaining == 0
    m.check({"user": "bob"})


def test_an_unreachable_backend_fails_open_or_closed(caplog: pytest.LogCaptureFixture) -> None:
    require_module("redis", "REDIS", "pip install 'redis[hiredis]' (the test extra)")
    down = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    relaxed = BudgetManager([Budget(limit_usd="1")], down)
    with (
        caplog.at_level("ERROR", "tokentrail.budgets"),
        relaxed.reserve(MODEL, "openai", 10, 10, scope={}) as held,
    ):
        held.settle(usage(10, 10))  # the call runs unguarded; settling does not raise either
    assert relaxed.backend_errors >= 2
    assert "budget back-end" in caplog.text
    strict = BudgetManager([Budget(limit_usd="1")], down, on_backend_error="fail_closed")
    with pytest.raises(BudgetExceeded, match="back-end is unavailable"):
        strict.reserve(MODEL, "openai", 10, 10, scope={})


class LostReplies:
    """A real back-end whose next `fail` reserve replies are lost: the reservation is made, the caller sees an error."""

    def __init__(self, inner: BudgetBackend, fail: int) -> None:
        self.inner = inner
        self.fail = fail

    def reserve(self, *args: object) -> object:
        outcome = self.inner.reserve(*args)  # type: ignore[arg-type]
        if self.fail:
            self.fail -= 1
            raise ConnectionError("the reply was lost")
        return outcome

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_call_run_unguarded_still_counts_its_spend_and_frees_what_was_held(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    """fail_open: a reserve whose reply was lost leaves no held room behind, and the spend is counted."""
    m = BudgetManager([Budget(limit_usd="1")], LostReplies(backend, fail=2), clock=clock)  # type: ignore[arg-type]
    with m.reserve(MODEL, "openai", 10_000, 30_000, scope={}) as settled:
        settled.settle(usage(10_000, 1_000))
    with pytest.raises(RuntimeError), m.reserve(MODEL, "openai", 10_000, 30_000, scope={}):
        raise RuntimeError("the call failed")  # leaving the block releases what the lost reserve held
    delivered(backend)
    assert m.backend_errors == 2
    (row,) = m.status()
    assert (row.spent_usd, row.spent_tokens) == (Decimal("0.0021"), 11_000)
    assert (row.reserved_usd, row.reserved_tokens) == (0, 0)


def test_pipelined_settlements_alert_by_the_next_call_or_a_flush(
    redis_pipelined_backend: BudgetBackend, clock: FakeClock
) -> None:
    m = BudgetManager(
        [Budget(limit_usd="0.01", action="warn", name="piped")], redis_pipelined_backend, clock=clock
    )
    alerts: list[BudgetAlert] = []
    m.subscribe(alerts.append)
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))  # $0.0195
    (row,) = m.status()  # reading flushes what this process pipelined
    assert (row.spent_usd, row.reserved_usd) == (Decimal("0.0195"), Decimal(0))
    assert [a.threshold for a in alerts] == [Decimal("0.5"), Decimal("0.8"), Decimal("0.9"), Decimal("1")]
    m.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(usage(10_000, 30_000))
    m.reserve(MODEL, "openai", 10, 10, scope={}).release()  # the next call reads the settlement's reply
    assert len(alerts) == 4 and m.backend_errors == 0


def test_status_lists_every_budget_with_its_figures_and_fired_alerts(
    backend: BudgetBackend, clock: FakeClock
) -> None:
    """What a dashboard's budgets page reads: one row per budget instance, from the shared counters."""
    team = Budget(limit_usd="0.1", action="warn", name="team")  # alerts at 50 %, 80 %, 90 %, 100 %
    per_user = Budget(limit_usd="1", scope={"user": "*"}, name="per-user")
    per_call = Budget(limit_usd="0.05", window="call", name="per-call")
    m = BudgetManager([team, per_user, per_call], backend, clock=clock)
    for _ in range(3):  # $0.0195 each: the team at 58.5 %, past its 50 % threshold
        m.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": "alice"}).settle(usage(10_000, 30_000))
    in_flight = m.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": "bob"})  # holds $0.0195
    delivered(backend)
    rows = {(row.budget, row.scope.get("user")): row for row in m.status()}
    assert set(rows) == {("team", None), ("per-user", "alice"), ("per-user", "bob"), ("per-call", None)}
    midnight = datetime(2031, 3, 5, tzinfo=timezone.utc)

    shared = rows["team", None]
    assert (shared.spent_usd, shared.percent, shared.resets_at) == (Decimal("0.0585"), 58.5, midnight)
    assert team.alert_levels()[: shared.alerts_fired] == (Decimal("0.5"),)
    alice, bob = rows["per-user", "alice"], rows["per-user", "bob"]
    assert (alice.spent_usd, alice.remaining_usd, alice.alerts_fired) == (
        Decimal("0.0585"),
        Decimal("0.9415"),
        0,
    )
    assert (bob.spent_usd, bob.percent, bob.resets_at) == (0, 0.0, midnight)
    if not isinstance(backend, LocalQuota):  # a quota's grants hold room for more calls than run
        assert (shared.reserved_usd, shared.remaining_usd) == (Decimal("0.0195"), Decimal("0.022"))
        assert (alice.reserved_usd, bob.reserved_usd, bob.remaining_usd) == (
            0,
            Decimal("0.0195"),
            Decimal("0.9805"),
        )
    assert rows["per-call", None].window == "call" and rows["per-call", None].resets_at is None

    in_flight.release()
    delivered(backend)
    assert all(row.reserved_usd == 0 for row in m.status())
