"""More routes of the mock LLM server: the embedding, rerank, OCR and guardrail endpoints of google-genai,
cohere, mistralai, ollama and boto3 bedrock-runtime, in the shapes those providers document.

`mock_llm` asks `route()` after its own routing and serves the body a renderer here returns (with the
`headers()` it names). Sources of the shapes, per renderer: Gemini API `models.batchEmbedContents`
(ai.google.dev/api/embeddings), Vertex AI `predict` for text embeddings (statistics.token_count,
metadata.billableCharacterCount), Cohere API reference `/v2/embed`, `/v2/rerank`, `/v2/parse`,
`/v1/chat`, `/v1/generate`, `/v1/embed` (meta.billed_units; the v1 chat and generate streams as JSON
lines, schemas `StreamedChatResponse` / `GenerateStreamedResponse` of cohere-python 7.3.1), Mistral API
`/v1/embeddings`, `/v1/ocr` (usage_info), Ollama API
`/api/embed` (prompt_eval_count) and `/api/embeddings`, Bedrock InvokeModel bodies of Amazon Titan
Text Embeddings (inputTextTokenCount) and Cohere Embed (token counts only in the
`X-Amzn-Bedrock-Input-Token-Count` response header), Bedrock `ApplyGuardrail` (usage in policy units)
and `InvokeGuardrailChecks` (text units per check), Mistral `/v1/responses` and `/v1/audio/speech`, Ollama
`/v1/systemone`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tokentrail.testing._mock_wire import sse, words

__all__ = ["PLAIN", "RENDERERS", "STREAMED", "headers", "route"]

_VECTOR = [0.012, -0.034, 0.056, -0.078]


def route(
    path: str, body: dict[str, Any], user_agent: str, found: str | None, model: str
) -> tuple[str | None, str]:
    """The route of a request these renderers serve, else what `mock_llm` found (`found`, `model`)."""
    if ":batchEmbedContents" in path or ":embedContent" in path or ":predict" in path:
        return "gemini.embed", path.rsplit("/", 1)[-1].split(":", 1)[0]
    fixed = _PATHS.get(path)
    if fixed is not None:
        return fixed, model
    if path.startswith("/v1/conversations"):  # start, append (/{id}) and restart (/{id}/restart)
        return "mistral.conversation", model
    if path.endswith("/audio/transcriptions") and "mistral" in user_agent.lower():
        return "mistral.transcription", model
    if path.endswith("/embeddings") and "mistral" in user_agent.lower():
        return "mistral.embed", model
    if path == "/v1/responses" and "mistral" in user_agent.lower():
        return "mistral.responses", model
    if path.endswith("/audio/speech") and "mistral" in user_agent.lower():
        return "mistral.speech", model
    if path == "/guardrail-checks/invoke":
        return "bedrock.guardrail_checks", model
    if path.endswith(("/fim/completions", "/agents/completions")):
        return "mistral", model  # chat-completion shaped, served by mock_llm's Mistral chat renderer
    if path.startswith("/guardrail/") and path.endswith("/apply"):
        return "bedrock.guardrail", path.split("/")[2]
    if found == "bedrock.invoke" and model.startswith(("amazon.titan-embed", "cohere.embed")):
        return "bedrock.embed", model
    return found, model


_PATHS = {
    "/v2/embed": "cohere.embed",
    "/v2/rerank": "cohere.rerank",
    "/v2/parse": "cohere.parse",
    "/v1/embed": "cohere.embed_v1",
    "/v1/rerank": "cohere.rerank",
    "/v1/chat": "cohere.chat_v1",
    "/v1/generate": "cohere.generate_v1",
    "/v1/summarize": "cohere.summarize_v1",
    "/v1/classify": "cohere.classify_v1",
    "/v1/ocr": "mistral.ocr",
    "/api/embed": "embed.ollama",
    "/api/embeddings": "embed.ollama_legacy",
    "/v1/systemone": "systemone.ollama",
}


def _inputs(body: Mapping[str, Any], *keys: str) -> int:
    """How many inputs a request embeds (one vector each)."""
    for key in keys:
        value = body.get(key)
        if isinstance(value, list):
            return max(1, len(value))
        if value is not None:
            return 1
    return 1


def _gemini_embed(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Gemini API batchEmbedContents: one embedding per request, `usageMetadata.promptTokenCount`;
    Vertex `predict` (an `instances` body): per-prediction `statistics.token_count`."""
    if "instances" in body:
        count = _inputs(body, "instances")
        share = [u.input // count + (1 if i < u.input % count else 0) for i in range(count)]
        predictions = [
            {"embeddings": {"values": _VECTOR, "statistics": {"truncated": False, "token_count": share[i]}}}
            for i in range(count)
        ]
        vertex: dict[str, Any] = {"predictions": predictions}
        if not plan.omit_usage:
            vertex["metadata"] = {"billableCharacterCount": 4 * u.input}
        return vertex
    response: dict[str, Any] = {
        "embeddings": [{"values": _VECTOR} for _ in range(_inputs(body, "requests", "content"))]
    }
    if not plan.omit_usage:
        response["usageMetadata"] = {"promptTokenCount": u.input, "totalTokenCount": u.input}
    return response


def _cohere_meta(version: str, billed: dict[str, int], plan: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"api_version": {"version": version}}
    if not plan.omit_usage:
        meta["billed_units"] = billed
    return meta


def _cohere_embed(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    texts = body.get("texts") or []
    return {
        "id": "embed-mock",
        "response_type": "embeddings_by_type",
        "embeddings": {"float": [_VECTOR for _ in range(_inputs(body, "texts", "inputs", "images"))]},
        "texts": texts,
        "meta": _cohere_meta("2", {"input_tokens": u.input}, plan),
    }


def _cohere_embed_v1(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    return {
        "id": "embed-mock",
        "response_type": "embeddings_floats",
        "embeddings": [_VECTOR for _ in range(_inputs(body, "texts"))],
        "texts": body.get("texts") or [],
        "meta": _cohere_meta("1", {"input_tokens": u.input}, plan),
    }


def _cohere_rerank(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    count = _inputs(body, "documents")
    return {
        "id": "rerank-mock",
        "results": [{"index": i, "relevance_score": round(0.9 - i / (count + 1), 4)} for i in range(count)],
        "meta": _cohere_meta("2", {"search_units": 1}, plan),
    }


def _cohere_parse(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Cohere API reference `/v2/parse` (`ParseResponse`): parsed pages and `meta.billed_units.pages`."""
    page = {"type": "markdown", "index": 0, "markdown": {"content": plan.text}}
    return {
        "id": "parse-mock",
        "pages": [page],
        "meta": _cohere_meta("2", {"pages": 1}, plan),
        "finish_reason": "COMPLETE",
    }


def _cohere_v1_stream(text: str, response: dict[str, Any], *head: dict[str, Any]) -> Iterator[bytes]:
    """A Cohere v1 stream, one JSON object per line: `head` events, `text-generation` events, and
    `stream-end` with `response`."""
    pieces = ({"is_finished": False, "event_type": "text-generation", "text": w} for w in words(text))
    end = {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE", "response": response}
    for event in (*head, *pieces, end):
        yield json.dumps(event).encode() + b"\n"


def _cohere_chat_v1(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Cohere API reference `/v1/chat`; streamed, `stream-start`, `text-generation` events and `stream-end`
    whose `response` (the non-streamed response) carries `meta`."""
    response = {
        "response_id": "chat-mock",
        "generation_id": "gen-mock",
        "text": plan.text,
        "finish_reason": "COMPLETE",
        "chat_history": [],
        "meta": _cohere_meta("1", {"input_tokens": u.input, "output_tokens": u.output}, plan),
    }
    if not stream:
        return response
    start = {"is_finished": False, "event_type": "stream-start", "generation_id": "gen-mock"}
    return _cohere_v1_stream(plan.text, response, start)


def _cohere_generate_v1(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Cohere API reference `/v1/generate` (legacy): generations and `meta.billed_units` in tokens;
    streamed, `text-generation` events and `stream-end`, whose response (`GenerateStreamEndResponse`:
    id, prompt, generations) has no `meta`."""
    response = {
        "id": "generate-mock",
        "generations": [{"id": "gen-mock", "text": plan.text, "finish_reason": "COMPLETE"}],
        "prompt": body.get("prompt") or "",
    }
    if stream:
        return _cohere_v1_stream(plan.text, response)
    return {**response, "meta": _cohere_meta("1", {"input_tokens": u.input, "output_tokens": u.output}, plan)}


def _cohere_summarize_v1(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Cohere API reference `/v1/summarize` (legacy): the summary and `meta.billed_units` in tokens."""
    billed = {"input_tokens": u.input, "output_tokens": u.output}
    return {"id": "summarize-mock", "summary": plan.text, "meta": _cohere_meta("1", billed, plan)}


def _cohere_classify_v1(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Cohere API reference `/v1/classify`: one classification per input, billed in classifications."""
    count = _inputs(body, "inputs")
    classifications = [
        {
            "id": f"cls-{i}",
            "input": text,
            "prediction": "positive",
            "predictions": ["positive"],
            "confidence": 0.9,
            "confidences": [0.9],
            "labels": {"positive": {"confidence": 0.9}, "negative": {"confidence": 0.1}},
            "classification_type": "single-label",
        }
        for i, text in enumerate((body.get("inputs") or [""])[:count])
    ]
    billed = {"classifications": count}
    return {
        "id": "classify-mock",
        "classifications": classifications,
        "meta": _cohere_meta("1", billed, plan),
    }


def _mistral_embed(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    count = _inputs(body, "input", "inputs")
    response: dict[str, Any] = {
        "id": "embd-mock",
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "embedding": _VECTOR, "index": i} for i in range(count)],
    }
    if not plan.omit_usage:
        response["usage"] = {"prompt_tokens": u.input, "completion_tokens": 0, "total_tokens": u.input}
    return response


def _mistral_ocr(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    page = {
        "index": 0,
        "markdown": plan.text,
        "images": [],
        "dimensions": {"dpi": 200, "height": 2200, "width": 1700},
    }
    response: dict[str, Any] = {
        "pages": [page],
        "model": model or "mistral-ocr-latest",
        "document_annotation": None,
    }
    response["usage_info"] = {"pages_processed": 1, "doc_size_bytes": 2048}
    return response


def _mistral_conversation(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Mistral Agents API `/v1/conversations` (docs.mistral.ai/api, beta.conversations): a
    `conversation.response` with `usage`; streamed, `conversation.response.started`, `message.output.delta`
    events and `conversation.response.done` carrying the usage (each SSE event named by its type)."""
    conversation = "conv_" + "0" * 32
    usage = {"prompt_tokens": u.input, "completion_tokens": u.output, "total_tokens": u.input + u.output}
    model = model or "mistral-medium-latest"
    if not stream:
        entry = {"object": "entry", "type": "message.output", "role": "assistant", "content": plan.text}
        return {
            "object": "conversation.response",
            "conversation_id": conversation,
            "outputs": [{**entry, "id": "msg_mock", "model": model}],
            "usage": usage,
        }
    return _mistral_conversation_events(conversation, model, plan.text, usage)


def _mistral_conversation_events(
    conversation: str, model: str, text: str, usage: dict[str, int]
) -> Iterator[bytes]:
    yield sse(
        {"type": "conversation.response.started", "conversation_id": conversation},
        "conversation.response.started",
    )
    for piece in words(text):
        delta = {"type": "message.output.delta", "id": "msg_mock", "model": model, "role": "assistant"}
        yield sse({**delta, "output_index": 0, "content_index": 0, "content": piece}, "message.output.delta")
    yield sse({"type": "conversation.response.done", "usage": usage}, "conversation.response.done")


def _mistral_transcription(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Mistral `/v1/audio/transcriptions` (docs.mistral.ai/api, audio.transcriptions): `usage` with
    `prompt_audio_seconds` (the queued `input` stands for the seconds) beside token counts; streamed,
    `transcription.text.delta` events, then `transcription.done` carrying the whole response."""
    usage = {
        "prompt_audio_seconds": u.input,
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
    }
    done = {"model": model, "text": plan.text, "language": "en", "segments": [], "usage": usage}
    if not stream:
        return done
    return _mistral_transcription_events(plan.text, done)


def _mistral_transcription_events(text: str, done: dict[str, Any]) -> Iterator[bytes]:
    yield sse({"type": "transcription.language", "audio_language": "en"}, "transcription.language")
    for piece in words(text):
        yield sse({"type": "transcription.text.delta", "text": piece}, "transcription.text.delta")
    yield sse({**done, "type": "transcription.done"}, "transcription.done")


def _mistral_responses(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Mistral Responses API `/v1/responses` (docs.mistral.ai/api/endpoint/responses, public preview): the
    OpenAI Responses shape (mock_llm's renderer), stateless, its `usage.input_tokens_details` carrying
    `cache_write_tokens` beside `cached_tokens` (both required by mistralai 3.7.0
    `ResponsesInputTokensDetails`); streamed as the same events, each SSE event named by its type."""
    from tokentrail.testing import mock_llm  # the OpenAI Responses renderer (it imports this module)

    response: dict[str, Any] = mock_llm._response_object(model, body, plan, u)
    usage = response.get("usage")
    if usage is not None:
        usage["input_tokens_details"]["cache_write_tokens"] = u.cache_write
    if not stream:
        return response
    return (sse(event, event["type"]) for event in mock_llm._response_events(response))


def _mistral_speech(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Mistral `/v1/audio/speech` (docs.mistral.ai/studio/audio/text-to-speech; mistralai 3.7.0
    `SpeechResponse`, `SpeechStreamAudioDelta`, `SpeechStreamDone`): `{"audio_data": base64}` and no usage;
    streamed, `speech.audio.delta` events of base64 audio, then `speech.audio.done` with token `usage`."""
    audio = base64.b64encode(hashlib.sha256(str(body.get("input") or "").encode()).digest() * 8).decode()
    if not stream:
        return {"audio_data": audio}
    usage = {"prompt_tokens": u.input, "completion_tokens": u.output, "total_tokens": u.input + u.output}
    return _mistral_speech_events(audio, usage)


def _mistral_speech_events(audio: str, usage: dict[str, int]) -> Iterator[bytes]:
    for start in range(0, len(audio), 128):
        delta = {"type": "speech.audio.delta", "audio_data": audio[start : start + 128]}
        yield sse(delta, "speech.audio.delta")
    yield sse({"type": "speech.audio.done", "usage": usage}, "speech.audio.done")


def _ollama_embed(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    response: dict[str, Any] = {
        "model": model,
        "embeddings": [_VECTOR for _ in range(_inputs(body, "input"))],
        "total_duration": 1_000_000,
        "load_duration": 1000,
    }
    if not plan.omit_usage:
        response["prompt_eval_count"] = u.input
    return response


def _ollama_embeddings(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    return {"embedding": _VECTOR}  # the legacy endpoint reports no counts


def _ollama_systemone(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Ollama `/v1/systemone` (docs.ollama.com/api/systemone; ollama 0.6.3 `SystemOneResponse`): an answer per
    question (noul: a probability; choice and score: probabilities over the criteria) and `usage`
    {input_tokens, output_tokens} (one output token per question unless the test queued a count)."""
    answers: dict[str, Any] = {}
    for name, question in (body.get("questions") or {}).items():
        kind = question.get("type")
        if kind == "noul":
            answers[name] = {"type": "noul", "noul": 0.5}
            continue
        criteria = question.get("criteria") or {}
        options = list(criteria) if kind == "choice" else [str(i) for i in range(len(criteria))]
        share = round(1 / max(1, len(options)), 4)
        probabilities = {option: share for option in options}
        if kind == "choice":
            answers[name] = {"type": "choice", "choice": options[0] if options else "", "confidence": share}
        else:
            legend = dict(zip(options, criteria, strict=True))
            answers[name] = {"type": "score", "score": 0.0, "legend": legend, "confidence": share}
        answers[name]["probabilities"] = probabilities
    output = plan.output if plan.output is not None else len(answers)
    return {"model": model, "answers": answers, "usage": {"input_tokens": u.input, "output_tokens": output}}


def _bedrock_embed(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    if model.startswith("cohere."):
        return {
            "id": "embed-mock",
            "response_type": "embeddings_floats",
            "embeddings": [_VECTOR],
            "texts": [],
        }
    response: dict[str, Any] = {"embedding": _VECTOR, "embeddingsByType": {"float": _VECTOR}}
    if not plan.omit_usage:
        response["inputTextTokenCount"] = u.input
    return response


def _bedrock_guardrail(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    usage = {
        "topicPolicyUnits": 1,
        "contentPolicyUnits": 1,
        "wordPolicyUnits": 1,
        "sensitiveInformationPolicyUnits": 1,
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 0,
    }
    return {"usage": usage, "action": "NONE", "outputs": [], "assessments": []}


def _bedrock_guardrail_checks(model: str, body: dict[str, Any], plan: Any, u: Any, *, stream: bool) -> Any:
    """Bedrock `InvokeGuardrailChecks` (docs.aws.amazon.com/bedrock/latest/APIReference/
    API_runtime_InvokeGuardrailChecks.html): a result per check the request asked for, and `usage` in text
    units per check (one text unit per 1,000 characters of the messages, at least one)."""
    text = "".join(
        str(block.get("text") or "")
        for message in body.get("messages") or []
        for block in message.get("content") or []
        if isinstance(block, dict)
    )
    units = max(1, -(-len(text) // 1000))
    checks = body.get("checks") or {}
    results: dict[str, Any] = {}
    for check in ("contentFilter", "promptAttack"):
        if check in checks:
            categories = checks[check].get("categories") or []
            scores = [{"category": c.get("category"), "severityScore": 0.0} for c in categories]
            results[check] = {"results": scores}
    if "sensitiveInformation" in checks:
        results["sensitiveInformation"] = {"results": [], "truncated": False}
    return {"results": results, "usage": {check: {"textUnits": units} for check in results}}


def headers(route_name: str, model: str, u: Any, plan: Any) -> dict[str, str]:
    """Response headers a route sends beside its body (Bedrock's token-count headers on InvokeModel)."""
    if route_name != "bedrock.embed" or plan.omit_usage:
        return {}
    return {"X-Amzn-Bedrock-Input-Token-Count": str(u.input), "X-Amzn-Bedrock-Invocation-Latency": "12"}


RENDERERS: dict[str, Callable[..., Any]] = {
    "gemini.embed": _gemini_embed,
    "cohere.embed": _cohere_embed,
    "cohere.embed_v1": _cohere_embed_v1,
    "cohere.rerank": _cohere_rerank,
    "cohere.parse": _cohere_parse,
    "cohere.chat_v1": _cohere_chat_v1,
    "cohere.generate_v1": _cohere_generate_v1,
    "cohere.summarize_v1": _cohere_summarize_v1,
    "cohere.classify_v1": _cohere_classify_v1,
    "mistral.embed": _mistral_embed,
    "mistral.ocr": _mistral_ocr,
    "mistral.conversation": _mistral_conversation,
    "mistral.transcription": _mistral_transcription,
    "embed.ollama": _ollama_embed,
    "embed.ollama_legacy": _ollama_embeddings,
    "bedrock.embed": _bedrock_embed,
    "bedrock.guardrail": _bedrock_guardrail,
    "bedrock.guardrail_checks": _bedrock_guardrail_checks,
    "mistral.responses": _mistral_responses,
    "mistral.speech": _mistral_speech,
    "systemone.ollama": _ollama_systemone,
}
STREAMED = frozenset(
    {"mistral.conversation", "mistral.transcription", "mistral.responses", "mistral.speech"}
    | {"cohere.chat_v1", "cohere.generate_v1"}
)  # stream when the request body says `stream: true`
PLAIN = frozenset(RENDERERS) - STREAMED
