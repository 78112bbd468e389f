"""The span reader: what one OpenTelemetry span says a model call consumed, as a `Usage`, plus who it
was for. Pure functions over plain values (no OTLP, no tracker): `read_span` and `attribute`.

Three attribute conventions are read, one per span, in this order (a span carrying several — the Vercel
AI SDK also writes `gen_ai.*` — is read by the most specific one only, so nothing is added twice):

- **Vercel AI SDK** (`ai.operationId` present): only the provider calls, `ai.*.doGenerate`,
  `ai.*.doStream` and `ai.*.doEmbed`; the outer `ai.generateText` / `ai.streamText` spans sum their
  steps and are skipped. Token names of `ai` 5/6 (`ai.usage.inputTokens`, `…outputTokens`,
  `…inputTokenDetails.cacheReadTokens` / `…cachedInputTokens`, `…inputTokenDetails.cacheWriteTokens`,
  `…outputTokenDetails.reasoningTokens` / `…reasoningTokens`) and of `ai` 4 (`ai.usage.promptTokens`,
  `…completionTokens`); embeddings `ai.usage.tokens`.
- **OpenInference** (`openinference.span.kind` or `llm.token_count.*`): LLM and EMBEDDING spans
  (`llm.token_count.prompt`, `…completion`, `…prompt_details.cache_read` (older `cache_input`),
  `…prompt_details.cache_write`, `…completion_details.reasoning`, audio details); AGENT/CHAIN spans that
  carry totals are skipped.
- **GenAI semantic conventions** (`gen_ai.usage.*`): `gen_ai.usage.input_tokens` (older
  `gen_ai.usage.prompt_tokens`), `…output_tokens` (older `…completion_tokens`),
  `…cache_read.input_tokens`, `…cache_creation.input_tokens`, `…reasoning.output_tokens`; spans whose
  `gen_ai.operation.name` is an agent or tool operation (`invoke_agent`, …) sum other calls: skipped.

Token semantics are tokentrail's (see `_types`): input counts cached reads and writes, output counts
reasoning. All three conventions already say so (quoted where they are read), so counts map one to one;
a span whose parts exceed their total, or with a negative, fractional or absurd count, becomes
`Usage.unknown` with the reason (counted as a call, never as zero tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from tokentrail._types import Usage

__all__ = [
    "ABSURD_TOKENS",
    "ATTRIBUTION_KEYS",
    "READ_KEYS",
    "RECORDED_IN_PROCESS",
    "Attribution",
    "NotACall",
    "SpanCall",
    "SpanData",
    "attribute",
    "attribute_walk",
    "read_span",
]

ABSURD_TOKENS = 1_000_000_000  # no single model call reads or writes a billion tokens
RECORDED_IN_PROCESS = "tokentrail.recorded"  # set by tokentrail on a span whose call it recorded itself

# -- GenAI semantic conventions ------------------------------------------------------------------------
# https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ (now open-telemetry/semantic-conventions-genai):
# gen_ai.usage.input_tokens: "This value SHOULD include all types of input tokens, including cached tokens."
# gen_ai.usage.cache_read.input_tokens / cache_creation.input_tokens: "The value SHOULD be included in
# gen_ai.usage.input_tokens." gen_ai.usage.reasoning.output_tokens: included in gen_ai.usage.output_tokens.
GENAI_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
GENAI_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
GENAI_CACHE_READ = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
GENAI_CACHE_WRITE = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens")
GENAI_REASONING = ("gen_ai.usage.reasoning.output_tokens",)
GENAI_NOT_A_CALL = frozenset(
    {"invoke_agent", "create_agent", "execute_tool", "invoke_workflow", "create_workflow"}
)

# -- OpenInference ---------------------------------------------------------------------------------------
# openinference-semantic-conventions 0.1.42 (openinference/semconv/trace/__init__.py):
# llm.token_count.prompt "Number of tokens in the prompt"; prompt_details.cache_read "Number of tokens in
# the prompt that were read from cache"; prompt_details.cache_write "Number of tokens in the prompt that
# were written to cache" (both parts of the prompt); completion_details.reasoning "Number of tokens used
# for reasoning steps in the completion" (part of the completion).
OI_INPUT = ("llm.token_count.prompt",)
OI_OUTPUT = ("llm.token_count.completion",)
OI_TOTAL = "llm.token_count.total"
OI_CACHE_READ = ("llm.token_count.prompt_details.cache_read", "llm.token_count.prompt_details.cache_input")
OI_CACHE_WRITE = ("llm.token_count.prompt_details.cache_write",)
OI_REASONING = ("llm.token_count.completion_details.reasoning",)
OI_INPUT_AUDIO = ("llm.token_count.prompt_details.audio",)
OI_OUTPUT_AUDIO = ("llm.token_count.completion_details.audio",)
OI_CALL_KINDS = frozenset({"LLM", "EMBEDDING"})

# -- Vercel AI SDK ---------------------------------------------------------------------------------------
# ai 6.0.333 (dist/index.mjs, the doGenerate/doStream span): "ai.usage.inputTokens":
# usage.inputTokens.total, "…inputTokenDetails.noCacheTokens": inputTokens.noCache,
# "…cacheReadTokens": inputTokens.cacheRead, "…cacheWriteTokens": inputTokens.cacheWrite (the total is
# noCache + cacheRead + cacheWrite), "ai.usage.outputTokens": outputTokens.total (text + reasoning),
# "ai.usage.reasoningTokens" / "…outputTokenDetails.reasoningTokens": outputTokens.reasoning,
# "ai.usage.cachedInputTokens": inputTokens.cacheRead. ai 4 wrote ai.usage.promptTokens/completionTokens.
AI_INPUT = ("ai.usage.inputTokens", "ai.usage.promptTokens", "ai.usage.tokens")
AI_OUTPUT = ("ai.usage.outputTokens", "ai.usage.completionTokens")
AI_CACHE_READ = ("ai.usage.inputTokenDetails.cacheReadTokens", "ai.usage.cachedInputTokens")
AI_CACHE_WRITE = ("ai.usage.inputTokenDetails.cacheWriteTokens",)
AI_REASONING = ("ai.usage.outputTokenDetails.reasoningTokens", "ai.usage.reasoningTokens")
AI_CALL_SUFFIXES = (".doGenerate", ".doStream", ".doEmbed")

_MODEL_KEYS = (
    "ai.response.model",
    "gen_ai.response.model",
    "llm.model_name",
    "ai.model.id",
    "gen_ai.request.model",
    "embedding.model_name",
)
_PROVIDER_KEYS = ("gen_ai.provider.name", "llm.provider", "ai.model.provider", "gen_ai.system", "llm.system")
_AGENT_KEYS = ("gen_ai.agent.name", "agent.name", "ai.telemetry.metadata.agent")
_SESSION_KEYS = (
    "gen_ai.conversation.id",
    "session.id",
    "ai.telemetry.metadata.sessionId",
    "ai.telemetry.metadata.session",
    "ai.telemetry.metadata.conversationId",
)
_USER_KEYS = ("user.id", "enduser.id", "ai.telemetry.metadata.userId", "ai.telemetry.metadata.user")

# Provider names as the conventions spell them → the name tokentrail records (pricing reads either).
_PROVIDERS = {
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "gcp.vertex_ai": "google",
    "google.generative-ai": "google",
    "google.vertex": "google",
    "vertexai": "google",
    "aws.bedrock": "bedrock",
    "amazon-bedrock": "bedrock",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "az.ai.openai": "azure",
    "x_ai": "xai",
    "mistral_ai": "mistral",
}

READ_KEYS: frozenset[str] = frozenset(
    {
        *GENAI_INPUT,
        *GENAI_OUTPUT,
        *GENAI_CACHE_READ,
        *GENAI_CACHE_WRITE,
        *GENAI_REASONING,
        "gen_ai.operation.name",
        "gen_ai.response.id",
        *OI_INPUT,
        *OI_OUTPUT,
        OI_TOTAL,
        *OI_CACHE_READ,
        *OI_CACHE_WRITE,
        *OI_REASONING,
        *OI_INPUT_AUDIO,
        *OI_OUTPUT_AUDIO,
        "openinference.span.kind",
        *AI_INPUT,
        *AI_OUTPUT,
        *AI_CACHE_READ,
        *AI_CACHE_WRITE,
        *AI_REASONING,
        "ai.operationId",
        "ai.response.id",
        "ai.telemetry.functionId",
        *_MODEL_KEYS,
        *_PROVIDER_KEYS,
        *_AGENT_KEYS,
        *_SESSION_KEYS,
        *_USER_KEYS,
        RECORDED_IN_PROCESS,
    }
)
"""Every attribute key the reader looks at: a decoder may drop the others (prompts, outputs) unread."""

Attributes = Mapping[str, object]


@dataclass(slots=True)
class SpanData:
    """One span as the reader needs it: ids as bytes, times in ns since the epoch, the attributes it reads."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, object]


@dataclass(frozen=True, slots=True)
class SpanCall:
    """A model call read from a span: its usage, model and provider, and how it was read."""

    usage: Usage
    model: str | None
    provider: str | None
    convention: str  # "genai", "openinference" or "vercel"
    response_id: str | None = None


class Attribution(NamedTuple):
    """Who a span's call was for."""

    agent: str | None
    session: str | None
    user: str | None


class NotACall(Exception):
    """The span carries usage but sums other calls (an agent or outer SDK span): recording it would count twice."""


def read_span(attributes: Attributes) -> SpanCall | None:
    """The call a span describes, or None when it carries no usage; raises `NotACall` for a span whose
    usage sums calls recorded from their own spans."""
    operation = attributes.get("ai.operationId")
    if isinstance(operation, str):
        return _vercel(attributes, operation)
    kind = attributes.get("openinference.span.kind")
    if kind is not None or _has_any(attributes, OI_INPUT, OI_OUTPUT, (OI_TOTAL,)):
        found = _openinference(attributes, kind)
        if found is not None:
            return found
    if _has_any(attributes, GENAI_INPUT, GENAI_OUTPUT):
        if attributes.get("gen_ai.operation.name") in GENAI_NOT_A_CALL:
            raise NotACall(f"a {attributes['gen_ai.operation.name']} span sums the calls below it")
        return _counts(
            attributes,
            "genai",
            GENAI_INPUT,
            GENAI_OUTPUT,
            GENAI_CACHE_READ,
            GENAI_CACHE_WRITE,
            GENAI_REASONING,
            response_id=_text(attributes.get("gen_ai.response.id")),
        )
    return None


def _vercel(attributes: Attributes, operation: str) -> SpanCall | None:
    if not _has_any(attributes, AI_INPUT, AI_OUTPUT, GENAI_INPUT, GENAI_OUTPUT):
        return None
    if not operation.endswith(AI_CALL_SUFFIXES):
        raise NotACall(f"the Vercel AI SDK span {operation} sums its provider calls")
    return _counts(
        attributes,
        "vercel",
        (*AI_INPUT, *GENAI_INPUT),
        (*AI_OUTPUT, *GENAI_OUTPUT),
        AI_CACHE_READ,
        AI_CACHE_WRITE,
        AI_REASONING,
        response_id=_text(attributes.get("ai.response.id")) or _text(attributes.get("gen_ai.response.id")),
        embedding=operation.endswith(".doEmbed"),
    )


def _openinference(attributes: Attributes, kind: object) -> SpanCall | None:
    if not _has_any(attributes, OI_INPUT, OI_OUTPUT, (OI_TOTAL,)):
        return None
    if kind is not None and kind not in OI_CALL_KINDS:
        raise NotACall(f"an OpenInference {kind} span sums the calls below it")
    if not _has_any(attributes, OI_INPUT, OI_OUTPUT):
        return SpanCall(
            Usage.unknown("the span reports only llm.token_count.total: no split into prompt and completion"),
            _model(attributes),
            _provider(attributes),
            "openinference",
        )
    call = _counts(
        attributes, "openinference", OI_INPUT, OI_OUTPUT, OI_CACHE_READ, OI_CACHE_WRITE, OI_REASONING
    )
    if call.usage.status.value == "unknown":
        return call
    audio_in, audio_out = _count(attributes, OI_INPUT_AUDIO), _count(attributes, OI_OUTPUT_AUDIO)
    if isinstance(audio_in, str) or isinstance(audio_out, str):
        return call  # the audio details are extras: a bad one leaves the main counts as read
    if audio_in or audio_out:
        try:
            usage = Usage(
                call.usage.input_tokens,
                call.usage.output_tokens,
                cache_read_tokens=call.usage.cache_read_tokens,
                cache_write_tokens=call.usage.cache_write_tokens,
                reasoning_tokens=call.usage.reasoning_tokens,
                input_audio_tokens=audio_in or 0,
                output_audio_tokens=audio_out or 0,
            )
        except ValueError:
            return call
        return SpanCall(usage, call.model, call.provider, call.convention)
    return call


def _counts(
    attributes: Attributes,
    convention: str,
    input_keys: tuple[str, ...],
    output_keys: tuple[str, ...],
    cache_read_keys: tuple[str, ...],
    cache_write_keys: tuple[str, ...],
    reasoning_keys: tuple[str, ...],
    *,
    response_id: str | None = None,
    embedding: bool = False,
) -> SpanCall:
    model, provider = _model(attributes), _provider(attributes)
    values: dict[str, int] = {}
    for name, keys in (
        ("input_tokens", input_keys),
        ("output_tokens", output_keys),
        ("cache_read_tokens", cache_read_keys),
        ("cache_write_tokens", cache_write_keys),
        ("reasoning_tokens", reasoning_keys),
    ):
        for key in keys:  # the usual case inline: the first key present holds a plausible int
            value = attributes.get(key)
            if value is not None:
                if type(value) is int and 0 <= value < ABSURD_TOKENS:
                    values[name] = value
                else:
                    checked = _count(attributes, (key,))
                    if isinstance(checked, str):
                        return SpanCall(Usage.unknown(checked), model, provider, convention, response_id)
                    values[name] = checked or 0
                break
        else:
            values[name] = 0
    if values["cache_read_tokens"] + values["cache_write_tokens"] > values["input_tokens"]:
        reason = (
            f"cached tokens ({values['cache_read_tokens']} read + {values['cache_write_tokens']} written) exceed "
            f"the input tokens ({values['input_tokens']}): the emitter does not count cached tokens as input, "
            "as its convention says"
        )
        return SpanCall(Usage.unknown(reason), model, provider, convention, response_id)
    if values["reasoning_tokens"] > values["output_tokens"]:
        reason = (
            f"reasoning tokens ({values['reasoning_tokens']}) exceed the output tokens "
            f"({values['output_tokens']}), which include them"
        )
        return SpanCall(Usage.unknown(reason), model, provider, convention, response_id)
    del embedding  # an embedding's tokens are input tokens: read like any other call
    usage = Usage(
        values["input_tokens"],
        values["output_tokens"],
        cache_read_tokens=values["cache_read_tokens"],
        cache_write_tokens=values["cache_write_tokens"],
        reasoning_tokens=values["reasoning_tokens"],
    )
    return SpanCall(usage, model, provider, convention, response_id)


def _count(attributes: Attributes, keys: tuple[str, ...]) -> int | str | None:
    """The first of `keys` present as a token count; a str names what is wrong with it."""
    for key in keys:
        value = attributes.get(key)
        if value is None:
            continue
        if type(value) is int:
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and value.strip().lstrip("-").isdigit()
        ):
            number = int(value)
        else:
            return f"{key} is not a whole number of tokens: {value!r}"
        if number < 0:
            return f"{key} is negative: {number}"
        if number >= ABSURD_TOKENS:
            return f"{key} is absurd for one call: {number}"
        return number
    return None


_KEY_SETS: dict[tuple[tuple[str, ...], ...], frozenset[str]] = {}


def _has_any(attributes: Attributes, *groups: tuple[str, ...]) -> bool:
    keys = _KEY_SETS.get(groups)
    if keys is None:
        keys = _KEY_SETS[groups] = frozenset(key for group in groups for key in group)
    return not attributes.keys().isdisjoint(keys)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _model(attributes: Attributes) -> str | None:
    for key in _MODEL_KEYS:
        value = _text(attributes.get(key))
        if value is not None:
            return value
    return None


def _provider(attributes: Attributes) -> str | None:
    """The provider a span names; for an SDK's own name ("openai", "anthropic": instrumentations name the
    SDK, not the API its client called) the one whose API the span's `server.address` is, when the catalog
    knows it (an openai client on api.deepseek.com called DeepSeek; see `MappedReaders.provider_at`)."""
    named = _named_provider(attributes)
    if named is None or named in _SDK_NAMES:
        address = _text(attributes.get("server.address"))
        if address is not None:
            from tokentrail.adapters._mapped import mapped_readers

            found = mapped_readers().provider_at(f"https://{address}/")
            if found is not None:
                return found
    return named


_SDK_NAMES = frozenset(("openai", "anthropic"))


def _named_provider(attributes: Attributes) -> str | None:
    for key in _PROVIDER_KEYS:
        value = _text(attributes.get(key))
        if value is None:
            continue
        value = value.lower()
        known = _PROVIDERS.get(value)
        if known is not None:
            return known
        if key == "ai.model.provider":  # "openai.chat", "anthropic.messages", "google.vertex.chat"
            head = value.split(".", 1)[0]
            return _PROVIDERS.get(".".join(value.split(".")[:2]), _PROVIDERS.get(head, head))
        return value
    return None


def attribute(
    span: SpanData, ancestor: Callable[[bytes], SpanData | None], trace_session: str
) -> Attribution:
    """Who the span's call was for: agent, session and user from the span, else from its nearest
    ancestor that names one (`ancestor(span_id)` gives a span seen in this export or recently, None
    when unknown). The agent also comes from an OpenInference AGENT span's name or the Vercel AI SDK's
    `ai.telemetry.functionId`; the session falls back to `trace_session` (the trace id)."""
    return attribute_walk(span, ancestor, trace_session)[0]


def attribute_walk(
    span: SpanData, ancestor: Callable[[bytes], SpanData | None], trace_session: str
) -> tuple[Attribution, bytes]:
    """`attribute`, and the id of the ancestor the walk stopped at because it is unknown (b"" when the
    walk found agent, session and user, or reached the root): an unknown ancestor may still name who
    the call was for, once its span arrives."""
    agent = session = user = None
    current = span
    missing = b""
    depth = 0
    while depth < 64:
        attributes = current.attributes
        if not attributes.keys().isdisjoint(ATTRIBUTION_KEYS):  # most spans name nobody
            if agent is None:
                agent = _first(attributes, _AGENT_KEYS)
                if agent is None and attributes.get("openinference.span.kind") == "AGENT":
                    agent = current.name or None
                if agent is None:
                    agent = _text(attributes.get("ai.telemetry.functionId"))
            if session is None:
                session = _first(attributes, _SESSION_KEYS)
            if user is None:
                user = _first(attributes, _USER_KEYS)
            if agent is not None and session is not None and user is not None:
                break
        parent = current.parent_span_id
        if not parent:
            break
        found = ancestor(parent)
        if found is None:
            missing = parent
            break
        current = found
        depth += 1
    return Attribution(agent, session if session is not None else trace_session, user), missing


ATTRIBUTION_KEYS: frozenset[str] = frozenset(
    {*_AGENT_KEYS, *_SESSION_KEYS, *_USER_KEYS, "openinference.span.kind", "ai.telemetry.functionId"}
)
"""The attributes `attribute` reads from an ancestor (what a cache of recent spans keeps)."""


def _first(attributes: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None
