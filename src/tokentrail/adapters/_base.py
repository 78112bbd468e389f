"""What every provider adapter shares: the `Captured` result, strict reading of counts, the stream base.

Provider payloads arrive as SDK objects (pydantic models, read by attribute) or as raw JSON dicts (read by
key); `Fields` reads both the same way. A count is accepted only when it is a whole, finite,
non-negative number below 2**63; anything else raises `Malformed`, which the capture path turns into
`Usage.unknown(reason)`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tokentrail._types import Usage, UsageStatus, fill_class
from tokentrail.errors import InvalidUsageError

__all__ = [
    "MAX_COUNT",
    "Captured",
    "Fields",
    "Malformed",
    "Scoped",
    "StreamAccumulator",
    "build_usage",
    "describe",
    "get_field",
    "is_record",
    "model_name",
    "new_captured",
    "reported_cost",
    "text_value",
]

logger = logging.getLogger("tokentrail.adapters")

MAX_COUNT = 2**63 - 1  # the largest count a 64-bit signed column (SQLite, Postgres BIGINT) can hold

_NOT_RECORDS = (str, bytes, bytearray, memoryview, int, float, complex, Decimal, list, tuple, set, frozenset)


class Malformed(Exception):
    """A payload whose usage cannot be read; `reason` says exactly what is wrong and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Captured:
    """Everything a response reveals about its own cost: tokens, model, provider and price variant.

    `provider` is the name to price with (a catalog provider id or alias such as "openai", "azure",
    "anthropic", "google", "bedrock"); `price_context` selects price variants, e.g.
    {"service_tier": "flex"} or {"processing": "batch"}; `provider_cost` is a cost the response or
    its client library reported itself (LiteLLM's `response_cost`), kept beside our own.
    """

    usage: Usage
    model: str | None
    provider: str
    price_context: Mapping[str, str] = field(default_factory=dict)
    provider_cost: Decimal | None = None
    response_id: str | None = (
        None  # the provider's id for the response, where a response can be fetched again
    )
    finished: bool = True  # False: a background response still queued or running (no usage yet)


# `new_captured` fills one with plain attribute stores, then makes it a Captured (see `fill_class`).
_CapturedFill = fill_class(Captured)


def new_captured(
    usage: Usage,
    model: str | None,
    provider: str,
    price_context: Mapping[str, str],
    response_id: str | None = None,
    provider_cost: Decimal | None = None,
) -> Captured:
    """`Captured(usage, model, provider, price_context, provider_cost, response_id)`, several times faster
    (the compiled readers build one per response read)."""
    fill: Any = _CapturedFill()
    fill.usage = usage
    fill.model = model
    fill.provider = provider
    fill.price_context = price_context
    fill.provider_cost = provider_cost
    fill.response_id = response_id
    fill.finished = True
    fill.__class__ = Captured
    captured: Captured = fill
    return captured


def reported_cost(value: object) -> Decimal | None:
    """A cost a response reports in USD (a JSON number or a numeric string) as an exact Decimal, or None
    when it is not a finite amount >= 0 (a bool, NaN, a negative or a non-number are no cost)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        cost = Decimal(str(value))
    except ArithmeticError:
        return None
    return cost if cost.is_finite() and cost >= 0 else None


@dataclass(frozen=True, slots=True)
class Scoped:
    """A response or stream item with the path of the request that fetched it, for a reader whose payloads
    do not name what they belong to (a managed agent session's events name no session)."""

    path: str
    body: object


def describe(value: object) -> str:
    """A short, safe description of an unexpected value for a reason text."""
    if value is None:
        return "null"
    try:
        text = repr(value)
    except Exception:
        text = "<unprintable>"
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def is_record(value: object) -> bool:
    """True for a JSON object or an SDK model: something with named fields."""
    if type(value) is dict:
        return True
    if value is None or isinstance(value, _NOT_RECORDS):
        return False
    return isinstance(value, Mapping) or hasattr(value, "__dict__") or hasattr(type(value), "__slots__")


def get_field(obj: object, name: str) -> Any:
    """`obj[name]` for a mapping, `obj.name` for an object; None when absent or unreadable."""
    if type(obj) is dict:  # a JSON object: no ABC check
        return obj.get(name)
    if isinstance(obj, Mapping):
        return obj.get(name)
    try:
        return getattr(obj, name, None)
    except Exception:  # a property that raises is as good as absent
        return None


def text_value(value: object) -> str | None:
    """A string (or a string enum's value); None for anything else."""
    if type(value) is str or value is None:  # a JSON value: no isinstance through Enum's metaclass
        return value
    if isinstance(value, enum.Enum):
        value = value.value
    return value if isinstance(value, str) else None


def model_name(obj: object, *names: str) -> str | None:
    """The first non-empty string among `names` on `obj`."""
    for name in names or ("model",):
        found = text_value(get_field(obj, name))
        if found:
            return found
    return None


def as_count(value: object, where: str) -> int:
    """`value` as a token count, or `Malformed` naming `where` and what is wrong with it."""
    if isinstance(value, bool):
        raise Malformed(f"{where} must be a whole number, got bool {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise Malformed(f"{where} is negative ({value})")
        if value > MAX_COUNT:
            raise Malformed(f"{where} is larger than 2**63 - 1 ({value})")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Malformed(f"{where} is not a finite number ({value})")
        if not value.is_integer():
            raise Malformed(f"{where} is not a whole number ({value})")
        return as_count(int(value), where)
    raise Malformed(f"{where} must be a whole number, got {describe(value)}")


class Fields:
    """One JSON object or SDK model, read strictly; `path` names it in every reason text."""

    __slots__ = ("obj", "path")

    def __init__(self, obj: object, path: str) -> None:
        if not is_record(obj):
            raise Malformed(f"{path} must be an object, got {describe(obj)}")
        self.obj = obj
        self.path = path

    def raw(self, *names: str) -> tuple[str, Any]:
        """(name, value) of the first of `names` that is present and not null; (names[0], None) if none."""
        for name in names:
            value = get_field(self.obj, name)
            if value is not None:
                return name, value
        return names[0], None

    def has(self, *names: str) -> bool:
        return self.raw(*names)[1] is not None

    def count(self, *names: str, required: bool = False) -> int:
        """The count under the first present name; 0 when absent unless `required`."""
        name, value = self.raw(*names)
        if value is None:
            if required:
                raise Malformed(f"{self.path}.{name} is missing")
            return 0
        return as_count(value, f"{self.path}.{name}")

    def optional_count(self, *names: str) -> int | None:
        name, value = self.raw(*names)
        return None if value is None else as_count(value, f"{self.path}.{name}")

    def child(self, *names: str) -> Fields | None:
        """The nested object under the first present name, or None when there is none."""
        name, value = self.raw(*names)
        if value is None:
            return None
        return Fields(value, f"{self.path}.{name}")

    def records(self, *names: str) -> list[Fields]:
        """The list of objects under the first present name (empty when absent)."""
        name, value = self.raw(*names)
        if value is None:
            return []
        if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, (list, tuple)):
            raise Malformed(f"{self.path}.{name} must be a list, got {describe(value)}")
        return [Fields(item, f"{self.path}.{name}[{i}]") for i, item in enumerate(value)]

    def text(self, *names: str) -> str | None:
        return text_value(self.raw(*names)[1])


def build_usage(**counts: int) -> Usage:
    """A complete `Usage`, or `Malformed` when the counts are out of range or contradict each other."""
    for name, value in counts.items():
        if value > MAX_COUNT:
            raise Malformed(f"{name} adds up to more than 2**63 - 1 ({value})")
    fields: dict[str, Any] = dict(counts)
    try:
        return Usage(**fields)
    except InvalidUsageError as exc:
        raise Malformed(f"inconsistent usage: {exc}") from None


def decode_event(event: object) -> object | None:
    """A stream event as an object: raw SSE/JSON-lines text is parsed; keep-alives and [DONE] give None."""
    if isinstance(event, (bytes, bytearray, memoryview)):
        try:
            event = bytes(event).decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("stream event is not UTF-8 text") from None
    if not isinstance(event, str):
        return event
    data_lines: list[str] = []
    plain: list[str] = []
    for line in event.splitlines():
        stripped = line.strip()
        if stripped.startswith("data:"):
            data_lines.append(stripped[5:].strip())
        elif stripped and not stripped.startswith((":", "event:", "id:", "retry:")):
            plain.append(stripped)
    text = "\n".join(data_lines) if data_lines else "\n".join(plain)
    if not text or text == "[DONE]":
        return None
    try:
        parsed: object = json.loads(text)
    except ValueError:
        raise Malformed(f"stream event is not JSON: {describe(text)}") from None
    return parsed


def decode_json_bytes(value: object, where: str) -> object:
    """A JSON document given as bytes, as text, or as base64 text (how AWS event streams carry it)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    elif isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith(("{", "[")):
            raw = stripped.encode("utf-8")
        else:
            try:
                raw = base64.b64decode(stripped, validate=True)
            except (binascii.Error, ValueError):
                raise Malformed(f"{where} is neither JSON nor base64: {describe(value)}") from None
    else:
        raise Malformed(f"{where} must be bytes or text, got {describe(value)}")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Malformed(f"{where} does not hold a JSON document") from None


class StreamAccumulator(ABC):
    """Collects the usage a streamed response reports as its events go by.

    Feed every event (SDK objects, dicts, or raw SSE / JSON-lines text), then `close()`, or
    `close(aborted=True)` when the stream was cut short (the consumer stopped early, it raised, or the
    task was cancelled). `usage()` is then `complete` when the provider reported final usage,
    `partial` with what was seen when the stream stopped before that, and `unknown` with a reason when
    no usage was seen at all. Neither `feed` nor `usage` ever raises.
    """

    #: whether usage seen before a normal end of stream is final even without an explicit final event
    complete_on_close = False

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.model: str | None = None
        self.price_context: dict[str, str] = {}
        self.events = 0
        self.closed = False
        self.aborted = False
        self.final = False  # the provider's final usage report was seen
        self.problem: str | None = None

    def feed(self, event: object) -> None:
        """Take one event into account; malformed events are noted, never raised."""
        self.events += 1
        try:
            decoded = decode_event(event)
            if decoded is not None:
                self._feed(decoded)
        except Malformed as exc:
            self.problem = exc.reason
        except Exception as exc:
            logger.debug("stream event could not be read", exc_info=True)
            self.problem = f"unexpected {type(exc).__name__} while reading a stream event: {exc}"

    def feed_all(self, events: Iterable[object]) -> StreamAccumulator:
        """Feed every event of `events` (which must not raise: see `capture_stream` for one that may)."""
        for event in events:
            self.feed(event)
        return self

    def close(self, *, aborted: bool = False) -> None:
        """Mark the end of the stream; `aborted` when it stopped before the provider finished."""
        self.closed = True
        self.aborted = self.aborted or aborted

    def usage(self) -> Usage:
        """What the stream consumed so far, with the status that says how final it is."""
        try:
            seen = self._seen()
        except Malformed as exc:
            return Usage.unknown(f"stream usage is malformed: {exc.reason}")
        except Exception as exc:
            logger.debug("stream usage could not be built", exc_info=True)
            return Usage.unknown(f"unexpected {type(exc).__name__} while reading stream usage: {exc}")
        if seen is None:
            return Usage.unknown(self._missing_reason())
        if self.final or (self.closed and not self.aborted and self.complete_on_close):
            return seen
        return dataclasses.replace(seen, status=UsageStatus.PARTIAL, reason=self._partial_reason())

    def captured(self) -> Captured:
        return Captured(self.usage(), self.model, self.provider, dict(self.price_context))

    # -- for subclasses ----------------------------------------------------------------------------

    @abstractmethod
    def _feed(self, event: object) -> None:
        """Read one decoded event; raise `Malformed` for an event that cannot be read."""

    @abstractmethod
    def _seen(self) -> Usage | None:
        """The usage seen so far (status complete), or None when the stream has reported none."""

    def _missing_hint(self) -> str:
        return ""

    def _where(self) -> str:
        if not self.closed:
            return f"stream still open after {self.events} events"
        if self.aborted:
            return f"stream closed early after {self.events} events"
        return f"stream ended after {self.events} events"

    def _missing_reason(self) -> str:
        if self.problem:
            return f"{self._where()}; its usage could not be read: {self.problem}"
        reason = f"{self._where()} without reporting usage"
        hint = self._missing_hint()
        if hint and not self.aborted and self.closed:
            reason += f"; {hint}"
        return reason

    def _partial_reason(self) -> str:
        reason = f"{self._where()}, before the final usage report: counts are what was seen"
        if self.problem:
            reason += f" (last problem: {self.problem})"
        return reason
