"""`import tokentrail` stays light: no price catalog, no SDK, no terminal UI until they are used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "genai_prices",
    "pydantic",
    "rich",
    "typer",
    "tiktoken",
    "openai",
    "anthropic",
    "tokentrail.pricing.index",
)


def test_import_loads_nothing_heavy() -> None:
    code = f"import sys, tokentrail; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pricing_never_imports_genai_prices() -> None:
    code = "import sys, tokentrail as tt; tt.price(tt.Usage(1, 1), 'gpt-4o'); print('genai_prices' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_public_api_is_listed() -> None:
    import tokentrail

    assert set(tokentrail.__all__) <= set(dir(tokentrail))
    for name in ("Usage", "Cost", "UsageStatus", "price", "UnknownModelError", "InvalidUsageError"):
        assert name in tokentrail.__all__
