"""Gateway latency, throughput and memory: `tokentrail gateway` against calling the upstream directly and
against LiteLLM's proxy pointed at the same upstream, side by side in one run (issue 18).

python benchmarks/bench_gateway.py            # full run: ~4 min of latency + saturation, 10-minute soak
python benchmarks/bench_gateway.py --quick    # ≤ 60 s smoke run (short cells, 8-second soak, no profile)
python benchmarks/bench_gateway.py --soak-seconds 60 --profile-seconds 20 --json out.json

What runs, each in its own process:

- upstream: a raw-asyncio OpenAI-compatible server (`--serve-upstream PORT`, this file) answering any
  POST with a fixed chat completion, or — when the body asks `"stream": true` — a fixed event stream
  (role chunk, 10 content chunks, finish chunk, the usage chunk when `stream_options.include_usage` is
  set, `[DONE]`), chunked like OpenAI's. It parses nothing but the request framing, so it is not the
  bottleneck; it is measured directly too ("direct").
- gateway: the real `tokentrail gateway` CLI, SQLite ledger in a temp dir, `--budgets memory://` with one
  budget configured (every call reserved and settled), uvicorn as the CLI starts it.
- litellm: LiteLLM's proxy (`litellm --config`), one model routed to the same upstream, no database.
  `litellm[proxy]` cannot be installed into the project's .venv (its extra pins `litellm-proxy`, which
  the registry does not have, and would move pinned rich and websockets), so it runs from its own venv,
  benchmarks/.venv-litellm-proxy, installed from benchmarks/constraints-litellm-proxy.txt on first use
  (`--setup-litellm` does only that). `--no-litellm` skips it.

Measures:

1. Latency at a fixed rate (`--rate`, default 500 requests/s), open loop: an asyncio client sends each
   request at its scheduled time whatever the earlier ones are doing (new connections when none is idle)
   and times it from the scheduled time, so a stall is counted for every request it delays (no
   coordinated omission). Non-streamed: time to the last byte; streamed: time to the first body byte
   (TTFB) and to the last (TTLB). Targets and modes are interleaved, `--rounds` times. "Added" is the
   target's percentile minus direct's percentile from the same round set.
2. Saturation: `wrk` (Debian's, closed loop, `--conns` connections, one thread), requests/s; without
   wrk a closed-loop asyncio client stands in (it saturates itself before a fast server).
3. Memory soak: the gateway's RSS (from /proc) every few seconds during `--soak-seconds` of the fixed
   rate, streamed and not alternating; the slope over the second half (MB/min) says whether it is flat.
4. Profile (`--profile-seconds`, off in `--quick`): py-spy samples the gateway during a fixed-rate run;
   the top functions by own time and by inclusive time are printed (collapsed stacks kept in the temp
   dir when `--keep` is given).

The machine is a shared 2-core VM: the load average is printed at the start and the end. Every number
includes the load generator sharing the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _timing import machine  # noqa: E402

VENV_BIN = Path(sys.executable).parent
LITELLM_VENV = HERE / ".venv-litellm-proxy"
LITELLM_CONSTRAINTS = HERE / "constraints-litellm-proxy.txt"
MODEL = "gpt-4o-mini"
CLIENT_KEY = (
    "sk-bench-5f0c8e2a9b7d4c61a3e8f2d0b6c4a1e9d7f5b3a2c8e6d4f0a1b3c5e7d9f2a4b6"  # litellm's master key too
)
MAX_CONNECTIONS = 1024  # per target, in the load generator
IDLE_SECONDS = 3.0  # an idle connection older than this is closed, not reused (servers drop them at 5 s)
PROMPT = "Summarize the following quarterly report in three bullet points. " * 4

# -- the upstream ------------------------------------------------------------------------------------------
# Shapes: OpenAI's chat completion object and chat completion chunk object
# (https://platform.openai.com/docs/api-reference/chat/object, …/chat-streaming/streaming).

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion",
        "created": 1764000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "- Revenue up.\n- Costs flat.\n- Outlook good."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 52,
            "completion_tokens": 14,
            "total_tokens": 66,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "system_fingerprint": "fp_bench",
    },
    separators=(",", ":"),
).encode()


def _chunk(
    delta: dict[str, object], finish: str | None, usage: dict[str, int] | None, choices: bool = True
) -> bytes:
    payload = {
        "id": "chatcmpl-bench0002",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if choices
        else [],
        "usage": usage,
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


_EVENTS = [
    _chunk({"role": "assistant", "content": ""}, None, None),
    *(_chunk({"content": f"word{i} "}, None, None) for i in range(10)),
    _chunk({}, "stop", None),
]
_USAGE_EVENT = _chunk(
    {}, None, {"prompt_tokens": 52, "completion_tokens": 10, "total_tokens": 62}, choices=False
)
_DONE = b"data: [DONE]\n\n"


def _chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


_JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(
    _COMPLETION
)
_JSON_REPLY = _JSON_HEAD + _COMPLETION
_SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
_SSE_BODY = _chunked([*_EVENTS, _DONE])
_SSE_BODY_USAGE = _chunked([*_EVENTS, _USAGE_EVENT, _DONE])
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class _Upstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length request bodies; the answer chosen by two byte searches."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            length = _LENGTH.search(buffer, 0, end + 2)
            size = int(length.group(1)) if length else 0
            if len(buffer) < end + 4 + size:
                break
            head = buffer[:end]
            body = buffer[end + 4 : end + 4 + size]
            buffer = buffer[end + 4 + size :]
            self._answer(head, body)
        self.buffer = buffer

    def _answer(self, head: bytes, body: bytes) -> None:
        write = self.transport.write
        if not head.startswith(b"POST "):
            write(_NOT_FOUND)
            return
        compact = body.replace(b" ", b"")
        if b'"stream":true' not in compact:
            write(_JSON_REPLY)
            return
        write(_SSE_HEAD)  # headers first, then the events as separate writes, as a real stream arrives
        events = _SSE_BODY_USAGE if b'"include_usage":true' in compact else _SSE_BODY
        write(events)


def serve_upstream(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Upstream, "127.0.0.1", port, backlog=4096)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


# -- the processes -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(name: str, argv: list[str], port: int, tmp: Path, env: dict[str, str] | None = None) -> Proc:
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=tmp
        )
    return Proc(name, port, popen, log)


def wait_ready(proc: Proc, timeout: float) -> None:
    """Until a chat completion POST answers 200 (the process's whole path is up)."""
    deadline = time.monotonic() + timeout
    request = build_request(proc.port, stream=False)
    last = ""
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log.read_text()[-3000:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as s:
                s.sendall(request)
                data = s.recv(65536)
                if data.startswith(b"HTTP/1.1 200"):
                    return
                last = data[:300].decode("latin-1")
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise RuntimeError(
        f"{proc.name} not ready after {timeout:.0f}s ({last}):\n{proc.log.read_text()[-3000:]}"
    )


def settle(proc: Proc, timeout: float) -> float:
    """Wait until `proc` answers one request within 50 ms (a backlog from an overload has drained);
    the seconds waited."""
    started = time.monotonic()
    request = build_request(proc.port, stream=False)
    while time.monotonic() - started < timeout:
        t = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", proc.port), timeout=timeout) as s:
                s.sendall(request)
                s.recv(65536)
        except OSError:
            pass
        if time.perf_counter() - t < 0.05:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def setup_litellm() -> Path:
    """The LiteLLM proxy's venv (made and installed from its pinned constraints on first use)."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"installing LiteLLM's proxy into {LITELLM_VENV} (once) …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    (LITELLM_VENV / ".gitignore").write_text("*\n")
    pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(LITELLM_CONSTRAINTS)], check=True)
    return exe


def start_litellm(upstream: int, tmp: Path, workers: int) -> Proc:
    exe = setup_litellm()
    port = free_port()
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{upstream}/v1\n"
        "      api_key: sk-bench-upstream\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_MASTER_KEY": CLIENT_KEY,
    }
    argv = [
        str(exe),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    return start("litellm", argv, port, tmp, env)


def start_gateway(upstream: int, tmp: Path) -> Proc:
    port = free_port()
    budgets = tmp / "budgets.toml"
    budgets.write_text('[[budgets]]\nname = "bench"\nlimit_usd = "1000000"\nwindow = "monthly"\n')
    argv = [
        str(VENV_BIN / "tokentrail"),
        "gateway",
        "--upstream",
        f"openai=http://127.0.0.1:{upstream}",
        "--store",
        f"sqlite:///{tmp / 'ledger.db'}",
        "--budgets",
        "memory://",
        "--budget-config",
        str(budgets),
        "--port",
        str(port),
    ]
    return start("gateway", argv, port, tmp)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- the load generator -----------------------------------------------------------------------------------


def request_body(stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True  # no stream_options: the gateway asks for usage and hides the usage chunk
    return json.dumps(body).encode()


def build_request(port: int, stream: bool) -> bytes:
    body = request_body(stream)
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer %s\r\ncontent-length: %d\r\n\r\n%s"
        % (port, CLIENT_KEY.encode(), len(body), body)
    )


@dataclass
class Samples:
    total: list[float] = field(default_factory=list)  # scheduled → last byte, seconds
    first: list[float] = field(default_factory=list)  # scheduled → first body byte
    service: list[float] = field(default_factory=list)  # actually sent → last byte
    errors: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    outstanding: int = 0  # measured requests sent and not answered yet
    overloaded_after: float | None = None  # seconds into the run when the backlog passed its limit

    def unsent(self, count: int, stream: bool | None) -> None:
        """`count` requests not sent because the target fell behind: unanswered, infinite latency."""
        if count > 0:
            self.errors["not sent (target overloaded)"] += count
            self.total += [math.inf] * count
            if stream is not False:
                self.first += [math.inf] * count

    def extend(self, other: Samples) -> None:
        self.total += other.total
        self.first += other.first
        self.service += other.service
        self.errors += other.errors
        self.connections += other.connections


async def _exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes, stream: bool
) -> tuple[int, float, bool, bytes]:
    """Send one request, read its whole answer: (status, first body byte time, keep-alive, last part)."""
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep = b"connection: close" not in lower
    found = _LENGTH.search(head)
    if found is not None:
        size = int(found.group(1))
        body = await reader.readexactly(size) if size else b""
        return status, time.perf_counter(), keep, body[-64:]
    if b"transfer-encoding: chunked" not in lower:
        raise RuntimeError("answer with neither content-length nor chunked framing")
    first = 0.0
    last = b""
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, first, keep, last
        data = await reader.readexactly(size + 2)
        if not first:
            first = time.perf_counter()
        last = (last + data[:-2])[-64:]


class Pool:
    """Keep-alive connections to one port, at most `limit` open; a request with no idle connection opens a
    new one, or waits for one when `limit` are open (it is still timed from its scheduled time)."""

    def __init__(self, port: int, limit: int = MAX_CONNECTIONS) -> None:
        self.port = port
        self.limit = limit
        self.idle: list[tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], float]] = []
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.live = 0
        self.opened = 0

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while not self.idle and self.live >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter
        while self.idle:
            conn, since = self.idle.pop()
            if time.perf_counter() - since < IDLE_SECONDS:
                return conn
            self.lost(conn)  # the server may close it any moment (uvicorn: after 5 s idle)
        self.live += 1
        self.opened += 1
        try:
            return await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        except BaseException:
            self.lost()
            raise

    def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append((conn, time.perf_counter()))
        self._wake()

    def lost(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None) -> None:
        if conn is not None:
            conn[1].close()
        self.live -= 1
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for (_, writer), _since in self.idle:
            writer.close()
        self.idle.clear()


async def _one(pool: Pool, request: bytes, stream: bool, scheduled: float, out: Samples | None) -> None:
    if out is not None:
        out.outstanding += 1
    try:
        await _timed(pool, request, stream, scheduled, out)
    finally:
        if out is not None:
            out.outstanding -= 1


async def _timed(pool: Pool, request: bytes, stream: bool, scheduled: float, out: Samples | None) -> None:
    try:
        conn = await pool.get()
    except OSError as exc:
        if out is not None:
            out.errors[f"connect {type(exc).__name__}"] += 1
        return
    sent = time.perf_counter()
    try:
        status, first, keep, tail = await _exchange(conn, request, stream)
    except (OSError, asyncio.IncompleteReadError, ValueError, RuntimeError) as exc:
        pool.lost(conn)
        if out is not None:
            out.errors[type(exc).__name__] += 1
        return
    except BaseException:
        pool.lost(conn)
        raise
    done = time.perf_counter()
    if keep:
        pool.put(conn)
    else:
        pool.lost(conn)
    if out is None:
        return
    if status != 200:
        out.errors[f"HTTP {status}"] += 1
        return
    if stream and b"[DONE]" not in tail:
        out.errors["stream without [DONE]"] += 1
        return
    if not stream and b"}" not in tail:
        out.errors["truncated body"] += 1
        return
    out.total.append(done - scheduled)
    out.service.append(done - sent)
    if stream:
        out.first.append(first - scheduled)


async def _finish(
    tasks: set[asyncio.Task[None]], samples: Samples, grace: float, stream: bool | None
) -> None:
    """Wait up to `grace` s for the requests still running; those that are not answered by then count as
    unanswered, with an infinite latency (so a target that falls behind shows it in its percentiles)."""
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace)
        unanswered = samples.outstanding
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if unanswered:
            samples.errors["unanswered"] += unanswered
            samples.total += [math.inf] * unanswered
            if stream is not False:
                samples.first += [math.inf] * unanswered


async def open_loop(
    port: int, stream: bool, rate: float, seconds: float, warmup: float, grace: float
) -> Samples:
    """`rate` requests/s for `warmup` + `seconds`, each sent at its scheduled time (open loop). A target
    that falls more than a second behind (more requests waiting than a second's worth) is overloaded at
    this rate: the run stops there and the requests not sent count as unanswered."""
    pool = Pool(port)
    backlog = max(64, int(rate))
    request = build_request(port, stream)
    samples = Samples()
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate
    total = round(rate * (warmup + seconds))
    counted_from = round(rate * warmup)
    start = time.perf_counter() + 0.01
    for i in range(total):
        at = start + i * interval
        delay = at - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        if len(tasks) > backlog:
            samples.overloaded_after = at - start
            samples.unsent(total - max(i, counted_from), stream)
            break
        task = asyncio.ensure_future(_one(pool, request, stream, at, samples if i >= counted_from else None))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await _finish(tasks, samples, grace, stream)
    samples.connections = pool.opened
    pool.close()
    return samples


async def mixed_open_loop(
    port: int, rate: float, seconds: float, tick: Callable[[], None], grace: float
) -> Samples:
    """The soak: streamed and non-streamed requests alternating at `rate`; `tick()` about every second.
    Stopped like `open_loop` when the target falls more than a second behind."""
    pool = Pool(port)
    backlog = max(64, int(rate))
    requests = (build_request(port, False), build_request(port, True))
    samples = Samples()
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate
    start = time.perf_counter() + 0.01
    next_tick = start
    i = 0
    while True:
        at = start + i * interval
        if at - start >= seconds:
            break
        delay = at - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        if at >= next_tick:
            tick()
            next_tick += 1.0
        if len(tasks) > backlog:
            samples.overloaded_after = at - start
            samples.unsent(round((seconds - (at - start)) * rate), None)
            break
        stream = bool(i & 1)
        task = asyncio.ensure_future(_one(pool, requests[stream], stream, at, samples))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    await _finish(tasks, samples, grace, None)
    samples.connections = pool.opened
    pool.close()
    return samples


async def closed_loop(port: int, stream: bool, conns: int, seconds: float) -> tuple[float, int]:
    """Saturation without wrk: `conns` clients back to back; (requests/s, errors)."""
    pool = Pool(port)
    request = build_request(port, stream)
    done = 0
    samples = Samples()
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await _one(pool, request, stream, time.perf_counter(), samples)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    elapsed = time.perf_counter() - started
    pool.close()
    return len(samples.total) / elapsed, sum(samples.errors.values())


def wrk(port: int, stream: bool, conns: int, seconds: float, tmp: Path) -> tuple[float, int, int]:
    """Debian's wrk, one thread, `conns` connections: (requests/s, non-2xx, socket errors)."""
    script = tmp / f"post-{int(stream)}.lua"
    body = request_body(stream).decode()
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {CLIENT_KEY}"\n'
    )
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "-s", str(script)]
    out = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}/v1/chat/completions"], capture_output=True, text=True
    )
    text = out.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if rate is None:
        raise RuntimeError(f"wrk said:\n{text}\n{out.stderr}")
    socket_errors = sum(map(int, errors.groups())) if errors else 0
    return float(rate.group(1)), int(non2xx.group(1)) if non2xx else 0, socket_errors


# -- the profile -------------------------------------------------------------------------------------------


def profile(pid: int, seconds: float, tmp: Path, run: Callable[[], object]) -> tuple[Path, int] | None:
    """py-spy on `pid` while `run()` loads it: the collapsed stacks file and its sample count."""
    spy = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
    if spy is None:
        print("py-spy not found (pip install py-spy): no profile")
        return None
    out = tmp / "gateway.collapsed"
    argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250"]
    # --gil: only the thread holding the GIL is sampled, so the shares are of the Python CPU time (a
    # thread sleeping or blocked in a system call is not counted, wherever it waits)
    argv += ["--gil", "--format", "raw", "--output", str(out), "--nonblocking"]
    spy_proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run()
    _, err = spy_proc.communicate(timeout=seconds + 60)
    if not out.exists():
        print(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
        return None
    total = sum(int(line.rsplit(" ", 1)[1]) for line in out.read_text().splitlines() if line.strip())
    return out, total


def _frame(frame: str) -> str:
    """`func (path/to/module.py:123)` → `func (module.py)`: one name per function, not per line."""
    found = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if found is None:
        return frame
    name, path = found.groups()
    marker = "site-packages/"
    if marker in path:
        path = path.split(marker, 1)[1]
    elif "/src/" in path:
        path = path.split("/src/", 1)[1]
    elif "/lib/python" in path:
        path = "stdlib/" + path.split("/lib/python", 1)[1].split("/", 1)[-1]
    return f"{name} ({path})"


# where a stack's time goes: the first of these met walking from the leaf to the root (path markers)
_CATEGORIES = [
    ("upstream client (aiohttp, yarl, multidict)", ("aiohttp/", "yarl/", "multidict/", "aiohappyeyeballs/")),
    ("HTTP server (uvicorn, httptools or h11)", ("uvicorn/protocols/", "uvicorn/middleware/", "h11/")),
    ("prompt counting (tiktoken)", ("tiktoken/", "tokentrail/tokens/")),
    ("budgets (reserve, settle)", ("tokentrail/budgets/", "tokentrail/gateway/_access.py")),
    (
        "recording (capture worker, reading, pricing, ledger)",
        (
            "tokentrail/_capture.py",
            "tokentrail/stores/",
            "tokentrail/tracker.py",
            "tokentrail/adapters/",
            "tokentrail/pricing/",
            "tokentrail/_record.py",
        ),
    ),
    ("gateway relay (gateway/_app, _events, _metrics …)", ("tokentrail/gateway/",)),
]
_SPINE = ("uvicorn/main.py", "uvicorn/server.py", "uvicorn/_compat.py", "tokentrail/cli/", "typer/", "click/")


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        if any(marker in frame for marker in _SPINE):
            continue
        for name, markers in _CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return "event loop, threads, other"


def hot_spots(
    collapsed: Path, top: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]], int]:
    """From py-spy's collapsed stacks: (own time by function, inclusive time by function without the
    frames every request passes through, time by category, samples)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        if not line.strip():
            continue
        stack, count_text = line.rsplit(" ", 1)
        count = int(count_text)
        total += count
        raw = [f for f in stack.split(";") if f and not f.startswith("thread (")]
        categories[_category(raw)] += count
        frames = [_frame(f) for f in raw if not any(marker in f for marker in _SPINE)]
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    spine = {name for name, count in inclusive.items() if count >= 0.5 * total and "Gateway" not in name}
    ranked = [(name, count) for name, count in inclusive.most_common() if name not in spine]
    return own.most_common(top), ranked[:top], categories.most_common(), total


# -- reporting ---------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(x: float) -> str:
    if x != x:
        return "—"
    return "∞" if math.isinf(x) else f"{x * 1000:.2f}"


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return float("nan")
    xs = [t for t, _ in points]
    ys = [r for _, r in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 60 if var else float("nan")


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def ledger_rows(db: Path) -> dict[str, int]:
    """Rows in the gateway's ledger by status (read after the gateway stopped and flushed)."""
    with sqlite3.connect(db) as con:
        try:
            rows = con.execute(
                "SELECT d.status, count(*) FROM ledger l JOIN dims d ON l.dim = d.id GROUP BY d.status"
            ).fetchall()
        except sqlite3.Error:
            rows = [("(any)", con.execute("SELECT count(*) FROM ledger").fetchone()[0])]
    return {str(k): int(v) for k, v in rows}


# -- the run -----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="≤ 60 s smoke run")
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s of the fixed-rate runs")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per cell (10; quick 3)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3; quick 1)")
    parser.add_argument("--soak-seconds", type=float, default=None, help="memory soak (600; quick 8)")
    parser.add_argument("--soak-rate", type=float, default=None, help="requests/s of the soak (--rate)")
    parser.add_argument("--saturation-seconds", type=float, default=None, help="per wrk run (8; quick 2)")
    parser.add_argument("--conns", type=int, default=64, help="wrk connections at saturation")
    parser.add_argument("--profile-seconds", type=float, default=None, help="py-spy (20; quick 0 = off)")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    parser.add_argument(
        "--litellm-workers",
        type=int,
        default=1,
        help="LiteLLM's --num_workers (1: one process, as the gateway)",
    )
    parser.add_argument(
        "--setup-litellm", action="store_true", help="install LiteLLM's proxy venv, then exit"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, ledger, profile)")
    parser.add_argument("--serve-upstream", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream is not None:
        serve_upstream(args.serve_upstream)
        return
    if args.setup_litellm:
        print(setup_litellm())
        return
    quick = args.quick
    seconds = args.seconds if args.seconds is not None else (2.0 if quick else 10.0)
    rounds = args.rounds if args.rounds is not None else (1 if quick else 3)
    soak = args.soak_seconds if args.soak_seconds is not None else (6.0 if quick else 600.0)
    saturation = args.saturation_seconds if args.saturation_seconds is not None else (2.0 if quick else 8.0)
    profile_seconds = args.profile_seconds if args.profile_seconds is not None else (0.0 if quick else 20.0)
    warmup = 0.5 if quick else 2.0
    grace = 2.0 if quick else 10.0  # seconds a request may still take after the schedule ends
    drain = 5.0 if quick else 60.0  # seconds an overloaded target is given to drain its backlog

    began = datetime.now(timezone.utc)
    load_start = load()
    print(f"tokentrail gateway benchmark, {began:%Y-%m-%d %H:%M} UTC, {machine()}")
    print(f"load average at start (1/5/15 min): {load_start}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="tt-bench-gateway-"))
    procs: list[Proc] = []
    results: dict[str, object] = {"date": began.isoformat(), "machine": machine(), "load_start": load_start}
    try:
        up_port = free_port()
        upstream = start(
            "upstream", [sys.executable, __file__, "--serve-upstream", str(up_port)], up_port, tmp
        )
        procs.append(upstream)
        gateway = start_gateway(up_port, tmp)
        procs.append(gateway)
        litellm = None if args.no_litellm else start_litellm(up_port, tmp, args.litellm_workers)
        if litellm is not None:
            procs.append(litellm)
        t0 = time.monotonic()
        for proc in procs:
            wait_ready(proc, 180)
        print(f"processes ready in {time.monotonic() - t0:.1f}s (temp dir {tmp})", flush=True)
        targets = [("direct", upstream), ("gateway", gateway)] + ([("litellm", litellm)] if litellm else [])

        # 1. latency at a fixed rate, targets interleaved
        cells: dict[tuple[str, bool], Samples] = {
            (n, s): Samples() for n, _ in targets for s in (False, True)
        }
        for _ in range(rounds):
            for stream in (False, True):
                for name, proc in targets:
                    got = asyncio.run(open_loop(proc.port, stream, args.rate, seconds, warmup, grace))
                    cells[(name, stream)].extend(got)
                    if got.overloaded_after is not None:
                        print(
                            f"({name} {'streamed' if stream else 'non-streamed'}: overloaded at {args.rate:g}/s, "
                            f"{int(args.rate)}+ requests waiting {got.overloaded_after:.1f}s into the run: stopped)",
                            flush=True,
                        )
                    waited = settle(proc, drain)
                    if waited > 2:
                        print(f"({name} took {waited:.0f}s to drain its backlog)", flush=True)
        print(
            f"\n## Latency at {args.rate:g} requests/s, open loop ({rounds} × {seconds:g} s per cell, ms)\n"
        )
        print("| target | mode | p50 | p99 | p99.9 | added p50 | added p99 | requests | errors | conns |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        latency: list[dict[str, object]] = []
        for stream in (False, True):
            for label, pick in (("TTLB", "total"), ("TTFB", "first")) if stream else (("body", "total"),):
                base: list[float] = getattr(cells[("direct", stream)], pick)
                for name, _ in targets:
                    cell = cells[(name, stream)]
                    values: list[float] = getattr(cell, pick)
                    p50, p99, p999 = pct(values, 0.5), pct(values, 0.99), pct(values, 0.999)
                    added50 = p50 - pct(base, 0.5) if name != "direct" else float("nan")
                    added99 = p99 - pct(base, 0.99) if name != "direct" else float("nan")
                    mode = f"{'streamed' if stream else 'non-streamed'} {label}"
                    errors = sum(cell.errors.values())
                    print(
                        f"| {name} | {mode} | {ms(p50)} | {ms(p99)} | {ms(p999)} | {ms(added50)} | "
                        f"{ms(added99)} | {len(cell.total)} | {errors} | {cell.connections} |"
                    )
                    latency.append(
                        {"target": name, "mode": mode, "p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3,
                         "p999_ms": p999 * 1e3, "added_p50_ms": added50 * 1e3, "added_p99_ms": added99 * 1e3,
                         "requests": len(cell.total), "errors": dict(cell.errors)}
                    )  # fmt: skip
        for (name, stream), cell in cells.items():
            if cell.errors:
                print(f"errors {name} {'streamed' if stream else 'non-streamed'}: {dict(cell.errors)}")
        results["latency"] = latency
        results["load_after_latency"] = load()
        print(f"\nload average after the latency runs: {results['load_after_latency']}", flush=True)

        # 2. saturation
        tool = "wrk" if shutil.which("wrk") else "asyncio closed loop"
        print(f"\n## Saturation ({tool}, {args.conns} connections, {saturation:g} s each, requests/s)\n")
        print("| target | non-streamed | streamed | non-2xx + socket errors |")
        print("|---|---:|---:|---:|")
        sat: list[dict[str, object]] = []
        modes = (False,) if quick else (False, True)
        for name, proc in targets:
            settle(proc, drain)
            row: dict[str, object] = {"target": name}
            bad = 0
            for stream in modes:
                if tool == "wrk":
                    rate, non2xx, sock = wrk(proc.port, stream, args.conns, saturation, tmp)
                    bad += non2xx + sock
                else:
                    rate, errs = asyncio.run(closed_loop(proc.port, stream, args.conns, saturation))
                    bad += errs
                row["streamed" if stream else "non_streamed"] = rate
            row["errors"] = bad
            sat.append(row)
            streamed = row.get("streamed")
            streamed_text = f"{streamed:,.0f}" if isinstance(streamed, float) else "—"
            print(f"| {name} | {row['non_streamed']:,.0f} | {streamed_text} | {bad} |", flush=True)
        results["saturation"] = sat

        # 3. profile under the fixed rate (before the soak, so the soak's ledger size does not weigh on it)
        if profile_seconds > 0:
            spied = profile(
                gateway.pid,
                profile_seconds,
                tmp,
                lambda: asyncio.run(
                    mixed_open_loop(gateway.port, args.rate, profile_seconds, lambda: None, grace)
                ),
            )
            if spied is not None:
                collapsed, _ = spied
                own, inclusive, categories, total = hot_spots(collapsed, 25)
                print(f"\n## Gateway profile (py-spy --gil, {profile_seconds:g} s at {args.rate:g}/s mixed, "
                      f"{total} samples of the thread holding the GIL)\n")  # fmt: skip
                print("| share of Python CPU | where |\n|---:|---|")
                for name, count in categories:
                    print(f"| {count / total:.1%} | {name} |")
                print("\n| own time | function |\n|---:|---|")
                for name, count in own:
                    print(f"| {count / total:.1%} | `{name}` |")
                print("\n| inclusive | function |\n|---:|---|")
                for name, count in inclusive:
                    print(f"| {count / total:.1%} | `{name}` |")
                results["profile"] = {
                    "categories": categories, "own": own, "inclusive": inclusive, "samples": total
                }  # fmt: skip

        # 4. memory soak of the gateway
        points: list[tuple[float, float]] = []
        soak_start = time.perf_counter()
        every = max(1, round(soak / 60)) if soak > 20 else 1

        def tick() -> None:
            now = time.perf_counter() - soak_start
            if not points or now - points[-1][0] >= every - 0.01:
                points.append((now, rss_mb(gateway.pid)))

        rss_before = rss_mb(gateway.pid)
        settle(gateway, drain)
        soak_rate = args.soak_rate or args.rate
        soaked = asyncio.run(mixed_open_loop(gateway.port, soak_rate, soak, tick, grace))
        if soaked.overloaded_after is not None:
            print(
                f"\n(the gateway fell a second behind {soak_rate:g}/s {soaked.overloaded_after:.1f}s into the soak: "
                "stopped; the memory figures below say nothing about a steady state — try a lower --soak-rate)"
            )
        points.append((time.perf_counter() - soak_start, rss_mb(gateway.pid)))
        half = [p for p in points if p[0] >= soak / 2]
        slope_all = slope_mb_per_min(points)
        slope_half = slope_mb_per_min(half)
        print(
            f"\n## Gateway memory over a {soak:g} s soak at {args.rate:g}/s (streamed and not alternating)\n"
        )
        print(
            "| RSS before | first sample | max | last | slope, whole soak | slope, second half | requests | errors |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {rss_before:.1f} MB | {points[0][1]:.1f} MB | {max(r for _, r in points):.1f} MB | "
            f"{points[-1][1]:.1f} MB | {slope_all:+.2f} MB/min | {slope_half:+.2f} MB/min | "
            f"{len(soaked.total):,} | {sum(soaked.errors.values())} |"
        )
        if soaked.total:
            print(f"soak latency: p50 {ms(pct(soaked.total, 0.5))} ms, p99 {ms(pct(soaked.total, 0.99))} ms")
        results["soak"] = {
            "seconds": soak, "rate": soak_rate, "overloaded_after": soaked.overloaded_after, "rss_before_mb": rss_before, "points": points, "slope_mb_per_min": slope_all,
            "slope_second_half_mb_per_min": slope_half, "requests": len(soaked.total),
            "errors": dict(soaked.errors),
        }  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()
    db = tmp / "ledger.db"
    if db.exists():
        rows = ledger_rows(db)
        results["ledger_rows"] = rows
        print(f"\ngateway ledger after shutdown: {sum(rows.values()):,} rows {rows}")
    results["load_end"] = load()
    print(f"load average at end: {results['load_end']}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
