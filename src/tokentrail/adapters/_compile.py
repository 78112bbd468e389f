"""One catalog usage extractor compiled into a Python function: reading usage is data, like prices.

genai-prices publishes, per provider and API flavor, where a response keeps its usage (see
`tokentrail.pricing.extractors`); the snapshot carries them beside the prices. Each extractor is turned, at
first use, into one generated straight-line function (cached) that reads a JSON body exactly as
genai-prices' `UsageExtractor.extract` does: a missing root or required count means "not this extractor",
several mappings to one key are summed, and an extractor that finds no count at all does not read the body.
Where tokentrail is stricter: a count that is present but not a whole non-negative number (or a container
that is not an object/list) makes the body malformed (`unknown` with the reason) instead of being skipped,
and a body's `total_tokens` / `totalTokenCount` / `totalTokens`, read by no extractor, must still be a count.

Each generated function starts with fast lines (`fast_read`): the same reads for the usual body (exact
dicts, exact int counts below 2**30, the subset rules kept, a path read once) that fill the `Usage` inline;
anything else goes on to the full lines, which say what is wrong. Which extractor reads which body is
`_mapped`'s business.

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
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from tokentrail._types import TOKEN_FIELDS, Usage, usage_builder, usage_fill_source
from tokentrail.adapters._base import MAX_COUNT, Malformed, describe
from tokentrail.adapters._fast import (
    ADD,
    ALL_ABSENT_BAIL,
    COUNT,
    DERIVE,
    FIELD,
    HAS_BAIL,
    MOVE,
    NONZERO_BAIL,
    OBJ,
    PART_BAIL,
    Ops,
)
from tokentrail.errors import InvalidUsageError

__all__ = ["EMPTY", "Compiled", "Miss", "Source", "compile_extractor", "fast_read"]

# Totals no extractor reads, which must still be counts when present (a malformed total, a malformed body).
_CHECKED_TOTALS = ("total_tokens", "totalTokenCount", "totalTokens")
# Counts beside the ones an extractor reads in the same object: (a name it reads, a name to check).
_CHECKED_BESIDE = (
    ("cached_tokens", "image_tokens"),
    ("reasoning_tokens", "image_tokens"),
    ("web_search_requests", "web_fetch_requests"),
)
EMPTY: Mapping[str, Any] = {}  # an absent object, to the fast readers (never written)
# The totals of `_CHECKED_TOTALS` by the naming of the counts beside them (a fast reader reads the one in the
# style of the extractor's own counts: OpenAI's and Anthropic's total_tokens, Gemini's totalTokenCount).
_TOTAL_STYLES = (("total_tokens", "_tokens"), ("totalTokenCount", "TokenCount"), ("totalTokens", "Tokens"))
_DURATION_UNIT = 1000  # genai-prices durations are seconds; tokentrail keeps milliseconds


class Miss(Malformed):
    """This extractor cannot read this body: its root or a required count is absent, or it has no count."""


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


class Source:
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

    src = Source()
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
    fast = Source(src.constants)
    if fast_read(fast, spec, usage_attrs, ancestors, "return full(body, web)", "web") is None:
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
        "EMPTY": EMPTY,
        **src.constants,
    }
    exec(compile(source, f"<tokentrail extractor {provider}/{spec['api_flavor']}>", "exec"), namespace)
    return Compiled(provider, spec["api_flavor"], namespace["read"], reads_web, namespace["full"])


def _derive_cache_writes(
    src: Source, mappings: Sequence[Mapping[str, Any]], dests: Mapping[str, str], ops: Ops | None = None
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
    into_input = counted_in_input and "input_tokens" in dests
    if into_input:
        src.add(f"if {dests['input_tokens']} is not None:", 2)
        src.add(f"{dests['input_tokens']} += {total}", 3)
    if ops is not None:
        added = ops.count(dests["input_tokens"]) if into_input else -1
        ops.add(DERIVE, ops.count(total), added, regs=tuple(ops.count(p) for p in parts))


def _model_reader(src: Source, path: list[Any]) -> str:
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


def fast_read(
    src: Source,
    spec: Mapping[str, Any],
    usage_attrs: Mapping[str, str],
    ancestors: Mapping[str, list[str]],
    bail: str,
    web: str,
    guard: Callable[[Mapping[tuple[str, ...], str]], str | None] | None = None,
    ops: Ops | None = None,
) -> dict[tuple[str, ...], str] | None:
    """Add to `src` the lines (depth 1) reading what the extractor `spec` reads when a body is the usual one:
    every object on the way an exact dict (or absent below the root), every count an exact int in
    0..2**30-1, the subset rules kept. The `Usage` ends in `u`; on anything else the statement `bail` runs
    (the full reader then reads the body, and says what is wrong). Returns the raw value variables by path
    (below the root), or None when the extractor takes steps the fast path does not (array matches,
    durations): only the full reader reads it. `guard`, given those variables, may name one more condition
    to bail on (checked after the reads, before the counts are summed).

    The reads are the full reader's, once each (a path read by two mappings is read once), so that whenever
    these lines build a `Usage`, the full reader builds the same one. With `ops` (and `web` "0") the same
    reads are recorded, beside the lines, as the compiled reader's operations (`_fast.Ops`)."""
    root = tuple(spec["root"])
    paths = [tuple(m["path"]) for m in spec["mappings"]]
    if not root or not all(isinstance(step, str) for path in (root, *paths) for step in path):
        return None
    if any(usage_attrs.get(m["dest"], "").endswith("_ms") for m in spec["mappings"]):
        return None
    containers: dict[tuple[str, ...], str] = {(): "body"}
    if ops is not None and web != "0":
        ops.usable = False  # the operations count no web search calls of the caller's

    def read_count(var: str, parent: str, key: str, required: bool) -> None:
        src.add(f"{var} = {parent}.get({src.constant(key)})")
        bad = f"type({var}) is not int or {var} < 0 or {var} > {_FAST_LIMIT}"
        src.add(f"if {bad if required else f'{var} is not None and ({bad})'}:")
        src.add(bail, 2)
        if ops is not None:
            ops.add(COUNT, ops.count(var), ops.obj(parent), required=required, key=key)

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
            src.add(f"{name} = EMPTY", 2)
        if ops is not None:
            ops.add(OBJ, ops.obj(name), ops.obj(parent), required=len(path) <= len(root), key=path[-1])
        return name

    container(root)
    raw: dict[tuple[str, ...], str] = {}  # path below the root -> the variable holding what is there
    required = {tuple(m["path"]) for m in spec["mappings"] if m["required"]}
    for path in paths:
        if path not in raw:
            parent = container(root + path[:-1])
            raw[path] = var = f"r{len(raw)}"
            read_count(var, parent, path[-1], path in required)
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
            read_count("x", container(where), name, False)
        else:
            src.add(f"if {src.constant(name)} in {container(where)}:")
            src.add(bail, 2)
            if ops is not None:
                ops.add(HAS_BAIL, b=ops.obj(container(where)), key=name)
    if guard is not None:
        condition = guard(raw)
        if condition is not None:  # a count read: bail when it is present and not 0
            src.add(f"if {condition}:")
            src.add(bail, 2)
            if ops is not None and condition in raw.values():
                ops.add(NONZERO_BAIL, ops.count(condition))
            elif ops is not None:  # another condition: no operation says it, the Python lines read this shape
                ops.usable = False
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
            if ops is not None:
                ops.add(MOVE, ops.count(var), ops.count(raw[mine[0]]))
                for path in mine[1:]:
                    ops.add(ADD, ops.count(var), ops.count(raw[path]))
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
    _derive_cache_writes(src, spec["mappings"], dests, ops)
    if not required:
        src.add(f"if {' and '.join(f'{var} is None' for var in dests.values())}:")
        src.add(bail, 2)
        if ops is not None:
            ops.add(ALL_ABSENT_BAIL, regs=tuple(ops.count(var) for var in dests.values()))
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
            if ops is not None:
                ops.add(NONZERO_BAIL, ops.count(var))
            continue
        for ancestor in carried:
            if ancestor in dests:
                whole = dests[ancestor]
                src.add(f"if {var} and ({whole} is None or {var} > {whole}):")
                src.add(bail, 2)
                if ops is not None:
                    ops.add(PART_BAIL, ops.count(var), ops.count(whole))
    fields.setdefault("web_searches", [])
    if ops is not None:  # the subset rules the lines below check: the Reader checks them all on the Usage
        for attr, variables in fields.items():
            ops.add(FIELD, TOKEN_FIELDS.index(attr), regs=tuple(ops.count(v) for v in variables))
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
