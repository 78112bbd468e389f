"""Which reader reads a response: the catalog's extractors, a hand-written reader, or the shape's reader.

A JSON body of a known shape is read by the catalog's extractors (`_mapped`), so tokentrail reads it as
genai-prices does; SDK objects, bodies of no known shape and the shapes the catalog has no extractor for
go to tokentrail's hand-written readers. A provider name never forces a reader that cannot read the body:
when the named provider's readers fail, the body's own shape picks the reader, and the capture keeps the
provider's name for pricing (Gemini's OpenAI-compatible endpoint with provider="google", Ollama's /v1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tokentrail.adapters._base import Captured, Malformed
from tokentrail.adapters._detect import ADAPTERS, Adapter, shape_provider
from tokentrail.adapters._mapped import PlannedRead, body_shape, capture_mapped, mapped_readers

__all__ = ["read_named_json", "read_response"]


def read_response(body: object, adapter: Adapter) -> Captured:
    """The usage `body` reports, read as `adapter` names it (see the module docstring for the order)."""
    name = adapter.provider
    own_reader = name in ADAPTERS
    if type(body) is dict or isinstance(body, Mapping):
        captured = capture_mapped(body, name, has_own_reader=own_reader)
        if captured is not None:
            return captured
    try:
        return adapter.extract(body, name)
    except Malformed as failure:
        captured = _by_shape(body, adapter)
        if captured is None:
            raise failure from None
        return captured


def read_named_json(body: dict[str, Any], provider: str) -> PlannedRead | None:
    """What the catalog's extractors read from a JSON object named by a non-empty provider name, as
    `capture(body, provider)` would read it (its capture is `planned_capture(body, read)`), without
    detection: the readers a provider name's bodies of one shape are tried with are chosen once
    (`MappedReaders.read_named`). None when the full path decides: a possible batch result, a body of no
    known shape, a provider whose own reader comes first, a body none of the extractors reads."""
    return mapped_readers().read_json(body, provider)


def _by_shape(body: object, adapter: Adapter) -> Captured | None:
    """The body read by the reader its shape calls for, when that is not the named provider's reader.

    A body whose shape calls for the same reader that just failed is malformed, not misnamed: None.
    """
    found = shape_provider(body)
    if found is None or ADAPTERS[found] is adapter.extract:
        return None
    if isinstance(body, Mapping):
        shape = body_shape(body)
        if shape is not None:
            captured = mapped_readers().read_shaped(body, shape, adapter.provider)
            if captured is not None:
                return captured
    try:
        captured = ADAPTERS[found](body, adapter.provider)
    except Malformed:
        return None
    return dataclasses.replace(captured, provider=adapter.provider)
