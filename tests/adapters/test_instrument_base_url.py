"""`tt.instrument()` names the provider a client's base URL is: an openai client on `https://api.deepseek.com`
calls DeepSeek, and its calls are priced as DeepSeek's (the catalog's `api_pattern`, as genai-prices finds
a provider by `provider_api_url`), not left unpriced as OpenAI models that do not exist.

The real openai and anthropic SDKs are given their provider's real base URL and an HTTP transport (of the
httpx the SDK itself uses) that sends each request to the local mock server instead: the SDK builds and
sends the request as it would to that provider, and the server counts what arrives.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tokentrail as tt
from tokentrail.testing.mock_llm import MockLLMServer, MockResponse
from tokentrail.tracker import Tracker

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
MESSAGES = [{"role": "user", "content": "hi"}]


def _to(server: MockLLMServer, sdk: Any) -> Any:
    """The SDK's own default HTTP client, with a transport that sends every request to `server`."""
    import importlib

    base_client = importlib.import_module(f"{sdk.__name__}._base_client")
    httpx = getattr(base_client, "httpx2", None) or base_client.httpx
    local = httpx.URL(server.base)

    class ToLocal(httpx.HTTPTransport):  # type: ignore[misc,name-defined]
        def handle_request(self, request: Any) -> Any:
            request.url = request.url.copy_with(scheme=local.scheme, host=local.host, port=local.port)
            return super().handle_request(request)

    return sdk.DefaultHttpxClient(transport=ToLocal())


def _openai(server: MockLLMServer, base_url: str) -> Any:
    return openai.OpenAI(base_url=base_url, api_key="test", max_retries=0, http_client=_to(server, openai))


def _last(tracker: Tracker) -> tt.Record:
    return tracker.history()[-1]


def test_an_openai_client_on_deepseek_is_priced_as_deepseek(server: MockLLMServer, tracker: Tracker) -> None:
    client = _openai(server, "https://api.deepseek.com/v1")
    made = len(server.requests)  # the server is the module's: count this test's requests
    server.queue(MockResponse(input=1000, output=100))
    client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    record = _last(tracker)
    assert (record.provider, record.model, record.usage.input_tokens) == ("deepseek", "deepseek-chat", 1000)
    assert record.cost == tt.price(record.usage, "deepseek-chat", "deepseek", record.timestamp).total
    assert record.cost is not None and record.cost > 0
    assert tt.price(record.usage, "deepseek-chat", "openai").priced is False  # what "openai" would give
    assert len(server.requests) - made == len(tracker.history()) == 1


def test_langchain_chat_openai_on_deepseek_is_priced_as_deepseek(
    server: MockLLMServer, tracker: Tracker
) -> None:
    # how users point LangChain at DeepSeek; `invoke` goes through the SDK's with_raw_response
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        model="deepseek-chat",
        base_url="https://api.deepseek.com/v1",
        api_key="test",
        max_retries=0,
        http_client=_to(server, openai),
    )
    made = len(server.requests)
    server.queue(MockResponse(input=1000, output=100))
    reply = llm.invoke("hi")
    record = _last(tracker)
    assert (record.provider, record.model) == ("deepseek", "deepseek-chat")
    assert (record.usage.input_tokens, record.usage.output_tokens) == (
        reply.usage_metadata["input_tokens"],
        reply.usage_metadata["output_tokens"],
    )
    assert record.cost is not None and record.cost > 0
    assert len(server.requests) - made == len(tracker.history()) == 1


def test_an_openai_client_on_openrouter_keeps_what_openrouter_charged(
    server: MockLLMServer, tracker: Tracker
) -> None:
    recorded = json.loads((RECORDED / "openrouter" / "chat_web_search_cost.json").read_text())["response"]
    client = _openai(server, "https://openrouter.ai/api/v1")
    server.queue(MockResponse(body=recorded))
    client.chat.completions.create(model=recorded["model"], messages=MESSAGES)
    record = _last(tracker)
    assert (record.provider, record.model) == ("openrouter", "openai/gpt-4.1-mini")
    assert (record.usage.input_tokens, record.usage.output_tokens, record.usage.web_searches) == (8174, 30, 1)
    assert record.provider_cost == Decimal("0.0133176")


@pytest.mark.parametrize(
    ("base_url", "model"),
    [
        (
            "https://router.huggingface.co/v1",
            "deepseek-ai/DeepSeek-R1:together",
        ),  # the model names the router
        ("https://router.huggingface.co/together/v1", "deepseek-ai/DeepSeek-R1"),  # the URL names it
    ],
)
def test_an_openai_client_on_the_hugging_face_router_is_priced_as_the_router_it_reached(
    server: MockLLMServer, tracker: Tracker, base_url: str, model: str
) -> None:
    # the recorded router body names the model alone: the router comes from the request
    recorded = json.loads(
        (RECORDED / "huggingface" / "chat_together_router_top_level_cached_tokens.json").read_text()
    )["response"]
    server.queue(MockResponse(body=recorded))
    _openai(server, base_url).chat.completions.create(model=model, messages=MESSAGES)
    record = _last(tracker)
    assert (record.provider, record.model) == ("huggingface_together", "deepseek-ai/DeepSeek-R1")
    assert record.cost == tt.price(record.usage, record.model, "huggingface_together", record.timestamp).total
    assert record.cost is not None and record.cost > 0


def test_an_anthropic_client_on_moonshot_is_priced_as_moonshot(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = anthropic.Anthropic(
        base_url="https://api.moonshot.ai/anthropic",
        api_key="test",
        max_retries=0,
        http_client=_to(server, anthropic),
    )
    server.queue(MockResponse(input=1000, output=100))
    client.messages.create(model="kimi-k2-0905-preview", max_tokens=16, messages=MESSAGES)
    record = _last(tracker)
    assert record.provider == "moonshotai"
    assert record.cost == tt.price(record.usage, "kimi-k2-0905-preview", "moonshotai", record.timestamp).total
    assert record.cost is not None and record.cost > 0


def test_each_client_is_named_by_its_own_base_url(server: MockLLMServer, tracker: Tracker) -> None:
    clients = {
        "deepseek": _openai(server, "https://api.deepseek.com/v1"),
        "groq": _openai(server, "https://api.groq.com/openai/v1"),
        "openai": _openai(server, "https://api.openai.com/v1"),
        "x-ai": _openai(server, "https://api.x.ai/v1"),
    }
    local = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)  # no catalog host
    order = ["deepseek", "groq", "deepseek", "openai", "x-ai", "local", "groq"]
    made = len(server.requests)
    for name in order:
        server.queue(MockResponse(input=10, output=2))
        (local if name == "local" else clients[name]).chat.completions.create(model="m", messages=MESSAGES)
    assert [r.provider for r in tracker.history()] == [n.replace("local", "openai") for n in order]
    assert len(server.requests) - made == len(order)


@pytest.mark.parametrize(
    ("url", "provider"),
    [
        ("https://api.openai.com/v1/", "openai"),
        ("https://api.deepseek.com/v1/", "deepseek"),
        ("https://openrouter.ai/api/v1/", "openrouter"),
        ("https://router.huggingface.co/together/v1/", "huggingface_together"),
        ("https://router.huggingface.co/v1/", "huggingface"),  # "org/model:router" models name the router
        ("https://myres.openai.azure.com/openai/", "azure"),
        ("https://generativelanguage.googleapis.com/v1beta/openai/", "google"),
        ("https://api.x.ai/v1/", "x-ai"),
        ("http://127.0.0.1:8080/v1/", None),  # a local server, a proxy: the SDK's own name stays
        ("https://llm.example.com/api.deepseek.com/v1/", None),  # matched from the start only
    ],
)
def test_a_base_url_names_the_catalog_provider_whose_api_it_is(url: str, provider: str | None) -> None:
    from tokentrail.adapters._mapped import mapped_readers

    assert mapped_readers().provider_at(url) == provider


def test_a_catalog_whose_api_pattern_is_not_a_regular_expression_is_refused() -> None:
    from tokentrail.errors import CatalogError
    from tokentrail.pricing.genai import package_units, published_providers, snapshot_from_published

    providers = published_providers()
    providers[0]["api_pattern"] = "https://(unclosed"
    with pytest.raises(CatalogError, match=r"api_pattern: not a regular expression"):
        snapshot_from_published(providers, units=package_units(), source="test", version="0")
