"""What `instrument()` covers of each installed SDK: tracked, not tracked with a reviewed reason, or a gap.

Each patch table (`_instrument_<sdk>.py`) declares `surface()` (the installed SDK's public methods that
return a usage-bearing type, found by walking the SDK — see `_surface`), `tracked()` and `NOT_TRACKED`
(name → why it is not tracked). A method in the surface that is neither tracked nor reviewed is a gap:
the coverage test fails on it, and `tokentrail doctor` shows it.

For the Stainless SDKs (openai, anthropic) the walk follows the client's resource properties
(`client.chat.completions`, `client.beta.messages`…), and a method is tracked when the API path it
requests (read from its source: `self._post("/chat/completions", …)`) is one of the table's endpoints.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["MethodCoverage", "SDKCoverage", "coverage", "stainless_surface", "stainless_tracked"]

# the versions the test suite drives (pinned in constraints.txt; a test keeps the two equal)
TESTED_VERSIONS = {
    "openai": "3.57.0",
    "anthropic": "2.13.0",
    "google-genai": "3.6.1",
    "mistralai": "3.7.0",
    "cohere": "7.3.1",
    "ollama": "0.6.3",
    "boto3": "1.44.8",
    "litellm": "1.110.2",
}


@dataclass(frozen=True)
class MethodCoverage:
    name: str
    status: str  # "tracked" | "not tracked" | "GAP"
    reason: str = ""


@dataclass(frozen=True)
class SDKCoverage:
    sdk: str
    installed: str | None  # the installed version, None when not installed
    methods: tuple[MethodCoverage, ...]

    @property
    def gaps(self) -> list[str]:
        return [m.name for m in self.methods if m.status == "GAP"]


def coverage(sdk: str) -> SDKCoverage:
    """The coverage of one SDK (a name in `instrument.SUPPORTED`)."""
    from tokentrail.adapters._instrument import _table

    table = _table(sdk)
    version = _version(sdk)
    if table is None or version is None or not hasattr(table, "surface"):
        return SDKCoverage(sdk, version, ())
    tracked = table.tracked()
    reviewed: dict[str, str] = table.NOT_TRACKED
    methods = []
    for name in sorted(set(table.surface()) | tracked):
        if name in tracked:
            methods.append(MethodCoverage(name, "tracked"))
            continue
        reason = _reviewed(reviewed, name)
        methods.append(MethodCoverage(name, "not tracked", reason) if reason else MethodCoverage(name, "GAP"))
    return SDKCoverage(sdk, version, tuple(methods))


def _reviewed(reviewed: dict[str, str], name: str) -> str | None:
    """The reason `name` is not tracked: listed as is, without its client prefix, or under a `prefix.*`."""
    found = reviewed.get(name)
    if found is not None:
        return found
    parts = name.split(".")
    for start in (0, 1):
        for end in range(len(parts), start, -1):
            key = ".".join(parts[start:end])
            found = reviewed.get(key if end == len(parts) else key + ".*")
            if found is not None:
                return found
    return None


def _version(sdk: str) -> str | None:
    try:
        return importlib.metadata.version(sdk)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- the Stainless SDKs ------------------------------------------------------------------------------------

_PATH_CALL = re.compile(
    r"\._(post|get|delete|patch|put|get_api_list)\(\s*(?:path_template\(\s*)?f?\"(/[^\"]*)\"", re.S
)
# a request whose path is no literal (a URL the API returned, such as a batch's `results_url`): the route
# the SDK names its span with
_SPAN_ROUTE = re.compile(
    r"\._(post|get|delete|patch|put)\((?:(?!\._(?:post|get|delete|patch|put)\().)*?span_route=\"(/[^\"]*)\"",
    re.S,
)
_SIBLING_CALL = re.compile(r"self\.(\w+)\(")
_FUNCTION_CALL = re.compile(r"(?<![.\w])([a-z_]\w*)\(")


def _resources(client: type, base: tuple[type, ...]) -> Iterator[tuple[str, type]]:
    """(dotted path, resource class) for every resource reachable from `client`'s properties."""
    seen: set[type] = set()

    def walk(owner: type, prefix: str) -> Iterator[tuple[str, type]]:
        for attr, member in vars(owner).items():
            if attr.startswith("_") or attr.startswith("with_"):
                continue
            function = getattr(member, "func", None) or getattr(member, "fget", None)
            if function is None:
                continue
            try:
                kind = typing.get_type_hints(function).get("return")
            except Exception:  # imported lazily, inside the property: `from .resources.chat import Chat`
                kind = _imported_in_body(function)
            if not (isinstance(kind, type) and issubclass(kind, base)) or kind in seen:
                continue
            seen.add(kind)
            path = f"{prefix}{attr}"
            yield path, kind
            yield from walk(kind, path + ".")

    for klass in client.__mro__:
        yield from walk(klass, "")


_IMPORT = re.compile(r"from\s+([.\w]+)\s+import\s+(?:\(([^)]*)\)|([\w ,]+))")


def _imported_in_body(function: Any) -> Any:
    """The return annotation of a property that imports its class in its body, or None."""
    annotation = function.__annotations__.get("return")
    if not isinstance(annotation, str):
        return None
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return None
    for module_name, grouped, plain in _IMPORT.findall(source):
        if annotation in {name.strip() for name in (grouped or plain).split(",")}:
            try:
                module = importlib.import_module(module_name, package=function.__module__.rpartition(".")[0])
            except ImportError:
                return None
            return getattr(module, annotation, None)
    return None


@functools.cache
def _walk(package: str, client_name: str) -> tuple[tuple[str, str, str, tuple[tuple[str, str], ...]], ...]:
    """(client, resource path, method, ((HTTP method, API path), …)) for each usage-bearing method."""
    from tokentrail.adapters._surface import carries_usage

    module = importlib.import_module(package)
    resource_module = importlib.import_module(f"{package}._resource")
    base = (resource_module.SyncAPIResource, resource_module.AsyncAPIResource)
    client = getattr(module, client_name)
    found = []
    for path, resource in _resources(client, base):
        functions = {n: f for n, f in vars(resource).items() if inspect.isfunction(f)}
        for name, function in functions.items():
            if name.startswith("_"):
                continue
            try:
                returns = typing.get_type_hints(function).get("return")
            except Exception:
                returns = None
            if not carries_usage(returns):
                continue
            found.append((client_name, path, name, _api_paths(function, functions)))
    return tuple(found)


def _api_paths(function: Any, siblings: dict[str, Any], depth: int = 2) -> tuple[tuple[str, str], ...]:
    """The (HTTP method, path) requests a resource method makes, following calls to its siblings."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return ()
    paths = [
        (verb if verb != "get_api_list" else "get", path.partition("?")[0])
        for verb, path in _PATH_CALL.findall(source)
    ]
    if not paths:
        paths = _SPAN_ROUTE.findall(source)
    if not paths and depth > 0:  # made through a sibling method or a helper function of the SDK
        package = function.__module__.partition(".")[0]
        called = [siblings.get(name) for name in _SIBLING_CALL.findall(source)]
        for name in _FUNCTION_CALL.findall(source):
            helper = function.__globals__.get(name)
            if inspect.isfunction(helper) and helper.__module__.partition(".")[0] == package:
                called.append(helper)
        for other in called:
            if other is not None and other is not function:
                paths.extend(_api_paths(other, siblings, depth - 1))
    return tuple(dict.fromkeys(paths))


def stainless_surface(package: str, clients: tuple[str, ...]) -> list[str]:
    """`Client.resource.path.method` for each public method returning a usage-bearing type."""
    return sorted(f"{c}.{path}.{name}" for client in clients for c, path, name, _ in _walk(package, client))


def stainless_tracked(package: str, clients: tuple[str, ...], target: Any) -> set[str]:
    """The surface methods whose API paths are all endpoints of `target` (a `StainlessTarget`)."""
    names = set()
    for client in clients:
        for c, path, name, requests in _walk(package, client):
            if requests and all(target.endpoint(verb, _template(p)) is not None for verb, p in requests):
                names.add(f"{c}.{path}.{name}")
    return names


def _template(path: str) -> str:
    """`/responses/{response_id}` as a concrete path (`/responses/{id}` matches the table's `/responses/`)."""
    return path
