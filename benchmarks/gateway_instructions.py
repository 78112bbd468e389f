"""Instructions per gateway request, counted by callgrind: a load-independent measure of the CPU one
forwarded request costs the gateway process (event loop, capture worker and ledger writer together).

python benchmarks/gateway_instructions.py                     # 400 requests per mode, 4 connections
python benchmarks/gateway_instructions.py --src /tmp/old/src  # the same against another checkout's code
python benchmarks/gateway_instructions.py --unique-prompts    # no prompt counted twice (no count reused)
python benchmarks/gateway_instructions.py --per-thread --keep DIR  # per thread; dumps kept

The upstream is bench_gateway.py's raw-asyncio server (its own process, not counted). The real
`tokentrail gateway` CLI (SQLite ledger, `--budgets memory://` with one budget, as bench_gateway.py runs
it) runs under `valgrind --tool=callgrind --instr-atstart=no`: start-up and a warm-up of each mode run
uninstrumented; then, per mode, instrumentation is switched on, the requests are sent (keep-alive, a
fixed number of connections, closed loop), the capture worker and ledger writer are given time to
record them, and the counters are dumped. An idle phase of the same length (no requests) is dumped
too and subtracted, so the figures are the instructions a request adds. Needs valgrind
(`apt-get install valgrind`); about a minute and a half a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_gateway import (  # noqa: E402
    VENV_BIN,
    _exchange,
    build_request,
    free_port,
    start,
    start_gateway,
    wait_ready,
)

_SUMMARY = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def _unique_request(port: int, stream: bool, number: int) -> bytes:
    """bench_gateway's request with a prompt no other request has (no count is reused)."""
    fixed = build_request(port, stream)
    head, _, body = fixed.partition(b"\r\n\r\n")
    payload = json.loads(body)
    payload["messages"][0]["content"] += f" Request {number} of this run."
    body = json.dumps(payload).encode()
    head = re.sub(rb"content-length: \d+", b"content-length: %d" % len(body), head)
    return head + b"\r\n\r\n" + body


async def _send(port: int, stream: bool, requests: int, conns: int, unique: bool = False) -> None:
    request = build_request(port, stream)
    numbers = iter(range(requests))

    async def worker(count: int) -> None:
        conn = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                if unique:
                    request_made = _unique_request(port, stream, next(numbers) + (1 << 20) * stream)
                else:
                    request_made = request
                status, _first, keep, last = await _exchange(conn, request_made, stream)
                if status != 200 or not keep:
                    raise RuntimeError(f"gateway answered {status} (keep-alive {keep}): {last!r}")
                if stream and not last.endswith(b"data: [DONE]\n\n"):
                    raise RuntimeError(f"a stream ended without [DONE]: {last!r}")
        finally:
            conn[1].close()

    share, extra = divmod(requests, conns)
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(conns)))


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL)


def _dump(pid: int, out: Path, settle: float, label: str, keep: Path | None = None) -> int:
    """Wait `settle` seconds (the worker and writer finish), dump the counters and return their total
    (the dump copied to `keep` when given, for callgrind_annotate; each thread's total printed when
    callgrind counted them apart)."""
    time.sleep(settle)
    before = set(out.parent.glob(f"{out.name}*"))
    _control("--dump", str(pid))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(1.0)
        new = sorted(set(out.parent.glob(f"{out.name}*")) - before)
        totals = []
        for path in new:
            data = path.read_bytes()
            found = _SUMMARY.search(data)
            if found is None:
                break
            totals.append(int(found.group(1)))
            if keep is not None:
                (keep.parent / (keep.name + path.name[len(out.name) :])).write_bytes(data)
        else:
            if totals:
                if len(totals) > 1:
                    print(f"{label}, per thread:", ", ".join(f"{t:,}" for t in totals if t))
                return sum(totals)
    raise RuntimeError("callgrind wrote no dump")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="measured requests per mode")
    parser.add_argument("--warm", type=int, default=200, help="uninstrumented requests per mode first")
    parser.add_argument("--conns", type=int, default=4, help="client connections")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each dump")
    parser.add_argument("--per-thread", action="store_true", help="also print each thread's instructions")
    parser.add_argument(
        "--unique-prompts", action="store_true", help="a prompt of its own per measured request"
    )
    parser.add_argument("--keep", type=Path, default=None, help="copy each mode's dump into this directory")
    parser.add_argument("--src", type=Path, default=None, help="the tokentrail sources to run (PYTHONPATH)")
    args = parser.parse_args(argv)

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tt-gw-cg-") as tmp_name:
        tmp = Path(tmp_name)
        upstream_port = free_port()
        upstream = start(
            "upstream",
            [sys.executable, str(HERE / "bench_gateway.py"), "--serve-upstream", str(upstream_port)],
            upstream_port,
            tmp,
        )
        out = tmp / "callgrind.out"
        if args.src:  # the gateway's imports (the upstream runs already)
            os.environ["PYTHONPATH"] = str(args.src.resolve())
        runner = (
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            *(["--separate-threads=yes"] if args.per_thread else []),
            f"--callgrind-out-file={out}",
            str(VENV_BIN / "python"),
        )
        gateway = start_gateway(upstream_port, tmp, runner=runner)
        port = gateway.port
        try:
            wait_ready(upstream, 30)
            wait_ready(gateway, 600)
            for stream in (False, True):
                asyncio.run(_send(port, stream, args.warm, args.conns))
            pid = gateway.pid
            _dump(pid, out, args.settle, "warm-up")  # zero what the warm-up left counted
            _control("--instr=on", str(pid))
            idle = _dump(pid, out, args.settle, "idle")
            results = {}
            for stream in (False, True):
                asyncio.run(_send(port, stream, args.requests, args.conns, args.unique_prompts))
                name = "streamed" if stream else "non-streamed"
                keep = args.keep / f"callgrind.{name}" if args.keep else None
                results[stream] = _dump(pid, out, args.settle, name, keep)
            _control("--instr=off", str(pid))
        finally:
            gateway.stop()
            upstream.stop()
        load = os.getloadavg()[0]
        prompts = (
            "a prompt of its own per request" if args.unique_prompts else "the same prompt every request"
        )
        print(
            f"src: {args.src or 'installed'}; {args.requests} requests per mode, {args.conns} connections, {prompts}"
        )
        print(f"idle phase ({args.settle:g} s): {idle:,} instructions (subtracted); load {load:.2f}")
        for stream, total in results.items():
            per = (total - idle) / args.requests
            print(f"{'streamed' if stream else 'non-streamed':>13}: {per:,.0f} instructions per request")


if __name__ == "__main__":
    main()
