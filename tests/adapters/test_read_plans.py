"""A JSON body named by its provider skips detection: the readers a provider name's bodies of one shape are
tried with are chosen once and kept (`MappedReaders.read_named`). Kept or not, `capture` must give the same
capture from the same reader: checked over the golden fixtures, every catalog extractor's generated bodies
and the malformed-payload corpus, each named by many providers, with the plans made in two orders."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from adapter_payloads import response_fixtures
from test_malformed_corpus import RESPONSE_CASES
from test_mapped_readers import GOLDEN
from test_stream_usage_classes import OPENAI_REASONING, SUB2API_BODY, XAI_BODY

import tokentrail.adapters as adapters
from tokentrail import Usage
from tokentrail.adapters import _compile, _mapped, capture, usage_from_response
from tokentrail.adapters._base import Captured, new_captured
from tokentrail.adapters._detect import ADAPTERS, canonical_provider
from tokentrail.adapters._mapped import capture_mapped, planned_capture

# Names a caller may pass: catalog ids, tokentrail's own adapters, aliases, routers, odd spellings.
NAMES = (
    "openai",
    "azure",
    "anthropic",
    "claude",
    "google",
    "gemini",
    "bedrock",
    "aws",
    "mistral",
    "cohere",
    "ollama",
    "litellm",
    "groq",
    "grok",
    "x-ai",
    "deepseek",
    "openrouter",
    "huggingface",
    "huggingface_together",
    " OpenAI ",
    "no-such-provider",
)


def corpus() -> list[tuple[str, dict[str, Any], str]]:
    """(case id, JSON body, provider name) for every body of the three corpora and every name."""
    bodies: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []
    for fixture in response_fixtures():
        if type(fixture.payload) is dict:
            bodies.append((fixture.name, fixture.payload, (str(fixture.capture_provider),)))
    for case in GOLDEN:
        bodies.append((case.id, case.body, (case.provider,)))
    # Grok chat bodies (reasoning on top of completion_tokens: the x-ai reader, whatever the name) and an
    # OpenAI reasoning body (reasoning inside completion_tokens)
    without_total = copy.deepcopy(XAI_BODY)
    del without_total["usage"]["total_tokens"]
    for case_id, body in [
        ("grok chat", XAI_BODY),
        ("grok chat without total", without_total),
        ("sub2api grok", SUB2API_BODY),
        ("openai reasoning", OPENAI_REASONING),
    ]:
        bodies.append((case_id, body, ()))
    for malformed in RESPONSE_CASES:
        if type(malformed.payload) is dict:
            bodies.append((malformed.id, malformed.payload, ()))
    return [
        (f"{case_id} as {name!r}", body, name)
        for case_id, body, own in bodies
        for name in dict.fromkeys((*own, *NAMES))
        if name != "None"
    ]


CORPUS = corpus()


class ReaderLog:
    """Which compiled reader read each body (provider id and flavor), by wrapping `_mapped._read_usage`."""

    def __init__(self) -> None:
        self.last: tuple[str, str] | None = None
        self.original = _mapped._read_usage

    def __call__(self, compiled: _compile.Compiled, *args: Any) -> tuple[Usage, str | None] | None:
        read = self.original(compiled, *args)
        if read is not None:
            self.last = (compiled.provider, compiled.flavor)
        return read


def read_all(order: list[tuple[str, dict[str, Any], str]], log: ReaderLog) -> dict[str, Any]:
    """case id → (the capture, the reader that read it, the usage alone) for every case, read in `order`."""
    out = {}
    for case_id, body, name in order:
        log.last = None
        captured, reader = capture(body, name), log.last
        out[case_id] = (captured, reader, usage_from_response(body, name))
    return out


def plan_capture(body: dict[str, Any], name: str) -> Captured | None:
    """The capture of what a kept plan reads (None when the full path decides)."""
    read = adapters.read_named_json(body, name)
    return None if read is None else planned_capture(body, read)


@pytest.fixture
def fresh_plans() -> Iterator[None]:
    """Readers (and so plans) made anew for the test, and again after it."""
    _mapped.set_mapped_readers(None)
    yield
    _mapped.set_mapped_readers(None)


def read_by_plan(body: dict[str, Any], name: str) -> bool:
    try:
        return adapters.read_named_json(body, name) is not None
    except Exception:  # a malformed body: `capture` reads it again by the full path
        return False


def test_the_corpus_is_large_and_mostly_read_by_plans(fresh_plans: None) -> None:
    planned = sum(read_by_plan(body, name) for _, body, name in CORPUS)
    assert len(CORPUS) > 30_000
    assert planned > 5_000


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
def test_kept_plans_give_the_same_capture_from_the_same_reader_as_detection(
    fresh_plans: None, monkeypatch: pytest.MonkeyPatch, reverse: bool
) -> None:
    log = ReaderLog()
    monkeypatch.setattr(_mapped, "_read_usage", log)
    order = CORPUS[::-1] if reverse else CORPUS
    read_all(order, log)  # every plan made, in this order
    planned = read_all(order, log)  # every read through a kept plan where there is one
    monkeypatch.setattr(adapters, "read_named_json", lambda body, provider: None)
    detected = read_all(order, log)  # the full path: detection, then the readers chosen for this body
    differences = [case_id for case_id in detected if planned[case_id] != detected[case_id]]
    assert differences == []
    assert all(usage == captured.usage for captured, _, usage in planned.values())
    unknown = sum(captured.usage.status.value == "unknown" for captured, _, _ in planned.values())
    assert 0 < unknown < len(planned)  # both readable and malformed bodies were compared


def outcome(read: Callable[[], Captured | None], log: ReaderLog) -> tuple[object, ...]:
    """What a read gave (a capture, None, or the exception it raised) and which reader read it."""
    log.last = None
    try:
        return read(), log.last
    except Exception as exc:
        return type(exc), str(exc), log.last


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
def test_a_kept_plan_reads_what_the_readers_chosen_for_the_body_read(
    fresh_plans: None, monkeypatch: pytest.MonkeyPatch, reverse: bool
) -> None:
    """Below `capture`, which reads a body again by the full path when a plan's reader raises: a plan's read,
    when it gives anything, gives what the extractors chosen for this body alone give, exceptions included."""
    log = ReaderLog()
    monkeypatch.setattr(_mapped, "_read_usage", log)
    order = CORPUS[::-1] if reverse else CORPUS
    for _, body, name in order:
        outcome(lambda body=body, name=name: plan_capture(body, name), log)  # plans made
    compared = 0
    differences = []
    for case_id, body, name in order:
        planned = outcome(lambda body=body, name=name: plan_capture(body, name), log)
        if planned[0] is None:
            continue  # the full path decides (compared by the test above)
        label = canonical_provider(name)
        chosen = outcome(
            lambda body=body, label=label: capture_mapped(body, label, has_own_reader=label in ADAPTERS), log
        )
        compared += 1
        if planned != chosen:
            differences.append(case_id)
    assert differences == []
    assert compared > 5_000


def test_a_plan_is_kept_per_provider_name_and_shape(fresh_plans: None) -> None:
    chat = {"object": "chat.completion", "model": "m", "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    assert capture(chat, "openai").usage == Usage(5, 2)
    assert capture(chat, "groq") == Captured(Usage(5, 2), "m", "groq", {})
    plans = _mapped.mapped_readers()._plans
    assert set(plans) == {("openai", "chat"), ("groq", "chat")}
    groq = plans["groq", "chat"]
    assert groq is not None and groq.name == "groq" and groq.grok_first
    # groq's own extractor, then the reference reader of chat bodies, both captures named groq
    assert [(c.provider, c.flavor, label) for c, label in groq.readers] == [
        ("groq", "default", "groq"),
        ("openai", "chat", "groq"),
    ]


def test_a_router_name_has_no_plan(fresh_plans: None) -> None:
    chat = {
        "object": "chat.completion",
        "model": "m:groq",
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    assert capture(chat, "huggingface").provider == "huggingface_groq"  # the body's model names the router
    assert _mapped.mapped_readers()._plans == {("huggingface", "chat"): None}


def test_a_provider_whose_own_reader_comes_first_has_no_plan(fresh_plans: None) -> None:
    body = {"model": "llama3", "prompt_eval_count": 7, "eval_count": 3, "done": True, "choices": []}
    assert adapters.read_named_json(body, "ollama") is None
    assert _mapped.mapped_readers()._plans == {("ollama", "chat"): None}


def test_new_captured_is_a_captured_like_any_other() -> None:
    usage = Usage(1200, 300, 1024)
    built = new_captured(usage, "gpt-4o", "openai", {"service_tier": "flex"}, "resp_1")
    made = Captured(usage, "gpt-4o", "openai", {"service_tier": "flex"}, response_id="resp_1")
    assert type(built) is Captured and built == made and repr(built) == repr(made)
    assert (built.provider_cost, built.finished) == (None, True)
    assert new_captured(usage, None, "anthropic", {}) == Captured(usage, None, "anthropic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.model = "other"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(built)) == made
    assert dataclasses.replace(built, finished=False) == dataclasses.replace(made, finished=False)
