"""Server-side run routes of the mock server: OpenAI eval runs and Anthropic dreams, each started by one
request and polled until it finishes; hosted agent sessions are served by `_mock_agents`.

A run answers `queued` / `pending` when created, `in_progress` / `running` on its first retrieve, and
finished (with its usage) from the second retrieve on; a cancel ends it at once. Usage is a deterministic
function of the request, so a test can compare records with what the run reports.

Shapes: OpenAI eval runs follow openai-python 3.57.0 `types/evals/run_retrieve_response.py` and
https://platform.openai.com/docs/api-reference/evals/getRun (`per_model_usage` per model: the model
evaluated and a model grader); dreams follow anthropic-sdk-python 2.13.0 `types/beta/beta_dream.py`,
`beta_dream_usage.py` and https://platform.claude.com/docs/en/api/beta/dreams.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from tokentrail.testing import _mock_agents as _agents
from tokentrail.testing._mock_wire import count, new_id, write_json

__all__ = ["GRADER", "answer"]

GRADER = "gpt-4.1"  # the model grader every mock eval run reports beside the model evaluated
_KEPT = 1_024
_runs: OrderedDict[str, dict[str, Any]] = OrderedDict()  # eval runs and dreams, by id
_polls: dict[str, int] = {}
_lock = threading.Lock()
_CREATED = 1_714_508_499
_TIME = "2026-05-01T12:00:00Z"


def answer(handler: Any, method: str, path: str, body: dict[str, Any]) -> bool:
    """Serve an eval run, dream or agent session request on `handler` (the mock's request handler); False
    if not one."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["v1", "agents", "sessions"]:
        return _agents.answer_openai(handler, method, parts[3:], body)
    if parts[:2] == ["v1", "sessions"]:
        return _agents.answer_anthropic(handler, method, parts[2:], body)
    if len(parts) >= 4 and parts[:2] == ["v1", "evals"] and parts[3] == "runs":
        found = _eval_run(method, parts[2], parts[4:], body)
    elif parts[:2] == ["v1", "dreams"]:
        found = _dream(method, parts[2:], body)
    else:
        return False
    if found is None:
        error = {"message": f"no such resource {path}", "type": "invalid_request_error"}
        write_json(handler, 404, {"error": error})
    else:
        write_json(handler, 200, found)
    return True


def _keep(run: dict[str, Any]) -> dict[str, Any]:
    with _lock:
        _runs[run["id"]] = run
        _polls[run["id"]] = 0
        if len(_runs) > _KEPT:
            old, _ = _runs.popitem(last=False)
            _polls.pop(old, None)
    return run


def _poll(run_id: str) -> int:
    """How often the run was retrieved before this retrieve."""
    with _lock:
        seen = _polls.get(run_id, 0)
        _polls[run_id] = seen + 1
        return seen


# -- OpenAI eval runs ------------------------------------------------------------------------------------------


def _eval_run(method: str, eval_id: str, rest: list[str], body: dict[str, Any]) -> dict[str, Any] | None:
    if method == "POST" and not rest:
        return dict(_keep(_new_eval_run(eval_id, body)))
    if method == "GET" and not rest:  # list: every run of the eval, as stored (no run advances)
        data = [dict(r) for r in list(_runs.values()) if r.get("eval_id") == eval_id]
        ids = [r["id"] for r in data]
        return {
            "object": "list",
            "data": data,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
            "has_more": False,
        }
    run = _runs.get(rest[0]) if rest else None
    if run is None or run.get("object") != "eval.run":
        return None
    if method == "POST" and rest[1:] == ["cancel"]:
        if run["status"] not in ("completed", "failed", "canceled"):
            _finish_eval_run(run, "canceled")
        return dict(run)
    if method == "GET" and len(rest) == 1:
        if run["status"] in ("queued", "in_progress"):
            if _poll(run["id"]) == 0:
                run["status"] = "in_progress"
            else:
                _finish_eval_run(run, "completed")
        return dict(run)
    return None


def _new_eval_run(eval_id: str, body: dict[str, Any]) -> dict[str, Any]:
    source = body.get("data_source") or {"type": "jsonl", "source": {"type": "file_content", "content": []}}
    model = str(source.get("model") or "gpt-4o-mini")
    items = ((source.get("source") or {}).get("content")) or []
    return {
        "object": "eval.run",
        "id": new_id("evalrun_"),
        "eval_id": eval_id,
        "status": "queued",
        "model": model,
        "name": str(body.get("name") or "mock run"),
        "created_at": _CREATED,
        "report_url": f"https://platform.openai.com/evaluations/{eval_id}",
        "result_counts": {"total": 0, "errored": 0, "failed": 0, "passed": 0},
        "per_model_usage": [],
        "per_testing_criteria_results": [],
        "data_source": source,
        "metadata": body.get("metadata"),
        "error": {"code": "", "message": ""},
        "_samples": max(1, len(items)),  # dropped from what is served
    }


def _finish_eval_run(run: dict[str, Any], status: str) -> None:
    samples = int(run.pop("_samples", 1))
    done = samples if status == "completed" else max(1, samples // 2)
    prompt = count(run["name"]) + 40
    sampled = {"prompt_tokens": prompt * done, "completion_tokens": 12 * done, "cached_tokens": 8 * done}
    graded = {"prompt_tokens": (prompt + 30) * done, "completion_tokens": 5 * done, "cached_tokens": 0}
    run["per_model_usage"] = [
        {
            "model_name": model,
            "invocation_count": done,
            **counts,
            "total_tokens": counts["prompt_tokens"] + counts["completion_tokens"],
        }
        for model, counts in ((run["model"], sampled), (GRADER, graded))
    ]
    run["result_counts"] = {"total": done, "errored": 0, "failed": 0, "passed": done}
    run["per_testing_criteria_results"] = [{"testing_criteria": "string check", "passed": done, "failed": 0}]
    run["status"] = status


# -- Anthropic dreams ------------------------------------------------------------------------------------------


def _dream(method: str, rest: list[str], body: dict[str, Any]) -> dict[str, Any] | None:
    if method == "POST" and not rest:
        return _keep(_new_dream(body))
    if method == "GET" and not rest:  # list: every dream, newest first, as stored (no dream advances)
        return {
            "data": [d for d in reversed(list(_runs.values())) if d.get("type") == "dream"],
            "next_page": None,
        }
    dream = _runs.get(rest[0]) if rest else None
    if dream is None or dream.get("type") != "dream":
        return None
    if method == "POST" and rest[1:] == ["cancel"]:
        if dream["status"] in ("pending", "running"):
            _finish_dream(dream, "canceled")
    elif method == "POST" and rest[1:] == ["archive"]:
        dream["archived_at"] = _TIME
    elif method == "GET" and len(rest) == 1:
        if dream["status"] in ("pending", "running"):
            if _poll(dream["id"]) == 0:
                dream["status"] = "running"
                dream["session_id"] = _agents.dream_session(str(dream["model"]["id"]))
            else:
                _finish_dream(dream, "completed")
    else:
        return None
    return dream


def _new_dream(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model") or "claude-opus-4-7"
    model_id = model.get("id") if isinstance(model, dict) else model
    return {
        "type": "dream",
        "id": new_id("drm_"),
        "status": "pending",
        "inputs": body.get("inputs") or [],
        "outputs": [],
        "model": {"id": str(model_id), "speed": "standard"},
        "instructions": body.get("instructions"),
        "output_behavior": body.get("output_behavior") or "create_new",
        "session_id": None,
        "usage": {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
        "error": None,
        "created_at": _TIME,
        "ended_at": None,
        "archived_at": None,
    }


def _finish_dream(dream: dict[str, Any], status: str) -> None:
    work = 2 if status == "completed" else 1
    size = count(str(dream.get("instructions") or "")) + 10 * len(dream["inputs"]) + 200
    dream["usage"] = {
        "input_tokens": size * work,
        "output_tokens": 150 * work,
        "cache_creation_input_tokens": 400,
        "cache_read_input_tokens": 300 * (work - 1),
    }
    dream["status"] = status
    dream["ended_at"] = _TIME
    if status == "completed":
        dream["outputs"] = [{"type": "memory_store", "memory_store_id": new_id("memstore_")}]
