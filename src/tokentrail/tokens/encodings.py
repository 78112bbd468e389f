"""The vendored tiktoken encodings (`cl100k_base`, `o200k_base`) and which OpenAI model uses which.

The BPE files ship inside the package (`tokentrail/_data/tiktoken/`) and are checked against the
SHA-256 values tiktoken publishes before use. Nothing is downloaded and nothing is written to disk:
tiktoken's own loader is bypassed because it copies every file it reads into a temporary cache dir.
Encoders are built once per process, on first use, under a lock.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "ENCODING_SPECS",
    "EncodingSpec",
    "IntegrityError",
    "encoding_name_for_model",
    "get_encoding",
    "openai_model_name",
]


class IntegrityError(RuntimeError):
    """A vendored tokenizer file does not match its published SHA-256 (the install is damaged)."""


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    """Everything tiktoken needs to build an encoding, as `tiktoken_ext/openai_public.py` defines it."""

    name: str
    filename: str
    sha256: str
    pat_str: str
    special_tokens: dict[str, int]


_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"

_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

ENCODING_SPECS: dict[str, EncodingSpec] = {
    "cl100k_base": EncodingSpec(
        name="cl100k_base",
        filename="cl100k_base.tiktoken",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        special_tokens={
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": EncodingSpec(
        name="o200k_base",
        filename="o200k_base.tiktoken",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str=_O200K_PATTERN,
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
}

_encoders: dict[str, tiktoken.Encoding] = {}
_encoders_lock = threading.Lock()


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken `Encoding` for a vendored encoding name, built on first use (≈0.3-0.5 s)."""
    found = _encoders.get(name)
    if found is not None:
        return found
    spec = ENCODING_SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown encoding {name!r}; vendored: {', '.join(ENCODING_SPECS)}")
    with _encoders_lock:
        found = _encoders.get(name)
        if found is None:
            found = _encoders[name] = _build(spec)
    return found


def _build(spec: EncodingSpec) -> tiktoken.Encoding:
    import hashlib
    from importlib import resources

    import tiktoken

    data = resources.files("tokentrail").joinpath(f"_data/tiktoken/{spec.filename}").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise IntegrityError(f"{spec.filename}: SHA-256 {digest} does not match the published {spec.sha256}")
    return tiktoken.Encoding(
        spec.name,
        pat_str=spec.pat_str,
        mergeable_ranks=_parse_ranks(data),
        special_tokens=dict(spec.special_tokens),
    )


def _parse_ranks(data: bytes) -> dict[bytes, int]:
    """Parse a `.tiktoken` file: one `base64(token) rank` pair a line (the format tiktoken reads)."""
    import binascii

    decode = binascii.a2b_base64
    return {decode(token): int(rank) for token, rank in map(bytes.split, data.splitlines()) if token}


# -- which OpenAI model uses which encoding ------------------------------------------------------------

_O200K_MODELS = (
    r"^(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|gpt-oss|codex|computer-use|gpt-realtime|"
    r"gpt-audio|gpt-image|omni-moderation)(?:$|[-.:_])"
)
_CL100K_MODELS = (
    r"^(?:gpt-4|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada-002|davinci-002|babbage-002)(?:$|[-.:_])"
)
_VENDOR_PREFIX = r"^(?:[a-z]{2,4}\.)?openai\."  # Bedrock: "openai.gpt-oss-120b-1:0"


@functools.lru_cache(maxsize=4096)  # a request's model name, read for every count and reservation
def openai_model_name(model: str) -> str:
    """The bare OpenAI model id inside `model`: no provider path, fine-tune wrapper or vendor prefix.

    `openai/gpt-4o`, `azure/gpt-4o-2024-08-06`, `ft:gpt-4o-mini:acme::abc123` and
    `openai.gpt-oss-20b-1:0` become `gpt-4o`, `gpt-4o-2024-08-06`, `gpt-4o-mini`, `gpt-oss-20b-1:0`.
    """
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    name = name.rsplit("/", 1)[-1]
    return re.sub(_VENDOR_PREFIX, "", name)


def encoding_name_for_model(model: str) -> str | None:
    """`"o200k_base"`, `"cl100k_base"`, or None when `model` is not an OpenAI model we know."""
    name = openai_model_name(model)
    if re.match(_O200K_MODELS, name):
        return "o200k_base"
    if re.match(_CL100K_MODELS, name):
        return "cl100k_base"
    return None
