"""Budget policies: validation at construction, windows aligned to calendars in a time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tokentrail.budgets import Budget, BudgetConfigError, Window
from tokentrail.budgets.policy import RequestScope

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(tz: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=tz).timestamp()  # type: ignore[misc]


# -- bad configuration fails at construction -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit_usd": "-1"}, "must not be negative"),
        ({"limit_usd": -0.5}, "must not be negative"),
        ({"limit_tokens": -10}, "must not be negative"),
        ({}, "needs limit_usd or limit_tokens"),
        ({"limit_usd": "five"}, "is not a number of dollars"),
        ({"limit_usd": "NaN"}, "must be finite"),
        ({"limit_tokens": 1.5}, "whole number of tokens"),
        ({"limit_tokens": True}, "whole number of tokens"),
        ({"limit_usd": 5, "scope": {"agnet": "x"}}, "unknown scope key 'agnet'"),
        ({"limit_usd": 5, "scope": {"agent": ""}}, "non-empty string"),
        ({"limit_usd": 5, "window": "dialy"}, "did you mean 'daily'"),
        ({"limit_usd": 5, "window": "rolling"}, "rolling:30m"),
        ({"limit_usd": 5, "window": "rolling:10s"}, "at least one minute"),
        ({"limit_usd": 5, "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"limit_usd": 5, "thresholds": (0.5, -0.1)}, "above 0"),
        ({"limit_usd": 5, "thresholds": ("lots",)}, "is not a number"),
        ({"limit_usd": 5, "action": "explode"}, "action must be"),
        ({"limit_usd": 5, "on_unpriced": "maybe"}, "on_unpriced"),
        ({"limit_usd": 5, "token_kind": "vibes"}, "unknown token_kind"),
        ({"limit_usd": 5, "name": ""}, "non-empty string"),
    ],
)
def test_bad_configuration_raises_a_clear_error_at_construction(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(BudgetConfigError, match=message):
        Budget(**kwargs)  # type: ignore[arg-type]


def test_config_errors_are_value_errors_and_tokentrail_errors() -> None:
    from tokentrail.errors import TokentrailError

    with pytest.raises(ValueError):
        Budget()
    assert issubclass(BudgetConfigError, TokentrailError)


def test_limits_are_exact_decimals() -> None:
    budget = Budget(limit_usd="5.10", limit_tokens=200_000)
    assert budget.limit_usd == Decimal("5.1")
    assert budget.limit_units == 5_100_000_000_000_000_000_000_000
    assert Budget(limit_usd=0.1).limit_usd == Decimal("0.1")


def test_default_names_say_scope_and_window() -> None:
    assert Budget(limit_usd=5).name == "global/daily"
    assert Budget(limit_usd=5, window="monthly", scope={"user": "*"}).name == "user=*/monthly"
    assert (
        Budget(limit_usd=5, scope={"agent": "researcher", "tool": "web"}).name
        == "agent=researcher,tool=web/daily"
    )


def test_the_limit_always_alerts_even_when_not_listed() -> None:
    budget = Budget(limit_usd=5, thresholds=(0.8, 0.5))
    assert budget.alert_levels() == (Decimal("0.5"), Decimal("0.8"), Decimal("1"))


# -- windows ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "seconds"),
    [
        ("daily", "daily", 0),
        ("Hourly", "hourly", 0),
        ("rolling:30m", "rolling", 1800),
        ("rolling:2h", "rolling", 7200),
    ],
)
def test_window_specs_parse(spec: str, kind: str, seconds: int) -> None:
    window = Window.parse(spec)
    assert (window.kind, window.seconds) == (kind, seconds)


def test_rolling_windows_count_in_twenty_buckets() -> None:
    assert Window.parse("rolling:30m").bucket_seconds == 90
    assert Window.parse("rolling:2h").spec == "rolling:2h"


def test_daily_window_starts_at_local_midnight() -> None:
    window = Window.parse("daily")
    start, end = window.span(at(BERLIN, 2031, 3, 4, 0, 30), BERLIN)
    assert start == at(BERLIN, 2031, 3, 4)
    assert end == at(BERLIN, 2031, 3, 5)
    before_midnight = window.span(at(BERLIN, 2031, 3, 3, 23, 59, 59), BERLIN)
    assert before_midnight[1] == start


def test_a_day_with_a_dst_change_is_23_or_25_hours_long() -> None:
    window = Window.parse("daily")
    spring = window.span(at(NEW_YORK, 2031, 3, 9, 12), NEW_YORK)
    autumn = window.span(at(NEW_YORK, 2031, 11, 2, 12), NEW_YORK)
    assert spring[1] - spring[0] == 23 * 3600
    assert autumn[1] - autumn[0] == 25 * 3600


def test_the_repeated_hour_at_dst_end_is_two_hourly_windows() -> None:
    window = Window.parse("hourly")
    first = datetime(2031, 11, 2, 1, 30, tzinfo=NEW_YORK)  # EDT
    second = first.replace(fold=1)  # EST, an hour later
    span_first = window.span(first.timestamp(), NEW_YORK)
    span_second = window.span(second.timestamp(), NEW_YORK)
    assert span_first[1] == span_second[0]
    assert span_second[1] - span_second[0] == 3600


def test_monthly_window_ends_on_the_last_day_in_the_zone() -> None:
    window = Window.parse("monthly")
    start, end = window.span(at(BERLIN, 2032, 2, 29, 23, 59), BERLIN)  # leap year
    assert start == at(BERLIN, 2032, 2, 1)
    assert end == at(BERLIN, 2032, 3, 1)
    december = window.span(at(BERLIN, 2031, 12, 31, 23), BERLIN)
    assert december[1] == at(BERLIN, 2032, 1, 1)


def test_weekly_window_starts_on_monday() -> None:
    start, end = Window.parse("weekly").span(at(BERLIN, 2031, 3, 6, 15), BERLIN)  # a Thursday
    assert datetime.fromtimestamp(start, BERLIN) == datetime(2031, 3, 3, tzinfo=BERLIN)
    assert end - start == timedelta(days=7).total_seconds()


def test_budget_resets_at_the_end_of_its_window_in_its_zone() -> None:
    budget = Budget(limit_usd=5, tz="Europe/Berlin")
    resets = budget.resets_at(at(BERLIN, 2031, 3, 4, 22))
    assert resets == datetime(2031, 3, 5, tzinfo=BERLIN)
    assert Budget(limit_usd=5, window="session").resets_at(0) is None


# -- scope matching -------------------------------------------------------------------------------------------------


def test_fixed_scope_matches_only_its_value() -> None:
    budget = Budget(limit_usd=5, scope={"agent": "researcher"})
    assert budget.scope_keys(RequestScope.of({"agent": "researcher"})) == [""]
    assert budget.scope_keys(RequestScope.of({"agent": "writer"})) == []
    assert budget.scope_keys(RequestScope.of({})) == []


def test_wildcard_scope_is_one_instance_per_value() -> None:
    budget = Budget(limit_usd=5, scope={"user": "*"})
    assert budget.scope_keys(RequestScope.of({"user": "alice"})) == ["user=alice"]
    assert budget.scope_keys(RequestScope.of({"user": "a|b&c=d"})) == ["user=a%7Cb%26c%3Dd"]
    assert budget.scope_keys(RequestScope.of({"agent": "x"})) == []


def test_tag_scopes_match_any_tag_of_the_call() -> None:
    fixed = Budget(limit_usd=5, scope={"tag": "eval"})
    each = Budget(limit_usd=5, scope={"tag": "*"})
    request = RequestScope.of({"tags": ("eval", "nightly")})
    assert fixed.scope_keys(request) == [""]
    assert each.scope_keys(request) == ["tag=eval", "tag=nightly"]


def test_model_and_provider_join_the_scope() -> None:
    budget = Budget(limit_usd=5, scope={"model": "gpt-4o"})
    assert budget.scope_keys(RequestScope.of({}, model="gpt-4o")) == [""]
    assert budget.scope_keys(RequestScope.of({}, model="gpt-4o-mini")) == []
