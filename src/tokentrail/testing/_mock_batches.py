"""Batch routes of the mock server: Anthropic Message Batches (create, retrieve, the results as JSON lines)
and the OpenAI Batch API (file upload, batch create and retrieve, a file's content).

Shapes follow Anthropic's API reference (https://docs.anthropic.com/en/api/creating-message-batches,
/retrieving-message-batches and /retrieving-message-batch-results): a batch is created already `ended`
(the mock processes at once), its `results_url` is absolute, and each results line is
`{"custom_id", "result": {"type": "succeeded", "message": {…}}}` or an `errored` result. A request whose
params fail validation (no `messages`, or `max_tokens` below 1) is errored, as the API validates batch
requests only when it processes them.

OpenAI shapes follow openai-python 3.57.0 (`types/file_object.py`, `types/batch.py`) and the Batch guide
(https://platform.openai.com/docs/guides/batch, "request output"): a batch is created already
`completed`; its output file holds one line per succeeded request,
`{"id": "batch_req_…", "custom_id", "response": {"status_code": 200, "request_id", "body"}, "error": null}`,
and its error file the failed ones (`status_code` 400 with an error body). A request without `messages`
(chat) or `input` (embeddings) fails.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Any

from tokentrail.testing._mock_wire import count, new_id

__all__ = ["answer", "answer_openai"]

_KEPT = 1_024  # batches remembered per process (oldest dropped first)
_batches: OrderedDict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = OrderedDict()
_lock = threading.Lock()
_PREFIX = "/v1/messages/batches"
_TIME = "2024-08-20T18:37:24.100435Z"  # fixed timestamps: nothing here depends on the clock


def answer(handler: Any, method: str, path: str, body: dict[str, Any]) -> bool:
    """Serve a Message Batches request on `handler` (the mock's request handler); False if not one."""
    if not path.startswith(_PREFIX):
        return False
    parts = path[len(_PREFIX) :].strip("/").split("/")
    if method == "POST" and parts == [""]:
        _write(handler, 200, "application/json", json.dumps(_create(body, handler)).encode())
    elif method == "GET" and len(parts) == 1 and parts[0] in _batches:
        _write(handler, 200, "application/json", json.dumps(_batches[parts[0]][0]).encode())
    elif method == "GET" and len(parts) == 2 and parts[1] == "results" and parts[0] in _batches:
        lines = b"".join(json.dumps(result).encode() + b"\n" for result in _batches[parts[0]][1])
        _write(handler, 200, "application/binary", lines)
    else:
        error = {"type": "not_found_error", "message": f"no such batch resource {path}"}
        _write(handler, 404, "application/json", json.dumps({"type": "error", "error": error}).encode())
    return True


def _create(body: dict[str, Any], handler: Any) -> dict[str, Any]:
    """A batch, processed at once: `ended`, with its results kept for the results URL."""
    results = [_result(request) for request in body.get("requests") or []]
    batch_id = new_id("msgbatch_")
    succeeded = sum(1 for r in results if r["result"]["type"] == "succeeded")
    host = handler.headers.get("Host") or "127.0.0.1"
    batch = {
        "id": batch_id,
        "type": "message_batch",
        "processing_status": "ended",
        "request_counts": {
            "processing": 0,
            "succeeded": succeeded,
            "errored": len(results) - succeeded,
            "canceled": 0,
            "expired": 0,
        },
        "ended_at": _TIME,
        "created_at": _TIME,
        "expires_at": _TIME,
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": f"http://{host}{_PREFIX}/{batch_id}/results",
    }
    with _lock:
        _batches[batch_id] = (batch, results)
        if len(_batches) > _KEPT:
            _batches.popitem(last=False)
    return batch


def _result(request: dict[str, Any]) -> dict[str, Any]:
    """One results line: a message whose usage the mock counts as its other routes do, or an error."""
    custom_id = request.get("custom_id")
    params = request.get("params") or {}
    limit = params.get("max_tokens")
    if not params.get("messages") or not isinstance(limit, int) or limit < 1:
        error = {"type": "invalid_request_error", "message": "params: messages and max_tokens are required"}
        return {
            "custom_id": custom_id,
            "result": {"type": "errored", "error": {"type": "error", "error": error}},
        }
    prompt = " ".join(_text(m.get("content")) for m in params["messages"] if isinstance(m, dict))
    reply = f"Batch reply to {custom_id}."
    usage = {
        "input_tokens": count(prompt) + 10,
        "output_tokens": min(count(reply), limit),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "batch",
    }
    message = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": str(params.get("model") or ""),
        "content": [{"type": "text", "text": reply}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def _write(handler: Any, status: int, content_type: str, data: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


# -- OpenAI Batch API ------------------------------------------------------------------------------------------

_files: OrderedDict[str, tuple[dict[str, Any], bytes]] = OrderedDict()
_openai_batches: OrderedDict[str, dict[str, Any]] = OrderedDict()
_CREATED = 1_714_508_499  # fixed Unix timestamps: nothing here depends on the clock


def answer_openai(handler: Any, method: str, path: str, body: dict[str, Any], raw: bytes) -> bool:
    """Serve an OpenAI files or batches request (`raw`: the request body as sent); False if not one."""
    parts = path.strip("/").split("/")
    if parts[:2] not in (["v1", "files"], ["v1", "batches"]):
        return False
    rest = parts[2:]
    if parts[1] == "files" and method == "POST" and not rest:
        content = _uploaded(handler.headers.get("Content-Type") or "", raw)
        stored = _store_file(str(body.get("purpose") or "batch"), _filename(body), content)
        _write(handler, 200, "application/json", json.dumps(stored).encode())
    elif parts[1] == "files" and method == "GET" and len(rest) == 2 and rest[1] == "content":
        found = _files.get(rest[0])
        if found is None:
            return _not_found(handler, path)
        _write(handler, 200, "application/octet-stream", found[1])
    elif parts[1] == "batches" and method == "POST" and not rest:
        batch = _run_batch(body)
        if batch is None:
            return _not_found(handler, path)
        _write(handler, 200, "application/json", json.dumps(batch).encode())
    elif parts[1] == "batches" and method == "GET" and len(rest) == 1 and rest[0] in _openai_batches:
        _write(handler, 200, "application/json", json.dumps(_openai_batches[rest[0]]).encode())
    else:
        return _not_found(handler, path)
    return True


def _not_found(handler: Any, path: str) -> bool:
    error = {"message": f"no such resource {path}", "type": "invalid_request_error"}
    _write(handler, 404, "application/json", json.dumps({"error": error}).encode())
    return True


def _uploaded(content_type: str, raw: bytes) -> bytes:
    """The bytes of the `file` part of a multipart upload."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + raw)
    for part in message.iter_parts() if isinstance(message, Message) else ():
        if part.get_filename():
            data = part.get_payload(decode=True)
            return data if isinstance(data, bytes) else b""
    return b""


def _filename(body: dict[str, Any]) -> str:
    file = body.get("file")
    return str(file.get("filename") or "upload.jsonl") if isinstance(file, dict) else "upload.jsonl"


def _store_file(purpose: str, filename: str, content: bytes) -> dict[str, Any]:
    file_id = new_id("file-")
    stored: dict[str, Any] = {
        "id": file_id,
        "object": "file",
        "bytes": len(content),
        "created_at": _CREATED,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }
    with _lock:
        _files[file_id] = (stored, content)
        if len(_files) > _KEPT:
            _files.popitem(last=False)
    return stored


def _run_batch(body: dict[str, Any]) -> dict[str, Any] | None:
    """A batch over an uploaded input file, processed at once: `completed`, with its output (and error) file."""
    found = _files.get(str(body.get("input_file_id")))
    if found is None:
        return None
    endpoint = str(body.get("endpoint") or "/v1/chat/completions")
    outputs: list[bytes] = []
    errors: list[bytes] = []
    for line in found[1].splitlines():
        if line.strip():
            request = json.loads(line)
            ok, result = _batch_line(request, endpoint)
            (outputs if ok else errors).append(json.dumps(result).encode() + b"\n")
    output = _store_file("batch_output", "batch_output.jsonl", b"".join(outputs)) if outputs else None
    error = _store_file("batch_output", "batch_errors.jsonl", b"".join(errors)) if errors else None
    batch_id = new_id("batch_")
    batch: dict[str, Any] = {
        "id": batch_id,
        "object": "batch",
        "endpoint": endpoint,
        "errors": None,
        "input_file_id": body.get("input_file_id"),
        "completion_window": body.get("completion_window") or "24h",
        "status": "completed",
        "output_file_id": output["id"] if output else None,
        "error_file_id": error["id"] if error else None,
        "created_at": _CREATED,
        "in_progress_at": _CREATED,
        "expires_at": _CREATED + 86_400,
        "finalizing_at": _CREATED,
        "completed_at": _CREATED,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {
            "total": len(outputs) + len(errors),
            "completed": len(outputs),
            "failed": len(errors),
        },
        "metadata": body.get("metadata"),
    }
    with _lock:
        _openai_batches[batch_id] = batch
        if len(_openai_batches) > _KEPT:
            _openai_batches.popitem(last=False)
    return batch


def _batch_line(request: dict[str, Any], endpoint: str) -> tuple[bool, dict[str, Any]]:
    """(succeeded, the output line) for one input line."""
    params = request.get("body") or {}
    model = str(params.get("model") or "")
    line_id = new_id("batch_req_")
    request_id = new_id("req_")
    custom_id = request.get("custom_id")
    if endpoint.endswith("/embeddings"):
        given = params.get("input")
        texts = given if isinstance(given, list) else [given] if given else []
        response: dict[str, Any] | None = None
        if texts:
            tokens = sum(count(str(t)) for t in texts)
            response = {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.0] * 8} for i in range(len(texts))
                ],
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
    else:
        messages = params.get("messages") or []
        response = None
        if messages:
            prompt = " ".join(_text(m.get("content")) for m in messages if isinstance(m, dict))
            reply = f"Batch reply to {custom_id}."
            usage = {
                "prompt_tokens": count(prompt) + 7,
                "completion_tokens": count(reply),
                "total_tokens": count(prompt) + 7 + count(reply),
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            }
            response = {
                "id": new_id("chatcmpl-"),
                "object": "chat.completion",
                "created": _CREATED,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": None,
            }
    if response is None:
        error = {"message": "the request has no messages/input", "type": "invalid_request_error"}
        failed = {"status_code": 400, "request_id": request_id, "body": {"error": error}}
        return False, {"id": line_id, "custom_id": custom_id, "response": failed, "error": None}
    wrapped = {"status_code": 200, "request_id": request_id, "body": response}
    return True, {"id": line_id, "custom_id": custom_id, "response": wrapped, "error": None}
