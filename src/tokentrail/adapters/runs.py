"""Usage of work a provider runs server-side and reports afterwards: OpenAI Batch output files, OpenAI
evaluation runs, Anthropic dreams.

Each reader takes what the API returns (an SDK object or its JSON body). A run (an eval run, a dream)
reports usage that is final only once the run has finished: an unfinished run reads as `finished=False`
(recorded when it is seen finished), and its `response_id` is the run's id, so a run fetched many times
is recorded once (`_instrument_stainless._Once`).
"""

from __future__ import annotations

import dataclasses

from tokentrail._types import Usage, UsageStatus
from tokentrail.adapters import agent_sessions, anthropic, openai
from tokentrail.adapters._base import Captured, Fields, Malformed, build_usage, get_field, text_value

__all__ = ["batch_output_line", "dream", "eval_run", "is_batch_output"]


# -- OpenAI Batch API output files ---------------------------------------------------------------------------
# https://platform.openai.com/docs/guides/batch ("Retrieve the results"): one JSON line per request,
# {"id": "batch_req_…", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}


def is_batch_output(first_line: bytes) -> bool:
    """Whether a file whose first line is `first_line` may be Batch output (a cheap byte test, so a file
    that is not one — training data, an image — is not decoded line by line)."""
    return b'"custom_id"' in first_line and b'"response"' in first_line


def batch_output_line(item: object, provider: str = "openai") -> Captured | None:
    """One line of a Batch output file: a succeeded request's response, billed at batch prices; None for a
    line that is no Batch output or a request that failed (not billed). Its `response_id` is the response's
    own id (the line's `batch_req_…` id for bodies without one), so a file read twice is recorded once."""
    response = get_field(item, "response")
    if get_field(item, "custom_id") is None or response is None or get_field(item, "error") is not None:
        return None
    status = get_field(response, "status_code")
    body = get_field(response, "body")
    if not isinstance(status, int) or not 200 <= status < 300 or body is None:
        return None
    if text_value(get_field(body, "object")) == "list":  # /v1/embeddings
        captured = openai.extract_embeddings(body, provider)
    else:  # /v1/chat/completions, /v1/completions, /v1/responses
        captured = openai.extract(body, provider)
    response_id = text_value(get_field(body, "id")) or text_value(get_field(item, "id"))
    context = {**captured.price_context, "processing": "batch"}
    return dataclasses.replace(captured, price_context=context, response_id=response_id or None)


# -- OpenAI evaluation runs ----------------------------------------------------------------------------------
# openai-python `types/evals/run_retrieve_response.py` (3.57.0); https://platform.openai.com/docs/api-reference/evals
# status: queued | in_progress | completed | failed | canceled; `per_model_usage`: one entry per model the
# run called (the model evaluated and model graders)

_RUN_FINAL = frozenset({"completed", "failed", "canceled"})


def eval_run(run: object, provider: str = "openai") -> Captured | tuple[Captured, ...]:
    """An eval run: unfinished, nothing yet; finished, one record per model of `per_model_usage`, each with
    the id `<run id>/<model>` (one per model and run, however often the run is fetched)."""
    run_id = text_value(get_field(run, "id"))
    status = text_value(get_field(run, "status"))
    if status not in _RUN_FINAL:
        reason = f"the eval run is {status}: usage is reported when it finishes"
        return Captured(Usage.unknown(reason), None, provider, response_id=run_id, finished=False)
    entries = get_field(run, "per_model_usage")
    if not isinstance(entries, (list, tuple)):
        raise Malformed("the finished eval run has no per_model_usage list")
    records = []
    for index, entry in enumerate(entries):
        fields = Fields(entry, f"per_model_usage[{index}]")
        model = text_value(get_field(entry, "model_name")) or text_value(get_field(entry, "run_model_name"))
        usage = build_usage(
            input_tokens=fields.count("prompt_tokens", required=True),
            output_tokens=fields.count("completion_tokens", required=True),
            cache_read_tokens=fields.count("cached_tokens"),
            requests=fields.count("invocation_count") or 1,
        )
        ident = f"{run_id}/{model}" if run_id else None
        records.append(Captured(usage, model, provider, response_id=ident))
    return tuple(records)


# -- Anthropic dreams ----------------------------------------------------------------------------------------
# anthropic-sdk-python `types/beta/beta_dream.py`, `beta_dream_usage.py` (2.13.0);
# https://platform.claude.com/docs/en/api/beta/dreams — status: pending | running | completed | failed |
# canceled; "the dream's token counts stop changing once its status is completed or failed. After a cancel,
# they can keep changing."

_DREAM_FINAL = frozenset({"completed", "failed"})


def dream(response: object, provider: str = "anthropic") -> Captured:
    """A dream: its usage once it has finished (completed or failed); a canceled dream's usage as seen, as
    `partial` (its counts may still grow); a pending or running dream, nothing yet."""
    dream_id = text_value(get_field(response, "id"))
    status = text_value(get_field(response, "status"))
    model = text_value(get_field(get_field(response, "model"), "id"))
    session_id = text_value(get_field(response, "session_id"))
    if session_id and dream_id:  # its session's events are the dream's work: not recorded again
        agent_sessions.remember_dream_session(session_id, dream_id)
    if status not in _DREAM_FINAL and status != "canceled":
        reason = f"the dream is {status}: usage is reported when it finishes"
        return Captured(Usage.unknown(reason), model, provider, response_id=dream_id, finished=False)
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        raise Malformed("the finished dream has no usage")
    usage = anthropic.message_usage(Fields(raw_usage, "usage"))
    if status == "canceled":
        reason = "the dream was canceled: its token counts can still change after a cancel"
        usage = dataclasses.replace(usage, status=UsageStatus.PARTIAL, reason=reason)
    return Captured(usage, model, provider, response_id=dream_id)
