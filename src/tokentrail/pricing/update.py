"""`tokentrail prices update`: fetch genai-prices' published data, check it, install it atomically.

The data is fetched from a URL (default: the file genai-prices' own updater reads) or read from a local
file (plain or gzip JSON), conditionally when the installed catalog came from the same URL (its ETag in
`If-None-Match`; a 304 changes nothing). It is converted with the bundled unit registry, checked
(`validate.check_catalog`) against the bundled catalog and the catalog in force, and installed only when
every check passes: on any failure the catalog in force stays, and the `CatalogError` says why.

Plain standard library (urllib): fetching prices needs no dependency. Nothing here runs unless asked.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokentrail.errors import CatalogError
from tokentrail.pricing.diff import ModelChange, diff_catalogs
from tokentrail.pricing.installed import bundled_snapshot, install, read_installed, stale_or_incomplete

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_URL", "Fetched", "UpdateResult", "candidate", "fetch", "update"]

DEFAULT_URL = (
    "https://raw.githubusercontent.com/pydantic/genai-prices/refs/heads/main/prices/new_data/v2/data.json"
)
DEFAULT_TIMEOUT = 10.0
MAX_BYTES = 64 * 1024 * 1024
SOURCE = "genai-prices data"


@dataclass(frozen=True)
class Fetched:
    """What a fetch returned: the body, or None when the server said 304 Not Modified."""

    url: str
    body: bytes | None
    etag: str | None = None


@dataclass(frozen=True)
class UpdateResult:
    """`installed` (a new catalog is in the cache), `unchanged` (same bytes as the installed one) or
    `not-modified` (HTTP 304); `version` is the installed catalog's version afterwards."""

    status: str
    version: str
    path: Path
    changes: list[ModelChange] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)


def update(
    source: str = DEFAULT_URL,
    *,
    path: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    allow_removals: bool = False,
    now: datetime | None = None,
) -> UpdateResult:
    """Fetch, check and install a catalog; raises `CatalogError` (nothing installed) when any step fails."""
    from tokentrail.pricing.installed import catalog_path
    from tokentrail.pricing.validate import check_catalog

    path = path or catalog_path()
    bundled = bundled_snapshot()
    try:
        installed = read_installed(path)
    except CatalogError:
        installed = None  # a damaged file is replaced by a good one
    etag = None
    if installed is not None and installed["fetched"].get("url") == source:
        etag = installed["fetched"].get("etag")
    fetched = fetch(source, etag=etag, timeout=timeout)
    if fetched.body is None:
        assert installed is not None
        return UpdateResult("not-modified", _name(installed), path)
    new = candidate(fetched, units=bundled["units"], checked_against=_name(bundled), now=now)
    if installed is not None and installed["fetched"].get("sha256") == new["fetched"]["sha256"]:
        return UpdateResult("unchanged", _name(installed), path)
    in_force = bundled
    if installed is not None and stale_or_incomplete(installed, bundled) is None:
        in_force = installed
    references = [bundled] if in_force is bundled else [bundled, in_force]
    removed = check_catalog(new, references, allow_removals=allow_removals)
    new["fetched"]["removed"] = [list(key) for key in removed]
    install(new, path)
    return UpdateResult("installed", _name(new), path, diff_catalogs(in_force, new), removed)


def candidate(
    fetched: Fetched, *, units: Any, checked_against: str, now: datetime | None = None
) -> dict[str, Any]:
    """The snapshot of fetched published data, with its fetch record; `CatalogError` when malformed."""
    from tokentrail.pricing.genai import loads_published, snapshot_from_published

    assert fetched.body is not None
    body = fetched.body
    if body[:2] == b"\x1f\x8b":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as exc:
            raise CatalogError(f"{fetched.url}: damaged gzip data ({exc})") from None
    if not body.strip():
        raise CatalogError(f"{fetched.url}: empty file")
    digest = hashlib.sha256(body).hexdigest()
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    try:
        snapshot = snapshot_from_published(
            loads_published(body), units=units, source=SOURCE, version=f"{when:%Y-%m-%d} {digest[:12]}"
        )
    except CatalogError as exc:
        raise CatalogError(f"{fetched.url}: {exc}") from None
    snapshot["fetched"] = {
        "url": fetched.url,
        "fetched_at": when.isoformat(timespec="seconds"),
        "etag": fetched.etag,
        "sha256": digest,
        "bytes": len(body),
        "checked_against": checked_against,
    }
    return snapshot


def fetch(source: str, *, etag: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Fetched:
    """The bytes at `source` (http(s) URL, file:// URL or path); `CatalogError` says why when it fails."""
    if source.startswith(("http://", "https://")):
        return _fetch_http(source, etag, timeout)
    from urllib.parse import unquote, urlsplit

    location = Path(unquote(urlsplit(source).path)) if source.startswith("file://") else Path(source)
    try:
        return Fetched(source, location.expanduser().read_bytes())
    except OSError as exc:
        raise CatalogError(f"cannot read {source}: {exc.strerror or exc}") from None


def _fetch_http(url: str, etag: str | None, timeout: float) -> Fetched:
    import http.client
    import urllib.error
    import urllib.request

    from tokentrail import __version__

    headers = {"User-Agent": f"tokentrail/{__version__}", "Accept": "application/json"}
    if etag:
        headers["If-None-Match"] = etag
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as response:
            expected = response.headers.get("Content-Length")
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(1 << 16):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise CatalogError(f"{url}: larger than {MAX_BYTES:,} bytes, refused")
                if time.monotonic() > deadline:
                    raise CatalogError(f"{url}: timed out after {timeout:g} s")
                chunks.append(chunk)
            if expected is not None and expected.isdigit() and size != int(expected):
                raise CatalogError(f"{url}: truncated download ({size:,} of {int(expected):,} bytes)")
            return Fetched(url, b"".join(chunks), response.headers.get("ETag"))
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Fetched(url, None, etag)
        raise CatalogError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except http.client.IncompleteRead as exc:
        raise CatalogError(
            f"{url}: truncated download ({len(exc.partial):,} bytes, {exc.expected or 'more'} missing)"
        ) from None
    except TimeoutError:
        raise CatalogError(f"{url}: timed out after {timeout:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise CatalogError(f"{url}: timed out after {timeout:g} s") from None
        raise CatalogError(f"{url}: cannot connect ({exc.reason})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise CatalogError(f"{url}: download failed ({type(exc).__name__}: {exc})") from None


def _name(snapshot: dict[str, Any]) -> str:
    return f"{snapshot['source']} {snapshot['version']}"
