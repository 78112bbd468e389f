"""Price one call: tokentrail vs genai-prices, LiteLLM and tokencost, measured in the same run.

Every peer prices the same calls; tokentrail's Decimal results are first checked equal to genai-prices'.
Also measures `import tokentrail` and the first `price()` (snapshot load) in fresh interpreters.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable

import tokentrail as tt
from _timing import per_call_us

# (model, input, output, cached input) — names every peer knows.
CALLS = [
    ("gpt-4o", 12_000, 800, 4_000),
    ("gpt-4o-mini", 3_000, 250, 0),
    ("claude-sonnet-4-20250514", 20_000, 1_200, 15_000),
    ("gemini-2.5-flash", 8_000, 400, 0),
]
PROVIDERS = {
    "gpt-4o": "openai",
    "gpt-4o-mini": "openai",
    "claude-sonnet-4-20250514": "anthropic",
    "gemini-2.5-flash": "gemini",
}


def ours(model: str, usage: tt.Usage) -> Callable[[], object]:
    return lambda: tt.price(usage, model)


def ours_with_decimal(model: str, usage: tt.Usage) -> Callable[[], object]:
    return lambda: tt.price(usage, model).total


def genai(model: str, inp: int, out: int, cached: int) -> Callable[[], object]:
    import genai_prices

    usage = genai_prices.Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached)
    return lambda: genai_prices.calc_price(usage, model).total_price


def litellm_peer(model: str, inp: int, out: int, cached: int) -> Callable[[], object]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network: use its bundled prices
    from litellm import cost_per_token

    provider = PROVIDERS[model]
    return lambda: sum(
        cost_per_token(
            model=model,
            custom_llm_provider=provider,
            prompt_tokens=inp,
            completion_tokens=out,
            cache_read_input_tokens=cached,
        )
    )


def tokencost_peer(model: str, inp: int, out: int, cached: int) -> Callable[[], object]:
    from tokencost import calculate_cost_by_tokens

    def call() -> object:
        cost = calculate_cost_by_tokens(inp - cached, model, "input") + calculate_cost_by_tokens(
            out, model, "output"
        )
        if cached:
            cost += calculate_cost_by_tokens(cached, model, "cached")
        return cost

    return call


def check_equal_to_genai_prices() -> int:
    import genai_prices

    for model, inp, out, cached in CALLS:
        usage = tt.Usage(inp, out, cache_read_tokens=cached)
        theirs = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached), model
        ).total_price
        assert tt.price(usage, model).total == theirs, (model, tt.price(usage, model).total, theirs)
    return len(CALLS)


_PYCACHE = tempfile.mkdtemp(prefix="tokentrail-bench-pycache-")


def fresh_interpreter_ms(code: str, runs: int = 15) -> float:
    """Median wall time of `code` in a new interpreter, with bytecode cached as an installed package has it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {
        "PYTHONPYCACHEPREFIX": _PYCACHE
    }

    def timed(snippet: str) -> float:
        script = f"import time; t = time.perf_counter(); {snippet}; print(time.perf_counter() - t)"
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
        )
        return float(result.stdout)

    timed(code)  # writes the bytecode cache
    return statistics.median(timed(code) for _ in range(runs)) * 1000


def main() -> dict[str, float]:
    checked = check_equal_to_genai_prices()
    print(f"price(): {checked} calls checked equal to genai-prices to the last Decimal digit")
    peers: dict[str, Callable[..., Callable[[], object]]] = {
        "genai-prices calc_price": genai,
        "LiteLLM cost_per_token (float)": litellm_peer,
        "tokencost calculate_cost_by_tokens": tokencost_peer,
    }
    results: dict[str, float] = {}
    results["tokentrail price()"] = statistics.mean(
        per_call_us(ours(m, tt.Usage(i, o, cache_read_tokens=c))) for m, i, o, c in CALLS
    )
    results["tokentrail price().total (Decimal read)"] = statistics.mean(
        per_call_us(ours_with_decimal(m, tt.Usage(i, o, cache_read_tokens=c))) for m, i, o, c in CALLS
    )
    for name, make in peers.items():
        try:
            results[name] = statistics.mean(
                per_call_us(make(*call), number=2_000 if "genai" in name or "LiteLLM" in name else 20_000)
                for call in CALLS
            )
        except ImportError as exc:
            print(f"  {name}: not installed ({exc.name}); `make bench` installs it")
    base = results["tokentrail price()"]
    print(f"\n{'price one call':44s} {'µs/call':>9s} {'vs tokentrail':>14s}")
    for name, us in results.items():
        print(f"  {name:42s} {us:9.2f} {us / base:13.1f}×")
    import_ms = fresh_interpreter_ms("import tokentrail")
    first_ms = fresh_interpreter_ms("import tokentrail as tt; tt.price(tt.Usage(1, 1), 'gpt-4o')") - import_ms
    print(f"\n  import tokentrail: {import_ms:.1f} ms (median of 15 fresh interpreters)")
    print(f"  first price() after import (loads the snapshot): {first_ms:.1f} ms")
    results["import_ms"] = import_ms
    results["first_price_ms"] = first_ms
    return results


if __name__ == "__main__":
    main()
