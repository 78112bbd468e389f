"""Small timing helpers shared by the benchmarks: best-of-N per-call time, machine description."""

from __future__ import annotations

import os
import platform
import timeit
from collections.abc import Callable


def per_call_us(fn: Callable[[], object], *, number: int = 20_000, repeat: int = 7) -> float:
    """Best-of-`repeat` mean time of one `fn()` call, in microseconds (min filters scheduler noise)."""
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"
