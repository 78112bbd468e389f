"""Mistral chat completions: an OpenAI-shaped `usage` (`prompt_tokens`, `completion_tokens`, optional
`prompt_tokens_details.cached_tokens`), read exactly as OpenAI's.

Mistral streams always end with a chunk that carries `usage`; the `mistralai` SDK wraps each chunk in an
event whose `data` is the chunk, which the stream accumulator unwraps.

Embeddings, FIM, agents and conversations report the same `usage` (embeddings with `completion_tokens` 0 or
absent). OCR reports `usage_info.pages_processed` only: it is billed per page, so it is `unknown` with the
page count in the reason (`tokentrail.Usage` counts tokens). A conversation stream (beta) reports the usage
of the whole response in its `conversation.response.done` event. Transcriptions are billed per audio minute:
`unknown` with `usage.prompt_audio_seconds` in the reason.

The Responses API (public preview) answers in the OpenAI Responses shape and is read as such; its stream
events arrive wrapped like chat chunks (`data` is the event), `response.completed` carrying the usage. The
`mistralai` SDK leaves a response's `usage` unset when the body's usage does not match its model, so such
a response is `unknown`, not 0. Text-to-speech (`audio.speech`) is priced per character of input: its
calls are `unknown`, the characters (or, streamed, the token counts its `speech.audio.done` event reports)
in the reason.
"""

from __future__ import annotations

from tokentrail._types import Usage
from tokentrail.adapters import openai
from tokentrail.adapters._base import (
    Captured,
    Fields,
    Malformed,
    StreamAccumulator,
    build_usage,
    get_field,
    model_name,
    text_value,
)

__all__ = [
    "ChatStream",
    "ConversationStream",
    "ResponsesStream",
    "SpeechStream",
    "TranscriptionStream",
    "extract",
    "responses_extract",
    "speech_usage",
    "transcription_extract",
]

PROVIDER = "mistral"

# Model-name prefixes of Mistral's own models, used to tell a Mistral body from an OpenAI one.
MODEL_PREFIXES = (
    "mistral",
    "open-mistral",
    "open-mixtral",
    "mixtral",
    "codestral",
    "ministral",
    "magistral",
    "pixtral",
    "devstral",
    "voxtral",
)


def _unwrapped(event: object) -> object:
    """The payload of a stream event: the SDK wraps each in an event whose `data` is the payload."""
    inner = get_field(event, "data")
    return inner if inner is not None and not isinstance(inner, (str, bytes)) else event


def extract(response: object, provider: str = PROVIDER) -> Captured:
    """Usage of a chat completion response (SDK object or JSON body)."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        return Captured(_pages_usage(response), model_name(response), provider, {})
    fields = Fields(raw_usage, "usage")
    if not fields.has("completion_tokens") and get_field(response, "data") is not None:  # embeddings
        return Captured(
            build_usage(input_tokens=fields.count("prompt_tokens", required=True)),
            model_name(response),
            provider,
            {},
        )
    usage = openai.chat_usage(fields)
    return Captured(usage, model_name(response), provider, {})


def _pages_usage(response: object) -> Usage:
    info = get_field(response, "usage_info")
    pages = get_field(info, "pages_processed") if info is not None else None
    if pages is None:
        raise Malformed("response has no usage")
    return Usage.unknown(
        f"Mistral OCR is billed per page ({pages} pages processed); tokentrail.Usage counts tokens"
    )


class ChatStream(openai.ChatStream):
    """Mistral chat stream chunks (or SDK events wrapping them): the last chunk carries the usage."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)

    def _missing_hint(self) -> str:
        return ""


class ConversationStream(StreamAccumulator):
    """Conversation (beta) stream events, each wrapped by the SDK in an event whose `data` is the payload:
    `conversation.response.done` carries the usage; the output deltas name the model."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)
        self._usage: Usage | None = None

    def _feed(self, event: object) -> None:
        payload = _unwrapped(event)
        self.model = model_name(payload) or self.model
        if text_value(get_field(payload, "type")) != "conversation.response.done":
            return
        raw_usage = get_field(payload, "usage")
        if raw_usage is None:
            raise Malformed("conversation.response.done event has no usage")
        self._usage = openai.chat_usage(Fields(raw_usage, "conversation.response.done.usage"))
        self.final = True

    def _seen(self) -> Usage | None:
        return self._usage


def transcription_extract(response: object, provider: str = PROVIDER) -> Captured:
    """A transcription (or its stream's `transcription.done` event): billed per audio minute, so `unknown`
    with the seconds in the reason; its token counts are not what is billed."""
    usage = get_field(response, "usage")
    seconds = get_field(usage, "prompt_audio_seconds") if usage is not None else None
    if type(seconds) is not int:
        raise Malformed("transcription reports no usage.prompt_audio_seconds")
    reason = f"Mistral transcription is billed per audio minute ({seconds} s of audio); tokentrail.Usage counts tokens"
    return Captured(Usage.unknown(reason), model_name(response), provider, {})


class TranscriptionStream(StreamAccumulator):
    """Transcription stream events: `transcription.done` carries the whole response, usage included."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)
        self._usage: Usage | None = None

    def _feed(self, event: object) -> None:
        payload = _unwrapped(event)
        if text_value(get_field(payload, "type")) != "transcription.done":
            return
        captured = transcription_extract(payload, self.provider)
        self.model = captured.model or self.model
        self._usage = captured.usage
        self.final = True

    def _seen(self) -> Usage | None:
        return self._usage


def responses_extract(response: object, provider: str = PROVIDER) -> Captured:
    """A Responses API response (the OpenAI Responses shape); `unknown` when the SDK left `usage` unset."""
    if not get_field(response, "usage"):  # None, or the SDK's falsy `Unset`
        raise Malformed("Mistral Responses API response has no usage")
    return openai.extract_fields(response, provider)


class ResponsesStream(openai.ResponsesStream):
    """Responses API stream frames, each wrapping its event in `data`: `response.completed` carries the usage."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)

    def _feed(self, event: object) -> None:
        super()._feed(_unwrapped(event))


_SPEECH_BILLING = "Mistral text-to-speech is priced per character of input"


def speech_usage(characters: int | None) -> Usage:
    """A text-to-speech call, whose response reports no usage: `unknown` with the characters it sent."""
    sent = f" ({characters} characters)" if characters is not None else ""
    return Usage.unknown(f"{_SPEECH_BILLING}{sent}; tokentrail.Usage counts tokens")


class SpeechStream(StreamAccumulator):
    """Text-to-speech stream events: `speech.audio.done` reports token counts, which are not what is
    billed, so the call is `unknown` with them in the reason."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)
        self._usage: Usage | None = None

    def _feed(self, event: object) -> None:
        payload = _unwrapped(event)
        if text_value(get_field(payload, "type")) != "speech.audio.done":
            return
        raw_usage = get_field(payload, "usage")
        if not raw_usage:
            raise Malformed("speech.audio.done event has no usage")
        usage = Fields(raw_usage, "speech.audio.done.usage")
        prompt, completion = usage.count("prompt_tokens"), usage.count("completion_tokens")
        self._usage = Usage.unknown(
            f"{_SPEECH_BILLING}; tokentrail.Usage counts tokens (the stream reported {prompt} prompt and "
            f"{completion} completion tokens)"
        )
        self.final = True

    def _seen(self) -> Usage | None:
        return self._usage
