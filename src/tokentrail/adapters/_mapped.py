"""Readers compiled from the catalog's usage extractors: reading usage is data, like prices.

genai-prices publishes, per provider and API flavor, where a response keeps its usage (see
`tokentrail.pricing.extractors`); the snapshot carries them beside the prices. Each extractor is turned, at
first use, into one generated straight-line function (cached) that reads a JSON body exactly as
genai-prices' `UsageExtractor.extract` does: a missing root or required count means "not this extractor",
several mappings to one key are summed, and an extractor that finds no count at all does not read the body.
Where tokentrail is stricter: a count that is present but not a whole non-negative number (or a container
that is not an object/list) makes the body malformed (`unknown` with the reason) instead of being skipped,
and a body's `total_tokens` / `totalTokenCount` / `totalTokens`, read by no extractor, must still be a count.

Which flavor reads a body: its shape names it (see `body_shape`): a realtime `response.done` event, a
Responses object, a chat completion, an embeddings list, an Images API result, an Anthropic message, a
Gemini `usageMetadata` body, a Mistral OCR result. The provider's extractor for that shape reads it (then
its `default` one); when the provider has none that reads it, the shape's reference extractor does
(OpenAI's for OpenAI-compatible shapes, Anthropic's, Google's), the capture keeping the provider's name for
pricing. A body of no known shape is read by the provider's extractors in the catalog's order (the
`default` flavor first).

Usage keys become `Usage` fields through `pricing.index.USAGE_ATTRS`. Keys tokentrail does not carry as
fields are subsets of fields it does (text-modality counts, tool-prompt counts, the 5-minute cache writes):
they are checked (a subset reported without the total it belongs to is malformed, as genai-prices cannot
price it either) and left inside their total. A key with no carrying total that reports a non-zero amount
makes the capture `unknown`, never a silent zero. Durations (genai-prices seconds) land in `*_ms` fields.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from tokentrail._types import Usage, usage_builder
from tokentrail.adapters import anthropic, openai
from tokentrail.adapters._base import MAX_COUNT, Captured, Malformed, describe, new_captured
from tokentrail.adapters._detect import ADAPTERS, canonical_provider
from tokentrail.errors import InvalidUsageError
from tokentrail.pricing import installed as _in_force
from tokentrail.pricing.names import PROVIDER_ALIASES

__all__ = [
    "MappedReaders",
    "Miss",
    "PlannedRead",
    "body_shape",
    "capture_mapped",
    "mapped_readers",
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
# Totals no extractor reads, which must still be counts when present (a malformed total, a malformed body).
_CHECKED_TOTALS = ("total_tokens", "totalTokenCount", "totalTokens")
# Counts beside the ones an extractor reads in the same object: (a name it reads, a name to check).
_CHECKED_BESIDE = (
    ("cached_tokens", "image_tokens"),
    ("reasoning_tokens", "image_tokens"),
    ("web_search_requests", "web_fetch_requests"),
)
_DURATION_UNIT = 1000  # genai-prices durations are seconds; tokentrail keeps milliseconds


class Miss(Malformed):
    """This extractor cannot read this body: its root or a required count is absent, or it has no count."""


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


def _may_search(body: Mapping[str, Any]) -> bool:
    """False when a Responses body's `output` is a JSON list with no `web_search_call` item (the usual
    case, told apart quickly); otherwise `openai.web_search_calls` counts them."""
    output = body.get("output")
    if type(output) is not list:
        return True
    for item in output:  # noqa: SIM110 (a plain loop: no generator on the hot path)
        if type(item) is not dict or item.get("type") == "web_search_call":
            return True
    return False


# -- value checks shared by the generated readers ----------------------------------------------------


def _where(path: Sequence[Any]) -> str:
    return ".".join(
        step if isinstance(step, str) else f"[{step['field']}={_clause_text(step)}]" for step in path
    )


def _clause_text(step: Mapping[str, Any]) -> str:
    ((kind, value),) = step["match"].items()
    return str(value) if isinstance(value, str) else kind


def _count(value: object, where: str) -> int:
    """A token (or request, page, search…) count: a whole non-negative number below 2**63."""
    if isinstance(value, bool) or value is None:
        raise Malformed(f"{where} must be a whole number, got {describe(value)}")
    if isinstance(value, int):
        number = int(value)
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise Malformed(f"{where} is not a whole finite number ({value})")
        number = int(value)
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise Malformed(f"{where} is not a whole finite number ({value})")
        number = int(value)
    else:
        raise Malformed(f"{where} must be a whole number, got {describe(value)}")
    if number < 0:
        raise Malformed(f"{where} is negative ({number})")
    if number > MAX_COUNT:
        raise Malformed(f"{where} is larger than 2**63 - 1 ({number})")
    return number


def _milliseconds(value: object, where: str) -> int:
    """A duration in seconds (any finite non-negative number) as whole milliseconds, rounded half up."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise Malformed(f"{where} must be a number of seconds, got {describe(value)}")
    seconds = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not seconds.is_finite() or seconds < 0:
        raise Malformed(f"{where} must be a finite non-negative number of seconds ({value})")
    ms = int((seconds * _DURATION_UNIT).quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    if ms > MAX_COUNT:
        raise Malformed(f"{where} is too long ({value} s)")
    return ms


def _object(value: object, where: str) -> Mapping[str, Any]:
    raise Malformed(f"{where} must be an object, got {describe(value)}")


def _array_match(items: object, field: str, match: Callable[[str], bool], where: str) -> Any:
    """The first object of `items` whose `field` is a string matching `match` (genai-prices' ArrayMatch)."""
    if not isinstance(items, (list, tuple)):
        raise Malformed(f"{where} must be a list, got {describe(items)}")
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise Malformed(f"{where}[{index}] must be an object, got {describe(item)}")
        value = item.get(field)
        if value and isinstance(value, str) and match(value.lower()):
            return item
    return None


# -- compiling one extractor -----------------------------------------------------------------------------


class Compiled(NamedTuple):
    provider: str  # catalog provider id
    flavor: str
    read: Callable[[Mapping[str, Any], int], tuple[Usage, str | None]]  # (body, extra web searches)
    reads_web_searches: bool


class _Source:
    """Generated Python source, with the constants it refers to kept apart (no data inside the code)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, object] = {}

    def constant(self, value: object) -> str:
        name = f"k{len(self.constants)}"
        self.constants[name] = value
        return name

    def add(self, line: str, depth: int = 1) -> None:
        self.lines.append("    " * depth + line)


def compile_extractor(
    spec: Mapping[str, Any], provider: str, usage_attrs: Mapping[str, str], ancestors: Mapping[str, list[str]]
) -> Compiled:
    """One extractor as a generated function `read(body, web_searches) -> (Usage, model)`."""
    from tokentrail.pricing.index import compile_clause

    src = _Source()
    root: list[Any] = list(spec["root"])
    containers: dict[str, str] = {"[]": "body"}
    objects: set[str] = {"body"}  # variables already checked to be objects
    opened: dict[str, tuple[Any, ...]] = {}  # objects read by key, and their paths
    present: set[str] = {"body"}  # variables known not to be None (the body, the root once checked)

    def get(parent: str, key: str) -> str:
        """An expression for `parent[key]`, None when absent (or when `parent` itself is None)."""
        read = f"{parent}.get({src.constant(key)})"
        return read if parent in present else f"{read} if {parent} is not None else None"

    def container(path: tuple[Any, ...]) -> str:
        """The variable holding the value at `path`: an object, a list or a matched item (None when absent)."""
        key = json.dumps(path, sort_keys=True)
        if key in containers:
            return containers[key]
        parent = container(path[:-1])
        name = f"c{len(containers)}"
        containers[key] = name
        step = path[-1]
        if isinstance(step, str):
            as_object(parent, path[:-1])
            src.add(f"{name} = {get(parent, step)}")
        else:
            match = src.constant(compile_clause(step["match"]))
            where = src.constant(_where(path[:-1]))
            matched = f"_array_match({parent}, {src.constant(step['field'])}, {match}, {where})"
            src.add(
                f"{name} = {matched}"
                if parent in present
                else f"{name} = {matched} if {parent} is not None else None"
            )
            objects.add(name)  # a matched item is an object
        return name

    def as_object(name: str, path: tuple[Any, ...]) -> None:
        if name not in objects:
            objects.add(name)
            opened[name] = path
            absent = "" if name in present else f"{name} is not None and "
            src.add(f"if {absent}type({name}) is not dict and not isinstance({name}, Mapping):")
            src.add(f"_object({name}, {src.constant(_where(path))})", 2)

    root_var = container(tuple(root))
    src.add(f"if {root_var} is None:")
    src.add(f"raise Miss({src.constant(_where(root) + ' is missing')})", 2)
    present.add(root_var)
    as_object(root_var, tuple(root))

    dests: dict[str, str] = {}
    for mapping in spec["mappings"]:
        dest = mapping["dest"]
        if dest not in dests:
            dests[dest] = f"d{len(dests)}"
            src.add(f"{dests[dest]} = None")
    counts = {dest: sum(m["dest"] == dest for m in spec["mappings"]) for dest in dests}
    for mapping in spec["mappings"]:
        path = tuple(root) + tuple(mapping["path"])
        parent = container(path[:-1])
        as_object(parent, path[:-1])
        where = _where(path)
        var, dest = "x", dests[mapping["dest"]]
        src.add(f"{var} = {get(parent, path[-1])}")
        if mapping["required"]:
            src.add(f"if {var} is None:")
            src.add(f"raise Miss({src.constant(where + ' is missing')})", 2)
            depth = 1
        else:
            src.add(f"if {var} is not None:")
            depth = 2
        attr = usage_attrs.get(mapping["dest"], "")
        if attr.endswith("_ms"):
            src.add(f"{var} = _milliseconds({var}, {src.constant(where)})", depth)
        else:
            src.add(f"if type({var}) is not int or {var} < 0 or {var} > {MAX_COUNT}:", depth)
            src.add(f"{var} = _count({var}, {src.constant(where)})", depth + 1)
        if counts[mapping["dest"]] == 1:
            src.add(f"{dest} = {var}", depth)
        else:
            src.add(f"{dest} = {var} if {dest} is None else {dest} + {var}", depth)
    # Counts the extractor does not read must still be counts when present: a malformed total (or a
    # malformed sibling of a count it reads) means a malformed body.
    read_names = {(container(tuple(root) + tuple(m["path"][:-1])), m["path"][-1]) for m in spec["mappings"]}
    checks = {(root_var, name) for name in _CHECKED_TOTALS}
    checks |= {(var, other) for var, name in read_names for known, other in _CHECKED_BESIDE if name == known}
    for var, name in sorted(checks - read_names):
        path = opened.get(var, tuple(root))
        src.add(f"x = {get(var, name)}")
        src.add(f"if x is not None and (type(x) is not int or x < 0 or x > {MAX_COUNT}):")
        src.add(f"_count(x, {src.constant(_where([*path, name]))})", 2)
    _derive_cache_writes(src, spec["mappings"], dests)
    none_read = " and ".join(f"{var} is None" for var in dests.values())
    src.add(f"if {none_read}:")
    src.add(f"raise Miss({src.constant('no usage information found at ' + _where(root))})", 2)

    fields: dict[str, list[str]] = {}
    reads_web = False
    for dest, var in dests.items():
        carrier = usage_attrs.get(dest)
        if carrier is not None:
            fields.setdefault(carrier, []).append(var)
            reads_web = reads_web or carrier == "web_searches"
            continue
        carried = [a for a in ancestors.get(dest, ()) if a in usage_attrs]
        if not carried:
            message = src.constant(f"{dest} is billed, and this tokentrail version has no field for it")
            src.add(f"if {var}:")
            src.add(f"raise Malformed({message} + f' ({{{var}}})')", 2)
            continue
        for ancestor in carried:  # a part needs its whole, and cannot exceed it
            if ancestor in dests:
                whole = dests[ancestor]
                message = src.constant(f"{dest} is reported without {ancestor}, the total it belongs to")
                src.add(f"if {var} and {whole} is None:")
                src.add(f"raise Malformed({message})", 2)
                message = src.constant(f"{dest} exceeds {ancestor}, the total it belongs to")
                src.add(f"if {var} and {var} > {whole}:")
                src.add(f"raise Malformed({message} + f' ({{{var}}} > {{{whole}}})')", 2)
    fields.setdefault("web_searches", [])
    values = []
    for attr, variables in fields.items():
        parts = [f"({v} or 0)" for v in variables] + (["web"] if attr == "web_searches" else [])
        values.append(" + ".join(parts))
    # A fast Usage constructor for these fields; every count passed is an exact int >= 0 (read and checked
    # above, or summed from such counts, or the caller's count of web search calls).
    build = src.constant(usage_builder(list(fields), exact_counts=True))
    model = _model_reader(src, list(spec["model_path"]))
    src.add("try:")
    src.add(f"usage = {build}({', '.join(values)})", 2)
    src.add("except InvalidUsageError as exc:")
    src.add("raise Malformed(f'inconsistent usage: {exc}') from None", 2)
    src.add(f"return usage, {model}")
    source = "def read(body, web):\n" + "\n".join(src.lines)
    namespace: dict[str, Any] = {
        "Mapping": Mapping,
        "Miss": Miss,
        "Malformed": Malformed,
        "_count": _count,
        "_milliseconds": _milliseconds,
        "_object": _object,
        "_array_match": _array_match,
        "Usage": Usage,
        "InvalidUsageError": InvalidUsageError,
        "_model_at": _model_at,
        **src.constants,
    }
    exec(compile(source, f"<tokentrail extractor {provider}/{spec['api_flavor']}>", "exec"), namespace)
    return Compiled(provider, spec["api_flavor"], namespace["read"], reads_web)


def _derive_cache_writes(
    src: _Source, mappings: Sequence[Mapping[str, Any]], dests: Mapping[str, str]
) -> None:
    """tokentrail's convention: cache writes split by TTL stand for their total when the total is absent.

    Where the extractor also counts that total into `input_tokens` (Anthropic's uncached `input_tokens`),
    the derived total is counted there too, as the absent total would have been.
    """
    parts = [dests[key] for key in ("cache_write_5m_tokens", "cache_write_1h_tokens") if key in dests]
    total = dests.get("cache_write_tokens")
    if not parts or total is None:
        return
    total_paths = [m["path"] for m in mappings if m["dest"] == "cache_write_tokens"]
    counted_in_input = any(m["dest"] == "input_tokens" and m["path"] in total_paths for m in mappings)
    src.add(f"if {total} is None and ({' or '.join(f'{p} is not None' for p in parts)}):")
    src.add(f"{total} = {' + '.join(f'({p} or 0)' for p in parts)}", 2)
    if counted_in_input and "input_tokens" in dests:
        src.add(f"if {dests['input_tokens']} is not None:", 2)
        src.add(f"{dests['input_tokens']} += {total}", 3)


def _model_reader(src: _Source, path: list[Any]) -> str:
    """An expression for the model name at `path` (a string, or None), as genai-prices reads it."""
    if len(path) == 1 and isinstance(path[0], str):  # the usual `model` key, read inline
        src.add(f"model = body.get({src.constant(path[0])})")
        return "model if isinstance(model, str) else None"
    if all(isinstance(step, str) for step in path):
        return f"_model_at(body, {src.constant(tuple(path))})"
    return "None"


def _model_at(body: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
    node: Any = body
    for step in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(step)
    return node if isinstance(node, str) else None


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
        for provider in snapshot["providers"]:
            extractors = provider.get("extractors") or ()
            self._specs[provider["id"]] = {e["api_flavor"]: e for e in extractors}
            if provider.get("provider_match"):
                self._matchers.append((provider["id"], compile_clause(provider["provider_match"])))
        self._ancestors = _ancestors(snapshot["units"])
        self._compiled: dict[tuple[str, str], Compiled | None] = {}
        self._ids: dict[str, tuple[str, ...]] = {}
        self._plans: dict[tuple[str, str], _Plan | None] = {}  # (provider name as given, shape) → plan

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
        model = body.get("model")  # a Hugging Face router model names its provider: "org/model:router"
        if isinstance(model, str) and ":" in model:
            router = f"huggingface_{model.rsplit(':', 1)[1].lower()}"
            if router in ids:
                return (router,)
        return ()  # which router served it is unknown: the shape's reference extractor reads it

    def _try(
        self, body: Mapping[str, Any], shape: str | None, provider_id: str, flavor: str, name: str
    ) -> Captured | None:
        compiled = self._compiled.get((provider_id, flavor), _UNSET)
        if compiled is _UNSET:
            compiled = self.compiled(provider_id, flavor)
        if compiled is None:
            return None
        return _read_with(compiled, body, shape, _label(provider_id, name))


class _Plan(NamedTuple):
    """The readers a provider name's bodies of one shape are tried with (see `MappedReaders.read_named`)."""

    name: str  # the provider name the capture carries (canonical)
    grok_first: bool  # a chat body whose reasoning is outside completion_tokens goes to x-ai's reader first
    readers: tuple[tuple[Compiled, str], ...]  # (reader, the provider name its capture carries)


_MAX_PLANS = 512


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
    web = 0
    if shape == "responses" and not compiled.reads_web_searches and _may_search(body):
        web = openai.web_search_calls(body)
    try:
        return compiled.read(body, web)
    except Miss:
        return None


# What a kept plan's reader read: (usage, model, the provider name the capture carries, the body's shape).
PlannedRead = tuple[Usage, "str | None", str, "str | None"]


def planned_capture(body: Mapping[str, Any], read: PlannedRead) -> Captured:
    """The capture of what an extractor read from `body`: its usage and model, the provider name, the price
    context and, for a Responses body, its id."""
    usage, model, label, shape = read
    context = _price_context(body)
    if shape != "responses":
        return new_captured(usage, model, label, context)
    response_id = body.get("id")
    return new_captured(
        usage, model, label, context, response_id if isinstance(response_id, str) and response_id else None
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


def _follow_catalog_in_force() -> MappedReaders:
    global _readers
    with _readers_lock:
        data, generation = _in_force.readers_in_force()
        readers = _readers
        if readers is None or readers.data != data:  # the same extractors: the compiled readers stay
            readers = MappedReaders(data)
        readers.generation = generation
        _readers = readers
    return readers


def set_mapped_readers(snapshot: Mapping[str, Any] | None) -> None:
    """Read usage with another catalog's extractors until a catalog is put in force; None: the catalog in
    force again."""
    global _readers
    with _readers_lock:
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
