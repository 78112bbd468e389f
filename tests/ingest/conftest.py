"""OTLP ingest tests: the endpoint served by uvicorn on a free port, driven by real exporters over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("uvicorn")
import uvicorn


class Served:
    """An ASGI app served by uvicorn in a background thread; `url` is its base."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="otlp", daemon=True)

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
                raise RuntimeError("the server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(60)


@contextlib.contextmanager
def serve(app: Any) -> Iterator[Served]:
    served = Served(app).start()
    try:
        yield served
    finally:
        served.stop()
