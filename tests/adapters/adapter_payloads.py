"""Loading the golden provider fixtures under tests/fixtures/<provider>/ and replaying their streams."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokentrail import Usage

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PROVIDER_DIRS = ("openai", "anthropic", "gemini", "bedrock", "mistral", "cohere", "ollama", "litellm")


@dataclass(frozen=True)
class Fixture:
    name: str  # "<provider dir>/<file>"
    doc: dict[str, Any]

    @property
    def is_stream(self) -> bool:
        return "stream" in self.doc

    @property
    def payload(self) -> Any:
        return self.doc["response"]

    @property
    def stream_format(self) -> str:
        return str(self.doc["stream"]["format"])

    @property
    def capture_provider(self) -> str | None:
        return self.doc.get("capture_provider")

    def events(self) -> list[Any]:
        """The stream's events as the SDKs and boto3 hand them over (parsed JSON objects)."""
        raw = self.doc["stream"]["events"]
        if self.stream_format == "sse":
            return [event["data"] for event in raw]
        return list(raw)

    def wire_events(self) -> list[str]:
        """The stream's events as raw text on the wire: SSE blocks or JSON lines."""
        if self.stream_format == "sse":
            blocks = []
            for event in self.doc["stream"]["events"]:
                data = event["data"] if isinstance(event["data"], str) else json.dumps(event["data"])
                head = f"event: {event['event']}\n" if event["event"] else ""
                blocks.append(f"{head}data: {data}\n\n")
            return blocks
        return [json.dumps(event) + "\n" for event in self.doc["stream"]["events"]]

    def expected_usage(self) -> Usage:
        return Usage(**self.doc["expected_usage"])

    @property
    def expected_cost(self) -> Decimal | None:
        cost = self.doc["expected_cost"]
        return None if cost is None else Decimal(cost)

    @property
    def price_model(self) -> str:
        return str(self.doc["price_with"]["model"])

    @property
    def price_at(self) -> date:
        return date.fromisoformat(self.doc["price_with"]["at"])


def load(name: str) -> Fixture:
    return Fixture(name, json.loads((FIXTURES / name).read_text()))


def all_fixtures() -> Iterator[Fixture]:
    for provider in PROVIDER_DIRS:
        for path in sorted((FIXTURES / provider).glob("*.json")):
            yield load(f"{provider}/{path.name}")


def response_fixtures() -> list[Fixture]:
    return [f for f in all_fixtures() if not f.is_stream]


def stream_fixtures() -> list[Fixture]:
    return [f for f in all_fixtures() if f.is_stream]


def fixture_id(fixture: Fixture) -> str:
    return fixture.name


def in_genai_prices_keys(usage: Usage) -> dict[str, Any]:
    """A usage's non-zero counts under genai-prices' usage keys (durations in seconds, as it counts them)."""
    from tokentrail.pricing.index import USAGE_ATTRS

    out: dict[str, Any] = {}
    for key, attr in USAGE_ATTRS.items():
        value = getattr(usage, attr)
        if value:
            out[key] = Decimal(value) / 1000 if attr.endswith("_ms") else value
    return out


def genai_prices_carried(usage: Any) -> dict[str, Any]:
    """The non-zero counts a genai-prices Usage reports under the keys a tokentrail `Usage` carries."""
    from tokentrail.pricing.index import USAGE_ATTRS

    return {key: value for key, value in usage._reported_values().items() if key in USAGE_ATTRS and value}
