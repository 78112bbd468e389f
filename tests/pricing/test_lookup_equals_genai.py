"""Which model a name is priced as: tokentrail's lookup equals genai-prices' `find_provider_model`.

For every model id and display name of the bundled catalog, through its own provider and through no provider,
tokentrail's index (`PriceIndex.find`) finds the same (provider, model) as genai-prices (the pinned version the
snapshot was built from), or nothing when genai-prices finds nothing; `Catalog.resolve` (the lookup `price()`
uses, which also tries normalized spellings) agrees wherever genai-prices finds a model. A sample of odd
spellings (case, spaces, compact dates, LiteLLM prefixes, provider names by `provider_match`) is compared too.

A model's id is not always one of its names: genai-prices' mistral "codestral" matches `codestral-latest`
and `codestral-2501` only, fireworks' "deepseek-r1-0528" matches
`accounts/fireworks/models/deepseek-r1-0528` only; neither side finds them by id (asserted below).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tokentrail.pricing.catalog import Catalog
from tokentrail.pricing.names import PROVIDER_ALIASES

genai_prices = pytest.importorskip("genai_prices")
from genai_prices.data_snapshot import get_snapshot  # noqa: E402

THEIRS = get_snapshot()
CATALOG = Catalog.from_snapshot()

Found = tuple[str, str] | None


def theirs(model: str, provider: str | None) -> Found:
    try:
        found_provider, found_model = THEIRS.find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    return found_provider.id, found_model.id


def ours(model: str, provider: str | None) -> Found:
    binding = CATALOG.index.find(model, provider)
    return None if binding is None else (binding.provider_id, binding.model_id)


def resolved(model: str, provider: str | None) -> Found:
    found = CATALOG.resolve(model, provider)
    if found is None or found.provider_id is None:
        return None
    return found.provider_id, found.model_id


def catalog_names() -> Iterator[tuple[str, str | None]]:
    """(model name, provider) for every model id and name of the bundled catalog, with and without its
    provider."""
    for provider in CATALOG.index.providers:
        for model in provider.models:
            for name in dict.fromkeys((model.id, model.name or model.id)):
                yield name, provider.id
                yield name, None


NAMES = list(dict.fromkeys(catalog_names()))


def test_the_bundled_catalog_is_the_pinned_genai_prices_data() -> None:
    assert CATALOG.source == f"genai-prices {genai_prices.__version__}"
    ours_ids = {(p.id, m.id) for p in CATALOG.index.providers for m in p.models}
    theirs_ids = {(p.id, m.id) for p in THEIRS.providers for m in p.models}
    assert ours_ids == theirs_ids
    assert len(NAMES) > 5000


def test_every_catalog_name_is_found_as_genai_prices_finds_it() -> None:
    differences = [(n, p, theirs(n, p), ours(n, p)) for n, p in NAMES if theirs(n, p) != ours(n, p)]
    assert differences == []
    # Not vacuous: nearly every id finds a model through its provider (a few ids are nobody's name;
    # display names such as "Claude 2.0 / 2.1" mostly are not names, without a provider neither are most ids).
    ids = [(m.id, p.id) for p in CATALOG.index.providers for m in p.models]
    assert sum(ours(n, p) is not None for n, p in ids) > 0.95 * len(ids)


def test_resolve_finds_what_genai_prices_finds() -> None:
    differences = [
        (n, p, theirs(n, p), resolved(n, p))
        for n, p in NAMES
        if theirs(n, p) is not None and theirs(n, p) != resolved(n, p)
    ]
    assert differences == []


@pytest.mark.parametrize(
    ("model", "provider"),
    [("codestral", "mistral"), ("deepseek-r1-0528", "fireworks")],
)
def test_an_id_that_is_not_a_name_of_its_model_is_found_by_neither(model: str, provider: str) -> None:
    assert theirs(model, provider) is None and ours(model, provider) is None


ODD_SPELLINGS = [
    ("GPT-4o", "openai"),
    ("gpt-4o", "OpenAI"),
    ("gpt-4o", " openai "),
    ("gpt-4o", None),
    ("  gpt-4o", None),
    ("gpt-5.2-20251211", "openai"),  # compact date → gpt-5.2-2025-12-11
    ("gpt-4o-20240806", None),
    ("gpt-4o-20241399", "openai"),  # not a date: left as it is
    ("claude-3-5-sonnet-20241022", "anthropic"),
    ("Claude-3-5-Sonnet-20241022", None),
    ("openai/gpt-4o", "litellm"),
    ("anthropic/claude-3-5-sonnet-20241022", "litellm"),
    ("gpt-4o", "litellm"),
    ("nosuch/gpt-4o", "litellm"),
    ("gemini-2.5-flash", "vertex_ai"),
    ("gemini-2.5-flash", "google-vertex"),
    ("gemini-2.5-flash", "gemini"),
    ("claude-opus-4-1", "google-vertex"),  # Vertex's fallback to Anthropic's models
    ("gpt-4o", "azure"),
    ("gpt-4o", "azure_openai"),
    ("grok-3-mini", "xai"),
    ("grok-4", None),
    ("codestral-latest", "mistral"),
    ("codestral-2501", "Mistral"),
    ("accounts/fireworks/models/deepseek-r1-0528", None),
    ("accounts/fireworks/models/deepseek-r1-0528", "fireworks"),
    ("deepseek-chat", None),
    ("claude-sonnet-4-5", "bedrock"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "bedrock"),
    ("llama-3.3-70b-versatile", "groq"),
    ("command-r-plus", None),
    ("@cf/meta/llama-3.1-8b-instruct", None),
    ("no-such-model", None),
    ("no-such-model", "openai"),
    ("gpt-4o", "no-such-provider"),
]


@pytest.mark.parametrize(("model", "provider"), ODD_SPELLINGS)
def test_odd_spellings_are_found_as_genai_prices_finds_them(model: str, provider: str | None) -> None:
    assert ours(model, provider) == theirs(model, provider)
    if theirs(model, provider) is not None:
        assert resolved(model, provider) == theirs(model, provider)


def test_every_provider_id_and_name_finds_its_provider() -> None:
    for provider in THEIRS.providers:
        for name in (provider.id, provider.id.upper(), provider.name):
            try:
                their_provider: str | None = THEIRS.find_provider(None, name, None).id
            except LookupError:
                their_provider = None
            our_provider = CATALOG.index.provider(name)
            assert (our_provider.id if our_provider else None) == their_provider, name


@pytest.mark.parametrize("alias", sorted(PROVIDER_ALIASES))
def test_tokentrail_provider_aliases_find_what_their_catalog_id_finds(alias: str) -> None:
    target = PROVIDER_ALIASES[alias]
    found = CATALOG.index.provider(alias)
    assert found is not None and found.id == target
    model = next(m for m in found.models if ours(m.id, target) is not None).id
    assert ours(model, alias) == theirs(model, target)
    assert resolved(model, alias.upper()) == theirs(model, target)
