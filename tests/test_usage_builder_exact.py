"""`usage_builder(names, exact_counts=True)`: for callers that pass only exact non-negative ints (the compiled
usage readers check every count they read), the builder checks only the subset rules, and still builds
exactly what `Usage(...)` builds and refuses exactly what it refuses, with the same message."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_usage_builder import built_or_error, field_sets
from tokentrail import Usage
from tokentrail._types import usage_builder

# Small counts, so that subset rules hold sometimes and fail sometimes; exact non-negative ints only.
exact_counts = st.integers(min_value=0, max_value=6) | st.integers(min_value=0, max_value=2**63 - 1)


@settings(max_examples=400, deadline=None)
@given(names=field_sets, data=st.data())
def test_the_exact_count_builder_builds_and_refuses_what_usage_does(
    names: list[str], data: st.DataObject
) -> None:
    values = [data.draw(exact_counts, label=name) for name in names]
    exact = built_or_error(usage_builder(names, exact_counts=True), *values)
    # the checking builder builds and refuses what Usage(...) does (tests/test_usage_builder.py)
    checked = built_or_error(usage_builder(names), *values)
    assert exact == checked and repr(exact) == repr(checked)
    if isinstance(exact, Usage):
        assert type(exact) is Usage and isinstance(checked, Usage) and hash(exact) == hash(checked)
        assert exact._rare_units == checked._rare_units


def test_a_broken_subset_rule_is_refused_with_usages_message() -> None:
    build = usage_builder(["input_tokens", "cache_read_tokens", "input_audio_tokens"], exact_counts=True)
    assert build(10, 4, 5) == Usage(10, cache_read_tokens=4, input_audio_tokens=5)
    assert built_or_error(build, 10, 6, 11) == (
        "error: input_audio_tokens (11) cannot exceed input_tokens (10)"
    )
    assert built_or_error(build, 10, 6, 6) == built_or_error(
        Usage, input_tokens=10, cache_read_tokens=6, input_audio_tokens=6
    )
    assert str(built_or_error(build, 10, 6, 6)).startswith(
        "error: cache and media input counts together (12)"
    )
