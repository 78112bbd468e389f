"""Usage: validation on construction, exact addition, and how pricing composes over sums."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tokentrail as tt
from tokentrail._types import TOKEN_FIELDS, Usage, UsageStatus
from tokentrail.errors import InvalidUsageError


@st.composite
def usages(draw: Any, max_tokens: int = 10**7) -> tt.Usage:
    n = st.integers(0, max_tokens)
    cache_read, cache_write, uncached = draw(n), draw(n), draw(n)
    cache_write_1h = draw(st.integers(0, cache_write))
    reasoning, visible = draw(n), draw(n)
    status = draw(
        st.sampled_from([tt.UsageStatus.COMPLETE, tt.UsageStatus.ESTIMATED, tt.UsageStatus.PARTIAL])
    )
    return tt.Usage(
        input_tokens=cache_read + cache_write + uncached,
        output_tokens=reasoning + visible,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=cache_write_1h,
        reasoning_tokens=reasoning,
        web_searches=draw(st.integers(0, 5)),
        status=status,
    )


@given(usages(), usages(), usages())
def test_addition_is_associative(a: tt.Usage, b: tt.Usage, c: tt.Usage) -> None:
    assert (a + b) + c == a + (b + c)


@given(st.lists(usages(), max_size=8))
def test_sum_adds_every_field(items: list[tt.Usage]) -> None:
    total = sum(items, tt.Usage(requests=0))
    for field in tt.Usage.__dataclass_fields__:
        if field not in ("status", "reason"):
            assert getattr(total, field) == sum(getattr(u, field) for u in items)


@given(usages(max_tokens=30_000), usages(max_tokens=30_000))  # prompts stay under the 200k tiers
def test_cost_of_a_sum_is_the_sum_of_costs_below_any_tier(a: tt.Usage, b: tt.Usage) -> None:
    for model, provider in [
        ("gpt-4o", None),
        ("claude-sonnet-4-5", "anthropic"),
        ("gemini-2.5-pro", "google"),
    ]:
        together = tt.price(a + b, model, provider)
        apart = tt.price(a, model, provider) + tt.price(b, model, provider)
        assert together.total == apart.total
        assert together.components == apart.components


def test_sum_status_is_the_least_certain() -> None:
    complete = tt.Usage(1, 1)
    assert (complete + tt.Usage(1, 1, status=tt.UsageStatus.PARTIAL)).status is tt.UsageStatus.PARTIAL
    assert (tt.Usage.unknown("no usage") + complete).status is tt.UsageStatus.UNKNOWN
    assert (tt.Usage.unknown("no usage") + complete).reason == "no usage"


def test_unknown_usage_counts_a_request() -> None:
    unknown = tt.Usage.unknown("stream cut")
    assert unknown.requests == 1 and unknown.status is tt.UsageStatus.UNKNOWN


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_tokens": -1}, "input_tokens must be a non-negative int, got -1"),
        ({"input_tokens": None}, "input_tokens must be a non-negative int, got None"),
        ({"output_tokens": "12"}, "output_tokens must be a non-negative int, got '12'"),
        ({"output_tokens": 1.5}, "output_tokens must be a non-negative int, got 1.5"),
        ({"output_tokens": True}, "got True"),
        (
            {"input_tokens": 10, "cache_read_tokens": 11},
            r"cache_read_tokens \(11\) cannot exceed input_tokens \(10\)",
        ),
        ({"output_tokens": 5, "reasoning_tokens": 6}, r"reasoning_tokens \(6\) cannot exceed output_tokens"),
        ({"input_tokens": 10, "cache_write_tokens": 4, "cache_write_1h_tokens": 5}, "cache_write_1h_tokens"),
        (
            {"input_tokens": 10, "cache_read_tokens": 6, "cache_write_tokens": 6},
            r"cannot exceed input_tokens \(10\)",
        ),
        ({"input_tokens": 10, "cache_read_tokens": 6, "input_audio_tokens": 6}, "media input counts"),
        ({"status": "great"}, "status must be one of"),
        ({"reason": 3}, "reason must be a str"),
    ],
)
def test_bad_values_raise_a_clear_typed_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(tt.InvalidUsageError, match=message) as info:
        tt.Usage(**kwargs)
    assert isinstance(info.value, ValueError)


def test_status_accepts_its_string_value() -> None:
    assert tt.Usage(status="estimated").status is tt.UsageStatus.ESTIMATED  # type: ignore[arg-type]


def test_as_dict_is_json_ready() -> None:
    data = tt.Usage(3, 4, cache_read_tokens=1).as_dict()
    assert data["input_tokens"] == 3 and data["cache_read_tokens"] == 1 and data["status"] == "complete"


def test_cost_decimals_are_exact_and_plain() -> None:
    cost = tt.price(tt.Usage(1, 0), "gpt-4o-mini")
    assert cost.total == Decimal("0.00000015")
    assert cost.total_units == 150_000_000_000_000_000


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.integers(min_value=-3, max_value=40) | st.sampled_from([True, 2**70]),
        min_size=len(TOKEN_FIELDS),
        max_size=len(TOKEN_FIELDS),
    )
)
def test_the_fast_check_agrees_with_the_full_validation(counts: list[int]) -> None:
    """The generated straight-line check accepts exactly the exact-int usages the full check accepts."""
    from tokentrail._types import _plainly_valid

    usage = object.__new__(Usage)
    for name, value in zip(TOKEN_FIELDS, counts, strict=True):
        object.__setattr__(usage, name, value)
    object.__setattr__(usage, "status", UsageStatus.COMPLETE)
    object.__setattr__(usage, "reason", None)
    try:
        usage._validate()
        valid = all(type(value) is int for value in counts)
    except InvalidUsageError:
        valid = False
    assert _plainly_valid(usage) is valid


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.sampled_from([0, 0, 0, 1, 7, 40])
        | st.integers(min_value=-3, max_value=40)
        | st.sampled_from([True, 2**70]),
        min_size=len(TOKEN_FIELDS),
        max_size=len(TOKEN_FIELDS),
    ),
    st.booleans(),
)
def test_construction_accepts_exactly_what_the_full_validation_accepts(
    counts: list[int], rare_zero: bool
) -> None:
    """The generated __init__ (its branch for calls without rare units too) agrees with `_validate`."""
    from tokentrail._types import RARE_FIELDS

    values = dict(zip(TOKEN_FIELDS, counts, strict=True))
    if rare_zero:
        values |= dict.fromkeys(RARE_FIELDS, 0)
    usage = object.__new__(Usage)
    for name, value in values.items():
        object.__setattr__(usage, name, value)
    object.__setattr__(usage, "status", UsageStatus.COMPLETE)
    object.__setattr__(usage, "reason", None)
    try:
        usage._validate()
        expected = None
    except InvalidUsageError as exc:
        expected = str(exc)
    try:
        built = Usage(**values)
    except InvalidUsageError as exc:
        assert str(exc) == expected
    else:
        assert expected is None
        assert all(getattr(built, name) == value for name, value in values.items())
        assert built._rare_units == any(values[name] for name in RARE_FIELDS)


def test_every_unit_adds_and_stays_consistent() -> None:
    a = tt.Usage(
        100,
        50,
        cache_read_tokens=40,
        input_video_tokens=30,
        cache_video_read_tokens=20,
        output_citation_tokens=10,
        audio_ms=9000,
        input_audio_ms=4000,
        output_audio_ms=5000,
        input_document_pages=3,
        input_annotated_document_pages=2,
        storage_searches=1,
    )
    total = a + a
    assert (total.cache_video_read_tokens, total.audio_ms, total.input_annotated_document_pages) == (
        40,
        18000,
        4,
    )
    assert total.as_dict()["output_citation_tokens"] == 20 and total._rare_units
    assert not tt.Usage(1, 1)._rare_units and (tt.Usage(1, 1) + tt.Usage(1, 1))._rare_units is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {
                "input_tokens": 5,
                "cache_read_tokens": 5,
                "input_video_tokens": 3,
                "cache_video_read_tokens": 4,
            },
            r"cache_video_read_tokens \(4\) cannot exceed input_video_tokens \(3\)",
        ),
        (
            {"output_tokens": 5, "reasoning_tokens": 3, "output_citation_tokens": 3},
            r"reasoning, citation and media output counts together \(6\) cannot exceed output_tokens \(5\)",
        ),
        (
            {"audio_ms": 10, "input_audio_ms": 6, "output_audio_ms": 5},
            r"input_audio_ms \+ output_audio_ms \(11\) cannot exceed audio_ms \(10\)",
        ),
        ({"input_audio_ms": 1}, r"input_audio_ms \(1\) cannot exceed audio_ms \(0\)"),
        ({"input_document_pages": 1, "input_annotated_document_pages": 2}, "input_annotated_document_pages"),
        ({"storage_searches": -1}, "storage_searches must be a non-negative int, got -1"),
        ({"input_characters": 1.0}, "input_characters must be a non-negative int, got 1.0"),
    ],
)
def test_bad_counts_of_other_units_raise_a_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(tt.InvalidUsageError, match=message):
        tt.Usage(**kwargs)
