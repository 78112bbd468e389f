"""Patch table for boto3 `bedrock-runtime` clients: Converse, ConverseStream, InvokeModel(WithResponseStream),
ApplyGuardrail and InvokeGuardrailChecks.

botocore builds each client class at run time, so the one stable patch point is
`botocore.client.BaseClient._make_api_call(operation_name, api_params)`, which every generated client
method calls; calls of other services and operations pass straight through. `wrap(client)` gives the
one client its own `_make_api_call`.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from tokentrail.adapters._instrument_target import Call, Request, Target, first_int

__all__ = ["CLIENT_MODULES", "NOT_TRACKED", "ROOT", "TARGETS", "WRAP_PATHS", "surface", "tracked"]

# operation -> (streams?, the response key holding the stream or the body)
_OPERATIONS: dict[str, tuple[bool, str | None]] = {
    "Converse": (False, None),
    "ConverseStream": (True, "stream"),
    "InvokeModel": (False, "body"),
    "InvokeModelWithResponseStream": (True, "body"),
    "ApplyGuardrail": (False, None),  # billed in policy units: recorded `unknown`, units in the reason
    "InvokeGuardrailChecks": (False, None),  # billed in text units: recorded `unknown`, units in the reason
}


def _service(client: Any) -> str | None:
    try:
        name = client.meta.service_model.service_name
    except Exception:
        return None
    return name if isinstance(name, str) else None


@dataclass(frozen=True)
class _ApiCallTarget(Target):
    adapter: str | None = "bedrock"

    def request(
        self, resource: Any, args: tuple[Any, ...], kwargs: dict[str, Any], settings: Any
    ) -> Request | None:
        operation = args[0] if args else kwargs.get("operation_name")
        plan = _OPERATIONS.get(operation) if isinstance(operation, str) else None
        if plan is None or _service(resource) != "bedrock-runtime":
            return None
        params = args[1] if len(args) > 1 else kwargs.get("api_params")
        model = params.get("modelId") if isinstance(params, dict) else None
        streaming, part = plan
        return Request(args, kwargs, model if isinstance(model, str) else None, streaming, part)

    def output_limit(self, request: Request) -> int | None:
        params = request.args[1] if len(request.args) > 1 else request.kwargs.get("api_params")
        if not isinstance(params, dict):
            return None
        return first_int(params.get("inferenceConfig"), _json_body(params.get("body")))

    def deliver(self, call: Call, request: Request, response: Any, *, asynchronous: bool) -> Any:
        part = request.part
        if part is None:
            call.finish_response(response)
            return response
        if not isinstance(response, dict) or response.get(part) is None:
            call.finish_response(None)  # nothing readable: recorded as unknown
            return response
        if request.streaming:
            response[part] = call.tracked_stream(response[part], asynchronous=False)
            return response
        try:  # read once: the usage is inside the body; the caller gets an unread body of the same bytes
            data = response[part].read()
        except BaseException:
            call.failed()
            raise
        response[part] = _unread_body(data)
        call.finish_response({"body": data, "headers": _http_headers(response)})
        return response

    def is_content(self, event: object) -> bool:
        return not isinstance(event, dict) or "messageStart" not in event


def _http_headers(response: dict[str, Any]) -> object:
    """The response's HTTP headers (lower-case names): Bedrock's token counts for bodies without usage."""
    metadata = response.get("ResponseMetadata")
    return metadata.get("HTTPHeaders") if isinstance(metadata, dict) else None


def _unread_body(data: bytes) -> Any:
    from botocore.response import StreamingBody  # type: ignore[import-untyped]

    return StreamingBody(io.BytesIO(data), len(data))


def _json_body(body: object) -> object:
    if not isinstance(body, (str, bytes)):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


TARGETS: tuple[Target, ...] = (
    _ApiCallTarget("boto3", "botocore.client", "BaseClient", "_make_api_call", "bedrock", streaming="never"),
)
ROOT = "botocore"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("botocore",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = ((),)


NOT_TRACKED: dict[str, str] = {
    "CountTokens": "free endpoint (token counting)",
    "StartAsyncInvoke": "asynchronous job: output written to S3 and billed when it runs; the call returns only an ARN",
    "InvokeModelWithBidirectionalStream": "HTTP/2 bidirectional stream (Nova Sonic) that botocore cannot make",
}

_USAGE_MEMBERS = frozenset({"usage", "inputTokens", "outputTokens"})


def _carries_usage(shape: Any, depth: int = 3) -> bool:
    members = getattr(shape, "members", None) or {}
    if _USAGE_MEMBERS.intersection(members):
        return True
    return depth > 1 and any(_carries_usage(member, depth - 1) for member in members.values())


def surface() -> list[str]:
    """bedrock-runtime operations (botocore's service model) whose output reports usage, or carries the
    model's own response as a payload (`body` / `stream`), which is where the usage of those calls is."""
    import botocore.session  # type: ignore[import-untyped]

    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    names = []
    for name in model.operation_names:
        output = model.operation_model(name).output_shape
        if output is None:
            continue
        payload = output.serialization.get("payload")
        if payload is not None or _carries_usage(output):
            names.append(name)
    return sorted(names)


def tracked() -> set[str]:
    """The bedrock-runtime operations `_make_api_call` tracks."""
    return set(_OPERATIONS)
