"""An ASGI app served by uvicorn on a free loopback port in a background thread, for tests that drive it
with real clients over TCP (the gateway, the OTLP ingest endpoint).

    with Served(app) as served:                 # or Served(app).start() … served.stop()
        httpx.get(served.url + "/healthz")

Options go to `uvicorn.Config` (lifespan is off unless asked for).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest

pytest.importorskip("uvicorn")
import uvicorn

__all__ = ["Served", "serve"]


class Served:
    """An ASGI app served by uvicorn in a background thread; `url` is its base."""

    def __init__(self, app: Any, *, name: str = "asgi", **config: Any) -> None:
        self.app = app
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (else a response's
        # body waits for the client's delayed ACK of its headers: ~40 ms a keep-alive request)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port: int = sock.getsockname()[1]
        self._socket = sock
        options: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "off", **config}
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self.server.serve(sockets=[self._socket]))

    def start(self) -> Served:
        self._thread.start()
        while not self.server.started:  # start-up, not a timing assertion
            self._thread.join(0.01)
            if not self._thread.is_alive():
                raise RuntimeError(f"{self._thread.name}: the server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(60)

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


serve = Served  # `with serve(app) as served:`
