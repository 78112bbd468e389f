"""The shipped price snapshot is exactly what the pinned genai-prices builds (run `make prices` after a bump)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import genai_prices

import tokentrail
from tokentrail.pricing.catalog import Catalog
from tokentrail.pricing.genai import (
    build_snapshot,
    dumps_published,
    loads_published,
    published_providers,
    snapshot_from_published,
)

SNAPSHOT = Path(tokentrail.__file__).parent / "_data" / "prices.json.gz"


def test_snapshot_matches_the_pinned_genai_prices() -> None:
    shipped = json.loads(gzip.decompress(SNAPSHOT.read_bytes()))
    assert shipped["version"] == genai_prices.__version__, (
        "run `make prices` after changing the genai-prices pin"
    )
    assert shipped.pop("as_of"), "the snapshot says when it was built (catalog selection compares it)"
    assert shipped == json.loads(json.dumps(build_snapshot()))


def test_published_format_dump_reads_back_as_the_shipped_snapshot() -> None:
    """One path: the package dumped to genai-prices' published JSON and converted as a fetched catalog
    would be gives the shipped snapshot, price for price."""
    shipped = json.loads(gzip.decompress(SNAPSHOT.read_bytes()))
    shipped.pop("as_of")
    published = loads_published(dumps_published(published_providers()))
    rebuilt = snapshot_from_published(
        published, units=shipped["units"], source="genai-prices", version=genai_prices.__version__
    )
    assert rebuilt == shipped


def test_catalog_built_from_installed_package_prices_the_same() -> None:
    usage = tokentrail.Usage(123_456, 7_890, cache_read_tokens=1_000)
    live = Catalog.from_genai_prices()
    assert live.price(usage, "claude-sonnet-4-5").total == tokentrail.price(usage, "claude-sonnet-4-5").total
    assert live.source == f"genai-prices {genai_prices.__version__}"
