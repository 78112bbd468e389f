"""The OpenAI endpoints of the mock LLM server beyond chat and Responses: embeddings, legacy completions,
images (generations, edits, streamed partial images) and audio (transcriptions, translations, speech).

Shapes follow the OpenAI API reference and the openai-python types (`CreateEmbeddingResponse`,
`Completion`, `ImagesResponse` and `ImageGen*Event`/`ImageEdit*Event`, `Transcription` and
`TranscriptionText*Event`, `Translation`; speech is raw audio bytes, or `speech.audio.*` SSE events).
`mock_llm` routes the requests here (`route()`) and serves what a renderer returns: a JSON object, an
iterator of SSE bytes (streams), or `Raw` bytes (speech audio, a `text` transcript).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tokentrail.testing._mock_wire import count as _count
from tokentrail.testing._mock_wire import new_id as _new_id
from tokentrail.testing._mock_wire import sse as _sse
from tokentrail.testing._mock_wire import words as _words

__all__ = ["RENDERERS", "Raw", "route"]

# A 1x1 transparent PNG: the image every generation returns.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
# Output image tokens of gpt-image-1 for a 1024x1024 image, per quality (OpenAI's image pricing table);
# the portrait and landscape sizes cost 1.5 times as much.
_IMAGE_TOKENS = {"low": 272, "medium": 1056, "high": 4160}
_IMAGE_INPUT_TOKENS = 85  # tokens per input image of an edit, when none were queued
_AUDIO_BYTES_PER_SECOND = 16_000
_AUDIO_TOKENS_PER_SECOND = 10


@dataclass(frozen=True)
class Raw:
    """A response body that is not JSON."""

    content_type: str
    data: bytes


_PATHS = (
    ("/embeddings", "openai.embeddings"),
    ("/completions", "openai.completions"),  # after /chat/completions, which mock_llm matches first
    ("/images/generations", "openai.images"),
    ("/images/edits", "openai.images.edit"),
    ("/images/variations", "openai.images.variation"),
    ("/audio/transcriptions", "openai.audio.transcription"),
    ("/audio/translations", "openai.audio.translation"),
    ("/audio/speech", "openai.audio.speech"),
)


def route(path: str) -> str | None:
    """The route name of one of these endpoints, else None."""
    return next((name for suffix, name in _PATHS if path.endswith(suffix)), None)


# -- embeddings, completions ---------------------------------------------------------------------------------


def _embeddings(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    raw = body.get("input")
    token_ids = isinstance(raw, list) and all(isinstance(x, int) for x in raw)  # one input, as token ids
    inputs: list[Any] = raw if isinstance(raw, list) and not token_ids else [raw]
    dims = int(body.get("dimensions") or 8)
    encoding = body.get("encoding_format") or "float"
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(json.dumps(item), dims, encoding)}
        for i, item in enumerate(inputs)
    ]
    response: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if not plan.omit_usage:
        response["usage"] = {"prompt_tokens": u.input, "total_tokens": u.input}
    return response


def _vector(text: str, dims: int, encoding: str) -> Any:
    """A deterministic unit-scale vector; base64 of little-endian float32 when the client asks for it."""
    seed = hashlib.sha256(text.encode()).digest()
    values = [(seed[i % len(seed)] - 128) / 128 for i in range(dims)]
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{dims}f", *values)).decode()
    return values


def _completions(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Legacy /v1/completions; the prompt (absent from mock_llm's own count) is counted here."""
    prompt = body.get("prompt")
    prompt_text = (
        " ".join(p for p in prompt if isinstance(p, str)) if isinstance(prompt, list) else str(prompt or "")
    )
    prompt_tokens = u.input if plan.input is not None else u.input + _count(prompt_text)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": u.output,
        "total_tokens": prompt_tokens + u.output,
    }
    base = {
        "id": _new_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_mock",
    }

    def choice(text: str, finish: str | None) -> dict[str, Any]:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

    if not stream:
        response: dict[str, Any] = {**base, "choices": [choice(plan.text, "stop")]}
        if not plan.omit_usage:
            response["usage"] = usage
        return response

    def events() -> Iterator[bytes]:
        for word in _words(plan.text):
            yield _sse({**base, "choices": [choice(word, None)]})
        yield _sse({**base, "choices": [choice("", "stop")]})
        if (body.get("stream_options") or {}).get("include_usage") and not plan.omit_usage:
            yield _sse({**base, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    return events()


# -- images ----------------------------------------------------------------------------------------------------


def _images(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    return _image_response(model, body, plan, u, stream=stream, kind="image_generation", inputs=0)


def _image_edits(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    images = body.get("image")
    count = len(images) if isinstance(images, list) else int(images is not None)
    return _image_response(model, body, plan, u, stream=stream, kind="image_edit", inputs=count)


def _image_variations(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """dall-e-2 only: image URLs (or base64), no usage."""
    return _image_response("dall-e-2", body, plan, u, stream=False, kind="image_variation", inputs=1)


def _image_response(
    model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool, kind: str, inputs: int
) -> Any:
    """gpt-image models report token usage; DALL·E models do not (and may answer with URLs)."""
    size, quality = str(body.get("size") or "1024x1024"), str(body.get("quality") or "auto")
    settings = {
        "background": body.get("background") or "opaque",
        "output_format": body.get("output_format") or "png",
        "quality": "medium" if quality == "auto" else quality,
        "size": "1024x1024" if size == "auto" else size,
    }
    usage = _image_usage(body, plan, u, settings, inputs)
    if stream:
        return _image_events(kind, int(body.get("partial_images") or 0), settings, usage)
    n = int(body.get("n") or 1)
    if model.startswith("dall-e"):
        key = "b64_json" if body.get("response_format") == "b64_json" else "url"
        value = PNG_B64 if key == "b64_json" else "https://images.example/mock.png"
        return {"created": int(time.time()), "data": [{key: value, "revised_prompt": body.get("prompt")}] * n}
    response: dict[str, Any] = {"created": int(time.time()), "data": [{"b64_json": PNG_B64}] * n, **settings}
    if not plan.omit_usage:
        response["usage"] = usage
    return response


def _image_usage(
    body: dict[str, Any], plan: Any, u: Any, settings: dict[str, Any], inputs: int
) -> dict[str, Any]:
    """Queued `input` (with `input_media` the image part) and `output`, else counted: the prompt's text,
    85 tokens per input image, and the output tokens of the size and quality, per image."""
    if plan.input is not None:
        media = plan.input_media or 0
        text = plan.input - media
    else:
        media = plan.input_media if plan.input_media is not None else inputs * _IMAGE_INPUT_TOKENS
        text = _count(str(body.get("prompt") or ""))
    if plan.output is not None:
        output = plan.output
    else:
        per_image = _IMAGE_TOKENS.get(settings["quality"], _IMAGE_TOKENS["medium"])
        scale = 1.0 if settings["size"] == "1024x1024" else 1.5
        output = int(per_image * scale) * int(body.get("n") or 1)
    return {
        "input_tokens": text + media,
        "input_tokens_details": {"text_tokens": text, "image_tokens": media},
        "output_tokens": output,
        "total_tokens": text + media + output,
    }


def _image_events(
    kind: str, partials: int, settings: dict[str, Any], usage: dict[str, Any]
) -> Iterator[bytes]:
    """`<kind>.partial_image` events (as many as `partial_images` asked), then `<kind>.completed` with usage."""
    created = int(time.time())
    for index in range(partials):
        event = {"type": f"{kind}.partial_image", "b64_json": PNG_B64, "created_at": created, **settings}
        yield _sse({**event, "partial_image_index": index}, event["type"])
    done = {
        "type": f"{kind}.completed",
        "b64_json": PNG_B64,
        "created_at": created,
        **settings,
        "usage": usage,
    }
    yield _sse(done, done["type"])


# -- audio ------------------------------------------------------------------------------------------------------


def _transcription(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """gpt-4o(-mini)-transcribe report token usage; whisper-1 reports the audio duration."""
    seconds = _audio_seconds(body)
    usage = _transcription_usage(body, plan, u, seconds)
    if stream:
        return _transcription_events(plan, usage)
    form = body.get("response_format") or "json"
    if form in ("text", "srt", "vtt"):
        return Raw("text/plain; charset=utf-8", plan.text.encode())
    if model.startswith("whisper"):
        usage = {"type": "duration", "seconds": seconds}
    response: dict[str, Any] = {"text": plan.text}
    if form == "verbose_json":
        response = {
            "task": "transcribe",
            "language": "english",
            "duration": seconds,
            **response,
            "segments": [],
        }
    if not plan.omit_usage:
        response["usage"] = usage
    return response


def _audio_seconds(body: dict[str, Any]) -> float:
    audio = body.get("file")
    size = audio.get("size", 0) if isinstance(audio, dict) else 0
    return float(max(1, size // _AUDIO_BYTES_PER_SECOND))


def _transcription_usage(body: dict[str, Any], plan: Any, u: Any, seconds: float) -> dict[str, Any]:
    """Queued `input` (with `input_media` the audio part, all of it by default) and `output`, else
    counted: 10 audio tokens a second, the prompt's text, and the transcript."""
    if plan.input is not None:
        audio = plan.input if plan.input_media is None else plan.input_media
        text = plan.input - audio
    else:
        audio = plan.input_media if plan.input_media is not None else int(seconds) * _AUDIO_TOKENS_PER_SECOND
        text = _count(str(body.get("prompt") or ""))
    output = plan.output if plan.output is not None else _count(plan.text)
    return {
        "type": "tokens",
        "input_tokens": audio + text,
        "input_token_details": {"audio_tokens": audio, "text_tokens": text},
        "output_tokens": output,
        "total_tokens": audio + text + output,
    }


def _transcription_events(plan: Any, usage: dict[str, Any]) -> Iterator[bytes]:
    for word in _words(plan.text):
        yield _sse({"type": "transcript.text.delta", "delta": word}, "transcript.text.delta")
    done: dict[str, Any] = {"type": "transcript.text.done", "text": plan.text}
    if not plan.omit_usage:
        done["usage"] = usage
    yield _sse(done, "transcript.text.done")


def _translation(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Translations report no usage."""
    if (body.get("response_format") or "json") in ("text", "srt", "vtt"):
        return Raw("text/plain; charset=utf-8", plan.text.encode())
    return {"text": plan.text}


def _speech(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Audio bytes (deterministic, 4 KiB); with `stream_format: "sse"` (gpt-4o-mini-tts) `speech.audio.delta`
    events and a `speech.audio.done` event with token usage."""
    audio = hashlib.sha256(str(body.get("input") or "").encode()).digest() * 128
    if not stream:
        return Raw(f"audio/{body.get('response_format') or 'mpeg'}", audio)

    def events() -> Iterator[bytes]:
        for start in range(0, len(audio), 1024):
            chunk = base64.b64encode(audio[start : start + 1024]).decode()
            yield _sse({"type": "speech.audio.delta", "audio": chunk}, "speech.audio.delta")
        done: dict[str, Any] = {"type": "speech.audio.done"}
        if not plan.omit_usage:
            done["usage"] = {
                "input_tokens": u.input,
                "output_tokens": u.output,
                "total_tokens": u.input + u.output,
            }
        yield _sse(done, "speech.audio.done")

    return events()


RENDERERS: dict[str, Callable[..., Any]] = {
    "openai.embeddings": _embeddings,
    "openai.completions": _completions,
    "openai.images": _images,
    "openai.images.edit": _image_edits,
    "openai.images.variation": _image_variations,
    "openai.audio.transcription": _transcription,
    "openai.audio.translation": _translation,
    "openai.audio.speech": _speech,
}
