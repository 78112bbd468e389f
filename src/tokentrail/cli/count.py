"""`tokentrail count FILE|- --model M`: tokens, exact or estimated, cost as input, context-window use.

Registered on the main app in `tokentrail.cli`; kept here so the command line module stays small.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

__all__ = ["count_command", "count_report"]


def count_command(
    source: Annotated[str, typer.Argument(metavar="FILE|-", help="Text file to count, or - for stdin.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name as your SDK sends it.")],
    provider: Annotated[
        str | None, typer.Option("--provider", "-p", help="Provider id for the price, e.g. azure.")
    ] = None,
    messages: Annotated[
        bool,
        typer.Option(
            "--messages",
            help='Read a JSON list of chat messages (or {"messages": [...], "tools": [...]}).',
        ),
    ] = False,
    output_format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Count the tokens of a text or chat request, its cost if sent as input, and window use."""
    if output_format not in ("table", "json"):
        raise typer.BadParameter(f"--format must be table or json, got {output_format!r}")
    text = _read(source)
    payload: str | list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    if messages:
        payload, tools = _parse_messages(text)
    else:
        payload, tools = text, None
    try:
        found = count_report(payload, model, provider, tools)
    except (TypeError, ValueError) as exc:
        _fail(f"cannot count {source!r}: {exc}")
    if output_format == "json":
        typer.echo(json.dumps(found, ensure_ascii=False))
        return
    _print_table(found)


def count_report(
    payload: str | list[dict[str, Any]],
    model: str,
    provider: str | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What `tokentrail count` shows, as plain data (also its `--format json` output)."""
    from tokentrail._types import Usage
    from tokentrail.pricing.catalog import price
    from tokentrail.tokens.count import count
    from tokentrail.tokens.limits import context_window

    counted = count(payload, model, tools=tools)
    cost = price(Usage(input_tokens=counted.tokens), model, provider)
    window = context_window(model, provider)
    return {
        "model": model,
        "provider": provider if provider is not None else cost.provider,
        "tokens": counted.tokens,
        "exact": counted.exact,
        "method": counted.method,
        "expected_error": counted.expected_error,
        "notes": list(counted.notes),
        "input_cost_usd": str(cost.total) if cost.priced else None,
        "unpriced_reason": None if cost.priced else cost.reason,
        "context_window": window,
        "window_percent": round(counted.tokens * 100 / window, 4) if window else None,
    }


def _read(source: str) -> str:
    try:
        if source == "-":
            return sys.stdin.read()
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {source!r}: {exc}")


def _parse_messages(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"--messages expects JSON: {exc}")
    tools = None
    if isinstance(data, dict) and "messages" in data:
        tools = data.get("tools") or data.get("functions")
        data = data["messages"]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        _fail('--messages expects a JSON list of message objects, or {"messages": [...]}')
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(item, dict) for item in tools)
    ):
        _fail("tools must be a JSON list of tool definitions")
    return data, tools


def _print_table(found: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = found["model"] + (f" ({found['provider']})" if found["provider"] else "")
    table = Table(title=title, show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_row("tokens", f"{found['tokens']:,}")
    if found["exact"]:
        table.add_row("count", f"exact ({found['method']})")
    else:
        table.add_row("count", f"estimated ±{found['expected_error'] * 100:.0f}% ({found['method']})")
    if found["input_cost_usd"] is not None:
        table.add_row("cost as input", f"${found['input_cost_usd']}")
    else:
        table.add_row("cost as input", "unpriced")
    if found["context_window"]:
        table.add_row("context window", f"{found['context_window']:,} tokens")
        table.add_row("window used", f"{found['window_percent']:.2f}%")
    else:
        table.add_row("context window", "unknown")
    console.print(table)
    for note in found["notes"]:
        console.print(f"note: {note}", highlight=False)
    if found["unpriced_reason"]:
        console.print(f"[yellow]unpriced: {found['unpriced_reason']}[/yellow]", highlight=False)


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code=1)
