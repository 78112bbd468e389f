"""Local quota: room for several calls taken at a time from a shared back-end, counted in memory.

The shared back-end suites (test_backends, test_concurrency) also run through `LocalQuota` over real
Redis and SQLite; these tests pin what is particular to it: grant sizes, parked room, the timer, URLs.
"""

from __future__ import annotations

import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import tokentrail as tt
from tests.budgets.conftest import FakeClock, unique
from tokentrail._money import UNITS_PER_USD
from tokentrail.budgets import Budget, BudgetAlert, BudgetBackend, BudgetConfigError, BudgetManager
from tokentrail.budgets.connect import open_backend
from tokentrail.budgets.memory import MemoryBackend
from tokentrail.budgets.quota import LocalQuota
from tokentrail.errors import BudgetExceeded

MODEL = "gpt-4o-mini"  # 10k in + 30k out: $0.0195 worst case
CHARGE = Decimal("0.0195")
WORST = tt.Usage(input_tokens=10_000, output_tokens=30_000)


def call(manager: BudgetManager, output_tokens: int = 30_000) -> None:
    manager.reserve(MODEL, "openai", 10_000, 30_000, scope={}).settle(
        tt.Usage(input_tokens=10_000, output_tokens=output_tokens)
    )


def held_in(inner: BudgetBackend, manager: BudgetManager) -> Decimal:
    """What the inner back-end holds as reserved (read there: reading through the quota settles it)."""
    (slot,) = manager._planned({}, MODEL, "openai", manager._clock()).slots
    (tally,) = inner.read([slot], manager._clock())
    return Decimal(tally.reserved_units) / UNITS_PER_USD


def test_grants_start_at_one_call_double_up_to_calls_and_count_spend_exactly(clock: FakeClock) -> None:
    inner = MemoryBackend()
    m = BudgetManager([Budget(limit_usd="100")], LocalQuota(inner, calls=8), clock=clock)
    sizes = []
    for _ in range(1 + 2 + 4 + 8 + 8):
        held = m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
        sizes.append(held_in(inner, m) / CHARGE)
        held.settle(WORST)  # uses up its room: the next call needs the next room
    assert sizes == [1] + [2] * 2 + [4] * 4 + [8] * 8 + [8] * 8  # the room of the grant each call ran in
    (row,) = m.status()  # reading settles the grants
    assert (row.spent_usd, row.reserved_usd, row.spent_tokens) == (CHARGE * 23, 0, 40_000 * 23)


def test_room_a_call_did_not_use_serves_the_next_calls(clock: FakeClock) -> None:
    inner = MemoryBackend()
    m = BudgetManager([Budget(limit_usd="100")], LocalQuota(inner, calls=8), clock=clock)
    call(m)  # a grant of one call
    held = m.reserve(MODEL, "openai", 10_000, 30_000, scope={})  # a grant of two
    held.settle(tt.Usage(input_tokens=10_000, output_tokens=1_000))  # $0.0021 of $0.0195
    for _ in range(9):  # 2 x $0.0195 - $0.0021 = $0.0369 of room: each call takes $0.0021 of it
        inside = m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
        assert held_in(inner, m) == 2 * CHARGE  # still the same grant
        inside.settle(tt.Usage(input_tokens=10_000, output_tokens=1_000))
    (row,) = m.status()
    assert (row.spent_usd, row.reserved_usd) == (CHARGE + Decimal("0.0021") * 10, 0)


def test_near_the_limit_grants_shrink_to_one_call_and_spend_stops_as_without_quota(clock: FakeClock) -> None:
    inner = MemoryBackend()
    m = BudgetManager([Budget(limit_usd="1")], LocalQuota(inner, calls=16), clock=clock)
    grants = []
    calls = 0
    with pytest.raises(BudgetExceeded):
        while True:
            held = m.reserve(MODEL, "openai", 10_000, 30_000, scope={})
            grants.append(held_in(inner, m))
            held.settle(WORST)
            calls += 1
    assert calls == 51  # 51 x $0.0195 = $0.9945: the 52nd would pass $1, exactly as per call
    spent = [CHARGE * i for i in range(calls)]
    for before, grant in zip(spent, grants, strict=True):  # never more than 1/8 of the room, or one call
        assert grant <= max(CHARGE, (Decimal(1) - before) / 8 + CHARGE)
    assert grants[-1] == CHARGE
    (row,) = m.status()
    assert (row.spent_usd, row.reserved_usd) == (CHARGE * 51, 0)


def test_two_processes_sharing_redis_stop_only_when_the_room_is_gone(redis_server: str) -> None:
    """Room one process parks may refuse the other for a while, but not at the end: spend reaches the limit."""
    url = f"{redis_server}?prefix={unique('tt-test-')}:&quota=16"
    first, second = (BudgetManager([Budget(limit_usd="1")], open_backend(url)) for _ in range(2))
    try:
        refused = {id(first): False, id(second): False}
        done = 0
        while not all(refused.values()):
            for m in (first, second):
                try:
                    call(m)
                    done += 1
                    refused = dict.fromkeys(refused, False)
                except BudgetExceeded:
                    refused[id(m)] = True
        (row,) = first.status()
        assert done == 51 and row.spent_usd == CHARGE * 51 and row.reserved_usd == 0
    finally:
        first.backend.drop()  # type: ignore[attr-defined]
        first.close()
        second.close()


def test_an_idle_process_settles_its_grant_within_seconds(redis_server: str) -> None:
    """The timer settles a grant nobody uses any more: other processes see the spend, the room comes back."""
    url = f"{redis_server}?prefix={unique('tt-test-')}:"
    quota = LocalQuota(open_backend(url), calls=8, seconds=0.2)
    m = BudgetManager([Budget(limit_usd="1")], quota)
    other = BudgetManager([Budget(limit_usd="1")], open_backend(url))
    try:
        for _ in range(3):
            call(m, output_tokens=1_000)
        (row,) = other.status()
        assert row.spent_usd < Decimal("0.0021") * 3 and row.reserved_usd > 0  # still in the grant
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            (row,) = other.status()
            if row.spent_usd == Decimal("0.0021") * 3 and row.reserved_usd == 0:
                break
            time.sleep(0.05)
        assert (row.spent_usd, row.reserved_usd) == (Decimal("0.0021") * 3, 0)
    finally:
        other.backend.drop()  # type: ignore[attr-defined]
        other.close()
        m.close()


def test_alerts_fire_once_when_the_grants_settle(clock: FakeClock) -> None:
    m = BudgetManager(
        [Budget(limit_usd="0.1", action="warn", name="soft")], LocalQuota(MemoryBackend()), clock=clock
    )
    alerts: list[BudgetAlert] = []
    m.subscribe(alerts.append)
    for _ in range(6):  # $0.117: past 50, 80, 90 and 100 %
        call(m)
    m.status()
    assert [a.threshold for a in alerts] == [Decimal("0.5"), Decimal("0.8"), Decimal("0.9"), Decimal("1")]
    call(m)
    m.status()
    assert len(alerts) == 4


def test_quota_urls() -> None:
    quota = open_backend("memory://?quota=4&quota_seconds=0.5")
    assert isinstance(quota, LocalQuota) and (quota.calls, quota.seconds) == (4, 0.5)
    assert isinstance(quota.inner, MemoryBackend)
    assert not isinstance(open_backend("memory://"), LocalQuota)
    for bad in ("quota=0", "quota=x", "quota=2&quota_seconds=0", "quota=2&quota_seconds=-1"):
        with pytest.raises(BudgetConfigError, match="bad quota options"):
            open_backend(f"memory://?{bad}")
    with pytest.raises(ValueError, match="calls must be a positive integer"):
        LocalQuota(MemoryBackend(), calls=True)  # type: ignore[arg-type]


def _child_calls(url: str) -> None:
    manager = BudgetManager([Budget(limit_usd="1")], url)
    for _ in range(5):
        call(manager)
    manager.close()


def test_a_forked_child_keeps_its_own_grants_and_the_totals_stay_exact(tmp_path: Path) -> None:
    """A child forked while the parent holds a grant does not use or settle the parent's grant."""
    import multiprocessing

    url = f"sqlite:///{tmp_path}/budgets.db?quota=8"
    parent = BudgetManager([Budget(limit_usd="1")], url)
    for _ in range(3):
        call(parent)  # grants of 1 and 2 calls: the second is still open when the child forks
    held = parent.reserve(MODEL, "openai", 10_000, 30_000, scope={})
    child = multiprocessing.get_context("fork").Process(target=_child_calls, args=(url,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    held.settle(WORST)
    (row,) = parent.status()
    assert (row.spent_usd, row.reserved_usd) == (CHARGE * 9, 0)
    parent.close()


def test_a_forked_backend_object_starts_empty_in_the_child(tmp_path: Path) -> None:
    import multiprocessing

    url = f"sqlite:///{tmp_path}/budgets.db?quota=8"
    parent = BudgetManager([Budget(limit_usd="1")], url)
    call(parent)
    held = parent.reserve(MODEL, "openai", 10_000, 30_000, scope={})  # runs in the parent's open grant

    def in_child() -> None:  # the same manager object, inherited: its calls need grants of their own
        for _ in range(4):
            call(parent)
        parent.backend.flush()  # type: ignore[attr-defined]

    child = multiprocessing.get_context("fork").Process(target=in_child)
    child.start()
    child.join(30)
    assert child.exitcode == 0
    held.settle(WORST)
    (row,) = parent.status()
    assert (row.spent_usd, row.reserved_usd) == (CHARGE * 6, 0)
    parent.close()


def test_a_reservation_never_ended_does_not_hold_back_the_spend_of_its_grant(clock: FakeClock) -> None:
    """A leaked reservation keeps its grant from settling only until the grant's lease passes: then the
    calls that ended are counted, and the leaked one counts if it ever settles."""
    inner = MemoryBackend()
    m = BudgetManager([Budget(limit_usd="10")], LocalQuota(inner, calls=8), clock=clock, lease_seconds=60)
    call(m)  # a grant of one call
    leaked = m.reserve(MODEL, "openai", 10_000, 30_000, scope={})  # a grant of two: never ended (yet)
    call(m)  # the other call of that grant
    clock.advance(5)  # the grant stops taking calls; it waits for the leaked one
    call(m)
    (row,) = m.status()
    assert row.spent_usd == CHARGE * 2  # the second grant's ended call is not counted yet
    clock.advance(60)  # its lease passes: the inner back-end has let the room go
    call(m)  # a new grant: over grants are swept first
    (row,) = m.status()
    assert (row.spent_usd, row.reserved_usd) == (CHARGE * 4, 0)
    leaked.settle(WORST)  # late: counted as spend without a reservation, once
    leaked.settle(WORST)
    (row,) = m.status()
    assert (row.spent_usd, row.reserved_usd) == (CHARGE * 5, 0)


def test_closing_a_manager_settles_the_grants_of_a_backend_it_was_given(clock: FakeClock) -> None:
    inner = MemoryBackend()
    quota = LocalQuota(inner, calls=8)
    m = BudgetManager([Budget(limit_usd="1")], quota, clock=clock)
    for _ in range(3):
        call(m)
    m.close()  # the back-end is the caller's: not closed, but its grants are settled
    (slot,) = m._planned({}, MODEL, "openai", clock()).slots
    (tally,) = inner.read([slot], clock())
    assert (tally.spent_units, tally.reserved_units) == (int(CHARGE * 3 * UNITS_PER_USD), 0)


# -- a state machine: two processes' quotas over one shared back-end ------------------------------------------

LIMIT_UNITS = 10**24  # $1


class TwoProcessesShareOneLimit(RuleBasedStateMachine):
    """Random reserves, settles (at most what was held), releases, flushes and clock steps by two quotas
    over one back-end: the shared counters never pass the limit, and at the end they hold exactly what
    was settled and nothing reserved."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.inner = MemoryBackend()
        self.managers = [
            BudgetManager(
                [Budget(limit_usd="1", name="shared")], LocalQuota(self.inner, calls=c), clock=self.clock
            )
            for c in (4, 16)
        ]
        self.open: list[tuple[Any, int]] = []
        self.settled = 0

    def window(self) -> Any:
        (slot,) = self.managers[0]._planned({}, MODEL, "openai", self.clock()).slots
        (tally,) = self.inner.read([slot], self.clock())
        return tally

    @rule(process=st.integers(0, 1), cents=st.integers(1, 30))
    def reserve(self, process: int, cents: int) -> None:
        units = cents * 10**22
        try:
            held = self.managers[process].reserve(MODEL, "openai", 0, 0, scope={}, estimate_units=units)
        except BudgetExceeded:
            return
        self.open.append((held, units))

    @rule(data=st.data(), share=st.one_of(st.just(Fraction(1)), st.fractions(0, 1)))
    def settle(self, data: st.DataObject, share: Fraction) -> None:
        if self.open:
            held, units = self.open.pop(data.draw(st.integers(0, len(self.open) - 1)))
            spent = int(units * share)
            held.settle(cost_units=spent)
            self.settled += spent

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if self.open:
            held, _ = self.open.pop(data.draw(st.integers(0, len(self.open) - 1)))
            held.release()

    @rule(seconds=st.sampled_from([0.0, 0.4, 1.5]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(process=st.integers(0, 1))
    def flush(self, process: int) -> None:
        self.managers[process].backend.flush()  # type: ignore[attr-defined]

    @invariant()
    def never_past_the_limit(self) -> None:
        tally = self.window()
        assert tally.spent_units + tally.reserved_units <= LIMIT_UNITS
        # what was settled plus the worst case of every call let through and still running
        assert self.settled + sum(units for _, units in self.open) <= LIMIT_UNITS

    def teardown(self) -> None:
        for held, _ in self.open:
            held.release()
        for manager in self.managers:
            manager.close()
        tally = self.window()
        assert (tally.spent_units, tally.reserved_units) == (self.settled, 0)


TestTwoProcessesShareOneLimit = TwoProcessesShareOneLimit.TestCase
TestTwoProcessesShareOneLimit.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_a_tracker_with_quota_counts_instrumented_and_reserved_calls_exactly(redis_server: str) -> None:
    url = f"{redis_server}?prefix={unique('tt-test-')}:&quota=8"
    tracker = tt.Tracker(budgets=[Budget(limit_usd="1", name="t")], budget_backend=url)
    try:
        for _ in range(20):
            with tracker.reserve(MODEL, "openai", 10_000, 30_000):
                tracker.record(tt.Usage(input_tokens=10_000, output_tokens=1_000), MODEL, "openai")
        (status,) = tracker.budget_status()  # reading settles the grants
        assert (status.spent_usd, status.reserved_usd) == (Decimal("0.0021") * 20, 0)
        assert tracker.totals().cost == Decimal("0.0021") * 20
    finally:
        tracker.close()
        cleanup = open_backend(url.replace("&quota=8", ""))
        cleanup.drop()  # type: ignore[attr-defined]
        cleanup.close()


def test_spend_without_a_reservation_is_answered_at_once_over_a_pipelining_backend(
    redis_quota_backend: BudgetBackend, clock: FakeClock
) -> None:
    """`settle` (the manager's path for spend no reservation held) waits for its outcome even when the
    inner back-end pipelines settlements; the alerts it crosses fire at once."""
    m = BudgetManager(
        [Budget(limit_usd="0.01", action="warn", name="soft")], redis_quota_backend, clock=clock
    )
    alerts: list[BudgetAlert] = []
    m.subscribe(alerts.append)
    m.record({}, WORST, int(CHARGE * UNITS_PER_USD))
    assert m.backend_errors == 0
    assert [a.threshold for a in alerts] == [Decimal("0.5"), Decimal("0.8"), Decimal("0.9"), Decimal("1")]
    (row,) = m.status()
    assert (row.spent_usd, row.reserved_usd) == (CHARGE, 0)
