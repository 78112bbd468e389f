"""Open a budget back-end from its URL; the concrete back-ends are imported only when named."""

from __future__ import annotations

from tokentrail.budgets.backend import BudgetBackend, split_options, sqlite_path
from tokentrail.budgets.policy import BudgetConfigError

__all__ = ["open_backend"]


def open_backend(url: str | BudgetBackend | None) -> BudgetBackend:
    """A back-end from a URL: "memory://", "sqlite:///path.db", "redis://host:6379/0?prefix=tt:",
    "postgresql://user@host/db?schema=tokentrail&max_connections=10" (a pool of at most that many
    connections per process). Any of them takes `quota=N` (and `quota_seconds=S`): each process then
    reserves room for N calls at a time and counts the calls in memory (`LocalQuota`). Redis and
    Postgres clients are imported here, lazily."""
    if url is None:
        from tokentrail.budgets.memory import MemoryBackend

        return MemoryBackend()
    if not isinstance(url, str):
        return url
    if "quota" in url:
        base, options = split_options(url, "quota", "quota_seconds")
        if options:
            return _with_quota(open_backend(base), url, options)
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from tokentrail.budgets.memory import MemoryBackend

        return MemoryBackend()
    if scheme == "sqlite":
        from tokentrail.budgets.sqlite import SQLiteBackend

        return SQLiteBackend(sqlite_path(url))
    if scheme in ("redis", "rediss", "unix"):
        from tokentrail.budgets.redis import RedisBackend

        base, options = split_options(url, "prefix", "pipeline")
        pipeline = options.get("pipeline", "0").lower() in ("1", "true", "yes", "on")
        return RedisBackend(base, prefix=options.get("prefix", "tokentrail:budget:"), pipeline=pipeline)
    if scheme in ("postgres", "postgresql"):
        from tokentrail.budgets.postgres import PostgresBackend

        base, options = split_options(url, "schema", "max_connections")
        size = options.get("max_connections", "10")
        if not size.isdigit() or int(size) < 1:
            raise BudgetConfigError(f"max_connections must be a positive integer, got {size!r} in {url!r}")
        return PostgresBackend(base, schema=options.get("schema", "tokentrail"), max_connections=int(size))
    raise BudgetConfigError(
        f"unknown budget backend URL {url!r}; use memory://, sqlite:///path.db, redis://… or postgresql://…"
    )


def _with_quota(inner: BudgetBackend, url: str, options: dict[str, str]) -> BudgetBackend:
    """`?quota=N[&quota_seconds=S]`: room for N calls taken at a time (see `tokentrail.budgets.quota`)."""
    from tokentrail.budgets.quota import LocalQuota

    calls = options.get("quota", "16")
    seconds = options.get("quota_seconds", "1")
    try:
        return LocalQuota(inner, calls=int(calls), seconds=float(seconds))
    except ValueError as exc:
        inner.close()
        raise BudgetConfigError(f"bad quota options in {url!r}: {exc}") from None
