"""Count the tokens a text or a chat request will use, offline.

What is exact and what is not:
- Text for OpenAI models (gpt-3.5/4/4o/4.1/4.5/5, o1/o3/o4, embeddings): exact, tiktoken with the
  vendored `cl100k_base` / `o200k_base` files. Special-token strings in the text (`<|endoftext|>`)
  are counted as the plain text they are, never raised on.
- Chat messages with string contents for gpt-3.5-turbo and gpt-4* models: OpenAI cookbook method
  (3 tokens per message, +1 per `name`, 3 for the reply primer), which the cookbook checks against the
  API. Other OpenAI models use the same rule, flagged inexact.
- Content parts, tool calls, tool definitions (cookbook `num_tokens_for_tools` rule, extended to
  optional fields) and images (see `images.py`): documented approximations, flagged inexact.
- Other model families: calibrated estimates (`estimate.py`), flagged inexact with their expected error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokentrail._types import Usage, UsageStatus
from tokentrail.tokens.encodings import encoding_name_for_model, get_encoding, openai_model_name
from tokentrail.tokens.estimate import estimate_text_tokens, family_for_model, family_profile
from tokentrail.tokens.images import image_cost, image_size

__all__ = ["TokenCount", "count", "count_tokens"]

Messages = Sequence[Mapping[str, Any]]

_COOKBOOK_VERIFIED = ("gpt-3.5-turbo", "gpt-35-turbo", "gpt-4", "chatgpt-4o")
_ASSUMED_IMAGE_SIZE = (1024, 1024)


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A local token count: exact (tiktoken) or estimated, with what was approximated."""

    tokens: int
    model: str
    exact: bool
    method: str  # "o200k_base", "o200k_base+chat", "estimate:claude", …
    expected_error: float = 0.0  # mean relative error of the method; 0.0 when exact
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> UsageStatus:
        """Counted locally: always `estimated` in the sense of `UsageStatus` (the provider did not report it)."""
        return UsageStatus.ESTIMATED

    def as_usage(self) -> Usage:
        """The count as prompt-side usage, e.g. to price a request before sending it."""
        return Usage(input_tokens=self.tokens, status=UsageStatus.ESTIMATED)

    def __int__(self) -> int:
        return self.tokens


_model_encodings: dict[str, str | None] = {}

# Texts counted lately, per encoding: agents resend the same system prompt and conversation with every
# call, and the gateway counts each request's prompt for its budget reservation. Bounded by the
# characters it holds (cleared whole when over), so a long-running process stays flat.
_counted: dict[tuple[str, str], int] = {}
_counted_chars = 0
_MAX_COUNTED_CHARS = 2_000_000


def _encoded_length(encoding_name: str, text: str) -> int:
    """len(tiktoken encode_ordinary(text)), remembered for texts counted lately."""
    global _counted_chars
    key = (encoding_name, text)
    tokens = _counted.get(key)
    if tokens is None:
        tokens = len(get_encoding(encoding_name).encode_ordinary(text))
        if len(text) > _MAX_COUNTED_CHARS // 8:  # a huge text is not kept alive for a repeat
            return tokens
        _counted_chars += len(text)
        if _counted_chars > _MAX_COUNTED_CHARS:
            _counted.clear()
            _counted_chars = len(text)
        _counted[key] = tokens
    return tokens


def _encoding_for(model: str) -> str | None:
    try:
        return _model_encodings[model]
    except KeyError:
        if len(_model_encodings) > 4096:
            _model_encodings.clear()
        found = _model_encodings[model] = encoding_name_for_model(model)
        return found


def count_tokens(
    text_or_messages: str | Messages, model: str, *, tools: Sequence[Mapping[str, Any]] | None = None
) -> int:
    """Tokens `text_or_messages` (a string, or OpenAI-style chat messages) uses on `model`."""
    if type(text_or_messages) is str and type(model) is str and tools is None:
        name = _encoding_for(model)
        if name is not None:
            return _encoded_length(name, text_or_messages)
    return count(text_or_messages, model, tools=tools).tokens


def count(
    text_or_messages: str | Messages, model: str, *, tools: Sequence[Mapping[str, Any]] | None = None
) -> TokenCount:
    """`count_tokens` with the details: exact or estimated, method, expected error, approximations.

    `tools` are function/tool definitions sent with the request (OpenAI `tools` or legacy `functions`).
    """
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty str, got {model!r}")
    tally = _Tally(model)
    if isinstance(text_or_messages, str):
        tally.add_text(text_or_messages)
    elif type(text_or_messages) is list or (
        isinstance(text_or_messages, Sequence) and not isinstance(text_or_messages, (bytes, bytearray))
    ):
        tally.add_messages(text_or_messages)
        tally.method_suffix = "+chat"
    else:
        raise TypeError(f"expected a str or a list of messages, got {type(text_or_messages).__name__}")
    if tools:
        tally.add_tools(tools)
    return tally.result()


class _Tally:
    """Running total for one count: tokens, whether all of it is exact, and notes on what is not."""

    __slots__ = ("bare", "encoding_name", "exact", "family", "method_suffix", "model", "notes", "tokens")

    def __init__(self, model: str) -> None:
        self.model = model
        self.tokens = 0
        self.method_suffix = ""
        self.notes: list[str] = []
        self.encoding_name = _encoding_for(model)
        self.family = "openai" if self.encoding_name else family_for_model(model)
        self.exact = self.encoding_name is not None
        self.bare = openai_model_name(model)

    # -- text ----------------------------------------------------------------------------------

    def text_tokens(self, text: str) -> int:
        if not text:
            return 0
        if self.encoding_name is not None:
            return _encoded_length(self.encoding_name, text)
        return estimate_text_tokens(text, self.family)

    def add_text(self, text: str) -> None:
        self.tokens += self.text_tokens(text)

    def approximate(self, note: str) -> None:
        self.exact = False
        if note not in self.notes:
            self.notes.append(note)

    # -- chat messages ---------------------------------------------------------------------------

    def add_messages(self, messages: Iterable[Any]) -> None:
        per_message, per_name = 3, 1
        if self.bare.startswith(("gpt-3.5-turbo-0301", "gpt-35-turbo-0301")):
            per_message, per_name = 4, -1
        if self.encoding_name is not None and not self.bare.startswith(_COOKBOOK_VERIFIED):
            self.approximate(
                "message overhead: cookbook rule, verified by OpenAI for gpt-3.5/gpt-4/gpt-4o only"
            )
        if self.encoding_name is None:
            self.approximate("message overhead: OpenAI cookbook rule assumed")
        for message in messages:
            fields = _as_mapping(message)
            self.tokens += per_message
            for key, value in fields.items():
                if key == "name" and isinstance(value, str):
                    self.tokens += per_name
                self.add_field(key, value)
        self.tokens += 3  # every reply is primed with <|start|>assistant<|message|>

    def add_field(self, key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, str):
            self.add_text(value)
        elif key == "content":
            self.add_content(value)
        elif key == "tool_calls":
            self.add_tool_calls(value)
        elif key == "function_call" and isinstance(value, Mapping):
            self.add_tool_calls([{"function": value}])
        else:
            self.approximate(f"message field {key!r}: counted as its JSON text")
            self.add_text(_json_text(value))

    def add_content(self, content: Any) -> None:
        if isinstance(content, str):
            self.add_text(content)
            return
        parts = content if isinstance(content, Sequence) else [content]
        self.approximate("content parts: each part counted on its own")
        for part in parts:
            self.add_part(_as_mapping(part) if not isinstance(part, str) else {"type": "text", "text": part})

    def add_part(self, part: Mapping[str, Any]) -> None:
        kind = part.get("type", "")
        if kind in ("text", "input_text", "output_text"):
            self.add_text(str(part.get("text") or ""))
        elif kind in ("image_url", "input_image", "image"):
            self.add_image(part)
        elif kind == "thinking":
            self.add_text(str(part.get("thinking") or ""))
        elif kind == "tool_use":
            self.add_text(str(part.get("name") or ""))
            self.add_text(_json_text(part.get("input") or {}))
            self.approximate("tool_use blocks: name + JSON input")
        elif kind == "tool_result":
            self.add_content(part.get("content") or "")
        else:
            self.approximate(f"content part {kind!r}: not counted (no offline rule)")

    def add_image(self, part: Mapping[str, Any]) -> None:
        detail = "auto"
        source: Any = part.get("image_url") or part.get("source") or part.get("url") or ""
        if isinstance(source, Mapping):
            detail = str(source.get("detail") or detail)
            source = source.get("url") or source.get("data") or ""
        detail = str(part.get("detail") or detail)
        size = image_size(source) if isinstance(source, (str, bytes)) else None
        if size is None:
            size = _ASSUMED_IMAGE_SIZE
            self.approximate("image size unknown (not inline): 1024x1024 assumed")
        cost = image_cost(size[0], size[1], self.model, detail)
        if not cost.exact:
            self.approximate(f"images: {cost.rule}")
        if detail == "auto":
            self.approximate("image detail 'auto': priced as 'high'")
        self.tokens += cost.tokens

    def add_tool_calls(self, calls: Any) -> None:
        self.approximate("tool calls: function name + arguments + 3 per call")
        for call in calls if isinstance(calls, Sequence) else [calls]:
            function = _as_mapping(call).get("function") or {}
            function = _as_mapping(function)
            arguments = function.get("arguments") or ""
            if not isinstance(arguments, str):
                arguments = _json_text(arguments)
            self.tokens += 3
            self.add_text(str(function.get("name") or ""))
            self.add_text(arguments)

    # -- tool definitions ----------------------------------------------------------------------

    def add_tools(self, tools: Iterable[Mapping[str, Any]]) -> None:
        """OpenAI cookbook `num_tokens_for_tools` rule; nested schemas counted as their JSON text."""
        self.approximate("tool definitions: OpenAI cookbook approximation")
        function_start = 7 if self.encoding_name == "o200k_base" else 10
        count = 0
        for tool in tools:
            entry = _as_mapping(tool)
            function = _as_mapping(entry.get("function") or entry)
            count += function_start
            description = str(function.get("description") or "").removesuffix(".")
            count += self.text_tokens(f"{function.get('name', '')}:{description}")
            schema = function.get("parameters") or function.get("input_schema") or {}
            properties = _as_mapping(schema).get("properties") or {}
            if properties:
                count += 3
                for key, schema in _as_mapping(properties).items():
                    count += 3 + self._property_tokens(key, _as_mapping(schema))
        if count:
            count += 12
        self.tokens += count

    def _property_tokens(self, key: str, schema: Mapping[str, Any]) -> int:
        count = 0
        if "enum" in schema:
            count -= 3
            for item in schema["enum"]:
                count += 3 + self.text_tokens(str(item))
        kind = schema.get("type", "")
        description = str(schema.get("description") or "").removesuffix(".")
        count += self.text_tokens(f"{key}:{kind}:{description}")
        nested = {k: v for k, v in schema.items() if k in ("properties", "items", "anyOf", "oneOf", "allOf")}
        if nested:
            self.approximate("nested tool schemas: counted as their JSON text")
            count += self.text_tokens(_json_text(nested))
        return count

    # -- result ----------------------------------------------------------------------------------

    def result(self) -> TokenCount:
        if self.encoding_name is not None:
            method, error = self.encoding_name + self.method_suffix, 0.0
        else:
            profile = family_profile(self.family)
            method, error = f"estimate:{profile.name}{self.method_suffix}", profile.expected_error
            self.notes.insert(0, f"estimated for {profile.name}: {profile.basis}")
        return TokenCount(self.tokens, self.model, self.exact, method, error, tuple(self.notes))


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def _as_mapping(value: Any) -> Mapping[str, Any]:
    """A message or part as a mapping: dicts as they are, SDK objects (pydantic) via `model_dump`."""
    if type(value) is dict or isinstance(value, Mapping):  # a dict without the ABC check
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        dumped = dump(exclude_none=True)
        if isinstance(dumped, Mapping):
            return dumped
    raise TypeError(f"expected a mapping (a chat message or content part), got {type(value).__name__}")
