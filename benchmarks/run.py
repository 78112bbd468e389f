"""Run every benchmark: `make bench` (installs the peers first). Prints ratios against peers measured now."""

from __future__ import annotations

import importlib
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import machine

BENCHMARKS = [
    "bench_price",
    "bench_read",
    "bench_tracker",
    "bench_budgets",
    "bench_tokens",
    "bench_store",
    "bench_otlp",
    "bench_gateway",
]


def main() -> None:
    print(f"tokentrail benchmarks, {date.today()}, {machine()}\n")
    for name in BENCHMARKS:
        if not (Path(__file__).parent / f"{name}.py").exists():
            continue
        print(f"== {name} ==")
        importlib.import_module(name).main()
        print()


if __name__ == "__main__":
    main()
