"""A LangChain callback handler: `model.invoke(..., config={"callbacks": [TokentrailCallbackHandler()]})`.

Each finished model run (`on_llm_end`) is recorded once per prompt on the tracker. Usage comes from
the generation's `message.usage_metadata` (LangChain's standard: `input_tokens` includes cache reads
and writes, `input_token_details.cache_read` / `cache_creation` / `ephemeral_1h_input_tokens` /
`audio`, `output_token_details.reasoning` / `audio`); when no generation has it, from
`llm_output["token_usage"]` (or `"usage"`), OpenAI or Anthropic shaped. When a prompt has several
candidate generations (n > 1), the first one carrying usage_metadata is used: chat integrations
attach the call's total to each of them. A run that reports no usage records `unknown`.

The model comes from the response metadata (`model_name` / `model`), else from the run's invocation
parameters or `ls_model_name` metadata; the provider from `ls_provider` metadata or the response's
`model_provider`. Duration runs from `on_llm_start` / `on_chat_model_start` to `on_llm_end`. Failed
runs are not recorded; they are counted under `error_counts["call_errors"]`. Tracking never raises
into the run.

Importing this module imports langchain_core (it is not a dependency of tokentrail).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from tokentrail._types import Usage

__all__ = ["TokentrailCallbackHandler", "usage_from_metadata"]

logger = logging.getLogger("tokentrail.adapters")

_BaseCallbackHandler: Any = importlib.import_module("langchain_core.callbacks").BaseCallbackHandler

_PROVIDERS = {
    "google_genai": "google",
    "google_vertexai": "google",
    "google_anthropic_vertex": "anthropic",
    "amazon_bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "azure_openai": "azure",
    "azure": "azure",
}


class TokentrailCallbackHandler(_BaseCallbackHandler):  # type: ignore[misc]
    """LangChain `BaseCallbackHandler` recording each model run on a tokentrail tracker."""

    raise_error = False
    run_inline = True  # record in the caller's context, so the active tokentrail scope applies

    def __init__(self, tracker: Any = None) -> None:
        super().__init__()
        self.tracker = tracker
        self._runs: dict[UUID, tuple[float, str | None, str | None]] = {}
        self._lock = threading.Lock()

    # -- LangChain hooks -------------------------------------------------------------------------------

    def on_llm_start(
        self, serialized: Any, prompts: Any, *, run_id: UUID, metadata: Any = None, **kwargs: Any
    ) -> None:
        self._start(run_id, metadata, kwargs)

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, metadata: Any = None, **kwargs: Any
    ) -> None:
        self._start(run_id, metadata, kwargs)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            with self._lock:
                started, model, provider = self._runs.pop(run_id, (None, None, None))
            duration_ms = None if started is None else (time.perf_counter() - started) * 1000.0
            tracker = self._tracker()
            for usage, found_model, found_provider, context in _calls(response):
                tracker.record(
                    usage,
                    model=found_model or model,
                    provider=provider or found_provider,
                    duration_ms=duration_ms,
                    context=context,
                )
        except Exception:
            logger.debug("tokentrail could not record a LangChain run", exc_info=True)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            with self._lock:
                self._runs.pop(run_id, None)
            from tokentrail.adapters.hooks import count_error

            count_error(self.tracker)
        except Exception:
            logger.debug("tokentrail could not count a failed LangChain run", exc_info=True)

    # -- helpers ---------------------------------------------------------------------------------------

    def _tracker(self) -> Any:
        from tokentrail.adapters.hooks import resolve_tracker

        return resolve_tracker(self.tracker)

    def _start(self, run_id: UUID, metadata: Any, kwargs: Mapping[str, Any]) -> None:
        try:
            meta = metadata if isinstance(metadata, Mapping) else {}
            params = kwargs.get("invocation_params")
            params = params if isinstance(params, Mapping) else {}
            model = (
                _text(meta.get("ls_model_name"))
                or _text(params.get("model"))
                or _text(params.get("model_name"))
            )
            provider = _provider(meta.get("ls_provider"))
            with self._lock:
                self._runs[run_id] = (time.perf_counter(), model, provider)
        except Exception:
            logger.debug("tokentrail could not start tracking a LangChain run", exc_info=True)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _provider(value: object) -> str | None:
    name = _text(value)
    return None if name is None else _PROVIDERS.get(name.lower(), name.lower())


def _count(details: object, *names: str) -> int:
    from tokentrail.adapters._base import as_count

    if not isinstance(details, Mapping):
        return 0
    for name in names:
        value = details.get(name)
        if value is not None:
            return as_count(value, name)
    return 0


def usage_from_metadata(metadata: object) -> Usage:
    """A LangChain `UsageMetadata` (or llm_output token usage) dict as a `Usage`; never raises."""
    from tokentrail.adapters._base import Malformed, build_usage

    if not isinstance(metadata, Mapping):
        return Usage.unknown("the run reported no token usage")
    try:
        inputs = metadata.get("input_token_details")
        outputs = metadata.get("output_token_details")
        prompt_details = metadata.get("prompt_tokens_details")
        completion_details = metadata.get("completion_tokens_details")
        input_tokens = _count(metadata, "input_tokens", "prompt_tokens")
        cache_read = _count(inputs, "cache_read") or _count(prompt_details, "cached_tokens")
        cache_write = _count(inputs, "cache_creation")
        if "prompt_tokens" not in metadata and "input_tokens" in metadata and inputs is None:
            # Anthropic-shaped llm_output usage: input_tokens excludes the cache, listed beside it
            cache_read = _count(metadata, "cache_read_input_tokens")
            cache_write = _count(metadata, "cache_creation_input_tokens")
            input_tokens += cache_read + cache_write
        if "input_tokens" not in metadata and "prompt_tokens" not in metadata:
            raise Malformed("no input_tokens / prompt_tokens in the reported usage")
        return build_usage(
            input_tokens=input_tokens,
            output_tokens=_count(metadata, "output_tokens", "completion_tokens"),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            cache_write_1h_tokens=_count(inputs, "ephemeral_1h_input_tokens"),
            input_audio_tokens=_count(inputs, "audio") or _count(prompt_details, "audio_tokens"),
            reasoning_tokens=_count(outputs, "reasoning") or _count(completion_details, "reasoning_tokens"),
            output_audio_tokens=_count(outputs, "audio") or _count(completion_details, "audio_tokens"),
        )
    except Malformed as exc:
        return Usage.unknown(exc.reason)
    except Exception as exc:
        return Usage.unknown(f"unexpected {type(exc).__name__} while reading usage: {exc}")


def _calls(
    response: Any,
) -> list[tuple[Usage, str | None, str | None, dict[str, str] | None]]:
    """(usage, model, provider, price context) per prompt of an `LLMResult`."""
    llm_output = getattr(response, "llm_output", None)
    llm_output = llm_output if isinstance(llm_output, Mapping) else {}
    output_model = _text(llm_output.get("model_name")) or _text(llm_output.get("model"))
    calls: list[tuple[Usage, str | None, str | None, dict[str, str] | None]] = []
    fallback: tuple[str | None, str | None, dict[str, str] | None] = (output_model, None, None)
    for candidates in getattr(response, "generations", None) or ():
        found: tuple[Usage, str | None, str | None, dict[str, str] | None] | None = None
        for generation in candidates or ():
            message = getattr(generation, "message", None)
            meta = getattr(message, "response_metadata", None)
            meta = meta if isinstance(meta, Mapping) else {}
            model = _text(meta.get("model_name")) or _text(meta.get("model")) or output_model
            provider = _provider(meta.get("model_provider"))
            tier = _text(meta.get("service_tier"))
            context = {"service_tier": tier} if tier else None
            fallback = (model, provider, context)
            usage_metadata = getattr(message, "usage_metadata", None)
            if usage_metadata is not None:
                found = (usage_from_metadata(usage_metadata), model, provider, context)
                break
        if found is not None:
            calls.append(found)
    if calls:
        return calls
    token_usage = llm_output.get("token_usage") or llm_output.get("usage")
    model, provider, context = fallback
    return [(usage_from_metadata(token_usage), model, provider, context)]
