"""Gateway tests: the real gateway served by uvicorn on a free port, in front of the mock LLM server (or a
scripted upstream whose every chunk a test releases), driven by real clients over TCP."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("aiohttp")
pytest.importorskip("httpx")

from tests.asgi_server import Served
from tokentrail.gateway import Gateway, GatewayConfig, parse_upstream
from tokentrail.testing.mock_llm import MockLLMServer

ENV_KEYS = {
    "TOKENTRAIL_UPSTREAM_OPENAI_KEY": "sk-real-openai-0123456789abcdef",
    "TOKENTRAIL_UPSTREAM_ANTHROPIC_KEY": "sk-ant-real-0123456789abcdef",
}


class Running(Served):
    """A gateway served in a background thread (with its lifespan: start-up and a graceful shutdown)."""

    def __init__(self, gateway: Gateway, **options: Any) -> None:
        super().__init__(
            gateway,
            name="gateway",
            lifespan="on",
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=30,
            **options,
        )
        self.gateway = gateway

    def start(self) -> Running:
        super().start()
        return self

    def __enter__(self) -> Running:
        return self.start()


serve = Running  # `with serve(gateway) as running:`


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


class Step:
    """One piece of a scripted answer: wait for `gate` (set by the test), then send `data`."""

    def __init__(self, data: bytes, gate: threading.Event | None = None) -> None:
        self.data = data
        self.gate = gate
        self.sent = threading.Event()


class ScriptedUpstream:
    """An upstream whose answer a test scripts piece by piece: headers wait for `headers_gate`, each body
    step for its own gate, so a test can check what the client saw before the upstream sent the rest."""

    def __init__(self) -> None:
        self.status = 200
        self.content_type = "text/event-stream"
        self.extra_headers: list[tuple[str, str]] = []
        self.steps: list[Step] = []
        self.headers_gate: threading.Event | None = None
        self.requests: list[dict[str, Any]] = []
        self.finished = threading.Event()
        self.hung_up = threading.Event()  # the gateway closed a connection while its answer was held
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                upstream.requests.append(
                    {
                        "path": self.path,
                        "body": self.rfile.read(length),
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }
                )
                if upstream.headers_gate is not None:
                    while not upstream.headers_gate.wait(0.02):
                        if _peer_closed(self.connection):
                            upstream.hung_up.set()
                            return
                try:
                    self.send_response(upstream.status)
                    self.send_header("Content-Type", upstream.content_type)
                    self.send_header("Transfer-Encoding", "chunked")
                    for name, value in upstream.extra_headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.flush()
                    for step in upstream.steps:
                        if step.gate is not None:
                            step.gate.wait(30)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(step.data), step.data))
                        self.wfile.flush()
                        step.sent.set()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:  # the gateway hung up
                    self.close_connection = True
                finally:
                    upstream.finished.set()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def answer_json(self, body: bytes, *headers: tuple[str, str]) -> None:
        """Answer every request with `body` as one JSON chunk (and the extra `headers`)."""
        self.content_type = "application/json"
        self.extra_headers = list(headers)
        self.steps = [Step(body)]

    def __enter__(self) -> ScriptedUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for step in self.steps:  # let a handler still waiting finish
            if step.gate is not None:
                step.gate.set()
        if self.headers_gate is not None:
            self.headers_gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _peer_closed(connection: socket.socket) -> bool:
    """Whether the other end closed `connection` (readable, and at its end)."""
    readable, _, _ = select.select([connection], [], [], 0)
    return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


def recorded(gateway: Gateway, count: int = 1) -> threading.Event:
    """An event set once the gateway's tracker has recorded `count` more calls."""
    done = threading.Event()
    seen = [0]

    def sink(record: object) -> None:
        seen[0] += 1
        if seen[0] >= count:
            done.set()

    gateway.tracker.add_sink(sink)
    return done


def eventually(condition: Callable[[], bool], within: float = 30.0) -> bool:
    """Whether `condition` holds within `within` seconds (a deadline for a background effect, polled)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def closed_port() -> int:
    """A local port nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port
