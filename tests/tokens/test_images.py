"""Image tokens by the providers' documented formulas, and image sizes read from inline data."""

from __future__ import annotations

import base64
import struct

import pytest

from tokentrail.tokens import image_size, image_tokens
from tokentrail.tokens.images import image_cost


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (1024, 1024, "high", 765),  # OpenAI's example: scaled to 768x768, 4 tiles
        (2048, 4096, "high", 1105),  # OpenAI's example: 1024x2048 -> 768x1536, 6 tiles
        (4096, 8192, "low", 85),  # low detail: fixed
        (128, 64, "high", 255),  # one tile, never scaled up
        (512, 512, "high", 255),
        (513, 512, "high", 425),  # spills into a second tile
        (768, 2048, "high", 85 + 170 * 8),
        (1920, 1080, "high", 85 + 170 * 6),  # 1365x768: 3 x 2 tiles
    ],
)
def test_openai_tile_formula(width: int, height: int, detail: str, tokens: int) -> None:
    assert image_tokens(width, height, "gpt-4o", detail) == tokens


def test_gpt_4o_mini_uses_its_own_tile_prices() -> None:
    assert image_tokens(128, 64, "gpt-4o-mini", "low") == 2833
    assert image_tokens(128, 64, "gpt-4o-mini", "high") == 2833 + 5667


@pytest.mark.parametrize(
    ("width", "height", "model", "tokens"),
    [
        (1024, 1024, "gpt-4.1-mini", 1659),  # 1024 patches x 1.62
        (1800, 2400, "gpt-4.1-mini", 2353),  # shrunk to 1452 patches (OpenAI's example) x 1.62
        (128, 64, "gpt-4.1-nano", 20),  # 8 patches x 2.46
        (4000, 4000, "o4-mini", 2617),  # shrunk to 1248x1248: 39 x 39 = 1521 patches x 1.72
    ],
)
def test_openai_patch_formula(width: int, height: int, model: str, tokens: int) -> None:
    cost = image_cost(width, height, model)
    assert cost.tokens == tokens
    assert not cost.exact


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [(1000, 1000, 1334), (200, 200, 54), (1092, 1092, 1590), (2000, 1000, 1599), (4000, 500, 410)],
)
def test_anthropic_area_formula(width: int, height: int, tokens: int) -> None:
    assert image_tokens(width, height, "claude-sonnet-4-5") == tokens


@pytest.mark.parametrize(
    ("width", "height", "tokens"), [(300, 300, 258), (384, 384, 258), (385, 100, 258), (1000, 800, 1032)]
)
def test_gemini_tile_formula(width: int, height: int, tokens: int) -> None:
    assert image_tokens(width, height, "gemini-2.5-flash") == tokens


def test_unknown_model_assumes_the_openai_rule_and_says_so() -> None:
    cost = image_cost(1024, 1024, "llava-13b")
    assert (cost.tokens, cost.exact) == (765, False)
    assert "assumed" in cost.rule


def test_image_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        image_tokens(0, 10, "gpt-4o")


def _png(width: int, height: int) -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + struct.pack(">II", width, height)
        + b"\x08\x02"
    )


def _jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, height, width) + b"\x03" + b"\x00" * 9
    return b"\xff\xd8" + app0 + sof0


def _gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00" * 4


def _webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (width - 1).to_bytes(3, "little")
    return (
        b"RIFF" + struct.pack("<I", 4 + len(body) + 3) + b"WEBP" + body + (height - 1).to_bytes(3, "little")
    )


@pytest.mark.parametrize("make", [_png, _jpeg, _gif, _webp_vp8x])
def test_image_size_from_bytes_base64_and_data_url(make: object) -> None:
    data = make(1234, 567)  # type: ignore[operator]
    encoded = base64.b64encode(data).decode()
    assert image_size(data) == (1234, 567)
    assert image_size(encoded) == (1234, 567)
    assert image_size(f"data:image/whatever;base64,{encoded}") == (1234, 567)


def test_image_size_of_a_remote_url_is_unknown() -> None:
    assert image_size("https://example.com/cat.png") is None
    assert image_size("not an image") is None
