"""genai-prices' usage extractors turned into plain snapshot data, kept beside the prices.

genai-prices describes, per provider and API flavor, where a response keeps its usage: a root path and a
list of mappings (path → usage key, required or not); several mappings to one key are summed. Paths are
keys, or array-match steps that pick the first list item whose field matches a clause (Gemini's per-modality
lists). `extractors_data` accepts the published JSON form (`data.json`, where defaults may be left out) and
genai-prices' own objects, and returns one normalized form:

    {"api_flavor": "chat", "root": ["usage"], "model_path": ["model"],
     "mappings": [{"path": ["prompt_tokens"], "dest": "input_tokens", "required": true}, ...]}

with an array-match step as {"type": "array-match", "field": "modality", "match": {"equals": "TEXT"}}.
`tokentrail.adapters._mapped` compiles this data into readers. Plain Python, no genai-prices import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tokentrail.errors import CatalogError

__all__ = ["extractors_data"]

_CLAUSE_KINDS = frozenset({"starts_with", "ends_with", "contains", "regex", "equals", "or", "and"})


def extractors_data(raw: object, where: str = "extractors") -> list[dict[str, Any]]:
    """The normalized extractors of one provider (an empty list when it has none).

    Raises `CatalogError` naming the first field that does not follow genai-prices' schema.
    """
    if raw is None:
        return []
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
        raise CatalogError(f"{where} must be a list, got {type(raw).__name__}")
    extractors = [_extractor(item, f"{where}[{i}]") for i, item in enumerate(raw)]
    flavors = [e["api_flavor"] for e in extractors]
    duplicate = next((f for f in flavors if flavors.count(f) > 1), None)
    if duplicate is not None:
        raise CatalogError(f"{where}: api_flavor {duplicate!r} appears twice")
    return extractors


def _field(raw: object, name: str, default: Any = ...) -> Any:
    value = raw.get(name, default) if isinstance(raw, Mapping) else getattr(raw, name, default)
    if value is ...:
        raise CatalogError(f"missing {name}")
    return value


def _extractor(raw: object, where: str) -> dict[str, Any]:
    try:
        flavor = _field(raw, "api_flavor", "default")
        root = _field(raw, "root")
        model_path = _field(raw, "model_path", "model")
        mappings = _field(raw, "mappings")
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    if not isinstance(flavor, str) or not flavor:
        raise CatalogError(f"{where}.api_flavor must be a non-empty string")
    if isinstance(mappings, (str, bytes, Mapping)) or not isinstance(mappings, Sequence) or not mappings:
        raise CatalogError(f"{where}.mappings must be a non-empty list")
    return {
        "api_flavor": flavor,
        "root": _path(root, f"{where}.root"),
        "model_path": _path(model_path, f"{where}.model_path"),
        "mappings": [_mapping(m, f"{where}.mappings[{i}]") for i, m in enumerate(mappings)],
    }


def _mapping(raw: object, where: str) -> dict[str, Any]:
    try:
        path, dest, required = _field(raw, "path"), _field(raw, "dest"), _field(raw, "required", True)
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    if not isinstance(dest, str) or not dest:
        raise CatalogError(f"{where}.dest must be a non-empty string")
    if not isinstance(required, bool):
        raise CatalogError(f"{where}.required must be true or false")
    steps = _path(path, f"{where}.path")
    if not isinstance(steps[-1], str):
        raise CatalogError(f"{where}.path must end with a key, not an array match")
    return {"path": steps, "dest": dest, "required": required}


def _path(raw: object, where: str) -> list[Any]:
    if isinstance(raw, str):
        steps: list[object] = [raw]
    elif isinstance(raw, Sequence) and not isinstance(raw, bytes) and raw:
        steps = list(raw)
    else:
        raise CatalogError(f"{where} must be a key or a non-empty list of steps")
    return [_step(step, f"{where}[{i}]") for i, step in enumerate(steps)]


def _step(raw: object, where: str) -> Any:
    if isinstance(raw, str):
        if not raw:
            raise CatalogError(f"{where} is an empty key")
        return raw
    try:
        kind = _field(raw, "type", "array-match")
        field = _field(raw, "field")
        match = _field(raw, "match")
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    if kind != "array-match":
        raise CatalogError(f"{where}.type must be 'array-match', got {kind!r}")
    if not isinstance(field, str) or not field:
        raise CatalogError(f"{where}.field must be a non-empty string")
    return {"type": "array-match", "field": field, "match": _clause(match, f"{where}.match")}


def _clause(raw: object, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raw = _clause_object(raw, where)
    if len(raw) != 1:
        raise CatalogError(f"{where} must have exactly one of {sorted(_CLAUSE_KINDS)}")
    ((kind, value),) = raw.items()
    if kind not in _CLAUSE_KINDS:
        raise CatalogError(f"{where}: unknown clause {kind!r}")
    if kind in ("or", "and"):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or not value:
            raise CatalogError(f"{where}.{kind} must be a non-empty list of clauses")
        return {kind: [_clause(c, f"{where}.{kind}[{i}]") for i, c in enumerate(value)]}
    if not isinstance(value, str):
        raise CatalogError(f"{where}.{kind} must be a string")
    return {kind: value}


def _clause_object(raw: object, where: str) -> dict[str, Any]:
    """A genai-prices clause object (ClauseEquals, ClauseOr, …) as its published mapping."""
    fields = {k.rstrip("_"): v for k, v in getattr(raw, "__dict__", {}).items() if not k.startswith("_")}
    if len(fields) != 1:
        raise CatalogError(f"{where} is not a match clause: {type(raw).__name__}")
    return fields
