"""A local Gemini Live API server: the BidiGenerateContent WebSocket protocol, for the real google-genai client.

    with MockLiveServer() as server:
        client = genai.Client(api_key="test", http_options=server.http_options())
        server.queue(LiveTurnScript(text="Hi.", usage={"promptTokenCount": 12, "responseTokenCount": 3}))
        async with client.aio.live.connect(model="gemini-live-2.5-flash-preview") as session:
            await session.send_client_content(turns={"role": "user", "parts": [{"text": "Hello"}]})
            async for message in session.receive(): ...
        assert len(server.turns) == 1        # model turns served, counted at the server

The SDK connects to `wss://{base_url host}/ws/google.ai.generativelanguage.{version}.GenerativeService.
BidiGenerateContent` (google/genai/live.py, `AsyncLive.connect`, google-genai 3.6.1: the scheme of `base_url`
becomes `wss`), so the server speaks TLS with a certificate made when it starts; `http_options()` gives the
client that certificate to trust (`async_client_args={"ssl": ...}`, the context the SDK's WebSocket uses).

Messages, as https://ai.google.dev/api/live documents them (JSON text frames):
- client → `{"setup": {"model": ...}}` first; the server answers `{"setupComplete": {}}`;
- client → `{"clientContent": {"turns": [...], "turnComplete": true}}` (`send_client_content`; google-genai
  3.6.1 spells the key `client_content`, which proto3 JSON parsers accept too) or `{"toolResponse": {...}}`
  (`send_tool_response`): the server answers with the next queued turn (else a default
  one): `{"serverContent": {"modelTurn": {"role": "model", "parts": [{"text": ...}]}}}` per text chunk (a
  `toolCall` message instead when the turn calls tools), `{"serverContent": {"generationComplete": true}}`, then
  `{"serverContent": {"turnComplete": true}, "usageMetadata": {...}}` — or, with `usage_apart`,
  `turnComplete` alone followed by `{"usageMetadata": {...}}`; a tool-calling turn is one
  `{"toolCall": {"functionCalls": [...]}, "usageMetadata": {...}}` message ("Server messages may have a usageMetadata field
  but will otherwise include exactly one of the other fields", BidiGenerateContentServerMessage). The usage
  fields are the Live `UsageMetadata`'s: promptTokenCount, responseTokenCount, totalTokenCount, and the
  optional cachedContentTokenCount, toolUsePromptTokenCount, thoughtsTokenCount, *TokensDetails lists.
- `omit_usage` leaves the usage message out; `hold` stops the turn after its model content (no turnComplete,
  no usage), as a session closed mid-turn sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LiveTurnScript", "MockLiveServer", "live_usage"]

_PATHS = frozenset(
    f"/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
    for version in (
        "v1",
        "v1beta",
        "v1alpha",
    )  # the client's api_version (v1 by default with a custom base_url)
)


def live_usage(prompt: int, response: int, **more: Any) -> dict[str, Any]:
    """A Live `usageMetadata` object: text modality details, total = prompt + response + tool use + thoughts."""
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "responseTokenCount": response,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        "responseTokensDetails": [{"modality": "TEXT", "tokenCount": response}],
    }
    usage.update(more)
    usage["totalTokenCount"] = (
        prompt
        + response
        + int(usage.get("toolUsePromptTokenCount", 0))
        + int(usage.get("thoughtsTokenCount", 0))
    )
    return usage


@dataclass
class LiveTurnScript:
    """One model turn the server plays: its text (in `chunks` messages), or a tool call, and its usage."""

    text: str = "Hello from the mock Live API."
    usage: dict[str, Any] | None = None  # the usageMetadata sent (None: a count from the text)
    chunks: int = 2
    tool_call: dict[str, Any] | None = None  # {"name", "args"}: a toolCall message instead of text
    usage_apart: bool = False  # usage in its own message after turnComplete
    omit_usage: bool = False
    hold: bool = False  # stop after the model content: no turnComplete, no usage

    def messages(self, turn: int) -> list[dict[str, Any]]:
        usage = self.usage if self.usage is not None else live_usage(10, len(self.text) // 4 + 1)
        if (
            self.tool_call is not None
        ):  # the model's response is the call; the client answers with toolResponse
            call = {
                "id": f"call-{turn}",
                "name": self.tool_call["name"],
                "args": self.tool_call.get("args", {}),
            }
            message: dict[str, Any] = {"toolCall": {"functionCalls": [call]}}
            if not (self.omit_usage or self.hold):
                message["usageMetadata"] = usage
            return [message]
        size = max(1, -(-len(self.text) // max(1, self.chunks)))
        pieces = [self.text[i : i + size] for i in range(0, len(self.text), size)] or [""]
        content: list[dict[str, Any]] = [
            {"serverContent": {"modelTurn": {"role": "model", "parts": [{"text": p}]}}} for p in pieces
        ]
        content.append({"serverContent": {"generationComplete": True}})
        if self.hold:
            return content
        if self.omit_usage:
            return [*content, {"serverContent": {"turnComplete": True}}]
        if self.usage_apart:
            return [*content, {"serverContent": {"turnComplete": True}}, {"usageMetadata": usage}]
        return [*content, {"serverContent": {"turnComplete": True}, "usageMetadata": usage}]


@dataclass
class ServedTurn:
    """A turn the server played: the client message that asked for it and the usage it reported (or None)."""

    request: dict[str, Any]
    usage: dict[str, Any] | None


@dataclass
class MockLiveServer:
    """The Live API on 127.0.0.1 over TLS, in a thread of its own; `turns` counts the model turns served."""

    turns: list[ServedTurn] = field(default_factory=list)
    setups: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queued: deque[LiveTurnScript] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._certs = tempfile.TemporaryDirectory(prefix="tokentrail-live-")
        self._server_ssl, self.client_ssl = _tls(Path(self._certs.name))
        self.port = 0

    # -- control ------------------------------------------------------------------------------------------

    def queue(self, *turns: LiveTurnScript) -> None:
        """The next model turns, in order (a request with none queued gets a default turn)."""
        with self._lock:
            self._queued.extend(turns)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def http_options(self, **more: Any) -> Any:
        """`google.genai.types.HttpOptions` pointing the client's Live sessions at this server."""
        from google.genai import types

        return types.HttpOptions(base_url=self.base_url, async_client_args={"ssl": self.client_ssl}, **more)

    def __enter__(self) -> MockLiveServer:
        self._thread = threading.Thread(target=self._run, name="mock-live-api", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the mock Live API server did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)
        self._certs.cleanup()

    # -- the server ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._session, "127.0.0.1", 0, ssl=self._server_ssl) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _session(self, websocket: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        path = websocket.request.path
        self.paths.append(path)
        with contextlib.suppress(ConnectionClosed):
            setup = json.loads(await websocket.recv())
            if path not in _PATHS:  # refused after the setup message, as the API refuses a bad setup
                await websocket.close(1008, f"unknown method {path}")
                return
            self.setups.append(setup)
            await websocket.send(json.dumps({"setupComplete": {}}))
            async for raw in websocket:
                request = json.loads(raw)
                client = request.get("clientContent", request.get("client_content"))
                asks = (isinstance(client, dict) and client.get("turnComplete")) or bool(
                    {"toolResponse", "tool_response"} & request.keys()
                )
                if not asks:
                    continue
                with self._lock:
                    script = self._queued.popleft() if self._queued else LiveTurnScript()
                messages = script.messages(len(self.turns) + 1)
                self.turns.append(
                    ServedTurn(
                        request, next((m["usageMetadata"] for m in messages if "usageMetadata" in m), None)
                    )
                )
                for message in messages:
                    await websocket.send(json.dumps(message))


def _tls(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a certificate for 127.0.0.1 made now."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client
