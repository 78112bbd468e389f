"""Model-name normalization: the other spellings a model name may have in the catalog.

Names arrive in many forms: `openai/gpt-4o` (LiteLLM), `models/gemini-1.5-pro` (Gemini),
`us.anthropic.claude-3-5-sonnet-20240620-v1:0` and ARNs (Bedrock), `publishers/google/models/…` and
`claude-sonnet-4@20250514` (Vertex), dated snapshots. `candidates()` lists (name, provider) pairs to try
in order, the name as given first, so an exact catalog match always wins over a normalized one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

__all__ = ["PROVIDER_ALIASES", "candidates", "rank_close", "slug"]

# Provider names tokentrail accepts that the catalog knows under another id, and that no catalog
# `provider_match` rule finds (the one table: pricing lookup and the usage readers both use it).
PROVIDER_ALIASES: dict[str, str] = {
    "bedrock": "aws",
    "claude": "anthropic",
    "grok": "x-ai",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "zhipu": "zhipuai",
}

_ARN = re.compile(r"^arn:aws[\w-]*:bedrock:[\w-]*:\d*:[\w-]+/(?P<id>.+)$")
_BEDROCK_REGION = re.compile(r"^(?:us|eu|apac|ap|au|ca|jp|us-gov|global)\.(?=[a-z0-9-]+\.)")
_BEDROCK_VENDOR = re.compile(r"^(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|writer|qwen|openai)\.")
_VERTEX_PATH = re.compile(
    r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/(?P<publisher>[^/]+)/models/(?P<id>.+)$"
)
_SUFFIXES = (
    re.compile(r":\d+$"),  # Bedrock revision  …-v1:0
    re.compile(r"-v\d+$"),  # Bedrock version   …-v1
    re.compile(r"@(?:\d{8}|latest|default|\d{3})$"),  # Vertex version  …@20240620
    re.compile(r"-latest$"),
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # dated snapshot …-2024-08-06
    re.compile(r"-\d{8}$"),  # dated snapshot …-20240806
    re.compile(r"-\d{3}$"),  # Gemini revision …-001
    re.compile(r"-preview$"),
)
_CLAUDE_DOTTED = re.compile(r"(?<=\d)\.(?=\d)")


def slug(name: str) -> str:
    """The key user prices and aliases are stored under: lowercase, anything not a-z0-9 becomes `_`.

    `gpt-4o`, `GPT_4O` and `gpt 4o` share one slug, which lets environment variables name models.
    """
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def candidates(
    model: str, provider: str | None, is_provider: Callable[[str], bool]
) -> Iterator[tuple[str, str | None]]:
    """(model, provider) spellings to look up, most literal first; duplicates removed."""
    seen: set[tuple[str, str | None]] = set()
    for pair in _spellings(model.strip(), provider, is_provider):
        if pair not in seen:
            seen.add(pair)
            yield pair


def _spellings(
    model: str, provider: str | None, is_provider: Callable[[str], bool]
) -> Iterator[tuple[str, str | None]]:
    yield model, provider
    base, hint = _strip_location(model, provider, is_provider)
    yield base, hint
    if hint != provider:
        yield base, provider
    stripped = base
    for pattern in _SUFFIXES:
        shorter = pattern.sub("", stripped)
        if shorter != stripped and shorter:
            stripped = shorter
            yield stripped, hint
    if base.lower().startswith("claude") and _CLAUDE_DOTTED.search(base):
        dashed = _CLAUDE_DOTTED.sub("-", base)
        yield from ((name, hint) for name, _ in _spellings(dashed, hint, is_provider))


def _strip_location(
    model: str, provider: str | None, is_provider: Callable[[str], bool]
) -> tuple[str, str | None]:
    """Remove ARN, Vertex path, `models/` and provider prefixes; return (bare name, provider hint)."""
    if match := _ARN.match(model):
        return _strip_location(match["id"], provider or "aws", is_provider)
    if match := _VERTEX_PATH.match(model):
        return match["id"], provider or "google"
    if model.startswith("models/"):
        return model.removeprefix("models/"), provider
    if "/" in model:
        prefix, rest = model.split("/", 1)
        if is_provider(prefix):
            return _strip_location(rest, provider or prefix, is_provider)
    lowered = model.lower()
    if _BEDROCK_REGION.match(lowered) or _BEDROCK_VENDOR.match(lowered):
        return model, provider or "aws"
    return model, provider


_SEPARATORS = frozenset("-.:@_/ ")


def rank_close(wanted: str, names: list[str], limit: int = 5) -> list[str]:
    """Up to `limit` of `names` close to `wanted`, best first.

    A name that `wanted` extends at a separator comes first, the longest first (`gpt-4o-typo` →
    `gpt-4o`); then names by the length of the prefix they share with `wanted`, then by similarity
    (difflib's ratio, at least 0.6 for a name that shares no more than half its prefix).
    """
    import difflib

    matcher = difflib.SequenceMatcher(b=wanted, autojunk=False)
    scored: dict[str, tuple[int, int, float]] = {}
    for name in dict.fromkeys(names):
        lowered = name.lower()
        if lowered == wanted:
            continue
        extended = wanted.startswith(lowered) and wanted[len(lowered)] in _SEPARATORS
        shared = _shared_prefix(lowered, wanted)
        matcher.set_seq1(lowered)
        ratio = matcher.ratio()
        if extended or ratio >= 0.6 or shared * 2 > max(len(lowered), len(wanted)):
            scored[name] = (len(lowered) if extended else 0, shared, ratio)
    return sorted(scored, key=lambda n: (-scored[n][0], -scored[n][1], -scored[n][2], n))[:limit]


def _shared_prefix(a: str, b: str) -> int:
    """How many leading characters `a` and `b` have in common."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))
