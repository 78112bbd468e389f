"""What the ledger commands share: the --store option, opening and closing a ledger, time options; the
servers' --host and --token."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()

StoreOption = Annotated[
    str, typer.Option("--store", help="Ledger URL, e.g. sqlite:///usage.db.", envvar="TOKENTRAIL_STORE")
]
HostOption = Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="TOKENTRAIL_TOKEN", help="Require this bearer token on every request."),
]
LOOPBACK = "127.0.0.1"  # what the servers bind by default (`server._bind.check_bind` guards the others)


def shown_url(location: str) -> str:
    """`location` as printed: a URL's password replaced by `***` (ledgers, key stores, budget back-ends)."""
    from urllib.parse import urlsplit

    parts = urlsplit(location)
    if parts.password is None:
        return location
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def open_ledger(url: str) -> Any:
    """The tracker over an existing ledger; exits with a clear message when it cannot be opened."""
    from pathlib import Path

    from tokentrail.errors import StoreError
    from tokentrail.tracker import Tracker

    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").partition("?")[0]
        if path and path != ":memory:" and not Path(path).exists():
            console.print(f"[red]No ledger at {path!r}[/red] (from --store {shown_url(url)!r}).")
            raise typer.Exit(code=1)
    try:
        return Tracker(store=url)
    except StoreError as exc:
        console.print(f"[red]Cannot open the store:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(code=1) from None


def close_ledger(tracker: Any) -> None:
    close = getattr(tracker.store, "close", None)
    if callable(close):
        close()


_AGE = re.compile(r"^\s*(\d+)\s*([wdhm])\s*$")
_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}


def parse_age(text: str, option: str = "--older-than") -> timedelta:
    """`90d`, `12w`, `36h`, `30m` → a timedelta; BadParameter otherwise."""
    found = _AGE.match(text)
    if found is None or int(found.group(1)) <= 0:
        raise typer.BadParameter(f"{option} takes a positive age such as 90d, 12w or 36h, got {text!r}")
    return int(found.group(1)) * _UNITS[found.group(2)]


def parse_when(text: str | None, option: str) -> datetime | None:
    """An ISO date or date-time (UTC when it names no zone), or an age back from now (`7d`, `36h`)."""
    if text is None:
        return None
    if _AGE.match(text):
        return datetime.now(timezone.utc) - parse_age(text, option)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{option} must be an ISO date or date-time, or an age such as 7d or 36h, got {text!r}"
        ) from None
