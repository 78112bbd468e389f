"""Gateway tests: the real gateway served by uvicorn on a free port, in front of the mock LLM server (or a
scripted upstream whose every chunk a test releases), driven by real clients over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import uvicorn

from tokentrail.gateway import Gateway, GatewayConfig, parse_upstream
from tokentrail.testing.mock_llm import MockLLMServer

ENV_KEYS = {"TOKENTRAIL_UPSTREAM_OPENAI_KEY": "sk-real-openai-0123456789abcdef"}


class Running:
    """A gateway served in a background thread; `url` is its base."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            gateway,
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            lifespan="on",
            timeout_graceful_shutdown=30,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self._socket]))

    def start(self) -> Running:
        self._thread.start()
        started = threading.Event()

        def check() -> None:
            while not self.server.started and self._thread.is_alive():
                self.server_started_wait()
            started.set()

        check()
        if not self.server.started:
            raise RuntimeError("the gateway did not start")
        return self

    def server_started_wait(self) -> None:
        self._thread.join(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(60)


@contextlib.contextmanager
def serve(gateway: Gateway) -> Iterator[Running]:
    running = Running(gateway).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def mock() -> Iterator[MockLLMServer]:
    with MockLLMServer() as server:
        yield server


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def upstreams(base: str, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> dict[str, object]:
    specs = [f"openai={base}", f"anthropic={base}", f"google={base}", *extra]
    return {u.name: u for u in (parse_upstream(s, env if env is not None else ENV_KEYS) for s in specs)}


def gateway_config(base: str, store: str, **options: object) -> GatewayConfig:
    env = options.pop("env", None)
    extra = options.pop("extra", ())
    return GatewayConfig(upstreams(base, env, extra), store=store, **options)  # type: ignore[arg-type]


@pytest.fixture
def gateway(mock: MockLLMServer, ledger: str) -> Iterator[Running]:
    with serve(Gateway(gateway_config(mock.base, ledger))) as running:
        yield running
