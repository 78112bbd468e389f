"""Fit the per-family token estimate factors and record reference counts for the test corpus.

Not run by CI: it needs the real tokenizers that these packages ship (download them first):

    pip download --no-deps -d /tmp/wheels llama-models==0.3.0 mistral-common==1.13.1 dashscope==2.0.2
    python benchmarks/calibrate_tokens.py --wheels /tmp/wheels

Calibration text (fitting) is taken from this machine, not from the test corpus: translations in
/usr/share/locale (msgid English and msgstr in ~30 languages), the Python standard library (code, and the pydoc topics as English prose),
CPython's test/cjkencodings samples when present, and seeded synthetic numbers and emoji. Writes
src/tokentrail/_data/token_estimates.json (factors + expected error measured on the test corpus) and
tests/tokens/fixtures/reference_counts.json (what each real tokenizer counts on each corpus sample).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gettext
import hashlib
import json
import math
import random
import sysconfig
import zipfile
from collections.abc import Callable
from pathlib import Path

import tiktoken

from tokentrail.tokens.encodings import get_encoding
from tokentrail.tokens.estimate import CLASSES, class_tokens, split_runs

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests/tokens/fixtures/corpus"
ESTIMATES_OUT = ROOT / "src/tokentrail/_data/token_estimates.json"
REFERENCE_OUT = ROOT / "tests/tokens/fixtures/reference_counts.json"

_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA4_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# family -> (wheel name prefix, member path, pattern or None for tekken json)
REFERENCES = {
    "llama3": ("llama_models-", "llama_models/llama3/tokenizer.model", _LLAMA3_PATTERN),
    "llama4": ("llama_models-", "llama_models/llama4/tokenizer.model", _LLAMA4_PATTERN),
    "qwen": ("dashscope-", "dashscope/resources/qwen.tiktoken", _QWEN_PATTERN),
    "mistral": ("mistral_common-", "mistral_common/data/tekken_240911.json", None),
}
MEASURED = tuple(REFERENCES)
UNMEASURED = {
    "claude": "mean of the measured families (no Claude tokenizer is available offline)",
    "gemini": "mean of the measured families (no Gemini tokenizer is available offline)",
    "generic": "mean of the measured families",
}

LOCALE_LANGUAGES = [
    "de",
    "fr",
    "es",
    "it",
    "pt_BR",
    "nl",
    "sv",
    "fi",
    "pl",
    "cs",
    "tr",
    "vi",
    "ro",
    "hu",
    "ru",
    "uk",
    "bg",
    "sr",
    "zh_CN",
    "zh_TW",
    "ja",
    "ko",
    "el",
    "he",
    "ar",
    "hi",
    "th",
    "ka",
    "bn",
    "ta",
]


def load_reference(wheels: Path, family: str) -> tuple[tiktoken.Encoding, str]:
    prefix, member, pattern = REFERENCES[family]
    wheel = next(p for p in sorted(wheels.iterdir()) if p.name.startswith(prefix) and p.suffix == ".whl")
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(member)
    source = f"{wheel.name}:{member} sha256={hashlib.sha256(data).hexdigest()}"
    if pattern is None:
        tekken = json.loads(data)
        config = tekken["config"]
        inner = config["default_vocab_size"] - config["default_num_special_tokens"]
        ranks = {base64.b64decode(v["token_bytes"]): v["rank"] for v in tekken["vocab"][:inner]}
        pattern = config["pattern"]
    else:
        ranks = {
            binascii.a2b_base64(t): int(r) for t, r in (line.split() for line in data.splitlines() if line)
        }
    return tiktoken.Encoding(family, pat_str=pattern, mergeable_ranks=ranks, special_tokens={}), source


def calibration_texts() -> dict[str, str]:
    texts: dict[str, str] = {}
    english: list[str] = []
    for language in LOCALE_LANGUAGES:
        parts: list[str] = []
        size = 0
        for path in sorted(Path("/usr/share/locale", language, "LC_MESSAGES").glob("*.mo")):
            try:
                with path.open("rb") as handle:
                    catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
            except (OSError, UnicodeDecodeError, gettext.error):  # type: ignore[attr-defined]
                continue
            for key, value in catalog.items():
                if isinstance(key, str) and key and isinstance(value, str) and value != key:
                    parts.append(value)
                    english.append(key)
                    size += len(value)
            if size > 40_000:
                break
        if parts:
            texts[f"locale:{language}"] = "\n".join(parts)[:40_000]
    texts["locale:en"] = "\n".join(dict.fromkeys(english))[:120_000]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = [p.read_text(encoding="utf-8") for p in sorted((stdlib / "json").glob("*.py"))]
    code += [p.read_text(encoding="utf-8") for p in sorted((stdlib / "email").glob("*.py"))[:12]]
    texts["stdlib:python"] = "\n".join(code)[:250_000]
    topics = stdlib / "pydoc_data" / "topics.py"
    if topics.is_file():  # the language reference as English prose
        texts["stdlib:pydoc_topics"] = (
            topics.read_text(encoding="utf-8").encode().decode("unicode_escape")[:200_000]
        )
    cjk = stdlib / "test" / "cjkencodings"
    for path in sorted(cjk.glob("*-utf8.txt")) if cjk.is_dir() else []:
        texts[f"cjkencodings:{path.stem}"] = path.read_text(encoding="utf-8", errors="ignore")
    texts["synthetic:numbers"] = _synthetic_numbers(random.Random(7))
    texts["synthetic:emoji"] = _synthetic_emoji(random.Random(11))
    return texts


def _synthetic_numbers(rng: random.Random) -> str:
    rows = []
    for _ in range(1500):
        rows.append(
            f"{rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
            f"{rng.randint(0, 10 ** rng.randint(1, 9))},{rng.random() * 10 ** rng.randint(0, 6):.{rng.randint(0, 5)}f},"
            f"{rng.choice(['id', 'n', 'v'])}{rng.randint(0, 99999)}"
        )
    return "\n".join(rows)


def _synthetic_emoji(rng: random.Random) -> str:
    emoji = [chr(c) for c in range(0x1F300, 0x1F64F)] + [chr(c) for c in range(0x1F680, 0x1F6C5)]
    signs = [chr(c) for c in range(0x2190, 0x21FF)] + [chr(c) for c in range(0x2600, 0x26FF)]
    tones = [chr(c) for c in range(0x1F3FB, 0x1F400)]
    words = ["ok", "great", "launch", "team", "thanks", "done", "ship", "it", "today", "nice"]
    out = []
    for _ in range(3000):
        pick = rng.random()
        if pick < 0.5:
            out.append(rng.choice(emoji) + (rng.choice(tones) if rng.random() < 0.2 else ""))
        elif pick < 0.7:
            out.append(rng.choice(signs) + ("\ufe0f" if rng.random() < 0.3 else ""))
        else:
            out.append(" " + rng.choice(words) + " ")
    return "".join(out)


def class_counts(text: str, encode: Callable[[str], list[int]]) -> dict[str, int]:
    """Tokens of `text` per class for any tokenizer, split exactly as `class_tokens` splits for o200k."""
    counts = dict.fromkeys(CLASSES, 0)
    for kind, run in split_runs(text):
        if kind != "latin":
            counts[kind] += len(encode(run))
    counts["latin"] = max(0, len(encode(text)) - sum(counts.values()))
    return counts


def fit(texts: dict[str, str], references: dict[str, tiktoken.Encoding]) -> dict[str, dict[str, float]]:
    o200k = get_encoding("o200k_base")
    base = dict.fromkeys(CLASSES, 0)
    measured = {family: dict.fromkeys(CLASSES, 0) for family in references}
    for text in texts.values():
        for kind, tokens in class_tokens(text).items():
            base[kind] += tokens
        for family, encoding in references.items():
            for kind, tokens in class_counts(text, encoding.encode_ordinary).items():
                measured[family][kind] += tokens
    del o200k
    factors = {}
    for family, counts in measured.items():
        overall = sum(counts.values()) / sum(base.values())
        factors[family] = {
            k: round(counts[k] / base[k], 3) if base[k] else round(overall, 3) for k in CLASSES
        }
    return factors


def mean_factors(factors: dict[str, dict[str, float]], families: tuple[str, ...]) -> dict[str, float]:
    return {k: round(math.fsum(factors[f][k] for f in families) / len(families), 3) for k in CLASSES}


def estimate(text: str, factors: dict[str, float]) -> float:
    return math.fsum(factors[k] * n for k, n in class_tokens(text).items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True, help="folder holding the downloaded wheels")
    args = parser.parse_args()

    loaded = {family: load_reference(args.wheels, family) for family in REFERENCES}
    references = {family: encoding for family, (encoding, _) in loaded.items()}
    texts = calibration_texts()
    print(f"calibration corpus: {len(texts)} texts, {sum(map(len, texts.values())):,} chars")
    factors = fit(texts, references)
    generic = mean_factors(factors, MEASURED)

    corpus = {p.stem: p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.txt"))}
    truth = {
        name: {family: len(enc.encode_ordinary(text)) for family, enc in references.items()}
        for name, text in corpus.items()
    }

    def corpus_error(fam_factors: dict[str, float], family: str) -> float:
        errors = [
            abs(estimate(t, fam_factors) - truth[n][family]) / truth[n][family] for n, t in corpus.items()
        ]
        return math.fsum(errors) / len(errors)

    def chars4_error(family: str) -> float:
        errors = [abs(len(t) / 4 - truth[n][family]) / truth[n][family] for n, t in corpus.items()]
        return math.fsum(errors) / len(errors)

    profiles: dict[str, dict[str, object]] = {}
    for family in MEASURED:
        error = corpus_error(factors[family], family)
        profiles[family] = {
            "factors": factors[family],
            "expected_error": math.ceil(error * 100) / 100,
            "basis": loaded[family][1],
        }
        print(f"{family:8} mean error {error:.3f} (chars/4: {chars4_error(family):.3f})")
    held_out = []
    for family in MEASURED:
        others = tuple(f for f in MEASURED if f != family)
        held_out.append(corpus_error(mean_factors(factors, others), family))
        print(f"  mean of others predicting {family}: {held_out[-1]:.3f}")
    unmeasured_error = math.ceil(max(held_out) * 100) / 100
    for family, basis in UNMEASURED.items():
        profiles[family] = {"factors": generic, "expected_error": unmeasured_error, "basis": basis}

    ESTIMATES_OUT.write_text(
        json.dumps(
            {
                "format": 1,
                "calibration": f"{len(texts)} texts, {sum(map(len, texts.values()))} chars: "
                + ", ".join(sorted({name.split(":")[0] for name in texts})),
                "families": profiles,
            },
            indent=1,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    REFERENCE_OUT.write_text(
        json.dumps(
            {
                "sources": {family: source for family, (_, source) in loaded.items()},
                "samples": {
                    name: {"sha256": hashlib.sha256(text.encode()).hexdigest(), "tokens": truth[name]}
                    for name, text in corpus.items()
                },
            },
            indent=1,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {ESTIMATES_OUT.relative_to(ROOT)} and {REFERENCE_OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
