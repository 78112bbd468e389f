"""Patch table for `mistralai`: chat, agents and FIM (complete/stream, sync and async), embeddings, OCR,
conversations (start/append/restart, plain and streamed) and the Responses API (`responses.create`, plain
and `stream=True`), all through `Mistral()`.

OCR is billed per page, transcriptions (`audio.transcriptions`) per audio minute, text-to-speech
(`audio.speech`, plain and `stream=True`) per character: their calls are recorded `unknown` with the page
count, the audio seconds or the characters (streamed speech: the token counts it reports) in the reason.
`chat.parse*` call `complete`/`stream` and are tracked through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokentrail.adapters._base import Captured
from tokentrail.adapters._instrument_target import Call, Request, Target

__all__ = ["CLIENT_MODULES", "NOT_TRACKED", "ROOT", "TARGETS", "WRAP_PATHS", "surface", "tracked"]


@dataclass(frozen=True)
class _ChatTarget(Target):
    adapter: str | None = "mistral"

    def is_content(self, event: object) -> bool:
        chunk = getattr(event, "data", event)  # the SDK wraps each chunk in an event
        for choice in getattr(chunk, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            if getattr(delta, "content", None) or getattr(delta, "tool_calls", None):
                return True
        return False


@dataclass(frozen=True)
class _ReaderTarget(Target):
    """A method whose streams are read by its own accumulator (`mistral.<stream_reader>`), which format
    detection does not know."""

    adapter: str | None = "mistral"
    stream_reader: str = "ConversationStream"

    def deliver(self, call: Call, request: Request, response: Any, *, asynchronous: bool) -> Any:
        call_state: Any = call  # the tracked call names the accumulator its stream uses
        call_state.stream_reader = f"mistral:{self.stream_reader}"
        return super().deliver(call, request, response, asynchronous=asynchronous)


@dataclass(frozen=True)
class _ConversationStreamTarget(_ReaderTarget):
    """A conversation stream (`mistral.ConversationStream`): its output deltas mark the first token."""

    def is_content(self, event: object) -> bool:
        payload = getattr(event, "data", event)
        return getattr(payload, "type", None) == "message.output.delta"


@dataclass(frozen=True)
class _ResponsesTarget(_ReaderTarget):
    """The Responses API: a response is read in the OpenAI Responses shape, a stream by
    `mistral.ResponsesStream`; text and argument deltas mark the first token."""

    adapter: str | None = "mistral:responses_extract"
    stream_reader: str = "ResponsesStream"

    def is_content(self, event: object) -> bool:
        payload = getattr(event, "data", event)
        return getattr(payload, "type", None) in _RESPONSE_DELTAS


_RESPONSE_DELTAS = ("response.output_text.delta", "response.function_call_arguments.delta")


@dataclass(frozen=True)
class _SpeechTarget(_ReaderTarget):
    """Text-to-speech, priced per character: a plain response reports no usage, so the call is recorded
    `unknown` with the characters sent; a stream is read by `mistral.SpeechStream`."""

    stream_reader: str = "SpeechStream"

    def deliver(self, call: Call, request: Request, response: Any, *, asynchronous: bool) -> Any:
        if request.streaming:
            return super().deliver(call, request, response, asynchronous=asynchronous)
        from tokentrail.adapters.mistral import speech_usage

        text = request.kwargs.get("input")
        usage = speech_usage(len(text) if isinstance(text, str) else None)
        call.finish_response(Captured(usage, request.model, self.provider))
        return response

    def is_content(self, event: object) -> bool:
        return getattr(getattr(event, "data", event), "type", None) == "speech.audio.delta"


_PACKAGE = "mistralai.client"
_STREAMING = {"complete": "never", "complete_async": "never", "stream": "always", "stream_async": "always"}
_PLAIN = {
    ("embeddings", "Embeddings"): ("create", "create_async"),
    ("ocr", "Ocr"): ("process", "process_async"),
    ("conversations", "Conversations"): tuple(
        f"{verb}{tail}" for verb in ("start", "append", "restart") for tail in ("", "_async")
    ),
}

TARGETS: tuple[Target, ...] = (
    *(
        _ChatTarget("mistralai", f"{_PACKAGE}.{module}", cls, attr, "mistral", streaming=streaming)
        for module, cls in (("chat", "Chat"), ("agents", "Agents"), ("fim", "Fim"))
        for attr, streaming in _STREAMING.items()
    ),
    *(
        _ChatTarget("mistralai", f"{_PACKAGE}.{module}", cls, attr, "mistral", streaming="never")
        for (module, cls), attrs in _PLAIN.items()
        for attr in attrs
    ),
    *(
        _ConversationStreamTarget(
            "mistralai",
            f"{_PACKAGE}.conversations",
            "Conversations",
            f"{verb}_stream{tail}",
            "mistral",
            streaming="always",
        )
        for verb in ("start", "append", "restart")
        for tail in ("", "_async")
    ),
    *(
        _ReaderTarget(
            "mistralai",
            f"{_PACKAGE}.transcriptions",
            "Transcriptions",
            attr,
            "mistral",
            streaming=streaming,
            adapter="mistral:transcription_extract",
            stream_reader="TranscriptionStream",
        )
        for attr, streaming in _STREAMING.items()
    ),
    *(
        _ResponsesTarget("mistralai", f"{_PACKAGE}.responses", "Responses", attr, "mistral", streaming="flag")
        for attr in ("create", "create_async")
    ),
    *(
        _SpeechTarget("mistralai", f"{_PACKAGE}.speech", "Speech", attr, "mistral", streaming="flag")
        for attr in ("complete", "complete_async")
    ),
)

# methods that make their requests through a tracked one (mistralai/extra: parse calls complete/stream)
_THROUGH = {
    "Chat.parse": "Chat.complete",
    "Chat.parse_async": "Chat.complete_async",
    "Chat.parse_stream": "Chat.stream",
    "Chat.parse_stream_async": "Chat.stream_async",
    # mistralai/client/conversations.py: the run helpers call start/append (stream) for each turn
    "Conversations.run_stream_async": "Conversations.start_stream_async",
}

NOT_TRACKED: dict[str, str] = {
    **{f"Responses.count_input_tokens{t}": "free endpoint (token counting)" for t in ("", "_async")},
    **{
        f"Traces.{m}": "observability read API: returns recorded traces, makes no model call"
        for m in ("search", "search_async", "get_trace_by_id", "get_trace_by_id_async")
    },
}


def surface() -> list[str]:
    """The installed SDK's public methods whose return type carries usage (`adapters._surface` rule)."""
    from tokentrail.adapters._surface import sdk_classes, usage_methods

    skip = ("mistralai.client.models", "mistralai.client.types", "mistralai.client.utils")
    return usage_methods(sdk_classes(_PACKAGE, lambda k: True, skip=skip))


def tracked() -> set[str]:
    """The `Class.method` names TARGETS track, and the methods that go through them."""
    from tokentrail.adapters._surface import tracked_names

    return tracked_names(TARGETS, _THROUGH)


ROOT = "mistralai.client"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("mistralai",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = (
    ("chat",),
    ("agents",),
    ("fim",),
    ("embeddings",),
    ("ocr",),
    ("beta", "conversations"),
    ("audio", "transcriptions"),
    ("audio", "speech"),
    ("responses",),
)
