"""A local fake LLM server speaking the wire formats of the real provider APIs.

Real SDK clients (openai, anthropic, google-genai, mistralai, cohere, ollama, boto3 bedrock-runtime)
pointed at it get responses in the shapes those providers document, streaming included, so tracking
is exercised end to end without network access and without patching any SDK.

    with MockLLMServer() as server:
        client = openai.OpenAI(base_url=server.url("openai"), api_key="test")
        server.queue(input=120, output=30, cache_read=100)   # the next response's usage
        client.chat.completions.create(model="gpt-4o", messages=[...])
        assert len(server.requests) == 1                     # calls counted at the server

Queue: `server.queue(MockResponse(...), MockResponse(...))` or `server.queue(**fields)`; each request takes
the first queued response whose `route` matches (None: any; "openai" matches every "openai.…" route),
else a default one. An agent loop queues its turns in order: a tool call, then the final text.

    server.queue(
        MockResponse(tool_calls=[{"name": "transfer_to_billing", "arguments": {"x": 1}}]),  # turn 1
        MockResponse(text="Done."),                                                     # turn 2
    )

Usage of a response: what was queued (`input` all prompt tokens, cache included; `output` all generated
tokens; `cache_read`, `cache_write`, `cache_write_1h`, `reasoning` inside them; `input_media` the image or
audio part of `input`; Anthropic `server_tool_use`), else a deterministic count (1 token per 4 characters of
the request's text, plus 10; output from the text and tool calls), with the system prompt counted as cache
reads when it was seen before. A queued `body` (plain calls) or `events` (streams) is served verbatim
instead, to replay a recorded payload such as the golden fixtures; `first_chunk_delay` holds the first
streamed chunk back (after the response headers), to measure time to first token; `status` answers with
the provider's error body; `omit_usage` leaves usage out. Structured outputs: a default (unqueued) text
answer to a request with a `json_schema` (chat `response_format`, Responses `text.format`) is JSON matching
the schema (every property, the first enum value, one array item), so `.parse()` and framework output types
work without queueing; `json_object` gets {"answer": …}.

Tool calls (`tool_calls=[{"name", "arguments": dict or JSON text, "id": optional}]`; `text` then defaults
to "", give it to answer with text and tool calls together):
- OpenAI chat: `message.tool_calls` (`call_…` ids), finish_reason "tool_calls"; streamed as a
  `delta.tool_calls` chunk with index, id and name, then argument fragments.
- OpenAI Responses: `function_call` output items (`fc_…` id, `call_…` call_id, name, arguments);
  streamed as response.output_item.added, response.function_call_arguments.delta…/.done,
  response.output_item.done.
- Anthropic: `tool_use` content blocks (`toolu_…` ids, `input`), stop_reason "tool_use"; streamed as
  content_block_start(tool_use), input_json_delta fragments, content_block_stop.
- Gemini: `functionCall` parts (in the last chunk of a stream).

Ids: every response has its own id in the provider's format (`chatcmpl-…`, `cmpl-…`, `resp_…`, `msg_…`,
then 32 hex digits; Gemini `responseId` 32 hex digits; Cohere a UUID), so tracking can de-duplicate by
response id.

Streams as the APIs send them: OpenAI chat chunks end with a usage chunk only when
`stream_options.include_usage`; Responses events response.created, response.in_progress,
response.output_item.added, response.content_part.added, response.output_text.delta…,
response.output_text.done, response.content_part.done, response.output_item.done, response.completed, each
with `sequence_number`, `item_id`, `output_index`, `content_index`; Anthropic message_start (full input
usage, output_tokens 1), content blocks, then message_delta with the cumulative usage (input_tokens,
cache_creation_input_tokens, cache_read_input_tokens, output_tokens, server_tool_use when queued);
Gemini chunks with cumulative usageMetadata.

Routes (POST unless said):
- OpenAI (`server.url("openai")`), route names in brackets: /v1/chat/completions [openai.chat] (Mistral's
  SDK: [mistral], always reporting usage when streaming); /v1/responses [openai.responses]; /v1/embeddings
  [openai.embeddings] (usage prompt_tokens, total_tokens; float or base64 vectors as `encoding_format`
  asks); /v1/completions [openai.completions] (legacy; streamed with include_usage); /v1/images/generations
  [openai.images] and /v1/images/edits [openai.images.edit] (multipart): gpt-image models report usage
  input_tokens, output_tokens, total_tokens, input_tokens_details {text_tokens, image_tokens}, dall-e models
  none; `stream=True` sends image_generation.partial_image / image_edit.partial_image events as
  `partial_images` asks, then a .completed event with usage; /v1/images/variations
  [openai.images.variation] (dall-e-2: URLs, no usage); /v1/audio/transcriptions
  [openai.audio.transcription] (multipart; json `usage` {type "tokens", input_tokens, output_tokens,
  total_tokens, input_token_details {audio_tokens, text_tokens}}, whisper-1 {type "duration", seconds};
  response_format text; `stream=True`: transcript.text.delta… and transcript.text.done with usage);
  /v1/audio/translations [openai.audio.translation] (no usage); /v1/audio/speech [openai.audio.speech]
  (4 KiB of audio bytes; `stream_format="sse"`: speech.audio.delta… and speech.audio.done with usage).
- Responses are stored: GET /v1/responses/{id} retrieves one; `background: true` answers status "queued"
  with usage null, then each GET answers "in_progress" while the queued `pending_polls` last, then
  "completed" with usage; GET /v1/responses/{id}?stream=true&starting_after=N replays the stream events
  after sequence number N; POST /v1/responses/{id}/cancel cancels a background response not yet retrieved
  completed (400 for a foreground one). Retrievals and cancels take nothing from the queue.
- Anthropic /v1/messages [anthropic] (also `beta.messages`, with or without ?beta=true);
  /v1/messages/count_tokens ({"input_tokens"}, takes nothing from the queue); Gemini
  generateContent / streamGenerateContent [gemini, gemini.stream]; Ollama /api/chat [ollama] and
  /api/generate [ollama.generate]; Cohere /v2/chat [cohere]; Bedrock converse / converse-stream / invoke /
  invoke-with-response-stream [bedrock, bedrock.stream, bedrock.invoke, bedrock.invoke_stream] (Claude
  bodies; AWS event-stream framing for the streams); the embedding, rerank, OCR and guardrail routes of
  google-genai, cohere, mistralai, ollama and Bedrock are in `_mock_routes`.

`server.requests`: every request in order, as {"method", "path", "query" (dict), "body", "headers" (names
lower-cased)}; a multipart body as its fields, each file as {"filename", "size"}. `server.pending`: how many
queued responses are still waiting.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email import policy
from email.message import Message
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tokentrail.testing import _mock_batches as _batches
from tokentrail.testing import _mock_openai as _oai
from tokentrail.testing import _mock_routes as _more
from tokentrail.testing import _mock_runs as _runs
from tokentrail.testing._mock_wire import count as _count
from tokentrail.testing._mock_wire import new_id as _new_id
from tokentrail.testing._mock_wire import sse as _sse
from tokentrail.testing._mock_wire import words as _words

__all__ = ["MockLLMServer", "MockResponse"]

REPLY = "Tokens are counted exactly; costs are summed in Decimal."


@dataclass
class MockResponse:
    """What the next matching request gets. Token counts follow tokentrail's convention."""

    input: int | None = None  # all prompt tokens, cache included
    output: int | None = None  # all generated tokens, reasoning included
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0
    text: str = REPLY
    status: int = 200  # an error status returns the provider's error body instead
    service_tier: str | None = None
    omit_usage: bool = False  # respond (and stream) without any usage block
    route: str | None = None  # only for this route ("openai.chat", "anthropic", …); None: any
    body: dict[str, Any] | None = None  # a plain call's response body, served verbatim
    events: list[Any] | None = None  # a stream's events, served verbatim (see `_frame`)
    first_chunk_delay: float = 0.0  # seconds to hold back the first streamed chunk (or a plain response)
    # [{"name": …, "arguments": dict or JSON text, "id": optional}]; with tool calls `text` defaults to ""
    tool_calls: list[dict[str, Any]] | None = None
    # Anthropic: {"web_search_requests": 1, "web_fetch_requests": 0}
    server_tool_use: dict[str, int] | None = None
    input_media: int | None = None  # of `input`: the image (images edits) or audio (transcriptions) tokens
    pending_polls: int = 0  # background Responses: retrievals answered "in_progress" before "completed"

    def __post_init__(self) -> None:
        if self.tool_calls and self.text is REPLY:  # a tool-call turn has no text unless some is given
            self.text = ""


@dataclass
class _Usage:
    input: int
    output: int
    cache_read: int
    cache_write: int
    cache_write_1h: int
    reasoning: int

    @property
    def uncached(self) -> int:
        return self.input - self.cache_read - self.cache_write


@dataclass
class _State:
    queued: deque[MockResponse] = field(default_factory=deque)
    seen_prefixes: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    responses: dict[str, _StoredResponse] = field(default_factory=dict)  # Responses API, by id
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _StoredResponse:
    """A Responses API response kept for retrieve, cancel and stream replay."""

    response: dict[str, Any]
    background: bool
    pending_polls: int
    cancelled: bool = False
    delivered: bool = False  # a retrieval has returned it completed

    @property
    def events(self) -> list[dict[str, Any]]:
        """Its stream (the same events each time: they derive from the stored response)."""
        return _response_events(self.response)

    def view(self, status: str) -> dict[str, Any]:
        return {**self.response, "status": status, "output": [], "usage": None, "completed_at": None}


class MockLLMServer:
    """Serve the fake APIs on 127.0.0.1 (a free port) in a background thread; a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._state = _State()
        handler = type("Handler", (_Handler,), {"state": self._state})
        self._httpd = _QuietServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mock-llm", daemon=True)

    def __enter__(self) -> MockLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, provider: str = "") -> str:
        """The base URL to give each SDK (`openai` and `mistral` want the `/v1` suffix)."""
        return self.base + ("/v1" if provider in ("openai", "azure") else "")

    def queue(self, *responses: MockResponse, **fields: Any) -> None:
        """Queue responses (or one built from keyword fields) for the next requests, in order."""
        with self._state.lock:
            self._state.queued.extend(responses or (MockResponse(**fields),))

    @property
    def pending(self) -> int:
        """How many queued responses no request has taken yet (a test can assert its script ran out)."""
        with self._state.lock:
            return len(self._state.queued)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received, in order: {"method", "path", "query", "body"} (to count calls and to
        assert on what was sent, such as stream_options)."""
        return list(self._state.requests)


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 1024  # the listen backlog: a gateway opening 1,000 streams at once is not queued

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-stream (an aborted stream test) is expected, not worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    state: _State
    raw_body: bytes = b""  # the last request body as sent (`_read_body`)
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small responses go out at once, not after a delayed ACK

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    # -- dispatch ----------------------------------------------------------------------------------

    def do_POST(self) -> None:
        body = self._read_body()
        path = self._record("POST", body)
        if _batches.answer(self, "POST", path, body):  # Anthropic Message Batches (_mock_batches)
            return
        if _batches.answer_openai(self, "POST", path, body, self.raw_body):  # OpenAI files and batches
            return
        if _runs.answer(self, "POST", path, body):  # eval runs, dreams (_mock_runs)
            return
        if path.startswith("/v1/responses/") and path.endswith("/cancel"):
            self._cancel_response(path.split("/")[3])
            return
        if path.endswith(
            "/v1/messages/count_tokens"
        ):  # Anthropic; not billable, takes nothing from the queue
            system, rest = _texts(body)  # counted as a call would be, without marking the prompt as cached
            self._json(200, {"input_tokens": _count(system) + _count(rest) + 10})
            return
        route, model = _route(path, body)
        if route == "openai.chat" and "mistral" in (self.headers.get("User-Agent") or "").lower():
            route = "mistral"
        route, model = _more.route(path, body, self.headers.get("User-Agent") or "", route, model)
        if route is None:
            self._json(404, {"error": {"message": f"no such route {path}"}})
            return
        plan = _answer_schema(route, self._next_plan(route), body)
        usage = self._usage(plan, body)
        if plan.status != 200:
            self._json(plan.status, _error_body(route, plan.status))
            return
        if route in _more.PLAIN:
            stream = False
        elif route.startswith("ollama"):
            stream = body.get("stream", True) is not False
        else:
            stream = bool(body.get("stream")) or body.get("stream_format") == "sse" or route in _STREAM_ROUTES
        if route == "openai.responses" and plan.body is None and plan.events is None:
            self._create_response(model, body, plan, usage, stream)
            return
        render = _RENDERERS[route]
        if stream:
            chunks = (
                iter([_frame(route, event) for event in plan.events])
                if plan.events is not None
                else render(model, body, plan, usage, stream=True)
            )
            self._stream(route, chunks, plan.first_chunk_delay)
        else:
            time.sleep(plan.first_chunk_delay)
            payload = plan.body if plan.body is not None else render(model, body, plan, usage, stream=False)
            if isinstance(payload, _oai.Raw):
                self._raw(payload)
                return
            self._json(200, payload, _more.headers(route, model, usage, plan))

    def do_GET(self) -> None:
        """Responses API retrieve (`GET /v1/responses/{id}`), or its stream replayed after `starting_after`."""
        path = self._record("GET", {})
        if _batches.answer(self, "GET", path, {}):  # Anthropic Message Batches (_mock_batches)
            return
        if _batches.answer_openai(self, "GET", path, {}, b""):  # OpenAI files and batches
            return
        if _runs.answer(self, "GET", path, {}):  # eval runs, dreams (_mock_runs)
            return
        query = dict(parse_qsl(urlsplit(self.path).query))
        with self.state.lock:
            stored = self.state.responses.get(path.removeprefix("/v1/responses/"))
        if not path.startswith("/v1/responses/") or stored is None:
            self._json(
                404, {"error": {"message": f"no such resource {path}", "type": "invalid_request_error"}}
            )
            return
        if query.get("stream") == "true":
            after = int(query.get("starting_after") or -1)
            events = [e for e in stored.events if e["sequence_number"] > after]
            self._stream("openai.responses", (_sse(e, e["type"]) for e in events))
            return
        with self.state.lock:
            if stored.cancelled:
                payload = stored.view("cancelled")
            elif stored.pending_polls > 0:
                stored.pending_polls -= 1
                payload = stored.view("in_progress")
            else:
                stored.delivered = True
                payload = stored.response
        self._json(200, payload)

    def _read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.raw_body = raw  # as sent (a file upload's content)
        kind = self.headers.get("Content-Type") or ""
        if kind.startswith("multipart/form-data"):
            return _form(kind, raw)
        body: dict[str, Any] = json.loads(raw or b"{}")
        return body

    def _record(self, method: str, body: dict[str, Any]) -> str:
        """Keep the request for assertions (`server.requests`); returns its path."""
        parts = urlsplit(self.path)
        entry = {
            "method": method,
            "path": parts.path,
            "query": dict(parse_qsl(parts.query)),
            "body": body,
            "headers": {name.lower(): value for name, value in self.headers.items()},
        }
        with self.state.lock:
            self.state.requests.append(entry)
        return parts.path

    def _create_response(
        self, model: str, body: dict[str, Any], plan: MockResponse, usage: _Usage, stream: bool
    ) -> None:
        """Responses API create: stored for retrieve; a background response answers `queued`."""
        response = _response_object(model, body, plan, usage)
        background = bool(body.get("background"))
        stored = _StoredResponse(response, background, plan.pending_polls)
        with self.state.lock:
            self.state.responses[response["id"]] = stored
            if len(self.state.responses) > _STORED_RESPONSES:  # keep memory flat over long benchmarks
                del self.state.responses[next(iter(self.state.responses))]
        if stream:
            events = (_sse(e, e["type"]) for e in stored.events)
            self._stream("openai.responses", events, plan.first_chunk_delay)
            return
        time.sleep(plan.first_chunk_delay)
        self._json(200, stored.view("queued") if background else response)

    def _cancel_response(self, ident: str) -> None:
        """A background response not yet retrieved completed becomes `cancelled`; others cannot be."""
        with self.state.lock:
            stored = self.state.responses.get(ident)
            if stored is not None and stored.background and not stored.delivered:
                stored.cancelled = True
        if stored is None or not stored.background:
            message = "Only background responses can be cancelled." if stored else f"No response {ident}"
            self._json(
                400 if stored else 404, {"error": {"message": message, "type": "invalid_request_error"}}
            )
            return
        self._json(200, stored.view("cancelled") if stored.cancelled else stored.response)

    def _next_plan(self, route: str) -> MockResponse:
        with self.state.lock:
            for i, plan in enumerate(self.state.queued):
                if plan.route is None or plan.route == route or route.startswith(plan.route + "."):
                    del self.state.queued[i]
                    return plan
        return MockResponse()

    def _usage(self, plan: MockResponse, body: dict[str, Any]) -> _Usage:
        if plan.input is not None:
            return _Usage(
                plan.input,
                plan.output if plan.output is not None else _count(_generated(plan)),
                plan.cache_read,
                plan.cache_write,
                plan.cache_write_1h,
                plan.reasoning,
            )
        system, rest = _texts(body)
        system_tokens = _count(system) if system else 0
        prompt = system_tokens + _count(rest) + 10
        cache_read = 0
        if system:
            key = hashlib.sha256(system.encode()).hexdigest()
            with self.state.lock:
                if key in self.state.seen_prefixes:
                    cache_read = system_tokens
                self.state.seen_prefixes.add(key)
        limit = body.get("max_tokens") or body.get("max_output_tokens") or body.get("max_completion_tokens")
        output = _count(_generated(plan))
        if isinstance(limit, int):
            output = min(output, limit)
        return _Usage(prompt, output, cache_read, 0, 0, plan.reasoning)

    # -- writing -----------------------------------------------------------------------------------

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _raw(self, payload: _oai.Raw) -> None:
        self.send_response(200)
        self.send_header("Content-Type", payload.content_type)
        self.send_header("Content-Length", str(len(payload.data)))
        self.end_headers()
        self.wfile.write(payload.data)

    def _stream(self, route: str, chunks: Iterator[bytes], delay: float = 0.0) -> None:
        if route.startswith("ollama"):
            content_type = "application/x-ndjson"
        elif route.startswith("bedrock"):
            content_type = "application/vnd.amazon.eventstream"
        else:
            content_type = "text/event-stream"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self.wfile.flush()
            time.sleep(delay)
            for chunk in chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: fine
            self.close_connection = True


def _route(path: str, body: dict[str, Any]) -> tuple[str | None, str]:
    model = str(body.get("model") or "")
    if path.endswith("/chat/completions"):
        return "openai.chat", model
    if path.endswith("/responses"):
        return "openai.responses", model
    if path.endswith("/v1/messages"):
        return "anthropic", model
    if path.endswith("/v2/chat"):
        return "cohere", model
    if path == "/api/chat":
        return "ollama", model
    if path == "/api/generate":
        return "ollama.generate", model
    if ":generateContent" in path or ":streamGenerateContent" in path:
        name = unquote(path.rsplit("/", 1)[-1].split(":", 1)[0])
        return ("gemini.stream" if "stream" in path else "gemini"), name
    if path.startswith("/model/"):
        name, operation = unquote(path.split("/")[2]), path.rsplit("/", 1)[-1]
        route = _BEDROCK_OPERATIONS.get(operation)
        return route, name
    return _oai.route(path), model


def _answer_schema(route: str, plan: MockResponse, body: dict[str, Any]) -> MockResponse:
    """Structured outputs: a default text answer becomes JSON matching the request's `json_schema` (chat
    `response_format`, Responses `text.format`), so `.parse()` and framework output types work unqueued."""
    if route not in ("openai.chat", "openai.responses") or plan.text is not REPLY or plan.tool_calls:
        return plan
    found = body.get("response_format") or (body.get("text") or {}).get("format")
    form = found if isinstance(found, dict) else {}
    if form.get("type") == "json_object":
        return replace(plan, text=json.dumps({"answer": REPLY}))
    if form.get("type") != "json_schema":
        return plan
    schema = form.get("schema") or (form.get("json_schema") or {}).get("schema") or {}
    return replace(plan, text=json.dumps(_example(schema, schema.get("$defs") or {})))


def _example(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    """The first value a JSON schema admits: every property present, one item per array."""
    if depth > 20:
        return None
    if "$ref" in schema:
        return _example(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        usable = [o for o in options if o.get("type") != "null"] or options
        return _example(usable[0], defs, depth + 1)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _example(sub, defs, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [_example(schema.get("items") or {}, defs, depth + 1)]
    return {"string": "text", "integer": 1, "number": 1.5, "boolean": True}.get(str(kind))


def _form(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body as fields: files as {"filename", "size"}, "true"/"false" as booleans,
    digits as ints, repeated or `name[]` fields as lists."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + raw)
    fields: dict[str, Any] = {}
    for part in message.iter_parts() if isinstance(message, Message) else ():
        name = str(part.get_param("name", header="content-disposition") or "")
        data = part.get_payload(decode=True)
        content = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        value = {"filename": filename, "size": len(content)} if filename else _form_value(content.decode())
        if name.endswith("[]") or name in fields:
            name = name.removesuffix("[]")
            previous = fields.get(name, [])
            fields[name] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            fields[name] = value
    return fields


def _form_value(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    return int(text) if text.isdigit() else text


_BEDROCK_OPERATIONS = {
    "converse": "bedrock",
    "converse-stream": "bedrock.stream",
    "invoke": "bedrock.invoke",
    "invoke-with-response-stream": "bedrock.invoke_stream",
}
_STORED_RESPONSES = 1000  # the latest Responses API responses kept for retrieve
_STREAM_ROUTES = frozenset({"gemini.stream", "bedrock.stream", "bedrock.invoke_stream"})


def _frame(route: str, event: Any) -> bytes:
    """One queued stream event on the wire: text and bytes as they are; an object framed for the route
    (an SSE `data:` block, a JSON line for Ollama, an AWS event-stream message `{type: payload}` for
    Bedrock)."""
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode()
    if route.startswith("ollama"):
        return json.dumps(event).encode() + b"\n"
    if route.startswith("bedrock"):
        ((event_type, payload),) = event.items()
        return _event_stream(event_type, payload)
    return _sse(event)


def _texts(body: dict[str, Any]) -> tuple[str, str]:
    """(system prompt, everything else) as plain text, from any provider's request shape."""
    system = body.get("system") or body.get("instructions") or ""
    if isinstance(system, list):
        system = " ".join(_flatten(system))
    parts: list[str] = []
    for message in body.get("messages") or body.get("contents") or []:
        if isinstance(message, dict) and message.get("role") == "system":
            system = " ".join([str(system), *_flatten(message.get("content"))]).strip()
        else:
            parts += _flatten(message)
    if isinstance(body.get("input"), str):
        parts.append(body["input"])
    elif isinstance(body.get("input"), list):
        parts += _flatten(body["input"])
    return str(system), " ".join(parts)


def _flatten(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [
            s for k, v in value.items() if k in ("content", "text", "parts", "message") for s in _flatten(v)
        ]
    if isinstance(value, list):
        return [s for item in value for s in _flatten(item)]
    return []


@dataclass(frozen=True)
class _ToolCall:
    id: str
    name: str
    arguments: str  # JSON text

    @property
    def input(self) -> Any:
        return json.loads(self.arguments or "{}")


def _tool_calls(plan: MockResponse, prefix: str) -> list[_ToolCall]:
    """The queued tool calls with arguments as JSON text and an id in the provider's format (`call_…`,
    `toolu_…`) where none was queued."""
    calls = []
    for call in plan.tool_calls or ():
        arguments = call.get("arguments", {})
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        calls.append(_ToolCall(str(call.get("id") or _new_id(prefix)), str(call["name"]), text))
    return calls


def _generated(plan: MockResponse) -> str:
    """Everything the model "wrote": the text and the tool calls, for the default output count."""
    calls = plan.tool_calls or ()
    return plan.text + "".join(str(c["name"]) + json.dumps(c.get("arguments", {})) for c in calls)


def _fragments(text: str, size: int = 8) -> list[str]:
    """Tool arguments streamed in pieces, as the APIs send them."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _error_body(route: str, status: int) -> dict[str, Any]:
    kind = "rate_limit_error" if status == 429 else "api_error"
    if route.startswith("anthropic"):
        return {"type": "error", "error": {"type": kind, "message": "mock failure"}}
    if route.startswith("gemini"):
        return {"error": {"code": status, "message": "mock failure", "status": "INTERNAL"}}
    return {"error": {"message": "mock failure", "type": kind, "code": None}}


# -- OpenAI --------------------------------------------------------------------------------------------


def _openai_usage(u: _Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _openai_chat(model: str, body: dict[str, Any], plan: MockResponse, u: _Usage, *, stream: bool) -> Any:
    calls = _tool_calls(plan, "call_")
    base = {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion.chunk" if stream else "chat.completion",
        "created": int(time.time()),
        "model": model,
        "service_tier": plan.service_tier or body.get("service_tier") or "default",
    }
    if stream:
        return _openai_chat_stream(base, body, plan, u, calls)
    message: dict[str, Any] = {"role": "assistant", "content": plan.text or None, "refusal": None}
    if not calls:
        message["content"] = plan.text
    else:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    choice = {"index": 0, "message": message, "finish_reason": _finish(calls), "logprobs": None}
    response: dict[str, Any] = {**base, "choices": [choice], "system_fingerprint": "fp_mock"}
    if not plan.omit_usage:
        response["usage"] = _openai_usage(u)
    return response


def _finish(calls: list[_ToolCall]) -> str:
    return "tool_calls" if calls else "stop"


def _openai_chat_stream(
    base: dict[str, Any], body: dict[str, Any], plan: MockResponse, u: _Usage, calls: list[_ToolCall]
) -> Iterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": "" if plan.text or not calls else None})
    for word in _words(plan.text) if plan.text or not calls else []:
        yield chunk({"content": word})
    for index, call in enumerate(calls):  # the id and name first, then the arguments in fragments
        head = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield chunk({"tool_calls": [head]})
        for piece in _fragments(call.arguments):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, _finish(calls))
    if (body.get("stream_options") or {}).get("include_usage") and not plan.omit_usage:
        yield _sse({**base, "choices": [], "usage": _openai_usage(u)})
    yield b"data: [DONE]\n\n"


def _mistral_chat(model: str, body: dict[str, Any], plan: MockResponse, u: _Usage, *, stream: bool) -> Any:
    """OpenAI-shaped, but a stream always ends with a chunk carrying `usage` beside `finish_reason`."""
    if not stream:
        return _openai_chat(model, body, plan, u, stream=False)

    def events() -> Iterator[bytes]:
        base = {
            "id": _new_id("cmpl-"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        yield _sse({**base, "choices": [first]})
        words = _words(plan.text)
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk: dict[str, Any] = {
                **base,
                "choices": [
                    {"index": 0, "delta": {"content": word}, "finish_reason": "stop" if last else None}
                ],
            }
            if last and not plan.omit_usage:
                chunk["usage"] = {
                    "prompt_tokens": u.input,
                    "completion_tokens": u.output,
                    "total_tokens": u.input + u.output,
                }
            yield _sse(chunk)
        yield b"data: [DONE]\n\n"

    return events()


def _openai_responses(
    model: str, body: dict[str, Any], plan: MockResponse, u: _Usage, *, stream: bool
) -> Any:
    response = _response_object(model, body, plan, u)
    if not stream:
        return response
    return (_sse(event, event["type"]) for event in _response_events(response))


def _response_object(model: str, body: dict[str, Any], plan: MockResponse, u: _Usage) -> dict[str, Any]:
    """A completed Responses API `response` object: a message item (when there is text) and one
    `function_call` item per queued tool call."""
    calls = _tool_calls(plan, "call_")
    output: list[dict[str, Any]] = []
    if plan.text or not calls:
        text = {"type": "output_text", "text": plan.text, "annotations": [], "logprobs": []}
        output.append(
            {
                "type": "message",
                "id": _new_id("msg_"),
                "status": "completed",
                "role": "assistant",
                "content": [text],
            }
        )
    output += [
        {
            "type": "function_call",
            "id": _new_id("fc_"),
            "call_id": c.id,
            "name": c.name,
            "arguments": c.arguments,
            "status": "completed",
        }
        for c in calls
    ]
    created = int(time.time())
    return {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": created,
        "status": "completed",
        "background": bool(body.get("background")),
        "completed_at": created,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "temperature": body.get("temperature", 1.0),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "service_tier": plan.service_tier or body.get("service_tier") or "default",
        "usage": None
        if plan.omit_usage
        else {
            "input_tokens": u.input,
            "input_tokens_details": {"cached_tokens": u.cache_read},
            "output_tokens": u.output,
            "output_tokens_details": {"reasoning_tokens": u.reasoning},
            "total_tokens": u.input + u.output,
        },
    }


def _response_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream of a response as the API sends it, each event with its `sequence_number`."""
    first = "queued" if response.get("background") else "in_progress"
    pending = {**response, "output": [], "usage": None, "completed_at": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**pending, "status": first}},
        {"type": "response.in_progress", "response": {**pending, "status": "in_progress"}},
    ]
    for index, item in enumerate(response["output"]):
        events += _item_events(index, item)
    events.append({"type": "response.completed", "response": response})
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def _item_events(index: int, item: dict[str, Any]) -> list[dict[str, Any]]:
    """output_item.added, the item's content or argument deltas, output_item.done."""
    where = {"item_id": item["id"], "output_index": index}
    if item["type"] == "function_call":
        arguments = item["arguments"]
        middle: list[dict[str, Any]] = [
            {"type": "response.function_call_arguments.delta", **where, "delta": piece}
            for piece in _fragments(arguments)
        ]
        middle.append({"type": "response.function_call_arguments.done", **where, "arguments": arguments})
        added = {**item, "arguments": "", "status": "in_progress"}
    else:
        part = item["content"][0]
        at = {**where, "content_index": 0}
        middle = [{"type": "response.content_part.added", **at, "part": {**part, "text": ""}}]
        middle += [
            {"type": "response.output_text.delta", **at, "delta": word, "logprobs": []}
            for word in _words(part["text"])
        ]
        middle += [
            {"type": "response.output_text.done", **at, "text": part["text"], "logprobs": []},
            {"type": "response.content_part.done", **at, "part": part},
        ]
        added = {**item, "status": "in_progress", "content": []}
    return [
        {"type": "response.output_item.added", "output_index": index, "item": added},
        *middle,
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]


# -- Anthropic -----------------------------------------------------------------------------------------


def _anthropic_usage(u: _Usage, tier: str) -> dict[str, Any]:
    return {
        "input_tokens": u.uncached,
        "output_tokens": u.output,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write - u.cache_write_1h,
            "ephemeral_1h_input_tokens": u.cache_write_1h,
        },
        "service_tier": tier,
    }


def _anthropic(model: str, body: dict[str, Any], plan: MockResponse, u: _Usage, *, stream: bool) -> Any:
    tier = plan.service_tier or "standard"
    calls = _tool_calls(plan, "toolu_")
    content: list[dict[str, Any]] = [{"type": "text", "text": plan.text}] if plan.text or not calls else []
    content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in calls]
    message: dict[str, Any] = {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if calls else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(u, tier),
    }
    if plan.server_tool_use is not None:
        message["usage"]["server_tool_use"] = {
            "web_search_requests": 0,
            "web_fetch_requests": 0,
        } | plan.server_tool_use
    if not stream:
        return message
    return _anthropic_stream(message, plan, u, tier)


def _anthropic_delta_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """`message_delta` usage: the cumulative totals of the whole message, as the API sends them."""
    keys = (
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
        "server_tool_use",
    )
    return {key: usage[key] for key in keys if key in usage}


def _anthropic_stream(message: dict[str, Any], plan: MockResponse, u: _Usage, tier: str) -> Iterator[bytes]:
    start_usage = {**_anthropic_usage(u, tier), "output_tokens": 1}
    started = {**message, "content": [], "stop_reason": None, "usage": start_usage}
    yield _sse({"type": "message_start", "message": started}, "message_start")
    for index, block in enumerate(message["content"]):
        for event in _anthropic_block_events(index, block):
            yield _sse(event, event["type"])
    final = {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": _anthropic_delta_usage(message["usage"]),
    }
    yield _sse(final, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


def _anthropic_block_events(index: int, block: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """content_block_start, its deltas (text, or the tool input as JSON fragments), content_block_stop."""
    if block["type"] == "tool_use":
        yield {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}}
        for piece in _fragments(json.dumps(block["input"])):
            yield {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
    else:
        yield {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
        for word in _words(block["text"]):
            yield {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": word},
            }
    yield {"type": "content_block_stop", "index": index}


# -- Gemini --------------------------------------------------------------------------------------------


def _gemini_usage(u: _Usage, output: int) -> dict[str, Any]:
    usage = {
        "promptTokenCount": u.input,
        "candidatesTokenCount": output - u.reasoning,
        "totalTokenCount": u.input + output,
    }
    if u.cache_read:
        usage["cachedContentTokenCount"] = u.cache_read
    if u.reasoning:
        usage["thoughtsTokenCount"] = u.reasoning
    return usage


def _gemini(model: str, body: dict[str, Any], plan: MockResponse, u: _Usage, *, stream: bool) -> Any:
    calls, response_id = _tool_calls(plan, "call_"), _new_id("")

    def chunk(text: str, output: int, done: bool) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"text": text}] if text or not calls else []
        if done:  # tool calls come whole, in the last chunk
            parts += [{"functionCall": {"id": c.id, "name": c.name, "args": c.input}} for c in calls]
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if done:
            candidate["finishReason"] = "STOP"
        payload: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": model,
            "responseId": response_id,
        }
        if not plan.omit_usage:
            payload["usageMetadata"] = _gemini_usage(u, max(output, u.reasoning))
        return payload

    if not stream:
        return chunk(plan.text, u.output, True)

    def events() -> Iterator[bytes]:
        words = _words(plan.text)
        for i, word in enumerate(words):  # usage is cumulative: each chunk reports the total so far
            produced = u.output if i == len(words) - 1 else min(u.output, u.reasoning + i + 1)
            yield b"data: " + json.dumps(chunk(word, produced, i == len(words) - 1)).encode() + b"\r\n\r\n"

    return events()


# -- Ollama, Cohere ------------------------------------------------------------------------------------


def _ollama(model: str, body: dict[str, Any], plan: MockResponse, u: _Usage, *, stream: bool) -> Any:
    final: dict[str, Any] = {
        "model": model,
        "created_at": "2026-11-24T12:00:00Z",
        "message": {"role": "assistant", "content": "" if stream else plan.text},
        "done": True,
        "done_reason": "stop",
        "total_duration": 1_000_000,
        "load_duration": 1000,
        "prompt_eval_duration": 1000,
        "eval_duration": 1000,
    }
    if not plan.omit_usage:
        final |= {"prompt_eval_count": u.input, "eval_count": u.output}
    if not stream:
        return final

    def lines() -> Iterator[bytes]:
        for word in _words(plan.text):
            part = {
                "model": model,
                "created_at": final["created_at"],
                "message": {"role": "assistant", "content": word},
            }
            yield json.dumps({**part, "done": False}).encode() + b"\n"
        yield json.dumps(final).encode() + b"\n"

    return lines()


def _ollama_generate(model: str, body: dict[str, Any], plan: MockResponse, u: _Usage, *, stream: bool) -> Any:
    """/api/generate: the chat shape with `response` text instead of a `message`."""

    def reshape(obj: dict[str, Any]) -> dict[str, Any]:
        message = obj.pop("message", {})
        return {**obj, "response": message.get("content", "")}

    if not stream:
        return reshape(_ollama(model, body, plan, u, stream=False))
    return (
        json.dumps(reshape(json.loads(line))).encode() + b"\n"
        for line in _ollama(model, body, plan, u, stream=True)
    )


def _cohere(model: str, body: dict[str, Any], plan: MockResponse, u: _Usage, *, stream: bool) -> Any:
    usage = {
        "billed_units": {"input_tokens": u.input, "output_tokens": u.output},
        "tokens": {"input_tokens": u.input + 7, "output_tokens": u.output},
    }
    message = {"role": "assistant", "content": [{"type": "text", "text": plan.text}]}
    ident = str(uuid.uuid4())  # Cohere's response ids are UUIDs
    if not stream:
        response: dict[str, Any] = {"id": ident, "finish_reason": "COMPLETE", "message": message}
        if not plan.omit_usage:
            response["usage"] = usage
        return response

    def events() -> Iterator[bytes]:
        start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        yield _sse({"type": "message-start", "id": ident, "delta": {"message": start}}, "message-start")
        yield _sse(
            {
                "type": "content-start",
                "index": 0,
                "delta": {"message": {"content": {"type": "text", "text": ""}}},
            },
            "content-start",
        )
        for word in _words(plan.text):
            delta = {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": word}}}}
            yield _sse(delta, "content-delta")
        yield _sse({"type": "content-end", "index": 0}, "content-end")
        end: dict[str, Any] = {"finish_reason": "COMPLETE"}
        if not plan.omit_usage:
            end["usage"] = usage
        yield _sse({"type": "message-end", "delta": end}, "message-end")

    return events()


# -- Bedrock Converse ----------------------------------------------------------------------------------


def _bedrock_usage(u: _Usage) -> dict[str, Any]:
    # Converse reports inputTokens without the cached part; cache reads and writes come separately.
    return {
        "inputTokens": u.uncached,
        "outputTokens": u.output,
        "totalTokens": u.input + u.output,
        "cacheReadInputTokens": u.cache_read,
        "cacheWriteInputTokens": u.cache_write,
    }


def _bedrock(model: str, body: dict[str, Any], plan: MockResponse, u: _Usage, *, stream: bool) -> Any:
    if not stream:
        response: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": [{"text": plan.text}]}},
            "stopReason": "end_turn",
            "metrics": {"latencyMs": 12},
        }
        if not plan.omit_usage:
            response["usage"] = _bedrock_usage(u)
        return response

    def events() -> Iterator[bytes]:
        yield _event_stream("messageStart", {"role": "assistant"})
        for word in _words(plan.text):
            yield _event_stream("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word}})
        yield _event_stream("contentBlockStop", {"contentBlockIndex": 0})
        yield _event_stream("messageStop", {"stopReason": "end_turn"})
        metadata: dict[str, Any] = {"metrics": {"latencyMs": 12}}
        if not plan.omit_usage:
            metadata["usage"] = _bedrock_usage(u)
        yield _event_stream("metadata", metadata)

    return events()


def _bedrock_invoke(model: str, body: dict[str, Any], plan: MockResponse, u: _Usage, *, stream: bool) -> Any:
    """InvokeModel(WithResponseStream) of a Claude model: an Anthropic Messages body, or its stream
    events each base64-encoded inside an event-stream `chunk` message."""
    name = model.rsplit("anthropic.", 1)[-1].rsplit("-v", 1)[0]
    if not stream:
        return _anthropic(name, body, plan, u, stream=False)

    def events() -> Iterator[bytes]:
        for block in _anthropic(name, body, plan, u, stream=True):
            data = block.decode().split("data: ", 1)[1].strip()
            yield _event_stream("chunk", {"bytes": base64.b64encode(data.encode()).decode()})

    return events()


def _event_stream(event_type: str, payload: dict[str, Any]) -> bytes:
    """One message of AWS's binary event-stream framing (what boto3 parses for ConverseStream)."""
    headers = b"".join(
        _event_header(name, value)
        for name, value in (
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        )
    )
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def _event_header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", 7, len(raw_value)) + raw_value


_RENDERERS = {
    "openai.chat": _openai_chat,
    "openai.responses": _openai_responses,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "gemini.stream": _gemini,
    "ollama": _ollama,
    "cohere": _cohere,
    "bedrock": _bedrock,
    "bedrock.stream": _bedrock,
    "bedrock.invoke": _bedrock_invoke,
    "bedrock.invoke_stream": _bedrock_invoke,
    "ollama.generate": _ollama_generate,
    "mistral": _mistral_chat,
}
_RENDERERS.update(_oai.RENDERERS)
_RENDERERS.update(_more.RENDERERS)  # embedding, rerank, OCR and guardrail routes (_mock_routes)
