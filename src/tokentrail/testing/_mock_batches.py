"""Anthropic Message Batches routes of the mock server: create, retrieve, and the results as JSON lines.

Shapes follow Anthropic's API reference (https://docs.anthropic.com/en/api/creating-message-batches,
/retrieving-message-batches and /retrieving-message-batch-results): a batch is created already `ended`
(the mock processes at once), its `results_url` is absolute, and each results line is
`{"custom_id", "result": {"type": "succeeded", "message": {…}}}` or an `errored` result. A request whose
params fail validation (no `messages`, or `max_tokens` below 1) is errored, as the API validates batch
requests only when it processes them.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from tokentrail.testing._mock_wire import count, new_id

__all__ = ["answer"]

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
