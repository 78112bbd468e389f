"""Image input tokens by the providers' published formulas, and image sizes read from data URLs.

OpenAI tile models: low detail costs a fixed base; high detail scales the image to fit 2048x2048, then
so its shortest side is at most 768 px, and costs base + tile x (number of 512 px tiles).
OpenAI patch models (gpt-4.1-mini, gpt-4.1-nano, o4-mini): 32 px patches, at most 1536 (the image is
shrunk to fit), times a per-model multiplier. Anthropic: width x height / 750 after scaling to a long
edge of at most 1568 px and about 1.2 megapixels (1600 tokens). Gemini: 258 tokens when both sides
are at most 384 px, else 258 per 768 px tile. These are the documented rules, not measurements:
providers change them, and some reported bills differ (see `ImageCost.exact`).
"""

from __future__ import annotations

import functools
import math
import re
import struct
from dataclasses import dataclass

from tokentrail.tokens.encodings import openai_model_name

__all__ = ["ImageCost", "image_cost", "image_size", "image_tokens"]

# (model pattern, base tokens, tokens per 512 px tile) of OpenAI tile-priced models, as the vision
# guide lists them.
_OPENAI_TILES: tuple[tuple[str, int, int], ...] = (
    (r"^gpt-4o-mini(?:$|[-.:_])", 2833, 5667),
    (r"^(?:o1|o3)(?:$|[-.:_])(?!mini)", 75, 150),
    (r"^computer-use", 65, 129),
    (r"^(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-4-turbo|gpt-4-vision)(?:$|[-.:_])", 85, 170),
)
# (model pattern, multiplier) of OpenAI patch-priced models.
_OPENAI_PATCHES: tuple[tuple[str, float], ...] = (
    (r"^gpt-4\.1-mini(?:$|[-.:_])", 1.62),
    (r"^gpt-4\.1-nano(?:$|[-.:_])", 2.46),
    (r"^o4-mini(?:$|[-.:_])", 1.72),
)
_PATCH = 32
_PATCH_BUDGET = 1536


@dataclass(frozen=True, slots=True)
class ImageCost:
    """Tokens of one image and how they were found."""

    tokens: int
    rule: str  # e.g. "openai-tiles 85/170", "anthropic w*h/750"
    exact: bool  # False when the rule is assumed for the model or is known to drift from bills


def image_tokens(width: int, height: int, model: str, detail: str = "high") -> int:
    """Input tokens of a `width` x `height` image sent to `model` (`detail`: "low", "high", "auto")."""
    return image_cost(width, height, model, detail).tokens


def image_cost(width: int, height: int, model: str, detail: str = "high") -> ImageCost:
    """`image_tokens` with the rule used; "auto" detail is priced as "high", the upper bound."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    name = model.lower()
    if "claude" in name:
        return ImageCost(_anthropic_tokens(width, height), "anthropic w*h/750", False)
    if "gemini" in name or "gemma" in name:
        return ImageCost(_gemini_tokens(width, height), "gemini 258 per 768px tile", False)
    rule = _openai_rule(openai_model_name(model))
    if isinstance(rule, float):
        return ImageCost(_patch_tokens(width, height, rule), f"openai-patches x{rule}", False)
    if rule is not None:
        base, tile = rule
        tokens = _tile_tokens(width, height, base, tile, detail)
        return ImageCost(tokens, f"openai-tiles {base}/{tile}", detail in ("low", "high"))
    return ImageCost(_tile_tokens(width, height, 85, 170, detail), "openai-tiles 85/170 (assumed)", False)


@functools.lru_cache(maxsize=256)
def _openai_rule(bare_model: str) -> float | tuple[int, int] | None:
    """A patch multiplier, (base, tile) tokens, or None when the model's rule is not documented here."""
    for pattern, multiplier in _OPENAI_PATCHES:
        if re.match(pattern, bare_model):
            return multiplier
    for pattern, base, tile in _OPENAI_TILES:
        if re.match(pattern, bare_model):
            return base, tile
    return None


def _tile_tokens(width: int, height: int, base: int, tile: int, detail: str) -> int:
    if detail == "low":
        return base
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return base + tile * tiles


def _patch_tokens(width: int, height: int, multiplier: float) -> int:
    patches = math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
    if patches > _PATCH_BUDGET:
        shrink = math.sqrt(_PATCH * _PATCH * _PATCH_BUDGET / (width * height))
        columns, rows = width * shrink / _PATCH, height * shrink / _PATCH
        shrink *= min(math.floor(columns) / columns, math.floor(rows) / rows)
        patches = math.ceil(int(width * shrink) / _PATCH) * math.ceil(int(height * shrink) / _PATCH)
    return math.ceil(min(patches, _PATCH_BUDGET) * multiplier)


def _anthropic_tokens(width: int, height: int) -> int:
    scale = min(1.0, 1568 / max(width, height), math.sqrt(1_200_000 / (width * height)))
    return math.ceil(int(width * scale) * int(height * scale) / 750)


def _gemini_tokens(width: int, height: int) -> int:
    if width <= 384 and height <= 384:
        return 258
    return math.ceil(width / 768) * math.ceil(height / 768) * 258


# -- reading the size of an inline image ------------------------------------------------------------

_DATA_URL = r"^data:image/[\w.+-]+;base64,"


def image_size(source: str | bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF, JPEG or WebP given as bytes, base64 or a data URL; else None."""
    if isinstance(source, str):
        import base64
        import binascii

        match = re.match(_DATA_URL, source, re.IGNORECASE)
        if match is None and source.startswith(("http://", "https://", "file:", "gs:", "s3:")):
            return None
        encoded = source[match.end() :] if match else source
        try:
            data = base64.b64decode(encoded, validate=False)
        except (binascii.Error, ValueError):
            return None
    else:
        data = source
    return _png(data) or _gif(data) or _webp(data) or _jpeg(data)


def _png(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


def _gif(data: bytes) -> tuple[int, int] | None:
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg(data: bytes) -> tuple[int, int] | None:
    if data[:2] != b"\xff\xd8":
        return None
    offset = 2
    while offset + 9 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        if marker in _JPEG_FRAMES:
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return int(width), int(height)
        offset += 2 + length
    return None
