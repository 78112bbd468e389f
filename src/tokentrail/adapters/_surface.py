"""Walk an installed SDK's client classes for the public methods whose responses carry usage.

The coverage declaration of each patch table (`surface()`) is built on this: a method belongs to an SDK's
billable surface when its return annotation — unwrapped through Optional/Union/list/iterators/streams —
reaches, within a few levels of fields, a field whose name is a usage report (`usage`, `usage_metadata`,
`billed_units`, `prompt_eval_count`, ...). Reading the annotations (not calling anything) keeps it free
of network and of side effects.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import typing
from collections.abc import Callable, Iterable, Iterator

__all__ = ["USAGE_FIELDS", "carries_usage", "sdk_classes", "usage_methods"]

logger = logging.getLogger("tokentrail.adapters")

# field names that report what a call consumed, in the SDKs' Python spelling
USAGE_FIELDS = frozenset(
    {
        "usage",
        "usage_metadata",
        "usage_info",
        "billed_units",
        "billable_character_count",
        "prompt_eval_count",
        "eval_count",
        "prompt_tokens",
        "input_tokens",
        "total_tokens",
    }
)
_DEPTH = 3


def _fields(kind: type) -> dict[str, object]:
    """A model class's field annotations (pydantic v2 or v1, dataclass-like), resolved where possible."""
    found = getattr(kind, "model_fields", None) or getattr(kind, "__fields__", None)
    if isinstance(found, dict) and found:
        return {name: getattr(f, "annotation", getattr(f, "outer_type_", None)) for name, f in found.items()}
    try:
        return dict(typing.get_type_hints(kind))
    except Exception:
        return dict(getattr(kind, "__annotations__", {}) or {})


def _members(annotation: object) -> Iterator[type]:
    """The classes an annotation names: Optional/Union/Annotated members, generic arguments, origins."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        yield annotation
        return
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        yield origin
    for arg in typing.get_args(annotation):
        if arg is not annotation:
            yield from _members(arg)


def carries_usage(annotation: object, depth: int = _DEPTH, seen: set[type] | None = None) -> bool:
    """Whether a value of this annotation has a usage-report field within `depth` levels of fields."""
    seen = set() if seen is None else seen
    for kind in _members(annotation):
        if kind in seen or kind.__module__ in ("builtins", "typing", "collections.abc", "datetime"):
            continue
        seen.add(kind)
        fields = _fields(kind)
        if USAGE_FIELDS.intersection(fields):
            return True
        if depth > 1 and any(carries_usage(a, depth - 1, seen) for a in fields.values()):
            return True
    return False


def _return_annotation(function: Callable[..., object]) -> object:
    try:
        return typing.get_type_hints(function).get("return")
    except Exception:
        try:
            return inspect.signature(function).return_annotation
        except (TypeError, ValueError):
            return None


def sdk_classes(package: str, accept: Callable[[type], bool], skip: Iterable[str] = ()) -> list[type]:
    """Public classes defined in `package` and its public submodules that `accept` takes."""
    skipped = tuple(skip)
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), package + "."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or info.name.startswith(skipped):
            continue
        names.append(info.name)
    found: dict[int, type] = {}
    root_name = package.split(".")[0]
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:
            logger.debug("cannot import %s for the coverage walk", name, exc_info=True)
            continue
        for attr, kind in vars(module).items():  # re-exports of private modules count (public names)
            if (
                isinstance(kind, type)
                and not attr.startswith("_")
                and kind.__module__.split(".")[0] == root_name
                and accept(kind)
            ):
                found[id(kind)] = kind
    return list(found.values())


def usage_methods(classes: Iterable[type]) -> list[str]:
    """`Class.method` for each public method (defined on that class) whose return type carries usage."""
    names: set[str] = set()
    for kind in classes:
        for attr, member in vars(kind).items():
            if attr.startswith("_") or not inspect.isfunction(member):
                continue
            if carries_usage(_return_annotation(member)):
                names.add(f"{kind.__name__}.{attr}")
    return sorted(names)


def tracked_names(targets: Iterable[object], through: dict[str, str] | None = None) -> set[str]:
    """`Class.method` of each target, plus the methods that reach a tracked one (`through`: name -> target)."""
    names = {f"{getattr(t, 'cls', '')}.{getattr(t, 'attr', '')}" for t in targets}
    return names | {name for name, via in (through or {}).items() if via in names}
