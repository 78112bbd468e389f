"""Token counting: count_tokens vs raw tiktoken on the same text in the same run, estimator accuracy
vs chars/4, and the first-call cost of loading an encoder in a fresh interpreter."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

from tokentrail.tokens import count_tokens, get_encoding
from tokentrail.tokens.estimate import chars_per_4_estimate, estimate_text_tokens

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests/tokens/fixtures/corpus"
REFERENCE = ROOT / "tests/tokens/fixtures/reference_counts.json"


def _corpus() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.txt"))}


def _best_seconds(fn: object, number: int, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number  # type: ignore[arg-type]


def throughput(text: str, model: str, encoding: str) -> tuple[float, float]:
    """MB/s of count_tokens and of raw tiktoken encode_ordinary, runs interleaved so both see the same load."""
    raw = get_encoding(encoding)
    size_mb = len(text.encode()) / 1e6
    assert count_tokens(text, model) == len(raw.encode_ordinary(text))
    ours, theirs = [], []
    for _ in range(9):
        ours.append(_best_seconds(lambda: count_tokens(text, model), number=2, repeat=2))
        theirs.append(_best_seconds(lambda: len(raw.encode_ordinary(text)), number=2, repeat=2))
    return size_mb / min(ours), size_mb / min(theirs)


def per_call_us(text: str, model: str, encoding: str) -> tuple[float, float]:
    raw = get_encoding(encoding)
    ours = _best_seconds(lambda: count_tokens(text, model), number=20_000) * 1e6
    theirs = _best_seconds(lambda: len(raw.encode_ordinary(text)), number=20_000) * 1e6
    return ours, theirs


def estimator_accuracy() -> dict[str, tuple[float, float]]:
    """Mean absolute relative error on the corpus, per measured family: ours and chars/4."""
    reference = json.loads(REFERENCE.read_text("utf-8"))
    samples = _corpus()
    results = {}
    for family in sorted(reference["sources"]):
        ours, rule = [], []
        for name, text in samples.items():
            truth = reference["samples"][name]["tokens"][family]
            ours.append(abs(estimate_text_tokens(text, family) - truth) / truth)
            rule.append(abs(chars_per_4_estimate(text) - truth) / truth)
        results[family] = (math.fsum(ours) / len(ours), math.fsum(rule) / len(rule))
    return results


_PYCACHE = tempfile.mkdtemp(prefix="tokentrail-bench-pycache-")


def fresh_interpreter_ms(code: str, runs: int = 7) -> float:
    """Median wall time of `code` in a new interpreter (bytecode cached, as for an installed package)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {
        "PYTHONPYCACHEPREFIX": _PYCACHE
    }

    def timed() -> float:
        script = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
        )
        return float(result.stdout)

    timed()
    return statistics.median(timed() for _ in range(runs)) * 1000


def main() -> dict[str, float]:
    samples = _corpus()
    mixed = "\n".join(samples.values())
    mixed = mixed * max(1, 1_000_000 // len(mixed.encode()))
    english = samples["english_prose"] * max(1, 1_000_000 // len(samples["english_prose"]))
    results: dict[str, float] = {}

    print(f"{'throughput (same text, same run)':46s} {'count_tokens':>12s} {'tiktoken':>10s} {'ratio':>7s}")
    for label, text, model, encoding in (
        ("mixed corpus ~1 MB, gpt-4o (o200k_base)", mixed, "gpt-4o", "o200k_base"),
        ("mixed corpus ~1 MB, gpt-4 (cl100k_base)", mixed, "gpt-4", "cl100k_base"),
        ("English prose ~1 MB, gpt-4o", english, "gpt-4o", "o200k_base"),
    ):
        ours, theirs = throughput(text, model, encoding)
        results[f"MB/s {label}"] = ours
        print(f"  {label:44s} {ours:9.2f} MB/s {theirs:6.2f} MB/s {ours / theirs:6.3f}×")

    short = samples["english_technical"][:200]
    ours_us, raw_us = per_call_us(short, "gpt-4o", "o200k_base")
    print(
        f"  {'200-char string, gpt-4o (µs/call)':44s} {ours_us:9.2f} µs   {raw_us:6.2f} µs   {raw_us / ours_us:6.3f}×"
    )
    results["us_per_short_call"] = ours_us

    claude_text = mixed[:200_000]
    seconds = _best_seconds(lambda: estimate_text_tokens(claude_text, "claude"), number=1, repeat=5)
    print(f"  {'estimate (claude), mixed 200 kB':44s} {len(claude_text.encode()) / 1e6 / seconds:9.2f} MB/s")

    print(f"\n{'estimate accuracy on the corpus (mean |error|)':46s} {'estimate':>9s} {'chars/4':>9s}")
    for family, (ours_error, rule_error) in estimator_accuracy().items():
        print(f"  {family:44s} {ours_error:8.1%} {rule_error:8.1%}")
        results[f"estimate_error_{family}"] = ours_error

    print()
    import_ms = fresh_interpreter_ms("import tokentrail.tokens")
    for encoding, model in (("o200k_base", "gpt-4o"), ("cl100k_base", "gpt-4")):
        first = (
            fresh_interpreter_ms(f"import tokentrail.tokens as tokens; tokens.count_tokens('hi', {model!r})")
            - import_ms
        )
        results[f"first_call_ms_{encoding}"] = first
        print(f"  first count_tokens for {model} (loads {encoding}): {first:.0f} ms")
    print(f"  import tokentrail.tokens: {import_ms:.1f} ms (tiktoken not imported)")
    return results


if __name__ == "__main__":
    main()
