"""The upstreams the gateway forwards to, and what a forwarded request carries.

`--upstream NAME=URL`: "openai", "anthropic" and "google" (or "gemini") speak their own APIs; any other
name is an OpenAI-compatible host (`--upstream groq=https://api.groq.com/openai`). The URL is the base
the API paths go under: `https://api.openai.com` (a trailing `/v1` is accepted too: it is not doubled).
The provider key of an upstream comes from `TOKENTRAIL_UPSTREAM_<NAME>_KEY` and is sent only when a
client presents a virtual key; it is never logged, recorded or shown (`repr` hides it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from tokentrail.adapters._detect import canonical_provider
from tokentrail.gateway.keys import KEY_PREFIX

__all__ = ["Upstream", "forward_headers", "forward_query", "parse_upstream", "presented_key", "target_url"]

_APIS = {"openai": "openai", "azure": "openai", "anthropic": "anthropic", "google": "gemini"}

# never forwarded: hop-by-hop headers (RFC 9110 §7.6.1), what the HTTP client sets itself, and our own
_DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"accept-encoding",
    }
)
_OUR_PREFIX = b"x-tokentrail-"
# where each SDK puts its key: OpenAI `Authorization: Bearer`, Azure `api-key`, Anthropic `x-api-key`,
# Gemini `x-goog-api-key` (or `?key=`)
_KEY_HEADERS = (b"authorization", b"x-api-key", b"x-goog-api-key", b"api-key")


@dataclass(frozen=True, slots=True)
class Upstream:
    """One configured upstream: its name, base URL, API family and pricing provider."""

    name: str
    url: str
    api: str  # "openai" | "anthropic" | "gemini"
    provider: str  # the provider its calls are priced and reported with
    key: str | None = field(default=None, repr=False)


def parse_upstream(spec: str, environ: Mapping[str, str] | None = None) -> Upstream:
    """`NAME=URL` → an `Upstream` (its key from TOKENTRAIL_UPSTREAM_<NAME>_KEY); ValueError when malformed."""
    name, sep, url = spec.partition("=")
    name = name.strip().lower()
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if not sep or not name or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--upstream takes NAME=URL with an http(s) URL, got {spec!r}")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"upstream name {name!r}: use letters, digits, '-' and '_'")
    provider = canonical_provider(name)
    env = os.environ if environ is None else environ
    key = env.get(f"TOKENTRAIL_UPSTREAM_{name.upper().replace('-', '_')}_KEY") or None
    return Upstream(name, url, _APIS.get(provider, "openai"), provider, key)


def target_url(upstream: Upstream, path: str, query: bytes) -> str:
    """The upstream URL of a request path (a base URL ending in the path's first segment is not doubled)."""
    base = upstream.url
    first = path[: path.find("/", 1)] if path.count("/") > 1 else path
    if first and base.endswith(first):
        path = path[len(first) :]
    return f"{base}{path}?{query.decode('latin-1')}" if query else base + path


def presented_key(headers: list[tuple[bytes, bytes]], query: bytes) -> str | None:
    """The virtual key a client sent (in whichever header its SDK uses, or `?key=`), if any."""
    for name, value in headers:
        if name in _KEY_HEADERS:
            text = value.decode("latin-1").strip()
            if text.lower().startswith("bearer "):
                text = text[7:].strip()
            if text.startswith(KEY_PREFIX):
                return text
    if query and b"key=" in query:
        for name_text, value_text in parse_qsl(query.decode("latin-1")):
            if name_text == "key" and value_text.startswith(KEY_PREFIX):
                return value_text
    return None


def forward_headers(
    headers: list[tuple[bytes, bytes]], virtual_key: str | None, real_key: str | None
) -> list[tuple[str, str]]:
    """The client's headers to send upstream (as text, latin-1 as on the wire): hop-by-hop and
    X-Tokentrail-* dropped, the virtual key replaced by the real one where the client put it, and the body
    asked for uncompressed (the gateway reads it as it passes)."""
    forwarded: list[tuple[str, str]] = []
    for name, value in headers:
        if name in _DROPPED or name.startswith(_OUR_PREFIX):
            continue
        text = value.decode("latin-1")
        if virtual_key is not None and name in _KEY_HEADERS and virtual_key in text:
            if real_key is None:
                continue
            text = text.replace(virtual_key, real_key)
        forwarded.append((name.decode("latin-1"), text))
    forwarded.append(("accept-encoding", "identity"))
    return forwarded


def forward_query(query: bytes, virtual_key: str | None, real_key: str | None) -> bytes:
    """The query string to send upstream, with a virtual `key=` replaced (or dropped without a real key)."""
    if virtual_key is None or b"key=" not in query:
        return query
    pairs = []
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name == "key" and value == virtual_key:
            if real_key is None:
                continue
            value = real_key
        pairs.append((name, value))
    return urlencode(pairs).encode("latin-1")
