"""Write src/tokentrail/_data/prices.json.gz from the installed (pinned) genai-prices."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tokentrail.pricing.genai import build_snapshot

TARGET = Path(__file__).resolve().parents[1] / "src" / "tokentrail" / "_data" / "prices.json.gz"


def main() -> None:
    snapshot = build_snapshot()
    payload = json.dumps(snapshot, sort_keys=True, separators=(",", ":")).encode()
    TARGET.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
    models = sum(len(p["models"]) for p in snapshot["providers"])
    print(
        f"wrote {TARGET} ({TARGET.stat().st_size} bytes): genai-prices {snapshot['version']}, {models} models"
    )


if __name__ == "__main__":
    main()
