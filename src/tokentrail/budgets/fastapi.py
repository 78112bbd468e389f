"""FastAPI integration: answer HTTP 402 Payment Required, with a JSON body, when a request's budget is
exhausted. FastAPI and Starlette are imported when these helpers are used, never by `import tokentrail`.

    app = FastAPI()
    app.add_middleware(BudgetMiddleware, manager=manager, scope=header_scope(user="x-user-id"))

    # or per route, as a dependency (402 body under "detail", FastAPI's convention):
    @app.post("/research", dependencies=[Depends(require_budget(manager, header_scope(user="x-user-id")))])

The middleware also turns a `BudgetExceeded` raised inside an endpoint (a refused reservation) into a
402 with a flat body: budget, window, scope, spent, reserved, limit, requested, remaining, resets_at.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from tokentrail.errors import BudgetExceeded

if TYPE_CHECKING:
    from starlette.requests import Request

    from tokentrail.budgets.manager import BudgetManager

__all__ = [
    "BudgetMiddleware",
    "budget_exceeded_response",
    "header_scope",
    "install_budget_handler",
    "require_budget",
]

ScopeFunction = Callable[["Request"], "Mapping[str, Any] | None"]
_SCOPE_FIELDS = ("agent", "session", "user", "tool")
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def header_scope(**headers: str) -> ScopeFunction:
    """A scope function reading scope values from request headers: `header_scope(user="x-user-id")`."""

    def scope_from_headers(request: Request) -> dict[str, Any]:
        return {name: request.headers.get(header) for name, header in headers.items()}

    return scope_from_headers


def budget_exceeded_response(exc: BudgetExceeded) -> Any:
    """The 402 JSON response for a refusal (a `starlette.responses.JSONResponse`)."""
    from starlette.responses import JSONResponse

    headers = {}
    if exc.resets_at is not None:
        headers["X-Budget-Resets-At"] = exc.resets_at.isoformat()
    return JSONResponse(exc.as_dict(), status_code=402, headers=headers)


async def _check(manager: BudgetManager, scope: Mapping[str, Any] | None) -> None:
    if manager.backend.blocking:
        await asyncio.to_thread(manager.check, scope or {})
    else:
        manager.check(scope or {})


def require_budget(
    manager: BudgetManager, scope: ScopeFunction | None = None
) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency refusing the request with 402 when a blocking budget of its scope is used up."""
    from fastapi import HTTPException
    from fastapi import Request as FastAPIRequest

    async def budget_dependency(request: Request) -> None:
        try:
            await _check(manager, scope(request) if scope is not None else None)
        except BudgetExceeded as exc:
            raise HTTPException(status_code=402, detail=exc.as_dict()) from None

    # FastAPI reads the annotation to inject the request; this module's annotations are strings.
    budget_dependency.__annotations__["request"] = FastAPIRequest
    return budget_dependency


def install_budget_handler(app: Any) -> None:
    """Make `BudgetExceeded` raised anywhere in `app`'s endpoints answer 402 with a flat JSON body."""

    async def handle(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, BudgetExceeded)
        return budget_exceeded_response(exc)

    app.add_exception_handler(BudgetExceeded, handle)


class BudgetMiddleware:
    """ASGI middleware: 402 before the endpoint runs when the request's budget is used up, and 402 for a
    `BudgetExceeded` the endpoint raises before it starts its response.

    `scope(request)` gives the request's budget scope (e.g. `header_scope(user="x-user-id")`); with
    `apply_scope` the agent/session/user/tool values also become the `tokentrail.scope()` of the request,
    so reservations made by the endpoint count against the same budgets. `paths` limits it to URL prefixes.
    """

    def __init__(
        self,
        app: Callable[[Message, Receive, Send], Awaitable[None]],
        manager: BudgetManager,
        scope: ScopeFunction | None = None,
        *,
        apply_scope: bool = True,
        paths: tuple[str, ...] | None = None,
    ) -> None:
        self.app = app
        self.manager = manager
        self.scope = scope
        self.apply_scope = apply_scope
        self.paths = paths

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            self.paths is not None and not any(scope["path"].startswith(p) for p in self.paths)
        ):
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        budget_scope = self.scope(Request(scope, receive)) if self.scope is not None else None
        try:
            await _check(self.manager, budget_scope)
        except BudgetExceeded as exc:
            await budget_exceeded_response(exc)(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            if self.apply_scope and budget_scope:
                from tokentrail.scope import scope as attribution_scope

                values = {k: v for k, v in budget_scope.items() if k in _SCOPE_FIELDS and isinstance(v, str)}
                with attribution_scope(**values):
                    await self.app(scope, receive, send_tracking)
            else:
                await self.app(scope, receive, send_tracking)
        except BudgetExceeded as exc:
            if started:
                raise
            await budget_exceeded_response(exc)(scope, receive, send)
