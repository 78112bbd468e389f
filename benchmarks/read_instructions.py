"""Instructions per call of reading usage from a JSON body, counted by callgrind: a load-independent
measure beside bench_read.py's wall-clock figures (same bodies).

python benchmarks/read_instructions.py                     # tokentrail's public call and genai-prices'
python benchmarks/read_instructions.py --what public capture alone hand genai
python benchmarks/read_instructions.py --src /tmp/old/src  # tokentrail from another checkout
python benchmarks/read_instructions.py --json              # bodies decoded from JSON text (see below)

Each figure: the script below run under `valgrind --tool=callgrind` with 2,000 calls after 50 warm-up
calls, minus the same run with no calls after the warm-up, divided by 2,000 (so imports and warm-up cancel
out). PYTHONHASHSEED is fixed so that both runs lay out their dicts alike (otherwise the import's dict
lookups differ by hundreds of instructions a call). The loop and the lambda call themselves count about
0.8 k instructions (`loop`: the empty lambda). `public` is `usage_from_response(body, provider)`, `python`
the same with the compiled reader off (TOKENTRAIL_NO_EXTENSION=1), `capture` is `capture(...)`, `alone` the
compiled extractor by itself, `hand` the hand-written reader, `genai` genai-prices' `extract_usage`.
With `--json` each body is decoded from its JSON text first, as `response.json()` or the gateway gives it:
its keys are then not the interned strings of Python literals (a lookup compares them by content).
Needs valgrind (`apt-get install valgrind`); about 20 s a figure.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = {"openai chat": 0, "openai responses": 1, "anthropic message": 2}  # bench_read.CASES order
CALLS = 2000
_COLLECTED = re.compile(rb"Collected : (\d+)")


def _call(what: str, index: int, decoded: bool) -> Callable[[], object]:
    """The call to count: `what` of bench_read's case `index` (its body decoded from JSON text if `decoded`)."""
    sys.path.insert(0, str(HERE))
    import json

    from bench_read import CASES as BODIES

    _, body, provider, flavor, hand = BODIES[index]
    if decoded:
        body = json.loads(json.dumps(body))
    if what == "loop":
        return lambda: None
    if what in ("public", "python"):
        from tokentrail.adapters import usage_from_response

        return lambda: usage_from_response(body, provider)
    if what == "capture":
        from tokentrail.adapters import capture

        return lambda: capture(body, provider)
    if what == "alone":
        from tokentrail.adapters._mapped import mapped_readers

        compiled = mapped_readers().compiled(provider, flavor)
        assert compiled is not None
        return lambda: compiled.read(body, 0)
    if what == "hand":
        return lambda: hand(body, provider)
    import genai_prices

    return lambda: genai_prices.extract_usage(body, provider_id=provider, api_flavor=flavor)


def _count(what: str, index: int, calls: int, src: str | None, decoded: bool) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")
    if what == "python":
        env["TOKENTRAIL_NO_EXTENSION"] = "1"
    if src:
        env["PYTHONPATH"] = src
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--run",
        what,
        str(index),
        str(calls),
        *(["--json"] if decoded else []),
    ]
    done = subprocess.run(command, env=env, capture_output=True, check=True)
    found = _COLLECTED.search(done.stderr)
    assert found is not None, done.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--what", nargs="+", default=["public", "genai"])
    parser.add_argument("--src", help="import tokentrail from this src directory")
    parser.add_argument("--json", action="store_true", help="decode each body from its JSON text first")
    parser.add_argument("--run", nargs=3, help=argparse.SUPPRESS)  # inside valgrind: what, case, calls
    args = parser.parse_args()
    if args.run:
        what, index, calls = args.run[0], int(args.run[1]), int(args.run[2])
        call = _call(what, index, args.json)
        for _ in range(50):
            call()
        for _ in range(calls):
            call()
        return
    for name, index in CASES.items():
        figures = []
        for what in args.what:
            added = _count(what, index, CALLS, args.src, args.json) - _count(
                what, index, 0, args.src, args.json
            )
            figures.append(f"{what} {added / CALLS / 1000:6.1f} k")
        print(f"{name:18} " + " | ".join(figures), flush=True)


if __name__ == "__main__":
    main()
