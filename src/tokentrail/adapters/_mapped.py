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
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from tokentrail._types import Usage, usage_builder, usage_fill_source
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
# Totals no extractor reads, which must still be counts when present (a malformed total, a malformed body).
_CHECKED_TOTALS = ("total_tokens", "totalTokenCount", "totalTokens")
# Counts beside the ones an extractor reads in the same object: (a name it reads, a name to check).
_CHECKED_BESIDE = (
    ("cached_tokens", "image_tokens"),
    ("reasoning_tokens", "image_tokens"),
    ("web_search_requests", "web_fetch_requests"),
)
_EMPTY: Mapping[str, Any] = {}  # an absent object, to the fast readers (never written)
# The totals of `_CHECKED_TOTALS` by the naming of the counts beside them (a fast reader reads the one in the
# style of the extractor's own counts: OpenAI's and Anthropic's total_tokens, Gemini's totalTokenCount).
_TOTAL_STYLES = (("total_tokens", "_tokens"), ("totalTokenCount", "TokenCount"), ("totalTokens", "Tokens"))
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
    # The full reader `read` hands every unusual body to (`read` itself when it has no fast lines).
    full: Callable[[Mapping[str, Any], int], tuple[Usage, str | None]] | None = None


class _Source:
    """Generated Python source, with the constants it refers to kept apart (no data inside the code)."""

    def __init__(self, constants: dict[str, object] | None = None) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, object] = {} if constants is None else constants  # (shared: one namespace)

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
    source = "def full(body, web):\n" + "\n".join(src.lines)
    # The reader: the usual body read by the fast lines, anything else by the full reader above.
    fast = _Source(src.constants)
    if _fast_read(fast, spec, usage_attrs, ancestors, "return full(body, web)", "web") is None:
        source += "\n\nread = full"
    else:
        fast.add(f"return u, {_model_reader(fast, list(spec['model_path']))}")
        source += "\n\ndef read(body, web):\n" + "\n".join(fast.lines)
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
        "_EMPTY": _EMPTY,
        **src.constants,
    }
    exec(compile(source, f"<tokentrail extractor {provider}/{spec['api_flavor']}>", "exec"), namespace)
    return Compiled(provider, spec["api_flavor"], namespace["read"], reads_web, namespace["full"])


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


# -- the fast path: the same reads, for the usual body ---------------------------------------------------


# Counts up to this are one-digit ints, whose comparisons are specialized; larger ones take the full path.
_FAST_LIMIT = 2**30 - 1


def _fast_read(
    src: _Source,
    spec: Mapping[str, Any],
    usage_attrs: Mapping[str, str],
    ancestors: Mapping[str, list[str]],
    bail: str,
    web: str,
    guard: Callable[[Mapping[tuple[str, ...], str]], str | None] | None = None,
) -> dict[tuple[str, ...], str] | None:
    """Add to `src` the lines (depth 1) reading what the extractor `spec` reads when a body is the usual one:
    every object on the way an exact dict (or absent below the root), every count an exact int in
    0..2**30-1, the subset rules kept. The `Usage` ends in `u`; on anything else the statement `bail` runs
    (the full reader then reads the body, and says what is wrong). Returns the raw value variables by path
    (below the root), or None when the extractor takes steps the fast path does not (array matches,
    durations): only the full reader reads it. `guard`, given those variables, may name one more condition
    to bail on (checked after the reads, before the counts are summed).

    The reads are the full reader's, once each (a path read by two mappings is read once), so that whenever
    these lines build a `Usage`, the full reader builds the same one."""
    root = tuple(spec["root"])
    paths = [tuple(m["path"]) for m in spec["mappings"]]
    if not root or not all(isinstance(step, str) for path in (root, *paths) for step in path):
        return None
    if any(usage_attrs.get(m["dest"], "").endswith("_ms") for m in spec["mappings"]):
        return None
    containers: dict[tuple[str, ...], str] = {(): "body"}

    def check_count(var: str, required: bool) -> None:
        bad = f"type({var}) is not int or {var} < 0 or {var} > {_FAST_LIMIT}"
        src.add(f"if {bad if required else f'{var} is not None and ({bad})'}:")
        src.add(bail, 2)

    def container(path: tuple[str, ...]) -> str:
        if path in containers:
            return containers[path]
        parent = container(path[:-1])
        name = f"c{len(containers)}"
        containers[path] = name
        src.add(f"{name} = {parent}.get({src.constant(path[-1])})")
        src.add(f"if type({name}) is not dict:")
        if len(path) <= len(root):  # the root and the objects on its way: present
            src.add(bail, 2)
        else:  # an absent object below the root reads as an empty one
            src.add(f"if {name} is not None:", 2)
            src.add(bail, 3)
            src.add(f"{name} = _EMPTY", 2)
        return name

    container(root)
    raw: dict[tuple[str, ...], str] = {}  # path below the root -> the variable holding what is there
    required = {tuple(m["path"]) for m in spec["mappings"] if m["required"]}
    for path in paths:
        if path not in raw:
            parent = container(root + path[:-1])
            raw[path] = var = f"r{len(raw)}"
            src.add(f"{var} = {parent}.get({src.constant(path[-1])})")
            check_count(var, path in required)
    # The counts beside: the totals no extractor reads, and siblings of counts read (see compile_extractor).
    # The total in the naming of the extractor's own counts is read and checked; any other is usually
    # absent (`in` costs less than a read): when present, the full reader checks it.
    read_names = {(root + path[:-1], path[-1]) for path in paths}
    checks = {(root, name) for name in _CHECKED_TOTALS}
    checks |= {
        (where, other) for where, name in read_names for known, other in _CHECKED_BESIDE if name == known
    }
    own = {
        name for name, suffix in _TOTAL_STYLES if any(len(p) == 1 and p[0].endswith(suffix) for p in paths)
    }
    for where, name in sorted(checks - read_names):
        if where == root and name in own:
            src.add(f"x = {container(where)}.get({src.constant(name)})")
            check_count("x", False)
        else:
            src.add(f"if {src.constant(name)} in {container(where)}:")
            src.add(bail, 2)
    if guard is not None:
        condition = guard(raw)
        if condition is not None:
            src.add(f"if {condition}:")
            src.add(bail, 2)
    # Each usage key's count: the one value read for it, or the sum of those present (as compile_extractor).
    dests: dict[str, str] = {}
    known: set[str] = set()  # the counts known to be present (a required one, or a sum with one)
    for dest in dict.fromkeys(m["dest"] for m in spec["mappings"]):
        mine = [tuple(m["path"]) for m in spec["mappings"] if m["dest"] == dest]
        if len(mine) == 1:
            dests[dest] = raw[mine[0]]
        else:
            dests[dest] = var = f"d{len(dests)}"
            src.add(f"{var} = {raw[mine[0]]}")
            present = mine[0] in required  # var is not None from here on
            for path in mine[1:]:
                add = (
                    f"{var} += {raw[path]}"
                    if present
                    else f"{var} = {raw[path]} if {var} is None else {var} + {raw[path]}"
                )
                if path in required:
                    src.add(add)
                    present = True
                else:
                    src.add(f"if {raw[path]} is not None:")
                    src.add(add, 2)
        if any(path in required for path in mine):
            known.add(dests[dest])
    _derive_cache_writes(src, spec["mappings"], dests)
    if not required:
        src.add(f"if {' and '.join(f'{var} is None' for var in dests.values())}:")
        src.add(bail, 2)
    fields: dict[str, list[str]] = {}
    for dest, var in dests.items():
        carrier = usage_attrs.get(dest)
        if carrier is not None:
            fields.setdefault(carrier, []).append(var)
            continue
        carried = [a for a in ancestors.get(dest, ()) if a in usage_attrs]
        if not carried:
            src.add(f"if {var}:")
            src.add(bail, 2)
            continue
        for ancestor in carried:
            if ancestor in dests:
                whole = dests[ancestor]
                src.add(f"if {var} and ({whole} is None or {var} > {whole}):")
                src.add(bail, 2)
    fields.setdefault("web_searches", [])
    plain_values: dict[str, str] = {}  # a field whose count is one variable: that variable, used as is
    for attr, variables in fields.items():
        parts = [v if v in known else f"({v} or 0)" for v in variables]
        parts += [web] if attr == "web_searches" and web != "0" else []
        parts = parts or ["0"]
        if len(parts) == 1 and parts[0].isidentifier():
            plain_values[attr] = parts[0]
        else:
            src.add(f"{attr} = {' + '.join(parts)}")
    before, rules, fill, names = usage_fill_source(list(fields))
    src.constants.update(names)
    if plain_values:  # the field's name, never an attribute's (`u.name`), becomes its variable
        pattern = re.compile(rf"(?<![.\w])({'|'.join(map(re.escape, plain_values))})\b")
        rules = pattern.sub(lambda m: plain_values[m.group(1)], rules)
        fill = [pattern.sub(lambda m: plain_values[m.group(1)], line) for line in fill]
    for line in before:
        src.add(line)
    if rules != "True":
        src.add(f"if not ({rules}):")
        src.add(bail, 2)
    for line in fill:
        src.add(line)
    return {path: var for path, var in raw.items()}


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
        # provider name as given → its reader of the usage alone (`named_reader`), and the shapes it has met
        self._named: dict[str, Callable[[dict[str, Any]], Usage | None]] = {}
        self._named_shapes: dict[str, tuple[str, ...]] = {}

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

    # -- the usage alone, of a JSON object named by its provider (`usage_from_response`) -----------------

    def named_reader(self, provider: str) -> Callable[[dict[str, Any]], Usage | None]:
        """A function of a JSON object `body` that gives `read_named_json(body, provider)`'s usage (None when
        that is None), or raises when that raises. One generated function per provider name: it checks the
        batch-result keys and finds the body's shape inline (as `body_shape`), and reads a body of the
        shapes met so far (Anthropic messages, Responses objects, chat completions) inline with the fast
        lines of the first reader of the name's plan (`_fast_read`), the Grok check of a chat body and the
        web-search check of a Responses body included; anything else goes to `read_named`. It is made
        again when a new shape is met."""
        read = self._named.get(provider)
        if read is None:
            if len(self._named) >= _MAX_PLANS:  # provider names come from callers: keep the table small
                return lambda body: self._named_slow(body, provider)
            read = self._make_named(provider, ())
        return read

    def _named_slow(self, body: dict[str, Any], provider: str) -> Usage | None:
        if "custom_id" in body or "response" in body or "recordId" in body:
            return None
        shape = body_shape(body)
        if shape is None:
            return None
        read = self.read_named(body, provider, shape)
        return None if read is None else read[0]

    def _learn(self, body: dict[str, Any], provider: str, shape: str) -> Usage | None:
        """A body of a shape the provider name's reader has not met yet: the reader made again, with it."""
        shapes = (*self._named_shapes.get(provider, ()), shape)
        return self._make_named(provider, shapes)(body)

    def _make_named(self, provider: str, shapes: tuple[str, ...]) -> Callable[[dict[str, Any]], Usage | None]:
        constants: dict[str, object] = {}
        blocks = {shape: self._named_block(provider, shape, shape in shapes, constants) for shape in _INLINE}
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
            "_EMPTY": _EMPTY,
            **constants,
        }
        exec(compile("\n".join(lines), "<tokentrail named reader>", "exec"), namespace)
        read: Callable[[dict[str, Any]], Usage | None] = namespace["named"]
        self._named[provider] = read
        self._named_shapes[provider] = shapes
        return read

    def _named_block(self, provider: str, shape: str, met: bool, constants: dict[str, object]) -> list[str]:
        """The lines (depth 2) reading a body of `shape` named `provider`, as `read_named` does."""
        other = f"return _other(body, {shape!r})"
        if not met:
            return [f"        return _learn(body, {shape!r})"]
        plan = self._plans.get((provider, shape), _UNSET)
        if plan is _UNSET:
            plan = self._plan(provider, shape)
        if plan is None:
            return ["        return None"]
        if not plan.readers:
            return [f"        {other}"]
        from tokentrail.pricing.index import USAGE_ATTRS

        compiled = plan.readers[0][0]
        spec = self._specs[compiled.provider][compiled.flavor]
        src = _Source(constants)
        if shape == "responses" and not compiled.reads_web_searches:  # _may_search, inline
            src.add('output = body.get("output")')
            src.add("if type(output) is not list:")
            src.add(other, 2)
            src.add("for item in output:")
            src.add('if type(item) is not dict or item.get("type") == "web_search_call":', 2)
            src.add(other, 3)
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
        guard = (lambda found: found[reasoning]) if shared else None
        if _fast_read(src, spec, USAGE_ATTRS, self._ancestors, other, "0", guard) is None:
            return [f"        {other}"]
        src.add("return u")
        return ["    " + line for line in src.lines]


class _Plan(NamedTuple):
    """The readers a provider name's bodies of one shape are tried with (see `MappedReaders.read_named`)."""

    name: str  # the provider name the capture carries (canonical)
    grok_first: bool  # a chat body whose reasoning is outside completion_tokens goes to x-ai's reader first
    readers: tuple[tuple[Compiled, str], ...]  # (reader, the provider name its capture carries)


_MAX_PLANS = 512
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


def named_usage(body: dict[str, Any], provider: str) -> Usage | None:
    """`read_named_json(body, provider)`'s usage (None when that is None; raising when it raises), by the
    provider name's generated reader (`MappedReaders.named_reader`): the hot path of `usage_from_response`."""
    readers = _readers
    if readers is None or readers.generation != _in_force.readers_generation:
        readers = _follow_catalog_in_force()
    read = readers._named.get(provider)
    if read is None:
        read = readers.named_reader(provider)
    return read(body)


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
