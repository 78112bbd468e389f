"""Which catalog is in force: the bundled snapshot, or a fresher one installed by `tokentrail prices update`.

The installed catalog is one gzip JSON file in the user cache directory (`TOKENTRAIL_CACHE_DIR`, else
`$XDG_CACHE_HOME/tokentrail`, else the platform's cache directory), written to a temporary file and moved
into place with `os.replace`, so a reader sees the old file or the new one, never half of one. It is a
snapshot like the bundled one plus `fetched` (URL, fetch time, ETag, sha256 of the published bytes, the
bundled catalog it was checked against). Reading it never touches the network.

Selection: the newest valid of the two. The installed catalog is used when it reads back whole, and was
fetched on or after the day the bundled snapshot was built (`as_of`); when it was checked against another
bundled catalog (tokentrail was upgraded since), it must still price every model that one prices.
`TOKENTRAIL_CATALOG=bundled` pins the bundled snapshot.

The usage readers follow the catalog in force: `put_in_force` (called when the process default catalog is
built or refreshed) hands its extractors to them through `readers_in_force`, without importing the adapters.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tokentrail.errors import CatalogError

__all__ = [
    "BUNDLED_PATH",
    "bundled_snapshot",
    "cache_dir",
    "catalog_path",
    "install",
    "put_in_force",
    "read_installed",
    "readers_in_force",
    "readers_part",
    "select_snapshot",
]

logger = logging.getLogger("tokentrail.pricing")

BUNDLED_PATH = Path(__file__).resolve().parents[1] / "_data" / "prices.json.gz"
_FILE_NAME = "catalog.json.gz"


def cache_dir() -> Path:
    """tokentrail's user cache directory (created on write, never on read)."""
    explicit = os.environ.get("TOKENTRAIL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "tokentrail"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "tokentrail"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "tokentrail" / "Cache"
    return Path.home() / ".cache" / "tokentrail"


def catalog_path() -> Path:
    """Where `tokentrail prices update` installs the fetched catalog."""
    return cache_dir() / "prices" / _FILE_NAME


def bundled_snapshot() -> dict[str, Any]:
    """The snapshot shipped in the package (built by `make prices`)."""
    snapshot: dict[str, Any] = json.loads(gzip.decompress(BUNDLED_PATH.read_bytes()))
    return snapshot


def read_installed(path: Path | None = None) -> dict[str, Any] | None:
    """The installed catalog, None when there is none; `CatalogError` when it cannot be read whole."""
    path = path or catalog_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CatalogError(f"cannot read the installed catalog {path}: {exc}") from None
    try:
        snapshot = json.loads(gzip.decompress(data))
    except (OSError, EOFError, ValueError) as exc:
        raise CatalogError(f"the installed catalog {path} is damaged ({exc})") from None
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("fetched"), dict):
        raise CatalogError(f"the installed catalog {path} is not a tokentrail catalog")
    for key in ("units", "providers", "source", "version"):
        if key not in snapshot:
            raise CatalogError(f"the installed catalog {path} has no {key!r}")
    return snapshot


def install(snapshot: dict[str, Any], path: Path | None = None) -> Path:
    """Write `snapshot` as the installed catalog, atomically (temporary file, fsync, `os.replace`)."""
    path = path or catalog_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = gzip.compress(
        json.dumps(snapshot, sort_keys=True, separators=(",", ":")).encode(), compresslevel=6, mtime=0
    )
    handle, temporary = tempfile.mkstemp(prefix=".catalog-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def select_snapshot(path: Path | None = None) -> tuple[dict[str, Any], str]:
    """The snapshot in force (newest valid of bundled and installed) and why it was chosen."""
    bundled = bundled_snapshot()
    if os.environ.get("TOKENTRAIL_CATALOG", "").strip().lower() == "bundled":
        return bundled, "TOKENTRAIL_CATALOG=bundled"
    try:
        installed = read_installed(path)
    except CatalogError as exc:
        logger.warning("tokentrail: %s; pricing with the bundled catalog", exc)
        return bundled, f"bundled (installed catalog unusable: {exc})"
    if installed is None:
        return bundled, "bundled (no catalog installed)"
    problem = stale_or_incomplete(installed, bundled)
    if problem is not None:
        logger.info("tokentrail: not using the installed catalog: %s", problem)
        return bundled, f"bundled ({problem})"
    return installed, "installed (newer than the bundled catalog)"


def stale_or_incomplete(installed: dict[str, Any], bundled: dict[str, Any]) -> str | None:
    """Why the installed catalog must not replace the bundled one, or None when it may."""
    fetched_on = _day(installed["fetched"].get("fetched_at"))
    bundled_on = _day(bundled.get("as_of"))
    if fetched_on is None:
        return "the installed catalog has no fetch date"
    if bundled_on is not None and fetched_on < bundled_on:
        return f"the installed catalog ({fetched_on}) is older than the bundled one ({bundled_on})"
    if installed["fetched"].get("checked_against") != _name(bundled):
        from tokentrail.pricing.validate import missing_models

        missing = missing_models(installed, [bundled])
        if missing:
            return f"the installed catalog lacks {len(missing)} models of the bundled {_name(bundled)}"
    return None


def _name(snapshot: dict[str, Any]) -> str:
    return f"{snapshot.get('source', 'catalog')} {snapshot.get('version', '')}".strip()


def _day(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).date() if "T" in value else date.fromisoformat(value)
    except ValueError:
        return None


# -- the usage readers follow the catalog in force ------------------------------------------------------

_readers_data: dict[str, Any] | None = None
# Bumped whenever a catalog is put in force (or forgotten); the usage readers compare it on each read.
readers_generation = 0


def readers_part(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """What the usage readers need of a snapshot: its name, units, and each provider's extractors and API
    URL pattern."""
    return {
        "source": snapshot.get("source", "catalog"),
        "version": snapshot.get("version", ""),
        "units": snapshot["units"],
        "providers": [
            {
                "id": p["id"],
                "provider_match": p.get("provider_match"),
                "extractors": p.get("extractors") or [],
                **({"api_pattern": p["api_pattern"]} if p.get("api_pattern") else {}),
            }
            for p in snapshot["providers"]
        ],
    }


_on_put: list[Callable[[], None]] = []


def on_put_in_force(callback: Callable[[], None]) -> None:
    """Call `callback` (quick, never raising) each time a catalog is put in force: the usage readers forget
    the readers they keep for the catalog before."""
    _on_put.append(callback)


def put_in_force(snapshot: Mapping[str, Any] | None) -> None:
    """`snapshot` is the catalog in force now (the default catalog was built or refreshed): the usage
    readers read with its extractors from their next read on. None: chosen again at the next read."""
    global _readers_data, readers_generation
    _readers_data = None if snapshot is None else readers_part(snapshot)
    readers_generation += 1
    for callback in _on_put:
        callback()


def readers_in_force() -> tuple[dict[str, Any], int]:
    """(the extractors of the catalog in force, its generation); before any was put in force, the
    catalog the default catalog would choose (`select_snapshot`)."""
    global _readers_data
    if _readers_data is None:
        _readers_data = readers_part(select_snapshot()[0])
    return _readers_data, readers_generation
