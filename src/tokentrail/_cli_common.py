"""What the ledger commands share: the --store option, opening and closing a ledger, time options."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()

StoreOption = Annotated[
    str, typer.Option("--store", help="Ledger URL, e.g. sqlite:///usage.db.", envvar="TOKENTRAIL_STORE")
]


def open_ledger(url: str) -> Any:
    """The tracker over an existing ledger; exits with a clear message when it cannot be opened."""
    from pathlib import Path

    from tokentrail.errors import StoreError
    from tokentrail.tracker import Tracker

    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").partition("?")[0]
        if path and path != ":memory:" and not Path(path).exists():
            console.print(f"[red]No ledger at {path!r}[/red] (from --store {url!r}).")
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


def parse_when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{option} must be an ISO date or date-time, got {text!r}") from None
