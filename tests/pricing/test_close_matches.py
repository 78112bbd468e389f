"""`tokentrail prices NAME` for an unknown name lists close catalog names best first."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tokentrail.cli import app
from tokentrail.pricing.catalog import Catalog
from tokentrail.pricing.names import rank_close


@pytest.mark.parametrize(
    ("typed", "first"),
    [
        ("gpt-4o-typo", "gpt-4o"),  # a real name with a suffix: the name it extends comes first
        ("claude-sonet-4-5", "claude-sonnet-4-5"),
        ("gemini-2.5-flsh", "gemini-2.5-flash"),
        ("gpt4o", "gpt-4o"),
        ("o3-mini-hgh", "o3-mini"),
    ],
)
def test_the_intended_model_comes_first(typed: str, first: str) -> None:
    assert Catalog.from_snapshot().close_matches(typed)[0] == first


def test_the_cli_names_the_best_match_first() -> None:
    result = CliRunner().invoke(app, ["prices", "gpt-4o-typo"], env={"COLUMNS": "200"})
    assert "Close matches: gpt-4o, " in result.output


def test_ranking_rules() -> None:
    names = ["gpt-4o-mini", "gpt-4o", "gpt-5.4-pro", "gpt-4"]
    # the name the query extends at a separator first, then by the prefix shared, then similarity
    assert rank_close("gpt-4o-typo", names) == ["gpt-4o", "gpt-4o-mini", "gpt-4", "gpt-5.4-pro"]
    assert rank_close("zzzz", names) == []  # nothing close: nothing suggested
    assert rank_close("gpt-4o", names)[0] != "gpt-4o"  # the name itself is not its own suggestion
    assert len(rank_close("gpt", ["gpt-1", "gpt-2", "gpt-3"], limit=2)) == 2
