from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import pytest

import tokentrail as tt
from tokentrail.analytics import efficiency
from tokentrail.tracker import Tracker

T0 = datetime(2025, 6, 1, 12, tzinfo=timezone.utc)


def test_efficiency_figures(make_tracker: Callable[[], Tracker]) -> None:
    tracker = make_tracker()
    cached = tt.Usage(input_tokens=4000, output_tokens=200, cache_read_tokens=3000)
    plain = tt.Usage(input_tokens=1000, output_tokens=300)
    tracker.record(cached, "gpt-4o", agent="a", session="s1", duration_ms=2000.0, at=T0)
    tracker.record(plain, "gpt-4o", agent="a", session="s1", duration_ms=1000.0, at=T0)
    tracker.record(plain, "gpt-4o", agent="a", session="s2", at=T0)
    tracker.record(plain, "gpt-4o", agent="a", at=T0)  # no session
    tracker.record(
        tt.Usage(input_tokens=10, output_tokens=1, status=tt.UsageStatus.ESTIMATED),
        "gpt-4o",
        agent="b",
        at=T0,
    )
    [a, b] = efficiency(tracker)
    cost_cached, cost_plain = tt.price(cached, "gpt-4o").total, tt.price(plain, "gpt-4o").total
    assert a.group == {"agent": "a"} and a.calls == 4 and a.sessions == 2
    assert a.cost == cost_cached + 3 * cost_plain
    assert a.cost_per_call == a.cost / 4
    assert a.cost_per_session == (cost_cached + 2 * cost_plain) / 2
    assert a.cache_hit_rate == pytest.approx(3000 / 7000)
    assert a.output_tokens_per_second == pytest.approx((200 + 300) / 3.0)
    assert a.complete_calls == 4 and a.cost_per_complete_call == a.cost / 4
    assert b.complete_calls == 0 and b.cost_per_complete_call is None and b.sessions == 0
    assert b.cost_per_session is None and b.output_tokens_per_second is None
    assert a.as_dict()["cost_usd"] == str(a.cost)
