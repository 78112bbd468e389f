"""LiteLLM in the conformance matrix: `completion` / `acompletion`, streamed and not, for an `openai/` and an
`anthropic/` model against the mock server, recorded by `instrument()`, by the LiteLLM callback
(`tokentrail.integrations.litellm.enable()`), or by both at once — and by the callback with only the
`openai` SDK instrumented (LiteLLM calls that SDK inside: the instrumented SDK call records, the callback
stands down). Tokens must equal LiteLLM's own `response.usage` numbers.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tokentrail.adapters import instrument
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MESSAGES = [{"role": "user", "content": "Which agent spent the most tokens this week?"}]
MODELS = {"openai": "openai/gpt-4o-mini", "anthropic": "anthropic/claude-3-5-haiku-20241022"}
MODES = ("sync", "sync streamed", "async", "async streamed")
ROUTES = {"openai": "openai.chat", "anthropic": "anthropic"}


@pytest.fixture(scope="module")
def litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm  # a declared test dependency: missing, the tests fail rather than skip

    return litellm


class Probe:
    """A LiteLLM callback placed after tokentrail's: once it saw a call's success, tokentrail's hook ran."""

    def __init__(self, litellm: Any) -> None:
        base = litellm.integrations.custom_logger.CustomLogger
        seen: set[str] = set()
        changed = threading.Condition()

        class _Probe(base):  # type: ignore[misc, valid-type]
            def log_success_event(
                self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
            ) -> None:
                with changed:
                    seen.add(kwargs.get("litellm_call_id"))
                    changed.notify_all()

            async def async_log_success_event(
                self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
            ) -> None:
                self.log_success_event(kwargs, response_obj, start_time, end_time)

        self.callback = _Probe()
        self.seen = seen
        self.changed = changed

    def wait(self, count: int) -> None:
        """Until LiteLLM ran the success hooks of `count` calls (its logging thread works on its own)."""
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.seen) >= count, timeout=30), self.seen


@pytest.fixture
def layered(litellm: Any, tracker: Tracker) -> Iterator[Any]:
    """Set up a layer: `layered("integration")` and so on; everything is undone after the test."""
    from tokentrail.integrations import litellm as tt_litellm

    saved = list(litellm.callbacks)
    probe = Probe(litellm)

    def setup(layer: str) -> Probe:
        if layer in ("instrument", "both"):
            instrument(tracker)
        if layer == "integration+openai":
            instrument(tracker, providers=["openai"])
        if layer != "instrument":
            tt_litellm.enable(tracker)
            litellm.callbacks.append(probe.callback)
        return probe

    try:
        yield setup
    finally:
        tt_litellm.disable()
        for name in ("callbacks", "success_callback", "_async_success_callback", "input_callback"):
            registered = getattr(litellm, name, None)
            if isinstance(registered, list) and probe.callback in registered:
                registered.remove(probe.callback)
        litellm.callbacks = saved


def call(
    litellm: Any, server: MockLLMServer, provider: str, mode: str, probe: Probe | None
) -> tuple[int, int]:
    """Make one call in `mode`; LiteLLM's own (prompt, completion) tokens for it."""
    kwargs: dict[str, Any] = {
        "model": MODELS[provider],
        "api_base": server.url(provider),
        "api_key": "test",
        "messages": MESSAGES,
        "num_retries": 0,
    }
    streamed = mode.endswith("streamed")
    if streamed:
        kwargs.update(stream=True, stream_options={"include_usage": True})
    if mode.startswith("async"):
        usage = asyncio.run(_acall(litellm, kwargs, streamed))
    else:
        usage = _call(litellm, kwargs, streamed)
    if probe is not None and mode != "async":  # acompletion is recorded before it returns
        probe.wait(1)
    return usage.prompt_tokens, usage.completion_tokens


def _call(litellm: Any, kwargs: dict[str, Any], streamed: bool) -> Any:
    if not streamed:
        return litellm.completion(**kwargs).usage
    chunks = list(litellm.completion(**kwargs))
    return _stream_usage(litellm, chunks)


async def _acall(litellm: Any, kwargs: dict[str, Any], streamed: bool) -> Any:
    try:
        if not streamed:
            return (await litellm.acompletion(**kwargs)).usage
        chunks = [chunk async for chunk in await litellm.acompletion(**kwargs)]
        return _stream_usage(litellm, chunks)
    finally:  # LiteLLM's logging queue outlives the loop otherwise, and runs in the next test's loop
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        await GLOBAL_LOGGING_WORKER.flush()


def _stream_usage(litellm: Any, chunks: list[Any]) -> Any:
    """LiteLLM's usage of a stream: the include_usage chunk (LiteLLM adds one for every provider)."""
    reported = [chunk.usage for chunk in chunks if getattr(chunk, "usage", None) is not None]
    assert reported, "LiteLLM sent no usage chunk"
    return reported[-1]


LAYERS = ("instrument", "integration", "both", "integration+openai")


@pytest.mark.parametrize("provider", list(MODELS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layer", LAYERS)
def test_each_litellm_call_is_recorded_once_with_litellm_usage(
    litellm: Any,
    server: MockLLMServer,
    tracker: Tracker,
    matrix: Any,
    layered: Any,
    layer: str,
    mode: str,
    provider: str,
) -> None:
    probe = layered(layer)
    before = len(server.requests)
    server.queue(
        input=1500, output=60, cache_read=1024 if provider == "openai" else 0, route=ROUTES[provider]
    )
    expected = call(litellm, server, provider, mode, None if layer == "instrument" else probe)
    records = tracker.history()
    matrix.check(
        f"litellm {provider}/",
        mode,
        layer,
        made=len(server.requests) - before,
        records=records,
        expected_tokens=expected,
    )
    if layer == "integration+openai" and provider == "openai":  # the instrumented openai SDK call recorded it
        assert [r.provider for r in records] == ["openai"]
