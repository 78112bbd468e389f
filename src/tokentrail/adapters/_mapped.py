"""Readers compiled from the catalog's usage extractors: reading usage is data, like prices.

genai-prices publishes, per provider and API flavor, where a response keeps its usage (see
`tokentrail.pricing.extractors`); the snapshot carries them beside the prices, and `_compile` turns each
into a generated reader at first use. This module keeps them by provider and decides which reads a body.

Which flavor reads a body: its shape names it (see `body_shape`): a realtime `response.done` event, a
Responses object, a chat completion, an embeddings list, an Images API result, an Anthropic message, a
Gemini `usageMetadata` body, a Mistral OCR result. The provider's extractor for that shape reads it (then
its `default` one); when the provider has none that reads it, the shape's reference extractor does
(OpenAI's for OpenAI-compatible shapes, Anthropic's, Google's), the capture keeping the provider's name for
pricing. A body of no known shape is read by the provider's extractors in the catalog's order (the
`default` flavor first).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from tokentrail._types import Usage
from tokentrail.adapters import anthropic, gemini, openai
from tokentrail.adapters._base import Captured, Fields, new_captured
from tokentrail.adapters._charged import REPORTERS, charged
from tokentrail.adapters._compile import EMPTY, Compiled, Miss, Source, compile_extractor, fast_read
from tokentrail.adapters._detect import ADAPTERS, canonical_provider
from tokentrail.adapters._fast import (
    HAS_BAIL,
    INT_POSITIVE_BAIL,
    OBJ,
    SCAN_ITEMS,
    Ops,
    compiled_reader,
    named_read_of,
)
from tokentrail.pricing import installed as _in_force
from tokentrail.pricing.names import PROVIDER_ALIASES

__all__ = [
    "MappedReaders",
    "Miss",
    "PlannedRead",
    "body_shape",
    "capture_mapped",
    "mapped_readers",
    "named_usage",
    "planned_capture",
    "set_mapped_readers",
]

# The flavors a body of each shape is read with, most specific first.
SHAPE_FLAVORS: dict[str, tuple[str, ...]] = {
    "realtime": ("realtime",),
    "responses": ("responses", "default"),
    "chat": ("chat", "default"),
    "embeddings": ("embeddings",),
    "images": ("images",),
    "anthropic": ("anthropic", "default"),
    "gemini": ("default",),
    "live": ("live",),
    "ocr": ("ocr",),
    "ocr_annotated": ("ocr_annotated",),
}
# Flavors read only from a body that carries their shape's marker (never guessed from bare counts).
_MARKED_ONLY = frozenset({"realtime", "embeddings", "images", "live", "ocr", "ocr_annotated"})
# The extractor that reads a shape when the named provider has none that can (provider id, flavor).
SHAPE_REFERENCE: dict[str, tuple[str, str]] = {
    "realtime": ("openai", "realtime"),
    "responses": ("openai", "responses"),
    "chat": ("openai", "chat"),
    "embeddings": ("openai", "embeddings"),
    "images": ("openai", "images"),
    "live": ("openai", "live"),
    "anthropic": ("anthropic", "default"),
    "gemini": ("google", "default"),
}
# The catalog provider whose chat extractor counts reasoning on top of completion_tokens (xAI's convention).
_XAI = "x-ai"


def body_shape(body: Mapping[str, Any]) -> str | None:
    """Which API a JSON body comes from, by its own markers (None when it carries none)."""
    kind = body.get("type")
    if kind == "response.done":
        return "realtime"
    if kind == "message":
        return "anthropic"
    obj = body.get("object")
    if obj == "response":
        return "responses"
    if obj in ("chat.completion", "chat.completion.chunk", "text_completion") or "choices" in body:
        return "chat"
    if obj == "list" or "embeddings" in body:
        return "embeddings"
    if "usageMetadata" in body:
        return "gemini"
    usage = body.get("usage")
    if isinstance(usage, Mapping) and usage.get("type") == "duration":
        return "live"
    if "usage_info" in body and "pages" in body:
        return "ocr_annotated" if body.get("document_annotation") else "ocr"
    if obj is None and "created" in body and isinstance(body.get("data"), list):
        return "images"
    return None


def _reasoning_outside_completion(body: Mapping[str, Any], name: str) -> bool:
    """Whether a chat body's reasoning count comes on top of `completion_tokens` (xAI, see
    `openai.reasoning_outside_completion`): then only the x-ai extractor reads it right, whatever the name."""
    usage = body.get("usage")
    if type(usage) is not dict and (usage is None or not isinstance(usage, Mapping)):
        return False  # (None answered before the Mapping ABC check, which costs ~1 k instructions)
    details = usage.get("completion_tokens_details")
    if type(details) is not dict and (details is None or not isinstance(details, Mapping)):
        return False
    reasoning = details.get("reasoning_tokens")
    if type(reasoning) is not int or reasoning <= 0:
        return False
    prompt, completion, total = (usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if type(prompt) is not int or type(completion) is not int:
        return False  # not counts: the provider's own extractor says what is wrong
    model = body.get("model")
    return openai.reasoning_outside_completion(
        prompt,
        completion,
        reasoning,
        total if type(total) is int else None,
        name,
        model if isinstance(model, str) else None,
    )


# The Responses output items of the built-in tools billed per call (see `openai.billed_tool_calls`).
# A tuple: `in` compares, where a set would hash (and raise on) whatever a body holds.
_BILLED_CALLS = ("web_search_call", "file_search_call")


def _may_call_tools(body: Mapping[str, Any]) -> bool:
    """False when a Responses body's `output` is a JSON list with no item of a tool billed per call (the
    usual case, told apart quickly); otherwise `openai.billed_tool_calls` counts them."""
    output = body.get("output")
    if type(output) is not list:
        return True
    for item in output:  # noqa: SIM110 (a plain loop: no generator on the hot path)
        if type(item) is not dict or item.get("type") in _BILLED_CALLS:
            return True
    return False


# -- the catalog's extractors, by provider ---------------------------------------------------------------


def _ancestors(units: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """usage key → the usage keys it is a part of (dimensions a proper subset of its own), nearest first."""
    dims = {str(u["usage_key"]): dict(u["dimensions"]) for u in units}
    out: dict[str, list[str]] = {}
    for key, mine in dims.items():
        wider = [
            other
            for other, theirs in dims.items()
            if other != key and len(theirs) < len(mine) and all(mine.get(k) == v for k, v in theirs.items())
        ]
        out[key] = sorted(wider, key=lambda other: -len(dims[other]))
    return out


class MappedReaders:
    """Every provider's extractors from one catalog snapshot, compiled into readers at first use."""

    def __init__(self, snapshot: Mapping[str, Any]) -> None:
        from tokentrail.pricing.index import compile_clause

        self.data = _in_force.readers_part(snapshot)
        self.generation = -1  # the catalog generation these readers follow (see `mapped_readers`)
        self.source = f"{snapshot.get('source', 'catalog')} {snapshot.get('version', '')}".strip()
        self._specs: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._matchers: list[tuple[str, Callable[[str], bool]]] = []
        self._apis: list[tuple[re.Pattern[str], str]] = []  # (api_pattern, provider id), the catalog's order
        self._at_url: dict[str, str | None] = {}
        for provider in snapshot["providers"]:
            extractors = provider.get("extractors") or ()
            self._specs[provider["id"]] = {e["api_flavor"]: e for e in extractors}
            if provider.get("provider_match"):
                self._matchers.append((provider["id"], compile_clause(provider["provider_match"])))
            if provider.get("api_pattern"):
                self._apis.append((re.compile(provider["api_pattern"]), provider["id"]))
        self._ancestors = _ancestors(snapshot["units"])
        self._compiled: dict[tuple[str, str], Compiled | None] = {}
        self._ids: dict[str, tuple[str, ...]] = {}
        self._plans: dict[tuple[str, str], _Plan | None] = {}  # (provider name as given, shape) → plan
        # provider name as given → its reader of the usage alone (`named_reader`), and the shapes it has met
        self._named: dict[str, Callable[[dict[str, Any]], Usage | None]] = {}
        self._named_shapes: dict[str, tuple[str, ...]] = {}

    def provider_at(self, url: str) -> str | None:
        """The catalog provider whose API `url` (a client's base URL) is: the first whose `api_pattern`
        matches it from its start, as genai-prices finds a provider by `provider_api_url` ("huggingface" for
        the Hugging Face router's own URL, whose models name their router); None for any other URL (a local
        server, a proxy, a host the catalog does not know)."""
        if url in self._at_url:
            return self._at_url[url]
        found = next((provider for pattern, provider in self._apis if pattern.match(url)), None)
        if found is None and url.startswith(_HF_ROUTER):  # the router's own URL: the model names the router
            found = "huggingface"
        if len(self._at_url) < _MAX_PLANS:  # base URLs come from callers: keep the table small
            self._at_url[url] = found
        return found

    def flavors(self, provider_id: str) -> tuple[str, ...]:
        """The API flavors a provider's extractors know, in the catalog's order."""
        return tuple(self._specs.get(provider_id, ()))

    def providers(self) -> tuple[str, ...]:
        """Ids of the providers that have extractors."""
        return tuple(p for p, specs in self._specs.items() if specs)

    def provider_ids(self, name: str) -> tuple[str, ...]:
        """The catalog providers a provider name stands for ("bedrock" → aws, "huggingface" → every router)."""
        found = self._ids.get(name)
        if found is None:
            found = self._find_ids(name.strip().lower())
            self._ids[name] = found
        return found

    def _find_ids(self, name: str) -> tuple[str, ...]:
        name = PROVIDER_ALIASES.get(name, name)
        if name in self._specs:
            return (name,) if self._specs[name] else ()
        if name == "huggingface" or name.startswith("huggingface-"):
            return tuple(p for p in self._specs if p.startswith("huggingface_") and self._specs[p])
        for provider_id, matches in self._matchers:
            if matches(name) and self._specs[provider_id]:
                return (provider_id,)
        return ()

    def compiled(self, provider_id: str, flavor: str) -> Compiled | None:
        """The reader of one provider's flavor (None when it has no such extractor), compiled once."""
        key = (provider_id, flavor)
        if key not in self._compiled:
            spec = self._specs.get(provider_id, {}).get(flavor)
            if spec is None:
                self._compiled[key] = None
            else:
                from tokentrail.pricing.index import USAGE_ATTRS

                self._compiled[key] = compile_extractor(spec, provider_id, USAGE_ATTRS, self._ancestors)
        return self._compiled[key]

    # -- reading ------------------------------------------------------------------------------------

    def read_shaped(self, body: Mapping[str, Any], shape: str, name: str) -> Captured | None:
        """A body whose shape is known: the provider's extractor for it, else the shape's reference one."""
        ids = self._router_ids(body, name)
        if shape == "chat" and _XAI not in ids and _reasoning_outside_completion(body, name):
            captured = self._try(body, shape, _XAI, "chat", name)  # Grok through an OpenAI-compatible name
            if captured is not None:
                return captured
        for compiled in self._shaped_readers(ids, shape):
            captured = _read_with(compiled, body, shape, _label(compiled.provider, name))
            if captured is not None:
                return captured
        return None

    def read_named(self, body: Mapping[str, Any], provider: str, shape: str) -> PlannedRead | None:
        """What `read_shaped(body, shape, canonical_provider(provider))` reads (its capture is
        `planned_capture(body, read)`), when the catalog's extractors read what a provider of that name
        sends (None otherwise: see `_plan`), with the readers it tries chosen once per provider name and
        shape instead of on every call."""
        plan = self._plans.get((provider, shape), _UNSET)
        if plan is _UNSET:
            plan = self._plan(provider, shape)
        if plan is None:
            return None
        name, grok_first, readers = plan
        if grok_first and _reasoning_outside_completion(body, name):
            grok = self.compiled(_XAI, "chat")  # Grok through an OpenAI-compatible name, as in read_shaped
            if grok is not None:
                readers = ((grok, _label(_XAI, name)), *readers)
        for compiled, label in readers:
            read = _read_usage(compiled, body, shape)
            if read is not None:
                return read[0], read[1], label, shape
        return None

    def _plan(self, provider: str, shape: str) -> _Plan | None:
        """What `read_shaped` tries for a body of `shape` from `provider`, when it depends on nothing else:
        None when the provider has a hand-written reader and no extractor (that reader comes first) or
        stands for several routers (the body's model says which)."""
        name = canonical_provider(provider)
        ids = self.provider_ids(name)
        plan: _Plan | None = None
        if not (name in ADAPTERS and not ids) and len(ids) <= 1:
            readers = tuple((c, _label(c.provider, name)) for c in self._shaped_readers(ids, shape))
            plan = _Plan(name, shape == "chat" and _XAI not in ids, readers)
        if len(self._plans) < _MAX_PLANS:  # provider names come from callers: keep the table small
            self._plans[(provider, shape)] = plan
        return plan

    def _shaped_readers(self, ids: tuple[str, ...], shape: str) -> list[Compiled]:
        """The readers a body of `shape` from the catalog providers `ids` is tried with, in order: the
        providers' extractors for the shape's flavors, then the shape's reference extractor."""
        found = [self.compiled(provider_id, flavor) for provider_id in ids for flavor in SHAPE_FLAVORS[shape]]
        reference = SHAPE_REFERENCE.get(shape)
        if reference is not None and reference[0] not in ids:
            found.append(self.compiled(*reference))
        return [compiled for compiled in found if compiled is not None]

    def read_any(self, body: Mapping[str, Any], name: str) -> Captured | None:
        """A body of no known shape: the provider's `default` extractor, then the others in the catalog's
        order (not those of a marked shape only: realtime events, embeddings, images, OCR, durations)."""
        for provider_id in self._router_ids(body, name):
            specs = self._specs[provider_id]
            for flavor in sorted(specs, key=lambda f: f != "default"):
                if flavor in _MARKED_ONLY:
                    continue
                captured = self._try(body, None, provider_id, flavor, name)
                if captured is not None:
                    return captured
        return None

    def _router_ids(self, body: Mapping[str, Any], name: str) -> tuple[str, ...]:
        ids = self.provider_ids(name)
        if len(ids) <= 1:
            return ids
        router = self.router_of(name, body.get("model"))
        if router is not None:
            return (router,)
        return ()  # which router served it is unknown: the shape's reference extractor reads it

    def router_of(self, name: str, model: object) -> str | None:
        """The catalog provider a model of a router provider name names (Hugging Face's "org/model:router"
        → `huggingface_<router>`), or None."""
        if isinstance(model, str) and ":" in model:
            router = f"huggingface_{model.rsplit(':', 1)[1].lower()}"
            if router in self.provider_ids(name):
                return router
        return None

    def _try(
        self, body: Mapping[str, Any], shape: str | None, provider_id: str, flavor: str, name: str
    ) -> Captured | None:
        compiled = self._compiled.get((provider_id, flavor), _UNSET)
        if compiled is _UNSET:
            compiled = self.compiled(provider_id, flavor)
        if compiled is None:
            return None
        return _read_with(compiled, body, shape, _label(provider_id, name))

    # -- the usage alone, of a JSON object named by its provider (`usage_from_response`) -----------------

    def named_reader(self, provider: str) -> Callable[[dict[str, Any]], Usage | None]:
        """A function of a JSON object `body` that gives `read_named_json(body, provider)`'s usage (None when
        that is None), or raises when that raises. One generated function per provider name: it checks the
        batch-result keys and finds the body's shape inline (as `body_shape`), and reads a body of the
        shapes met so far (Anthropic messages, Responses objects, chat completions) inline with the fast
        lines of the first reader of the name's plan (`fast_read`), the Grok check of a chat body and the
        web-search check of a Responses body included; anything else goes to `read_named`. It is made
        again when a new shape is met."""
        read = self._named.get(provider)
        if read is None:
            if len(self._named) >= _MAX_PLANS:  # provider names come from callers: keep the table small
                return lambda body: self._named_slow(body, provider)
            read = self._make_named(provider, ())
        return read

    def read_json(self, body: Mapping[str, Any], provider: str) -> PlannedRead | None:
        """`read_named` of a JSON object whose shape is not known yet (see `_read.read_named_json`): None for
        a possible batch result (which `detect_response` unwraps) and a body of no known shape."""
        if "custom_id" in body or "response" in body or "recordId" in body:
            return None
        shape = body_shape(body)
        if shape is None:
            return None
        return self.read_named(body, provider, shape)

    def _named_slow(self, body: dict[str, Any], provider: str) -> Usage | None:
        read = self.read_json(body, provider)
        return None if read is None else read[0]

    def _learn(self, body: dict[str, Any], provider: str, shape: str) -> Usage | None:
        """A body of a shape the provider name's reader has not met yet: the reader made again, with it."""
        shapes = (*self._named_shapes.get(provider, ()), shape)
        return self._make_named(provider, shapes)(body)

    def _make_named(self, provider: str, shapes: tuple[str, ...]) -> Callable[[dict[str, Any]], Usage | None]:
        constants: dict[str, object] = {}
        ops = {shape: Ops() for shape in _INLINE}
        blocks = {
            shape: self._named_block(provider, shape, shape in shapes, constants, ops[shape])
            for shape in _INLINE
        }
        lines = [
            "def named(body):",
            '    if "custom_id" in body or "response" in body or "recordId" in body:',
            "        return None",  # perhaps a batch result (see read_named_json)
            '    kind = body.get("type")',  # body_shape, in its order, the usual shapes inline
            "    if kind is not None:",
            '        if kind == "response.done":',
            '            return _other(body, "realtime")',
            '        if kind == "message":',
            *("    " + line for line in blocks["anthropic"]),
            '    obj = body.get("object")',
            '    if obj == "response":',
            *blocks["responses"],
            '    if obj in ("chat.completion", "chat.completion.chunk", "text_completion") or "choices" in body:',
            *blocks["chat"],
            "    shape = _body_shape(body)",
            "    if shape is None:",
            "        return None",
            "    return _other(body, shape)",
            "",
            "def _other(body, shape):",
            "    read = _read_named(body, _provider, shape)",
            "    return None if read is None else read[0]",
        ]
        namespace: dict[str, Any] = {
            "_read_named": self.read_named,
            "_provider": provider,
            "_body_shape": body_shape,
            "_learn": lambda body, shape: self._learn(body, provider, shape),
            "EMPTY": EMPTY,
            **constants,
        }
        exec(compile("\n".join(lines), "<tokentrail named reader>", "exec"), namespace)
        # run by the compiled reader where it is built (the same results: see _fast)
        read = compiled_reader(namespace["named"], {shape: block.plan() for shape, block in ops.items()})
        self._named[provider] = read
        self._named_shapes[provider] = shapes
        if provider in NAMED_READERS:  # a reader made again (a new shape met): the table holds the new one
            _remember(self, provider)
        return read

    def _named_block(
        self, provider: str, shape: str, met: bool, constants: dict[str, object], ops: Ops
    ) -> list[str]:
        """The lines (depth 2) reading a body of `shape` named `provider`, as `read_named` does, and the same
        reads as operations in `ops` (unusable when the lines are not the fast reads)."""
        other = f"return _other(body, {shape!r})"
        ops.usable = False
        if not met:
            return [f"        return _learn(body, {shape!r})"]
        plan = self._plans.get((provider, shape), _UNSET)
        if plan is _UNSET:
            plan = self._plan(provider, shape)
        if plan is None:
            return ["        return None"]
        if not plan.readers:
            return [f"        {other}"]
        ops.usable = True
        from tokentrail.pricing.index import USAGE_ATTRS

        compiled = plan.readers[0][0]
        spec = self._specs[compiled.provider][compiled.flavor]
        src = Source(constants)
        if shape == "responses" and not compiled.reads_web_searches:  # _may_call_tools, inline
            src.add('output = body.get("output")')
            src.add("if type(output) is not list:")
            src.add(other, 2)
            src.add("for item in output:")
            src.add(f'if type(item) is not dict or item.get("type") in {_BILLED_CALLS!r}:', 2)
            src.add(other, 3)
            ops.add(SCAN_ITEMS, b=0, key="output", extra=_BILLED_CALLS)
        if shape == "chat" and compiled.provider == "openrouter":  # its server tools' searches: _read_usage
            src.add('t = body.get("usage")')
            src.add('if type(t) is not dict or "server_tool_use" in t or "server_tool_use_details" in t:')
            src.add(other, 2)
            ops.add(OBJ, ops.obj("t"), 0, required=True, key="usage")
            ops.add(HAS_BAIL, b=ops.obj("t"), key="server_tool_use")
            ops.add(HAS_BAIL, b=ops.obj("t"), key="server_tool_use_details")
        if shape == "chat" and compiled.provider == "google":  # thinking in the total alone: _read_usage
            src.add('t = body.get("usage")')
            src.add('if type(t) is not dict or "total_tokens" in t:')
            src.add(other, 2)
            ops.add(OBJ, ops.obj("t"), 0, required=True, key="usage")
            ops.add(HAS_BAIL, b=ops.obj("t"), key="total_tokens")
        # The Grok check (`_reasoning_outside_completion` is False unless the reasoning count is > 0): on the
        # reasoning count the reader reads, when it reads it (checked then: an exact int >= 0, or None).
        reasoning = ("completion_tokens_details", "reasoning_tokens")
        shared = plan.grok_first and tuple(spec["root"]) == ("usage",)
        shared = shared and any(tuple(m["path"]) == reasoning for m in spec["mappings"])
        if plan.grok_first and not shared:
            src.add('t = body.get("usage")')
            src.add("if t is not None:")
            src.add("if type(t) is not dict:", 2)
            src.add(other, 3)
            src.add('t = t.get("completion_tokens_details")', 2)
            src.add("if t is not None:", 2)
            src.add("if type(t) is not dict:", 3)
            src.add(other, 4)
            src.add('t = t.get("reasoning_tokens")', 3)
            src.add("if type(t) is int and t > 0:", 3)
            src.add(other, 4)
            ops.add(OBJ, ops.obj("t"), 0, key="usage")
            ops.add(OBJ, ops.obj("t2"), ops.obj("t"), key="completion_tokens_details")
            ops.add(INT_POSITIVE_BAIL, b=ops.obj("t2"), key="reasoning_tokens")
        guard = (lambda found: found[reasoning]) if shared else None
        if fast_read(src, spec, USAGE_ATTRS, self._ancestors, other, "0", guard, ops) is None:
            ops.usable = False
            return [f"        {other}"]
        src.add("return u")
        return ["    " + line for line in src.lines]


class _Plan(NamedTuple):
    """The readers a provider name's bodies of one shape are tried with (see `MappedReaders.read_named`)."""

    name: str  # the provider name the capture carries (canonical)
    grok_first: bool  # a chat body whose reasoning is outside completion_tokens goes to x-ai's reader first
    readers: tuple[tuple[Compiled, str], ...]  # (reader, the provider name its capture carries)


_MAX_PLANS = 512
_HF_ROUTER = "https://router.huggingface.co/"  # base URL of Hugging Face's router ("org/model:router" models)
_INLINE = ("anthropic", "responses", "chat")  # the shapes a provider name's reader reads inline


def _label(provider_id: str, name: str) -> str:
    """The provider name a capture read by `provider_id`'s extractor carries (a router's own id)."""
    return provider_id if provider_id.startswith("huggingface_") else name


def _read_with(compiled: Compiled, body: Mapping[str, Any], shape: str | None, label: str) -> Captured | None:
    """What one extractor reads from `body` (None when it cannot read it), with the price context."""
    read = _read_usage(compiled, body, shape)
    if read is None:
        return None
    return planned_capture(body, (read[0], read[1], label, shape))


def _read_usage(
    compiled: Compiled, body: Mapping[str, Any], shape: str | None
) -> tuple[Usage, str | None] | None:
    """The usage and model one extractor reads from `body` (None when it cannot read it)."""
    web = files = 0
    if shape == "responses" and not compiled.reads_web_searches and _may_call_tools(body):
        web, files = openai.billed_tool_calls(body)
    elif shape == "chat" and compiled.provider == "openrouter" and not compiled.reads_web_searches:
        usage = body.get("usage")
        web = openai.openrouter_searches(Fields(usage, "usage")) if isinstance(usage, Mapping) else 0
    elif shape == "gemini" and not compiled.reads_web_searches and "candidates" in body:
        web = gemini.grounding_searches(gemini.search_queries(body), gemini.response_model(body))
    try:
        read = compiled.read(body, web)
    except Miss:
        return None
    if files:  # rare: the usage made again, with its file searches
        usage = read[0]
        return dataclasses.replace(usage, storage_searches=usage.storage_searches + files), read[1]
    if shape == "chat" and compiled.provider == "google" and not read[0].reasoning_tokens:
        return _with_hidden_thinking(read[0], body), read[1]
    return read


def _with_hidden_thinking(usage: Usage, body: Mapping[str, Any]) -> Usage:
    """A Gemini OpenAI-compatible chat usage with the thinking its total alone counts (`openai.hidden_thinking`;
    the counts were read and checked already)."""
    raw = body.get("usage")
    total = raw.get("total_tokens") if isinstance(raw, Mapping) else None
    hidden = openai.hidden_thinking(
        usage.input_tokens, usage.output_tokens, total if type(total) is int else None
    )
    if not hidden:
        return usage
    return dataclasses.replace(usage, output_tokens=usage.output_tokens + hidden, reasoning_tokens=hidden)


# What a kept plan's reader read: (usage, model, the provider name the capture carries, the body's shape).
PlannedRead = tuple[Usage, "str | None", str, "str | None"]


def planned_capture(body: Mapping[str, Any], read: PlannedRead) -> Captured:
    """The capture of what an extractor read from `body`: its usage and model, the provider name, the price
    context and, for a Responses body, its id."""
    usage, model, label, shape = read
    context = _price_context(body)
    cost = charged(body.get("usage"), label) if label in REPORTERS else None
    if shape != "responses":
        return new_captured(usage, model, label, context, None, cost)
    response_id = body.get("id")
    return new_captured(
        usage,
        model,
        label,
        context,
        response_id if isinstance(response_id, str) and response_id else None,
        cost,
    )


def _price_context(body: Mapping[str, Any]) -> dict[str, str]:
    """The price variant a body names: OpenAI's `service_tier` on the body, Anthropic's in its usage."""
    tier = body.get("service_tier")
    if type(tier) is str:
        if tier:
            return {"service_tier": tier}
    elif tier is not None:
        context = openai.price_context(body)  # (a tier given as an enum)
        if context:
            return context
    usage = body.get("usage")
    if usage is None:  # (Gemini's: answered before the Mapping ABC check)
        return {}
    if (type(usage) is dict or isinstance(usage, Mapping)) and "service_tier" in usage:
        return anthropic.price_context(usage)
    return {}


_UNSET: Any = object()
_readers: MappedReaders | None = None
_readers_lock = threading.Lock()


def mapped_readers() -> MappedReaders:
    """The readers of the catalog in force's extractors (the bundled snapshot, or the catalog installed by
    `tokentrail prices update` or refreshed): loaded at first use, never at import, and again when another
    catalog is put in force (`pricing.installed.put_in_force`)."""
    readers = _readers
    if readers is not None and readers.generation == _in_force.readers_generation:
        return readers
    return _follow_catalog_in_force()


# Provider name → its reader (`MappedReaders.named_reader`) of the readers in force, for
# `usage_from_response` to call without a lookup of the readers: emptied, never rebound, whenever the readers
# in force change (another catalog put in force, `set_mapped_readers`), and filled again by `named_usage`.
NAMED_READERS: dict[str, Callable[[dict[str, Any]], Usage | None]] = {}


def named_usage(body: dict[str, Any], provider: str) -> Usage | None:
    """`read_named_json(body, provider)`'s usage (None when that is None; raising when it raises), by the
    provider name's generated reader (`MappedReaders.named_reader`), kept in `NAMED_READERS`."""
    readers = _readers
    if readers is None or readers.generation != _in_force.readers_generation:
        readers = _follow_catalog_in_force()
    read = readers._named.get(provider)
    if read is None:
        read = readers.named_reader(provider)
    _remember(readers, provider)
    return read(body)


def _remember(readers: MappedReaders, provider: str) -> None:
    with _readers_lock:  # only a reader of the readers in force, and one `MappedReaders` keeps
        read = readers._named.get(provider)
        if read is not None and readers is _readers and readers.generation == _in_force.readers_generation:
            NAMED_READERS[provider] = read


def _forget_named(*_: object) -> None:
    with _readers_lock:
        NAMED_READERS.clear()


_in_force.on_put_in_force(_forget_named)


def _named_read(body: object, provider: object) -> Usage | None:
    """`read_named_json(body, provider)`'s usage of a JSON object named by its provider, by the reader kept
    for the name (`NAMED_READERS`; `named_usage` makes and keeps it): the hot path of `usage_from_response`.
    None for anything else, when that is None, or when it raised (`capture` then reads the body again, and
    says what is wrong)."""
    if type(body) is dict and type(provider) is str and provider:
        read = NAMED_READERS.get(provider)
        try:
            return read(body) if read is not None else named_usage(body, provider)
        except Exception:
            return None
    return None


# `_named_read`, or the same in C (`_fastread.named_read`, no Python frame of its own) where it is built.
named_read: Callable[[object, object], Usage | None] = named_read_of(NAMED_READERS, named_usage, _named_read)


def _follow_catalog_in_force() -> MappedReaders:
    global _readers
    with _readers_lock:
        data, generation = _in_force.readers_in_force()
        readers = _readers
        if readers is None or readers.data != data:  # the same extractors: the compiled readers stay
            readers = MappedReaders(data)
            NAMED_READERS.clear()
        readers.generation = generation
        _readers = readers
    return readers


def set_mapped_readers(snapshot: Mapping[str, Any] | None) -> None:
    """Read usage with another catalog's extractors until a catalog is put in force; None: the catalog in
    force again."""
    global _readers
    with _readers_lock:
        NAMED_READERS.clear()
        if snapshot is None:
            _readers = None
        else:
            readers = MappedReaders(snapshot)
            readers.generation = _in_force.readers_generation
            _readers = readers


def capture_mapped(body: Mapping[str, Any], name: str, *, has_own_reader: bool) -> Captured | None:
    """What a JSON body's extractors read (None when none reads it: a hand-written reader takes over).

    A body of a known shape is read by the extractors; one of no known shape only when the provider has
    no hand-written reader of its own (`has_own_reader`), whose knowledge of such bodies comes first.
    """
    readers = mapped_readers()
    if has_own_reader and not readers.provider_ids(name):
        return None  # a provider the catalog cannot read (LiteLLM, Ollama): its own reader first
    shape = body_shape(body)
    if shape is not None:
        return readers.read_shaped(body, shape, name)
    if has_own_reader:
        return None
    return readers.read_any(body, name)
