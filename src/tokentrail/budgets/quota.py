"""Local quota: a back-end wrapper that takes room for several calls at a time from a shared back-end.

A reservation against Redis or Postgres costs a round trip and a script or transaction on the server;
with many processes the server's CPU caps the rate (Redis spends ≈ 60–75 µs of its one core per
reserve + settle pair here, so ≈ 13–16 k/s at most). `LocalQuota(inner, calls=16)` reserves room for
several calls of the same size in one step — an ordinary reservation in the inner back-end, a *grant* —
then reserves, settles and releases the calls in memory against it. A grant is settled in the inner
back-end with the spend its calls counted (room they did not use goes back) when a call no longer fits
in it, after `seconds`, when the process reads status, at `flush()` / `close()` and at exit.

What holds, as without it:
- a call only runs against room the inner back-end granted, so spend ≤ limit when outputs are capped,
  across processes and machines; uncapped calls overshoot by at most what they did without it;
- spend is counted exactly (a grant settles with the sum of what its calls settled);
- a process that dies loses its grants when their lease passes, like any reservation.
What changes:
- room granted to one process and not yet used counts as *reserved* for every other one, so near the
  limit another process may be refused while room is parked here (until the grant settles, within
  `seconds`). Grants start at one call and double up to `calls`, but never ask for more than 1/8 of the
  room left, so near a limit they are single calls again;
- other processes see the spend, and alerts fire, when a grant settles: up to `seconds` late.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tokentrail.budgets.backend import (
    BudgetBackend,
    HeadRow,
    ReserveOutcome,
    SettleOutcome,
    Slot,
    Tally,
    TallyRow,
)

__all__ = ["LocalQuota"]

Done = Callable[["SettleOutcome | Exception"], None]
_SHARE = 8  # a grant takes at most 1/_SHARE of the room left in an enforcing slot
_ENDLESS = 1 << 160  # room on a side no limit enforces (tokens of a USD budget, a warn-only budget)
_POOL_LIMIT = 4096  # plans with grants kept at once (more: all are settled and forgotten)


class _Grant:
    """Room for several calls, reserved in the inner back-end under `id`."""

    __slots__ = (
        "base",
        "calls",
        "closed",
        "done",
        "endless",
        "ends",
        "expires",
        "id",
        "in_flight",
        "lease",
        "lease_until",
        "now",
        "open",
        "room",
        "size",
        "spent",
    )

    def __init__(
        self,
        grant_id: str,
        calls: int,
        size: list[list[int]],
        endless: list[tuple[int, int]],
        base: tuple[TallyRow, ...],
        seconds: float,
        now: float,
        lease_until: float,
    ) -> None:
        self.id = grant_id
        self.calls = calls
        self.size = size  # per slot [units, tokens] granted
        # per slot [units, tokens] still free; a side no limit enforces never runs out (+ _ENDLESS)
        self.room = [[u + bu, t + bt] for (u, t), (bu, bt) in zip(size, endless, strict=True)]
        self.endless = endless
        self.spent = [[0, 0] for _ in size]  # per slot: what its settled calls spent
        self.base = base  # the inner tallies before the grant (this process's view of the others)
        self.expires = time.monotonic() + seconds  # no new calls after this (monotonic seconds) …
        self.ends = now + seconds  # … or after this on the manager's clock
        self.now = now  # the manager's clock at its latest call (it settles at this time)
        self.lease_until = lease_until  # the inner back-end gives the room back then (manager's clock) …
        self.lease = time.monotonic() + (lease_until - now)  # … (monotonic seconds)
        self.closed = False  # settled in the inner back-end
        self.in_flight = 0
        self.open = True  # takes new calls
        self.done: Done | None = None  # the last settle's callback: gets the grant's own outcome


class _Pool:
    """The grants of one plan's slots, and how many calls the next grant asks room for."""

    __slots__ = ("current", "next_calls", "slots")

    def __init__(self, slots: Sequence[Slot]) -> None:
        self.slots = slots  # held so the cache key (its id) cannot be reused while cached
        self.current: _Grant | None = None
        self.next_calls = 1  # the first grant is one call: how much room is left is not known yet


class LocalQuota:
    """Reserve, settle and release in memory against room granted `calls` calls at a time by `inner`."""

    blocking: bool  # as the inner back-end: a grant waits on it

    def __init__(self, inner: BudgetBackend, *, calls: int = 16, seconds: float = 1.0) -> None:
        if not isinstance(calls, int) or isinstance(calls, bool) or calls < 1:
            raise ValueError(f"calls must be a positive integer, got {calls!r}")
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        self.inner = inner
        self.calls = calls
        self.seconds = seconds
        self.url = inner.url
        self.blocking = inner.blocking
        self._lock = threading.Lock()
        self._pools: dict[int, _Pool] = {}
        self._live: dict[str, tuple[_Grant, _Pool, Sequence[tuple[int, int]]]] = {}
        self._grants = 0
        # when a new grant next looks for other grants that are over (monotonic, and manager's clock)
        self._next_sweep = self._next_sweep_at = 0.0
        self._waiting: dict[int, tuple[_Grant, Sequence[Slot]]] = {}  # retired, with calls running
        self._pid = os.getpid()
        self._timer: threading.Thread | None = None
        self._stop = threading.Event()
        self.settle_later = self._settle_later  # the manager hands its alert callback with each settle
        atexit.register(_flush_at_exit, weakref.ref(self))

    # -- the hot path -----------------------------------------------------------------------------------

    def reserve(
        self,
        reservation: str,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        lease_until: float,
    ) -> ReserveOutcome:
        ended: list[tuple[_Grant, Sequence[Slot]]] = []
        try:
            with self._lock:
                if self._pid != os.getpid():
                    self._forked()
                pool = self._pools.get(id(slots))
                if pool is None or pool.slots is not slots:
                    if len(self._pools) >= _POOL_LIMIT:
                        self._retire_all(ended)
                    pool = self._pools[id(slots)] = _Pool(slots)
                grant = pool.current
                if grant is not None and now < grant.ends and time.monotonic() < grant.expires:
                    room = grant.room
                    if all(r[0] >= u and r[1] >= t for r, (u, t) in zip(room, charges, strict=True)):
                        window = self._view(grant)
                        for r, (u, t) in zip(room, charges, strict=True):
                            r[0] -= u
                            r[1] -= t
                        grant.in_flight += 1
                        grant.now = now
                        self._live[reservation] = (grant, pool, charges)
                        return (None, window)
                if grant is not None:
                    pool.current = None
                    self._retire(grant, slots, ended)
                clock = time.monotonic()
                if clock >= self._next_sweep or now >= self._next_sweep_at:  # other plans' grants
                    self._next_sweep, self._next_sweep_at = clock + self.seconds / 4, now + self.seconds / 4
                    self._retire_all(ended, clock, now)
                return self._grant(reservation, pool, slots, charges, now, lease_until)
        finally:
            for old, old_slots in ended:
                self._close(old, old_slots)

    def _grant(
        self,
        reservation: str,
        pool: _Pool,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        lease_until: float,
    ) -> ReserveOutcome:
        """Ask the inner back-end for room for `pool.next_calls` calls like this one (lock held)."""
        calls = pool.next_calls
        while True:
            size = [[u * calls, t * calls] for u, t in charges]
            self._grants += 1
            grant_id = f"{reservation}.q{self._grants}"
            outcome = self.inner.reserve(grant_id, slots, [(u, t) for u, t in size], now, lease_until)
            if outcome[0] is None:
                break
            if calls == 1:
                pool.next_calls = 1
                return outcome
            calls = 1  # no room for a grant: try the call alone, as a plain reservation would
        endless = [
            (
                0 if slot.enforce and slot.limit_units is not None else _ENDLESS,
                0 if slot.enforce and slot.limit_tokens is not None else _ENDLESS,
            )
            for slot in slots
        ]
        grant = _Grant(grant_id, calls, size, endless, outcome[1], self.seconds, now, lease_until)
        pool.next_calls = self._next_calls(slots, outcome[1], charges, grant)
        for r, (u, t) in zip(grant.room, charges, strict=True):
            r[0] -= u
            r[1] -= t
        grant.in_flight = 1
        pool.current = grant
        self._live[reservation] = (grant, pool, charges)
        self._start_timer()
        return (None, outcome[1])

    def _next_calls(
        self,
        slots: Sequence[Slot],
        before: tuple[TallyRow, ...],
        charges: Sequence[tuple[int, int]],
        grant: _Grant,
    ) -> int:
        """Calls the next grant asks room for: twice this one's, up to `calls`, and at most 1/8 of the
        room an enforcing slot had left after this grant (so grants shrink to one call near a limit)."""
        calls = min(self.calls, 2 * grant.calls)
        for slot, row, (u, t), (gu, gt) in zip(slots, before, charges, grant.size, strict=True):
            if not slot.enforce:
                continue
            tally = Tally._make(row)
            if slot.limit_units is not None and u:
                left = slot.limit_units - tally.spent_units - tally.reserved_units - gu
                calls = min(calls, max(1, left // (_SHARE * u)))
            if slot.limit_tokens is not None and t:
                left = slot.limit_tokens - tally.spent_tokens - tally.reserved_tokens - gt
                calls = min(calls, max(1, left // (_SHARE * t)))
        return calls

    def _view(self, grant: _Grant) -> tuple[TallyRow, ...]:
        """The windows as this process knows them: the others at the grant, plus what its calls used."""
        return tuple(
            (su + s[0], st + s[1], ru + size[0] + e[0] - room[0] - s[0], rt + size[1] + e[1] - room[1] - s[1])
            for (su, st, ru, rt), s, size, room, e in zip(
                grant.base, grant.spent, grant.size, grant.room, grant.endless, strict=True
            )
        )

    def settle(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
    ) -> SettleOutcome:
        box: list[SettleOutcome | Exception] = []
        self._settle(reservation, slots, charges, now, box.append, wait=True)
        if isinstance(box[0], Exception):
            raise box[0]
        return box[0]

    def _settle_later(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        done: Done,
    ) -> None:
        """Count a call's spend in its grant; `done` gets the grant's outcome (alerts) when it settles."""
        self._settle(reservation, slots, charges, now, done, wait=False)

    def _settle(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        done: Done,
        *,
        wait: bool,
    ) -> None:
        """`settle` (`wait`: `done` is called before this returns) or `settle_later` (a pipelining inner
        back-end may call it later)."""
        with self._lock:
            held = self._live.pop(reservation, None) if reservation is not None else None
            if held is not None and held[0].closed:  # its grant settled without it (a lease passed)
                held = None
            if held is not None:
                grant, pool, reserved = held
                for r, spent, (hu, ht), (u, t) in zip(
                    grant.room, grant.spent, reserved, charges, strict=True
                ):
                    r[0] += hu - u
                    r[1] += ht - t
                    spent[0] += u
                    spent[1] += t
                grant.in_flight -= 1
                grant.done = done
                grant.now = now
                ended = self._last_call_ended(grant)
                window = None if ended else self._view(grant)
        if held is None:  # spend without a reservation here: straight to the inner back-end
            self._inner_settle(reservation, slots, charges, now, done, wait=wait)
        elif window is None:
            self._close(grant, pool.slots, wait=wait)
        else:
            done((window, tuple(() for _ in window)))

    def release(self, reservation: str, slots: Sequence[Slot], now: float) -> None:
        with self._lock:
            held = self._live.pop(reservation, None)
            if held is not None:
                grant, pool, reserved = held
                if grant.closed:  # its grant settled without it: the room went with the grant's lease
                    return
                for r, (u, t) in zip(grant.room, reserved, strict=True):
                    r[0] += u
                    r[1] += t
                grant.in_flight -= 1
                ended = self._last_call_ended(grant)
        if held is None:
            self.inner.release(reservation, slots, now)
        elif ended:
            self._close(grant, pool.slots)

    # -- grants ending ----------------------------------------------------------------------------------

    def _retire(
        self, grant: _Grant, slots: Sequence[Slot], ended: list[tuple[_Grant, Sequence[Slot]]]
    ) -> None:
        """No new calls in `grant`; it settles when its last call ends (lock held; `ended` gets it now
        when none is running, to be settled once the lock is let go)."""
        grant.open = False
        if grant.in_flight == 0:
            grant.closed = True
            ended.append((grant, slots))
        else:
            self._waiting[id(grant)] = (grant, slots)

    def _last_call_ended(self, grant: _Grant) -> bool:
        """After a call of `grant` ended: is the grant now to be settled? (lock held)"""
        if grant.open or grant.in_flight:
            return False
        grant.closed = True
        self._waiting.pop(id(grant), None)
        return True

    def _retire_all(
        self,
        ended: list[tuple[_Grant, Sequence[Slot]]],
        older_than: float | None = None,
        now: float | None = None,
    ) -> None:
        """Retire every grant (lock held), or those over by monotonic `older_than` or the manager's `now`."""
        for key, pool in list(self._pools.items()):
            grant = pool.current
            if grant is None:
                if older_than is None:
                    del self._pools[key]
            elif older_than is None or grant.expires <= older_than or (now is not None and grant.ends <= now):
                pool.current = None
                self._retire(grant, pool.slots, ended)
        # A retired grant whose calls outlive its lease (a reservation never settled nor released) is
        # settled anyway with what its ended calls spent: the inner back-end let its room go already.
        for key, (grant, slots) in list(self._waiting.items()):
            if (older_than is not None and grant.lease <= older_than) or (
                now is not None and grant.lease_until <= now
            ):
                del self._waiting[key]
                grant.closed = True
                ended.append((grant, slots))

    def _close(self, grant: _Grant, slots: Sequence[Slot], *, wait: bool = False) -> None:
        """Settle an ended grant in the inner back-end with what its calls spent (lock not held: the
        manager's alert callbacks run from here)."""
        spent = [(s[0], s[1]) for s in grant.spent]
        self._inner_settle(grant.id, slots, spent, grant.now, grant.done or _ignore, wait=wait)

    def _inner_settle(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        done: Done,
        *,
        wait: bool,
    ) -> None:
        """Settle in the inner back-end: pipelined when it can (and `wait` is not asked), else at once."""
        later = None if wait else getattr(self.inner, "settle_later", None)
        if callable(later):
            later(reservation, slots, charges, now, done)
            return
        try:
            outcome = self.inner.settle(reservation, slots, charges, now)
        except Exception as exc:  # the manager counts it; the grant's room comes back with its lease
            done(exc)
            return
        done(outcome)

    def flush(self, *, older_than: float | None = None) -> None:
        """Settle every grant now (or those that stopped taking calls before monotonic `older_than`);
        a grant with calls still running settles when the last one ends."""
        ended: list[tuple[_Grant, Sequence[Slot]]] = []
        with self._lock:
            if self._pid != os.getpid():
                self._forked()
            self._retire_all(ended, older_than)
        for grant, slots in ended:
            self._close(grant, slots)
        flush = getattr(self.inner, "flush", None)
        if callable(flush):
            flush()

    def _start_timer(self) -> None:
        if self._timer is None or not self._timer.is_alive():
            self._stop.clear()
            ref = weakref.ref(self)
            self._timer = threading.Thread(
                target=_settle_old_grants,
                args=(ref, self.seconds, self._stop),
                daemon=True,
                name="tokentrail-budget-quota",
            )
            self._timer.start()

    def _forked(self) -> None:
        """A forked child: the parent's grants and calls are the parent's to settle."""
        self._pools, self._live, self._pid = {}, {}, os.getpid()
        self._timer = None
        self._stop = threading.Event()

    # -- everything else goes to the inner back-end ------------------------------------------------------

    def read(self, slots: Sequence[Slot], now: float) -> list[Tally]:
        self.flush()
        return self.inner.read(slots, now)

    def heads(self, budget: str, now: float) -> list[HeadRow]:
        self.flush()
        return self.inner.heads(budget, now)

    def register(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        self.inner.register(definitions)

    def definitions(self) -> dict[str, dict[str, Any]]:
        return self.inner.definitions()

    def set_limits(self, budget: str, limits: tuple[int | None, int | None] | None) -> None:
        self.inner.set_limits(budget, limits)

    def limits(self) -> dict[str, tuple[int | None, int | None]]:
        return self.inner.limits()

    def reset(self, budget: str, scope_key: str | None = None) -> int:
        self.flush()
        return self.inner.reset(budget, scope_key)

    def close(self) -> None:
        self._stop_timer()
        self.flush()
        self.inner.close()

    def _stop_timer(self) -> None:
        """Stop the timer and wait for a settlement it is sending (else the process may end before it)."""
        self._stop.set()
        timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join(10)

    def __getattr__(self, name: str) -> Any:  # drop(), drop_schema(), prefix, schema … of the inner one
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"LocalQuota({self.inner!r}, calls={self.calls}, seconds={self.seconds})"


def _ignore(outcome: SettleOutcome | Exception) -> None:
    return None


def _settle_old_grants(ref: weakref.ref[LocalQuota], seconds: float, stop: threading.Event) -> None:
    """Settle grants once they are `seconds` old, so an idle process does not sit on room or spend."""
    while not stop.wait(seconds / 2):
        quota = ref()
        if quota is None:
            return
        with contextlib.suppress(Exception):  # the manager counts failures through the grants' callbacks
            quota.flush(older_than=time.monotonic())
        del quota


def _flush_at_exit(ref: weakref.ref[LocalQuota]) -> None:
    quota = ref()
    if quota is not None:
        with contextlib.suppress(Exception):
            quota._stop_timer()
            quota.flush()
