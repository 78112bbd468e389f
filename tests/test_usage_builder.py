"""`usage_builder`: the fast Usage constructor of the compiled usage readers builds exactly what `Usage(...)`
builds (equal, same hash and repr, same hidden `_rare_units` flag, frozen), and refuses exactly what it
refuses, with the same message."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokentrail import Usage, UsageStatus
from tokentrail._types import TOKEN_FIELDS, usage_builder
from tokentrail.errors import InvalidUsageError

# Small counts, so that subset rules hold sometimes and fail sometimes.
counts = st.integers(min_value=-1, max_value=6) | st.integers(min_value=0, max_value=2**63 - 1)
field_sets = st.lists(st.sampled_from(TOKEN_FIELDS), min_size=1, max_size=12, unique=True)


def built_or_error(build: object, *args: int, **kwargs: int) -> Usage | str:
    try:
        return build(*args, **kwargs)  # type: ignore[operator,no-any-return]
    except InvalidUsageError as exc:
        return f"error: {exc}"


@settings(max_examples=400, deadline=None)
@given(names=field_sets, data=st.data())
def test_the_builder_builds_and_refuses_what_usage_does(names: list[str], data: st.DataObject) -> None:
    values = [data.draw(counts, label=name) for name in names]
    ours = built_or_error(usage_builder(names), *values)
    theirs = built_or_error(Usage, **dict(zip(names, values, strict=True)))
    assert ours == theirs
    if isinstance(ours, Usage):
        assert isinstance(theirs, Usage)
        assert type(ours) is Usage and ours.status is UsageStatus.COMPLETE
        assert hash(ours) == hash(theirs) and repr(ours) == repr(theirs)
        assert ours._rare_units == theirs._rare_units


def test_a_built_usage_is_a_frozen_usage_like_any_other() -> None:
    build = usage_builder(["input_tokens", "output_tokens", "cache_read_tokens", "audio_ms"])
    usage = build(1200, 300, 1024, 2500)
    assert usage == Usage(1200, 300, 1024, audio_ms=2500) and usage._rare_units
    assert build(10, 2, 0, 0)._rare_units is False
    with pytest.raises(FrozenInstanceError):
        usage.input_tokens = 5  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(usage)) == usage
    assert copy.deepcopy(usage) == usage
    assert usage + Usage(1, 1) == Usage(1201, 301, 1024, audio_ms=2500, requests=2)


class Count(int):
    pass


def test_an_int_subclass_is_coerced_and_a_bool_refused_as_usage_does() -> None:
    build = usage_builder(["input_tokens", "output_tokens"])
    usage = build(Count(4), 3)
    assert usage == Usage(4, 3) and type(usage.input_tokens) is int
    assert built_or_error(build, True, 3) == built_or_error(Usage, True, 3)
    assert str(built_or_error(build, True, 3)).startswith("error: input_tokens must be a non-negative int")


@pytest.mark.parametrize("names", [["input_tokens", "input_tokens"], ["status"], ["no_such_count"]])
def test_only_distinct_count_fields_are_accepted(names: list[str]) -> None:
    with pytest.raises(ValueError, match="distinct count fields"):
        usage_builder(names)
