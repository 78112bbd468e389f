"""HTTP 402 with a JSON body when a request's budget is used up (FastAPI TestClient, no network)."""

from __future__ import annotations

from decimal import Decimal

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

import tokentrail as tt
from tests.budgets.conftest import FakeClock
from tokentrail.budgets import Budget, BudgetManager
from tokentrail.budgets.fastapi import BudgetMiddleware, header_scope, install_budget_handler, require_budget

MODEL = "gpt-4o-mini"


def spend(manager: BudgetManager, user: str) -> None:
    usage = tt.Usage(input_tokens=10_000, output_tokens=30_000)
    manager.reserve(MODEL, "openai", 10_000, 30_000, scope={"user": user}).settle(usage)


def make_manager() -> BudgetManager:
    return BudgetManager(
        [Budget(limit_usd="0.0195", scope={"user": "*"}, name="per-user")], clock=FakeClock()
    )


def test_the_middleware_answers_402_with_the_budget_numbers() -> None:
    manager = make_manager()
    app = FastAPI()
    app.add_middleware(BudgetMiddleware, manager=manager, scope=header_scope(user="x-user"))

    @app.get("/answer")
    def answer() -> dict[str, str]:
        return {"ok": "yes"}

    client = TestClient(app)
    assert client.get("/answer", headers={"x-user": "alice"}).status_code == 200
    spend(manager, "alice")
    refused = client.get("/answer", headers={"x-user": "alice"})
    assert refused.status_code == 402
    body = refused.json()
    assert body["budget"] == "per-user"
    assert body["scope"] == {"user": "alice"}
    assert (body["spent"], body["limit"], body["remaining"]) == ("0.0195", "0.0195", "0")
    assert body["resets_at"] == "2031-03-05T00:00:00+00:00"
    assert refused.headers["x-budget-resets-at"] == body["resets_at"]
    assert client.get("/answer", headers={"x-user": "bob"}).status_code == 200


def test_a_refused_reservation_inside_the_endpoint_becomes_402() -> None:
    manager = BudgetManager([Budget(limit_usd="0.01", scope={"user": "*"})], clock=FakeClock())
    app = FastAPI()
    app.add_middleware(BudgetMiddleware, manager=manager, scope=header_scope(user="x-user"))

    @app.post("/research")
    def research() -> dict[str, str]:
        with manager.reserve(MODEL, "openai", 10_000, 30_000):  # scope comes from the middleware
            return {"ok": "yes"}

    response = TestClient(app).post("/research", headers={"x-user": "carol"})
    assert response.status_code == 402
    assert response.json()["requested"] == str(Decimal("0.0195"))
    assert response.json()["scope"] == {"user": "carol"}


def test_the_dependency_answers_402_per_route() -> None:
    manager = make_manager()
    app = FastAPI()
    guard = require_budget(manager, header_scope(user="x-user"))

    @app.get("/guarded", dependencies=[Depends(guard)])
    def guarded() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/free")
    def free() -> dict[str, str]:
        return {"ok": "yes"}

    spend(manager, "dave")
    client = TestClient(app)
    refused = client.get("/guarded", headers={"x-user": "dave"})
    assert refused.status_code == 402
    assert refused.json()["detail"]["budget"] == "per-user"
    assert client.get("/free", headers={"x-user": "dave"}).status_code == 200


def test_the_exception_handler_gives_a_flat_body() -> None:
    manager = BudgetManager([Budget(limit_usd="0.01")], clock=FakeClock())
    app = FastAPI()
    install_budget_handler(app)

    @app.get("/call")
    def call() -> dict[str, str]:
        manager.reserve(MODEL, "openai", 10_000, 30_000, scope={})
        return {"ok": "yes"}

    response = TestClient(app).get("/call")
    assert response.status_code == 402
    assert response.json()["error"] == "budget_exceeded"
