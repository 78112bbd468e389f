"""Write src/tokentrail/_data/prices.json.gz from the installed (pinned) genai-prices.

The package's providers are dumped to genai-prices' published JSON format and converted by the same code
that converts a catalog fetched by `tokentrail prices update` (`genai.snapshot_from_published`); the dump
is checked to read back through JSON unchanged. `as_of` (the day the snapshot was built) lets the catalog
selection tell whether an installed catalog is newer; it is kept when nothing else changed, so running
this again without a pin change rewrites the same bytes.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import genai_prices

from tokentrail.pricing.genai import (
    build_snapshot,
    dumps_published,
    loads_published,
    package_units,
    published_providers,
    snapshot_from_published,
)

TARGET = Path(__file__).resolve().parents[1] / "src" / "tokentrail" / "_data" / "prices.json.gz"


def main() -> None:
    snapshot = build_snapshot()
    published = snapshot_from_published(
        loads_published(dumps_published(published_providers())),
        units=package_units(),
        source="genai-prices",
        version=genai_prices.__version__,
    )
    if json.loads(json.dumps(published)) != json.loads(json.dumps(snapshot)):
        raise SystemExit("the published-format dump does not read back as the package's catalog")
    previous = json.loads(gzip.decompress(TARGET.read_bytes())) if TARGET.exists() else {}
    unchanged = {k: v for k, v in previous.items() if k != "as_of"} == json.loads(json.dumps(snapshot))
    snapshot["as_of"] = previous["as_of"] if unchanged and "as_of" in previous else _today()
    payload = json.dumps(snapshot, sort_keys=True, separators=(",", ":")).encode()
    TARGET.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
    models = sum(len(p["models"]) for p in snapshot["providers"])
    print(
        f"wrote {TARGET} ({TARGET.stat().st_size} bytes): genai-prices {snapshot['version']}, {models} models,"
        f" as of {snapshot['as_of']}"
    )


def _today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


if __name__ == "__main__":
    main()
