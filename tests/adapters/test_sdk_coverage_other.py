"""The coverage guard for google-genai, cohere, mistralai, ollama and boto3 bedrock-runtime: every public
method (boto3: operation) of the installed SDK whose response carries usage is either tracked by
`instrument()` or on its table's reviewed `NOT_TRACKED` list. A new billable method fails this test."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

TABLES = {
    "google.genai": "tokentrail.adapters._instrument_google",
    "cohere": "tokentrail.adapters._instrument_cohere",
    "mistralai.client": "tokentrail.adapters._instrument_mistral",
    "ollama": "tokentrail.adapters._instrument_ollama",
    "botocore": "tokentrail.adapters._instrument_bedrock",
}


def installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ImportError:
        return False


@pytest.mark.parametrize("package", sorted(TABLES))
def test_every_usage_bearing_method_is_tracked_or_reviewed(package: str) -> None:
    if not installed(package):
        pytest.skip(f"{package} is not installed")
    table = importlib.import_module(TABLES[package])
    surface = set(table.surface())
    assert surface, "the walk found no usage-bearing method: the rule no longer sees the SDK"
    assert surface - table.tracked() - set(table.NOT_TRACKED) == set()


@pytest.mark.parametrize("package", sorted(TABLES))
def test_nothing_is_both_tracked_and_declared_untracked(package: str) -> None:
    if not installed(package):
        pytest.skip(f"{package} is not installed")
    table = importlib.import_module(TABLES[package])
    assert table.tracked() & set(table.NOT_TRACKED) == set()
    assert all(reason.strip() for reason in table.NOT_TRACKED.values())


def test_the_walk_sees_the_embedding_methods() -> None:
    """The rule finds what this work added (a walk that found nothing would pass the guard vacuously)."""
    if not installed("google.genai") or not installed("cohere"):
        pytest.skip("google-genai or cohere is not installed")
    google = importlib.import_module(TABLES["google.genai"])
    cohere = importlib.import_module(TABLES["cohere"])
    assert {"Models.embed_content", "AsyncModels.embed_content"} <= set(google.surface()) & google.tracked()
    assert {"V2Client.embed", "V2Client.rerank"} <= set(cohere.surface()) & cohere.tracked()
