"""Redraw a report every few seconds (`tokentrail report --watch 2s`), until Ctrl-C or `--for` has passed.

On a terminal the screen is cleared before each drawing; piped, each drawing follows the last under a
rule with its time, so a log keeps every state it showed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

import typer

from tokentrail.cli._common import console

__all__ = ["watch", "watch_every"]


def watch(draw: Callable[[], None], interval: float, duration: float | None = None) -> int:
    """Call `draw` now and every `interval` seconds; returns how many times it drew."""
    deadline = None if duration is None else time.monotonic() + duration
    drawn = 0
    try:
        while True:
            if console.is_terminal:
                console.clear()
            else:
                stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
                console.rule(f"report at {stamp}", style="dim")
            draw()
            drawn += 1
            console.file.flush()
            if deadline is not None and time.monotonic() >= deadline:
                return drawn
            pause = interval if deadline is None else min(interval, max(deadline - time.monotonic(), 0.0))
            time.sleep(pause)
    except KeyboardInterrupt:
        return drawn


def watch_every(draw: Callable[[], None], interval: str, duration: str | None) -> int:
    """`watch` with its times given as the command line gives them (`2s`, `500ms`, `1m`)."""
    from tokentrail.cli.ledger import parse_duration

    seconds = parse_duration(interval, "--watch")
    if seconds <= 0:
        raise typer.BadParameter("--watch takes a positive interval such as 2s")
    limit = None if duration is None else parse_duration(duration, "--for")
    return watch(draw, seconds, limit)
