"""Token estimates for models whose tokenizer is not available offline (Claude, Gemini, Llama, …).

The estimate starts from an exact `o200k_base` count and rescales it per writing system, because
tokenizers disagree mostly by script: Llama 3, Qwen and Mistral spend about 4-5 % more tokens than
o200k on English and code, about twice as many on numbers (Qwen and Mistral split them into single
digits), and from 0.76x (Llama 4 on Japanese) to 2.3x (Llama 3 on Arabic, Hindi, Thai…) elsewhere.
Text is cut into runs of one class (`split_runs`); each run's o200k tokens are multiplied by the
family's factor for that class.

Factors were fitted with `benchmarks/calibrate_tokens.py` against real tokenizers that packages ship
(llama-models 0.3.0: Llama 3 and Llama 4; mistral-common 1.13.1: Tekken, the tokenizer of Mistral's
models since Nemo; dashscope 2.0.2: Qwen's BPE vocabulary) on a calibration corpus separate from the
test corpus. No Claude or Gemini tokenizer can be had offline, so those families use the mean of the
measured ones, and their expected error is the worst leave-one-family-out error (how well the mean
predicts a tokenizer it was not fitted on). `expected_error` is the mean absolute relative error on
the shipped test corpus (tests/tokens/fixtures/corpus): 0.02-0.09 for measured families, 0.18 for
the others, where chars/4 is off by 0.36-0.44, mostly on CJK, digits, emoji and whitespace.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from tokentrail.tokens.encodings import get_encoding

__all__ = [
    "CLASSES",
    "FamilyProfile",
    "chars_per_4_estimate",
    "class_tokens",
    "estimate_text_tokens",
    "family_for_model",
    "family_profile",
    "family_profiles",
    "split_runs",
]

# Writing-system classes: "latin" also holds ASCII punctuation and whitespace, "latin_ext" words with
# non-ASCII Latin letters, "other" every other alphabet (Arabic, Devanagari, Greek, Hebrew, Thai …),
# "symbol" emoji and other non-ASCII signs.
CLASSES = ("latin", "latin_ext", "digit", "cyrillic", "han", "kana", "hangul", "other", "symbol")


@dataclass(frozen=True, slots=True)
class FamilyProfile:
    """How one tokenizer family compares to o200k, per class, and how far off the estimate runs."""

    name: str
    factors: Mapping[str, float]
    expected_error: float  # mean absolute relative error on the test corpus
    basis: str  # what the factors were measured against


_profiles: dict[str, FamilyProfile] | None = None


def family_profiles() -> dict[str, FamilyProfile]:
    """The calibrated profiles (tokentrail/_data/token_estimates.json, written by the calibration)."""
    global _profiles
    if _profiles is None:
        import json
        from importlib import resources

        raw = json.loads(
            resources.files("tokentrail").joinpath("_data/token_estimates.json").read_text("utf-8")
        )
        _profiles = {
            name: FamilyProfile(
                name, dict(entry["factors"]), float(entry["expected_error"]), str(entry["basis"])
            )
            for name, entry in raw["families"].items()
        }
    return _profiles


def family_profile(family: str) -> FamilyProfile:
    """The profile of `family`, or the generic one when the family has none."""
    profiles = family_profiles()
    return profiles.get(family) or profiles["generic"]


_FAMILY_PATTERNS = (
    ("claude", r"claude"),
    ("gemini", r"gemini|gemma|learnlm"),
    ("llama4", r"llama[-_ ]?4"),
    ("llama3", r"llama"),
    ("mistral", r"mistral|mixtral|codestral|ministral|pixtral|magistral|devstral|voxtral"),
    ("qwen", r"qwen|qwq"),
)


def family_for_model(model: str) -> str:
    """The tokenizer family of `model` ("claude", "gemini", "llama3", …), "generic" when unknown."""
    name = model.lower()
    for family, pattern in _FAMILY_PATTERNS:
        if re.search(pattern, name):
            return family
    return "generic"


# -- splitting text into runs of one class -------------------------------------------------------

_PIECES = r"[^\W\d_]+|\d+|[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+|."
_SCRIPTS = (
    ("kana", r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]"),
    ("han", r"[\u2e80-\u2fdf\u3005-\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]"),
    ("hangul", r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]"),
    ("cyrillic", r"[\u0400-\u052f\u1c80-\u1c8f\u2de0-\u2dff\ua640-\ua69f]"),
)
_LATIN_EXT = r"[\u00c0-\u024f\u1e00-\u1eff]"


@functools.cache
def _patterns() -> tuple[re.Pattern[str], tuple[tuple[str, re.Pattern[str]], ...], re.Pattern[str]]:
    """Compiled on first estimate, not at import (the CJK ranges take milliseconds to compile)."""
    scripts = tuple((name, re.compile(pattern)) for name, pattern in _SCRIPTS)
    return re.compile(_PIECES, re.DOTALL), scripts, re.compile(_LATIN_EXT)


_LEADING_SIGNS = frozenset(" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\t")


def _word_class(word: str) -> str:
    if word.isascii():
        return "latin"
    _, scripts, latin_ext = _patterns()
    for name, pattern in scripts:
        if pattern.search(word):
            return name
    if latin_ext.sub("", word).isascii():
        return "latin_ext"
    return "other"


def _sign_class(char: str, current: str) -> str:
    """Class of one non-ASCII non-letter: marks and CJK punctuation belong to the run they are in."""
    code = ord(char)
    if 0x0300 <= code <= 0x036F or 0x0900 <= code <= 0x0DFF or 0x0600 <= code <= 0x06FF:
        return current if current not in ("latin", "digit", "symbol") else "other"
    if 0x3000 <= code <= 0x303F or 0xFF00 <= code <= 0xFF65:
        return current if current in ("han", "kana", "hangul") else "han"
    if char.isalpha():
        return _word_class(char)
    if char.isdigit():
        return "digit"
    return "symbol"


def split_runs(text: str) -> Iterator[tuple[str, str]]:
    """(class, run) pairs covering `text` in order; ASCII punctuation and spaces join the run before."""
    current = ""
    start = 0
    for match in _patterns()[0].finditer(text):
        piece = match.group()
        first = piece[0]
        if first.isdigit():
            kind = "digit"
        elif first.isalpha():
            kind = _word_class(piece)
        elif first.isascii():
            kind = current if current and current != "digit" else "latin"
        else:
            kind = _sign_class(first, current or "latin")
        if kind != current:
            cut = match.start()
            if kind != "digit" and cut - 1 > start and text[cut - 1] in _LEADING_SIGNS:
                cut -= 1  # a word keeps the one space or sign before it, as BPE pre-tokenizers do
            if current:
                yield current, text[start:cut]
            current, start = kind, cut
    if current:
        yield current, text[start:]


def _digit_tokens(run: str) -> int:
    """o200k spends one token per group of up to three digits."""
    return sum(-(-len(group) // 3) for group in re.findall(r"\d+", run))


def class_tokens(text: str) -> dict[str, int]:
    """o200k tokens of `text` split by class (digits computed, "latin" as the remainder of the total)."""
    encoding = get_encoding("o200k_base")
    total = len(encoding.encode_ordinary(text))
    counts = dict.fromkeys(CLASSES, 0)
    if text.isascii():
        counts["digit"] = _digit_tokens(text)
    else:
        for kind, run in split_runs(text):
            if kind == "digit":
                counts["digit"] += _digit_tokens(run)
            elif kind != "latin":
                counts[kind] += len(encoding.encode_ordinary(run))
    counts["latin"] = max(0, total - sum(counts.values()))
    return counts


def estimate_text_tokens(text: str, family: str) -> int:
    """Estimated tokens of `text` for a tokenizer `family` (see `family_profiles`)."""
    if not text:
        return 0
    factors = family_profile(family).factors
    estimate = sum(factors[kind] * tokens for kind, tokens in class_tokens(text).items() if tokens)
    return max(1, round(estimate))


def chars_per_4_estimate(text: str) -> int:
    """The common rule of thumb (one token per four characters), kept as the baseline to beat."""
    return round(len(text) / 4)
