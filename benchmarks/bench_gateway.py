"""Gateway latency, throughput and memory: `tokentrail gateway` against calling the upstream directly and
against LiteLLM's proxy pointed at the same upstream, side by side in one run (issue 18).

python benchmarks/bench_gateway.py            # full run: ~4 min of latency + saturation, 10-minute soak
python benchmarks/bench_gateway.py --quick    # ≤ 60 s smoke run (short cells, 6-second soak, no profile)
python benchmarks/bench_gateway.py --soak-seconds 60 --profile-seconds 20 --json out.json
python benchmarks/bench_gateway.py --soak --json soak.json   # the 10-minute memory soak alone
python benchmarks/bench_gateway.py --soak 90 --inject-leak 200   # check that the soak catches a leak

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
3. Profile (`--profile-seconds`, off in `--quick`): py-spy samples the gateway during a fixed-rate run;
   the top functions by own time and by inclusive time are printed (collapsed stacks kept in the temp
   dir when `--keep` is given).
4. Memory soak (`--soak-seconds`, or `--soak SECONDS` for the soak alone): `--soak-rate` requests/s to
   the gateway, streamed and non-streamed alternating (so both paths run through the whole soak and a
   leak in either shows in one slope), open loop as in 1., tagged `X-Tokentrail-Agent: bench-soak`;
   meanwhile the upstream is called directly at a tenth of that rate, the baseline of "added" measured
   under the same load at the same time. Latencies go into fixed-size histograms (the load generator
   must not grow). Every `--soak-every` s a thread samples the gateway's RSS (VmRSS) and CPU time from
   /proc, the load generator's own, the soak's rows in the ledger and /metrics (in flight, non-200
   answers, refusals, upstream errors, disconnects). At the end the gateway is stopped (it flushes) and
   its ledger's soak rows are counted against the requests answered OK: they must be equal. Memory is
   flat when, over the samples after `--soak-warmup` s, the least-squares RSS slope is < 1 MB/min and the
   last RSS is ≤ the RSS at the warm-up's end + 10 % (benchmarks/_soak.py). The samples are written as
   CSV to the temp dir and beside `--json`. `--inject-leak BYTES` starts the gateway through a shim that
   keeps BYTES for every record it makes: the soak must then say "not met".

The machine is a shared 2-core VM: the load average is printed at the start and the end. Every number
includes the load generator sharing the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _soak import MAX_GROWTH, MAX_SLOPE_MB_PER_MIN, LatencyHistogram, judge_flat  # noqa: E402
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


# `tokentrail gateway` with a leak put in on purpose (`--inject-leak BYTES`): every record it makes keeps
# BYTES more in a list, through a sink, as a sink that forgot to let go would. The soak must catch it.
_LEAKY_GATEWAY = """
import sys

import tokentrail.tracker
from tokentrail.cli import main

size = int(sys.argv.pop(1))
kept = []
original = tokentrail.tracker.Tracker.__init__


def keep(record):
    kept.append(b"x" * size)
    if len(kept) % 10000 == 0:
        print(f"leaky gateway: {len(kept)} records, {size} bytes kept for each", file=sys.stderr, flush=True)


def leaky_init(self, *args, **kwargs):
    original(self, *args, **kwargs)
    self.add_sink(keep)


tokentrail.tracker.Tracker.__init__ = leaky_init
sys.argv[0] = "tokentrail"
main()
"""


def start_gateway(upstream: int, tmp: Path, leak_bytes: int = 0, runner: tuple[str, ...] = ()) -> Proc:
    """The gateway CLI as the benchmark runs it (under `runner`, e.g. valgrind and a python, when given)."""
    port = free_port()
    budgets = tmp / "budgets.toml"
    budgets.write_text('[[budgets]]\nname = "bench"\nlimit_usd = "1000000"\nwindow = "monthly"\n')
    command = [*runner, str(VENV_BIN / "tokentrail")]
    if leak_bytes:
        shim = tmp / "leaky_gateway.py"
        shim.write_text(_LEAKY_GATEWAY)
        command = [sys.executable, str(shim), str(leak_bytes)]
    argv = [
        *command,
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def build_request(port: int, stream: bool, agent: str | None = None) -> bytes:
    body = request_body(stream)
    attribution = b"x-tokentrail-agent: %s\r\n" % agent.encode() if agent else b""
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer %s\r\n%scontent-length: %d\r\n\r\n%s"
        % (port, CLIENT_KEY.encode(), attribution, len(body), body)
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

    def unanswered(self, count: int, stream: bool | None, why: str = "unanswered") -> None:
        """`count` requests not answered (or not sent because the target fell behind): infinite latency."""
        if count > 0:
            self.errors[why] += count
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


async def _one(
    pool: Pool, request: bytes, stream: bool, scheduled: float, out: Samples | SoakSamples | None
) -> None:
    if out is not None:
        out.outstanding += 1
    try:
        await _timed(pool, request, stream, scheduled, out)
    finally:
        if out is not None:
            out.outstanding -= 1


async def _timed(
    pool: Pool, request: bytes, stream: bool, scheduled: float, out: Samples | SoakSamples | None
) -> None:
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
    tasks: set[asyncio.Task[None]], outs: list[tuple[Samples | SoakSamples, bool | None]], grace: float
) -> None:
    """Wait up to `grace` s for the requests still running; those that are not answered by then count as
    unanswered, with an infinite latency (so a target that falls behind shows it in its percentiles)."""
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace)
        unanswered = [(samples, samples.outstanding, stream) for samples, stream in outs]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for samples, count, stream in unanswered:
            samples.unanswered(count, stream)


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
            samples.unanswered(total - max(i, counted_from), stream, "not sent (target overloaded)")
            break
        task = asyncio.ensure_future(_one(pool, request, stream, at, samples if i >= counted_from else None))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await _finish(tasks, [(samples, stream)], grace)
    samples.connections = pool.opened
    pool.close()
    return samples


@dataclass
class SoakSamples:
    """One target's answers in one mode during the soak, in fixed-size histograms (a list per request
    would grow the load generator by ~10 MB over a 10-minute soak at 500/s)."""

    total: LatencyHistogram = field(default_factory=LatencyHistogram)  # scheduled → last byte
    first: LatencyHistogram = field(default_factory=LatencyHistogram)  # scheduled → first body byte
    service: LatencyHistogram = field(default_factory=LatencyHistogram)  # actually sent → last byte
    errors: Counter[str] = field(default_factory=Counter)
    outstanding: int = 0

    def unanswered(self, count: int, stream: bool | None, why: str = "unanswered") -> None:
        if count > 0:
            self.errors[why] += count
            self.total.add_infinite(count)
            if stream is not False:
                self.first.add_infinite(count)

    @property
    def ok(self) -> int:
        """Requests answered 200 with a whole body (a stream ending in `[DONE]`)."""
        return self.total.finite


LATE = (0.001, 0.010)  # a request dispatched more than this after its scheduled time is late


@dataclass
class Pace:
    """How well one fixed-rate schedule was kept: requests scheduled, dispatched, and how late."""

    rate: float
    scheduled: int = 0
    sent: int = 0
    late: list[int] = field(default_factory=lambda: [0] * len(LATE))  # more than LATE[i] late
    max_lag: float = 0.0
    lag: LatencyHistogram = field(default_factory=LatencyHistogram)
    overloaded_after: float | None = None  # seconds in: the target fell a second behind, the run stopped
    waiting: int = 0  # requests sent and not answered yet, at the last dispatch
    max_waiting: int = 0  # the most seen at a dispatch
    first_sent: float = 0.0  # perf_counter() at the first dispatch
    last_sent: float = 0.0

    @property
    def achieved(self) -> float:
        """Requests/s actually dispatched, first to last."""
        span = self.last_sent - self.first_sent
        return (self.sent - 1) / span if self.sent > 1 and span > 0 else math.nan

    def dispatched(self, lag: float) -> None:
        self.last_sent = time.perf_counter()
        if not self.sent:
            self.first_sent = self.last_sent
        self.sent += 1
        self.lag.append(lag)
        if lag > self.max_lag:
            self.max_lag = lag
        for i, bound in enumerate(LATE):
            if lag > bound:
                self.late[i] += 1


async def paced_mixed(
    port: int,
    rate: float,
    seconds: float,
    out: dict[bool, SoakSamples],
    pace: Pace,
    stop: asyncio.Event,
    grace: float,
    agent: str | None = None,
    behind: float = 1.0,
) -> None:
    """Streamed and non-streamed requests alternating at `rate` for `seconds`, open loop (each timed from
    its scheduled time), `agent` in `X-Tokentrail-Agent`. When the target falls more than `behind` seconds
    behind (more requests waiting than that many seconds' worth) the run stops — this schedule and,
    through `stop`, the other ones — and the requests not sent count as unanswered."""
    pool = Pool(port)
    backlog = max(64, int(rate * behind))
    requests = (build_request(port, False, agent), build_request(port, True, agent))
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate
    pace.scheduled = total = round(rate * seconds)
    start = time.perf_counter() + 0.01
    for i in range(total):
        at = start + i * interval
        delay = at - time.perf_counter()
        if delay > 0.0005:  # the selector sleeps in whole milliseconds: closer than that, send now
            await asyncio.sleep(delay)
        pace.waiting = len(tasks)
        pace.max_waiting = max(pace.max_waiting, pace.waiting)
        if len(tasks) > backlog and not stop.is_set():
            pace.overloaded_after = at - start
            stop.set()
        if stop.is_set():
            even = len(range(i + (i & 1), total, 2))  # the non-streamed ones among those left
            out[False].unanswered(even, False, "not sent (soak stopped)")
            out[True].unanswered(total - i - even, True, "not sent (soak stopped)")
            break
        stream = bool(i & 1)
        pace.dispatched(time.perf_counter() - at)
        task = asyncio.ensure_future(_one(pool, requests[stream], stream, at, out[stream]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await _finish(tasks, [(out[False], False), (out[True], True)], grace)
    pool.close()


async def mixed_load(port: int, rate: float, seconds: float, grace: float) -> None:
    """`paced_mixed` with nothing measured (load for the profile)."""
    out = {False: SoakSamples(), True: SoakSamples()}
    await paced_mixed(port, rate, seconds, out, Pace(rate), asyncio.Event(), grace)


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


def mb(x: float, spec: str = ".1f") -> str:
    return "—" if x != x else f"{x:{spec}} MB"


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def ledger_rows(db: Path, agent: str | None = None) -> dict[str, int]:
    """Rows in the gateway's ledger by status, all or one agent's (read after the gateway stopped and
    flushed)."""
    where, params = ("WHERE d.agent = ?", (agent,)) if agent is not None else ("", ())
    with contextlib.closing(sqlite3.connect(db)) as con:
        try:
            rows = con.execute(
                f"SELECT d.status, count(*) FROM ledger l JOIN dims d ON l.dim = d.id {where} GROUP BY d.status",
                params,
            ).fetchall()
        except sqlite3.Error:
            rows = [("(any)", con.execute("SELECT count(*) FROM ledger").fetchone()[0])]
    return {str(k): int(v) for k, v in rows}


# -- the soak ----------------------------------------------------------------------------------------------

SOAK_AGENT = "bench-soak"  # in the soak's requests, so its ledger rows are counted apart from the others'
# The soak stops when a target is this many seconds of requests behind: not one second as in the latency
# cells, since on a shared machine a one-second stall of any of the three processes happens in ten minutes.
SOAK_BEHIND = 5.0

_METRICS = {  # the /metrics figures the soak follows ← the metric, summed over its labels
    "in_flight": "tokentrail_gateway_in_flight",
    "refused": "tokentrail_gateway_refused_total",
    "upstream_errors": "tokentrail_gateway_upstream_errors_total",
    "client_disconnects": "tokentrail_gateway_client_disconnects_total",
    "budget_backend_errors": "tokentrail_gateway_budget_backend_errors",
}
_COUNTERS = ("answers_non_200", "refused", "upstream_errors", "client_disconnects", "budget_backend_errors")


def gateway_metrics(port: int) -> dict[str, float]:
    """The gateway's /metrics figures the soak follows: requests in flight, and since the gateway started,
    answers other than 200, refusals, upstream errors, client disconnects, budget back-end errors."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    names = {metric: name for name, metric in _METRICS.items()}
    figures = dict.fromkeys(("answers_non_200", *_METRICS), 0.0)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        sample, value = line.rsplit(" ", 1)
        metric = sample.split("{", 1)[0]
        if metric == "tokentrail_gateway_requests_total" and 'status="200"' not in sample:
            figures["answers_non_200"] += float(value)
        elif metric in names:
            figures[names[metric]] += float(value)
    return figures


def soak_ledger_rows(db: Path) -> int:
    """The soak's rows in the ledger now (a read-only reader of the WAL database: no write waits for it)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        found = con.execute(
            "SELECT count(*) FROM ledger WHERE dim IN (SELECT id FROM dims WHERE agent = ?)", (SOAK_AGENT,)
        ).fetchone()
    return int(found[0])


class Sampler:
    """Every `every` s, on a thread of the load generator (a slow sample delays no request): the gateway's
    RSS and CPU time, the load generator's own RSS, the soak's rows in the ledger, the /metrics figures,
    and what the load generator has counted so far (`progress()`)."""

    def __init__(
        self, gateway: Proc, db: Path, every: float, progress: Callable[[], dict[str, float]]
    ) -> None:
        self.gateway = gateway
        self.db = db
        self.every = every
        self.progress = progress
        self.rows: list[dict[str, float]] = []
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling, then take the last sample (after the load, before the gateway stops)."""
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        taken = 0
        while True:
            self.sample()
            taken += 1
            if self._stop.wait(max(0.0, self._t0 + taken * self.every - time.perf_counter())):
                return

    def sample(self) -> None:
        pid = self.gateway.pid
        row: dict[str, float] = {"t_s": round(time.perf_counter() - self._t0, 3)}
        try:
            row["gateway_rss_mb"] = rss_mb(pid)
            row["gateway_cpu_s"] = cpu_seconds(pid)
        except OSError:
            self.failures["gateway gone"] += 1
            return
        row["generator_rss_mb"] = rss_mb(os.getpid())
        row["generator_cpu_s"] = cpu_seconds(os.getpid())
        row.update(self.progress())
        try:
            row["ledger_rows"] = soak_ledger_rows(self.db)
        except sqlite3.Error as exc:
            self.failures[f"ledger: {exc}"] += 1
            row["ledger_rows"] = math.nan
        try:
            row.update(gateway_metrics(self.gateway.port))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.failures[f"/metrics: {type(exc).__name__}"] += 1
        row["load_1min"] = os.getloadavg()[0]
        self.rows.append(row)


@dataclass
class SoakPlan:
    seconds: float
    rate: float  # the gateway's, streamed and not alternating
    direct_rate: float  # the upstream's, called directly at the same time: the baseline of "added"
    warmup: float  # samples before this are not judged
    every: float  # seconds between samples
    grace: float  # seconds a request may still take after the schedule ends


def run_soak(
    direct: Proc, gateway: Proc, db: Path, plan: SoakPlan
) -> tuple[dict[str, object], list[dict[str, float]]]:
    """The memory soak (4. in the module docstring), the gateway stopped at its end so its ledger can be
    counted: prints the report, returns the results and the samples."""
    settle(gateway, 60)
    load_before = load()
    outs = {name: {False: SoakSamples(), True: SoakSamples()} for name in ("gateway", "direct")}
    paces = {"gateway": Pace(plan.rate), "direct": Pace(plan.direct_rate)}

    def progress() -> dict[str, float]:
        out, pace = outs["gateway"], paces["gateway"]
        errors = sum(sum(o.errors.values()) for o in out.values())
        return {"sent": pace.sent, "answered_ok": out[False].ok + out[True].ok, "errors": errors,
                "late_1ms": pace.late[0], "waiting": pace.waiting}  # fmt: skip

    async def traffic() -> None:
        stop = asyncio.Event()
        await asyncio.gather(
            *(
                paced_mixed(
                    proc.port,
                    paces[name].rate,
                    plan.seconds,
                    outs[name],
                    paces[name],
                    stop,
                    plan.grace,
                    SOAK_AGENT,
                    SOAK_BEHIND,
                )
                for name, proc in (("gateway", gateway), ("direct", direct))
            )
        )

    sampler = Sampler(gateway, db, plan.every, progress)
    sampler.start()
    asyncio.run(traffic())
    sampler.stop()
    gateway.stop()
    rows = ledger_rows(db, SOAK_AGENT)
    report = report_soak(plan, outs, paces, sampler, rows, load_before, shutdown_note(gateway))
    return report, sampler.rows


def shutdown_note(proc: Proc) -> str:
    """How a stopped process ended and what its log holds that looks like trouble."""
    code = proc.popen.returncode
    ended = "stopped by SIGTERM" if code in (0, -signal.SIGTERM) else f"EXIT CODE {code}"
    lines = proc.log.read_text(errors="replace").splitlines()
    trouble = [line for line in lines if re.search(r"Traceback|ERROR|WARNING|Exception", line)]
    last = f", the last: {trouble[-1][:200]!r}" if trouble else ""
    return f"{ended}, {len(trouble)} error or warning lines in its log{last}"


def report_soak(
    plan: SoakPlan,
    outs: dict[str, dict[bool, SoakSamples]],
    paces: dict[str, Pace],
    sampler: Sampler,
    rows: dict[str, int],
    load_before: str,
    shutdown: str,
) -> dict[str, object]:
    samples = sampler.rows
    print(
        f"\n## Gateway memory soak: {plan.seconds:g} s at {plan.rate:g}/s, streamed and not alternating "
        f"(the upstream called directly at {plan.direct_rate:g}/s meanwhile, for the baseline); "
        f"warm-up {plan.warmup:g} s, a sample every {plan.every:g} s\n"
    )
    print(f"load average (1/5/15 min) at the soak's start: {load_before}, at its end: {load()}\n")
    print(
        "| target | scheduled | sent | answered OK | errors | late > 1 ms | late > 10 ms | lag p99 | max lag "
        "| most waiting |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, out in outs.items():
        pace = paces[name]
        errors = out[False].errors + out[True].errors
        print(
            f"| {name} | {pace.scheduled:,} | {pace.sent:,} | {out[False].ok + out[True].ok:,} | "
            f"{sum(errors.values()):,} | {pace.late[0]:,} | {pace.late[1]:,} | {ms(pace.lag.percentile(0.99))} ms | "
            f"{ms(pace.max_lag)} ms | {pace.max_waiting:,} |"
        )
        if errors:
            print(f"errors {name}: {dict(errors)}")
    stopped = paces["gateway"].overloaded_after or paces["direct"].overloaded_after
    if stopped is not None:
        print(f"\nTHE SOAK STOPPED {stopped:.1f} s in: a target fell {SOAK_BEHIND:g} s behind its rate")
    print("\n| ms | gateway p50 | gateway p99 | direct p50 | direct p99 | added p50 | added p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    latency: list[dict[str, object]] = []
    for label, stream, pick in (("non-streamed", False, "total"), ("streamed TTLB", True, "total"),
                                ("streamed TTFB", True, "first")):  # fmt: skip
        gateway_h: LatencyHistogram = getattr(outs["gateway"][stream], pick)
        direct_h: LatencyHistogram = getattr(outs["direct"][stream], pick)
        figures = {
            f"{who}_{name}_ms": h.percentile(q) * 1e3
            for who, h in (("gateway", gateway_h), ("direct", direct_h))
            for name, q in (("p50", 0.5), ("p99", 0.99))
        }
        figures["added_p50_ms"] = figures["gateway_p50_ms"] - figures["direct_p50_ms"]
        figures["added_p99_ms"] = figures["gateway_p99_ms"] - figures["direct_p99_ms"]
        print(f"| {label} | " + " | ".join(ms(v / 1e3) for v in figures.values()) + " |")
        latency.append({"mode": label, **figures})

    answered = outs["gateway"][False].ok + outs["gateway"][True].ok
    recorded = sum(rows.values())
    exact = recorded == answered and set(rows) <= {"complete"}
    print(
        f"\nmade == recorded: {recorded:,} ledger rows of the soak's agent {rows} after the gateway's shutdown "
        f"({shutdown}), {answered:,} requests answered OK: "
        + ("EQUAL, all complete" if exact else f"NOT EQUAL ({recorded - answered:+,})")
    )

    flat = {
        process: judge_flat([(r["t_s"], r[column]) for r in samples], plan.warmup)
        for process, column in (("gateway", "gateway_rss_mb"), ("load generator", "generator_rss_mb"))
    }
    behind = paces["gateway"].max_waiting / plan.rate  # seconds' worth of requests waiting, at most
    if stopped is not None:
        flat = {k: replace(v, met=None, why=f"the soak stopped {stopped:.1f} s in") for k, v in flat.items()}
    elif behind > 1:
        overloaded = (
            f"not judged: up to {paces['gateway'].max_waiting:,} requests ({behind:.1f} s) were waiting for the "
            "gateway, so its RSS held a backlog — an overload, not a leak: run the soak on a quieter machine or at "
            "a lower --soak-rate"
        )
        flat = {k: replace(v, met=None, why=f"{v.why}; {overloaded}") for k, v in flat.items()}
    print("\n| RSS | at the warm-up's end | last | max | slope after the warm-up | samples | flat |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for process, verdict in flat.items():
        column = "gateway_rss_mb" if process == "gateway" else "generator_rss_mb"
        peak = max((r[column] for r in samples), default=math.nan)
        print(
            f"| {process} | {mb(verdict.warm_mb)} | {mb(verdict.final_mb)} | {mb(peak)} | "
            f"{mb(verdict.slope_mb_per_min, '+.2f')}/min | {verdict.samples} | {verdict.verdict} |"
        )
    print(
        f"\nmemory flat = over the samples from {plan.warmup:g} s on, least-squares slope < "
        f"{MAX_SLOPE_MB_PER_MIN:g} MB/min and last RSS ≤ RSS at the warm-up's end + {MAX_GROWTH:.0%}"
    )
    print(f"GATEWAY MEMORY FLAT: {flat['gateway'].verdict.upper()} ({flat['gateway'].why})")

    pace = paces["gateway"]
    kept = pace.sent == pace.scheduled and abs(pace.achieved / pace.rate - 1) < 0.01
    on_time = pace.late[0] <= pace.sent // 100
    late_share = pace.late[0] / pace.sent if pace.sent else math.nan
    print(
        f"load generator: {pace.sent:,} of {pace.scheduled:,} requests sent at {pace.achieved:.1f}/s — "
        f"RATE {'KEPT' if kept else 'NOT KEPT'} (kept = all sent, within 1 % of {pace.rate:g}/s); "
        f"{pace.late[0]:,} ({late_share:.1%}) sent more than 1 ms after their scheduled time, {pace.late[1]:,} "
        f"more than 10 ms — ON TIME: {'yes' if on_time else 'NO'} (≤ 1 % more than 1 ms late; a late request is "
        f"timed from its schedule, so its delay is in the latency figures)"
    )
    print(f"load generator's own RSS flat: {flat['load generator'].verdict} ({flat['load generator'].why})")
    if len(samples) >= 2:
        first, last = samples[0], samples[-1]
        deltas = {k: last.get(k, math.nan) - first.get(k, math.nan) for k in _COUNTERS}
        in_flight = [r["in_flight"] for r in samples if "in_flight" in r]
        print(
            "/metrics over the soak: in flight max "
            f"{max(in_flight, default=math.nan):g}, at the end {last.get('in_flight', math.nan):g}; "
            + ", ".join(f"{k.replace('_', ' ')} {v:+g}" for k, v in deltas.items())
        )
        handled = last["answered_ok"] - first["answered_ok"]
        cpu = (last["gateway_cpu_s"] - first["gateway_cpu_s"]) / handled * 1e3 if handled else math.nan
        elapsed = last["t_s"] - first["t_s"]
        own = (last["generator_cpu_s"] - first["generator_cpu_s"]) / elapsed if elapsed else math.nan
        print(f"load generator CPU (user + system): {own:.0%} of a core")
        lag = [r["answered_ok"] - r["ledger_rows"] for r in samples]
        print(
            f"gateway CPU (user + system, /proc): {cpu:.3f} ms a request answered; recording lag (answered OK − "
            f"the soak's ledger rows, at each sample): max {max(lag):,.0f}, at the last sample {lag[-1]:,.0f}"
        )
    if sampler.failures:
        print(f"sampling failures: {dict(sampler.failures)}")
    return {
        "seconds": plan.seconds, "rate": plan.rate, "direct_rate": plan.direct_rate, "warmup": plan.warmup,
        "every": plan.every, "load_before": load_before, "stopped_after": stopped, "behind_limit_s": SOAK_BEHIND,
        "paces": {name: {"scheduled": p.scheduled, "sent": p.sent, "late_1ms": p.late[0], "late_10ms": p.late[1],
                         "lag_p99_ms": p.lag.percentile(0.99) * 1e3, "max_lag_ms": p.max_lag * 1e3,
                         "achieved_rate": p.achieved, "max_waiting": p.max_waiting}
                  for name, p in paces.items()},
        "answered_ok": {name: out[False].ok + out[True].ok for name, out in outs.items()},
        "errors": {name: dict(out[False].errors + out[True].errors) for name, out in outs.items()},
        "latency": latency, "ledger_rows": rows, "made_equals_recorded": exact,
        "flat": {k: {"warm_mb": v.warm_mb, "final_mb": v.final_mb, "slope_mb_per_min": v.slope_mb_per_min,
                     "samples": v.samples, "met": v.met, "why": v.why} for k, v in flat.items()},
        "rate_kept": kept, "sampling_failures": dict(sampler.failures), "samples": samples,
    }  # fmt: skip


def write_samples(samples: list[dict[str, float]], path: Path) -> None:
    columns = list(dict.fromkeys(k for row in samples for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(samples)


@dataclass
class Plan:
    """How long the latency, saturation and profile runs are."""

    quick: bool
    seconds: float  # measured seconds per latency cell
    rounds: int
    saturation: float  # seconds per wrk run
    profile_seconds: float
    warmup: float  # seconds before a latency cell's requests count
    grace: float  # seconds a request may still take after the schedule ends
    drain: float  # seconds an overloaded target is given to drain its backlog


def measure(
    targets: list[tuple[str, Proc]], gateway: Proc, tmp: Path, args: argparse.Namespace, plan: Plan,
    results: dict[str, object],
) -> None:  # fmt: skip
    """1.–3. in the module docstring: latency at a fixed rate, saturation, the gateway's profile."""
    quick, seconds, rounds, saturation = plan.quick, plan.seconds, plan.rounds, plan.saturation
    profile_seconds, warmup, grace, drain = plan.profile_seconds, plan.warmup, plan.grace, plan.drain
    # 1. latency at a fixed rate, targets interleaved
    cells: dict[tuple[str, bool], Samples] = {(n, s): Samples() for n, _ in targets for s in (False, True)}
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
    print(f"\n## Latency at {args.rate:g} requests/s, open loop ({rounds} × {seconds:g} s per cell, ms)\n")
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
            lambda: asyncio.run(mixed_load(gateway.port, args.rate, profile_seconds, grace)),
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


# -- the run -----------------------------------------------------------------------------------------------


def given(value: float | None, default: float) -> float:
    return default if value is None else value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="≤ 60 s smoke run")
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s of the fixed-rate runs")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per cell (10; quick 3)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3; quick 1)")
    parser.add_argument(
        "--soak",
        type=float,
        nargs="?",
        const=600.0,
        default=None,
        metavar="SECONDS",
        help="run only the memory soak, SECONDS long (600): no latency cells, wrk, profile or LiteLLM",
    )
    parser.add_argument("--soak-seconds", type=float, default=None, help="the full run's soak (600; quick 6)")
    parser.add_argument("--soak-rate", type=float, default=None, help="requests/s of the soak (--rate)")
    parser.add_argument(
        "--soak-warmup", type=float, default=None, help="soak seconds not judged (60, at most a third)"
    )
    parser.add_argument(
        "--soak-every", type=float, default=None, help="seconds between soak samples (5; 1 under 60 s)"
    )
    parser.add_argument(
        "--soak-direct-rate",
        type=float,
        default=None,
        help="requests/s to the upstream directly during the soak, the baseline of 'added' (soak rate / 10)",
    )
    parser.add_argument(
        "--inject-leak",
        type=int,
        default=0,
        metavar="BYTES",
        help="check the soak: the gateway keeps BYTES more for every call it records",
    )
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
    soak_only = args.soak is not None
    plan = Plan(
        quick=quick,
        seconds=given(args.seconds, 2.0 if quick else 10.0),
        rounds=given(args.rounds, 1 if quick else 3),
        saturation=given(args.saturation_seconds, 2.0 if quick else 8.0),
        profile_seconds=given(args.profile_seconds, 0.0 if quick else 20.0),
        warmup=0.5 if quick else 2.0,
        grace=2.0 if quick else 10.0,
        drain=5.0 if quick else 60.0,
    )
    soak = args.soak if soak_only else given(args.soak_seconds, 6.0 if quick else 600.0)
    soak_rate = args.soak_rate or args.rate
    soak_plan = SoakPlan(
        seconds=soak,
        rate=soak_rate,
        direct_rate=args.soak_direct_rate or max(10.0, soak_rate / 10),
        warmup=given(args.soak_warmup, min(60.0, soak / 3)),
        every=args.soak_every or (5.0 if soak >= 60 else 1.0),
        grace=plan.grace,
    )

    began = datetime.now(timezone.utc)
    load_start = load()
    what = f"soak ({soak:g} s)" if soak_only else "benchmark"
    print(f"tokentrail gateway {what}, {began:%Y-%m-%d %H:%M} UTC, {machine()}")
    if args.inject_leak:
        print(f"LEAK INJECTED: the gateway keeps {args.inject_leak} bytes more for every call it records")
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
        gateway = start_gateway(up_port, tmp, args.inject_leak)
        procs.append(gateway)
        skip_litellm = args.no_litellm or soak_only
        litellm = None if skip_litellm else start_litellm(up_port, tmp, args.litellm_workers)
        if litellm is not None:
            procs.append(litellm)
        t0 = time.monotonic()
        for proc in procs:
            wait_ready(proc, 180)
        print(f"processes ready in {time.monotonic() - t0:.1f}s (temp dir {tmp})", flush=True)
        targets = [("direct", upstream), ("gateway", gateway)] + ([("litellm", litellm)] if litellm else [])

        if not soak_only:
            measure(targets, gateway, tmp, args, plan, results)
        results["soak"], samples = run_soak(upstream, gateway, tmp / "ledger.db", soak_plan)
        for path in [tmp / "soak.csv"] + ([args.json.with_suffix(".soak.csv")] if args.json else []):
            write_samples(samples, path)
        print(
            f"samples: {tmp / 'soak.csv'}" + (f", {args.json.with_suffix('.soak.csv')}" if args.json else "")
        )
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
