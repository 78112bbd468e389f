"""Bearer-token guard for every request: header, or `?token=` once in the browser, then a cookie.

Tokens are compared in constant time (`hmac.compare_digest`). The cookie holds an HMAC of the token,
not the token itself, and is HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["COOKIE_NAME", "TokenAuth"]

COOKIE_NAME = "tokentrail_session"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenAuth:
    """ASGI middleware: a request without the right token gets 401; with it, the wrapped app answers."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("TokenAuth needs a non-empty token")
        self.app = app
        self._token = token.encode()
        self._cookie = hmac.new(self._token, b"tokentrail-dashboard", hashlib.sha256).hexdigest().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        if self._bearer_ok(headers.get(b"authorization")) or self._cookie_ok(headers.get(b"cookie")):
            await self.app(scope, receive, send)
            return
        if self._query_ok(scope.get("query_string", b"")):
            await self.app(scope, receive, self._with_cookie(send))
            return
        await _refuse(send)

    def _bearer_ok(self, header: bytes | None) -> bool:
        if header is None:
            return False
        scheme, _, value = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self._token)

    def _cookie_ok(self, header: bytes | None) -> bool:
        if header is None:
            return False
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(header.decode("latin-1"))
        except Exception:  # a malformed cookie header is simply not a credential
            return False
        morsel = cookies.get(COOKIE_NAME)
        return morsel is not None and hmac.compare_digest(morsel.value.encode("latin-1"), self._cookie)

    def _query_ok(self, query_string: bytes) -> bool:
        given = [value for key, value in parse_qsl(query_string.decode("latin-1")) if key == "token"]
        return len(given) == 1 and hmac.compare_digest(given[0].encode("latin-1"), self._token)

    def _with_cookie(self, send: Send) -> Send:
        cookie = f"{COOKIE_NAME}={self._cookie.decode()}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
            await send(message)

        return send_with_cookie


async def _refuse(send: Send) -> None:
    body = b'{"detail":"missing or wrong token"}'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
