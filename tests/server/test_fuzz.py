"""Schemathesis fuzzes every documented endpoint from the app's own OpenAPI schema: no 5xx, responses conform.

The schema is loaded at import (schemathesis parametrizes at collection), so the seeded ledger is built here
in its own temporary directory rather than by the session fixture.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection

import tokentrail as tt
from tests.server.conftest import seed
from tokentrail.server import create_app

_DIR = Path(tempfile.mkdtemp(prefix="tokentrail-fuzz-"))
atexit.register(shutil.rmtree, _DIR, True)
_URL = f"sqlite:///{_DIR / 'ledger.db'}"
_writer = tt.Tracker(store=_URL)
seed(_writer)
for _step in range(3):  # a session, so /api/sessions and /api/sessions/{session} answer with data too
    _writer.record(
        tt.Usage(100 * (_step + 1), 10), model="gpt-4o", session="fuzz-run", agent="a", duration_ms=5.0
    )
_writer.store.close()  # type: ignore[attr-defined]

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_URL))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_and_matches_its_schema(case: schemathesis.Case) -> None:
    # negative_data_rejection is left out: a query string has no types, so the "boolean" it sends as a
    # wrong-typed scope filter (`?tool=true`) is the valid text "true" on the wire; every other built-in
    # check runs (no 5xx, status codes, content types, response schemas, valid data accepted).
    case.call_and_validate(excluded_checks=[negative_data_rejection])


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx_even_to_schema_violating_requests(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])


def test_the_schema_documents_the_session_and_budget_endpoints() -> None:
    paths = set(schema.raw_schema["paths"])
    assert {"/api/sessions", "/api/sessions/{session}", "/api/pulse", "/api/budgets"} <= paths
