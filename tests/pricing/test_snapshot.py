"""The shipped price snapshot is exactly what the pinned genai-prices builds (run `make prices` after a bump)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import genai_prices

import tokentrail
from tokentrail.pricing.catalog import Catalog
from tokentrail.pricing.genai import build_snapshot

SNAPSHOT = Path(tokentrail.__file__).parent / "_data" / "prices.json.gz"


def test_snapshot_matches_the_pinned_genai_prices() -> None:
    shipped = json.loads(gzip.decompress(SNAPSHOT.read_bytes()))
    assert shipped["version"] == genai_prices.__version__, (
        "run `make prices` after changing the genai-prices pin"
    )
    assert shipped == json.loads(json.dumps(build_snapshot()))


def test_catalog_built_from_installed_package_prices_the_same() -> None:
    usage = tokentrail.Usage(123_456, 7_890, cache_read_tokens=1_000)
    live = Catalog.from_genai_prices()
    assert live.price(usage, "claude-sonnet-4-5").total == tokentrail.price(usage, "claude-sonnet-4-5").total
    assert live.source == f"genai-prices {genai_prices.__version__}"
