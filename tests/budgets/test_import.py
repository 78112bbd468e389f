"""`import tokentrail.budgets` stays light: Redis, Postgres, FastAPI and the CLI load only when used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "redis",
    "psycopg",
    "psycopg_pool",
    "fastapi",
    "starlette",
    "typer",
    "rich",
    "tokentrail.pricing.index",
)


def test_importing_budgets_loads_no_optional_dependency() -> None:
    code = f"import sys, tokentrail, tokentrail.budgets; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_memory_manager_needs_no_optional_dependency() -> None:
    code = (
        "import sys, tokentrail.budgets as b; m = b.BudgetManager([b.Budget(limit_usd=1)]);"
        "m.reserve('gpt-4o-mini', 'openai', 10, 10, scope={}).release();"
        f"print([m for m in {HEAVY[:-1]!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
