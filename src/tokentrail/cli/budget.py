"""`tokentrail budget status|set|reset` against a budget back-end (a typer sub-app).

Mount it on the main app with `app.add_typer(budget_app, name="budget")`. The back-end comes from
`--backend URL` or TOKENTRAIL_BUDGET_BACKEND; budget definitions from the back-end (every manager
registers its budgets there) or from `--config budgets.toml`.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tokentrail.budgets.config import budget_from_mapping, load_budgets
from tokentrail.budgets.connect import open_backend
from tokentrail.budgets.manager import BudgetManager
from tokentrail.budgets.policy import Budget, BudgetConfigError
from tokentrail.errors import TokentrailError

__all__ = ["budget_app"]

budget_app = typer.Typer(help="Budgets: status, limits and resets.", no_args_is_help=True)
console = Console()

BackendOption = Annotated[
    str | None,
    typer.Option(
        "--backend",
        "-b",
        help="Budget back-end URL (sqlite:///path.db, redis://…, postgresql://…?schema=…).",
        envvar="TOKENTRAIL_BUDGET_BACKEND",
    ),
]
ConfigOption = Annotated[
    str | None, typer.Option("--config", "-c", help="Budget file (.toml/.json) describing the budgets.")
]


def _manager(backend: str | None, config: str | None) -> BudgetManager:
    if not backend:
        raise typer.BadParameter(
            "give --backend URL (or set TOKENTRAIL_BUDGET_BACKEND)", param_hint="--backend"
        )
    try:
        budgets: list[Budget]
        if config:
            budgets = load_budgets(config)
        else:
            store = open_backend(backend)
            try:
                stored = store.definitions()
            finally:
                store.close()
            budgets = [
                budget_from_mapping(_displayable(d), f"stored budget {name!r}") for name, d in stored.items()
            ]
        return BudgetManager(budgets, backend, register=bool(config))
    except TokentrailError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=1) from None


def _displayable(definition: dict[str, object]) -> dict[str, object]:
    data = dict(definition)
    if data.get("action") == "callable":
        data["action"] = "warn"  # the callable lives in the application; the counters are what we show
    return data


@budget_app.command()
def status(
    backend: BackendOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every budget in its current window: spent, reserved, remaining, percent used, reset time."""
    with _manager(backend, config) as manager:
        rows = manager.status()
    if as_json:
        typer.echo(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    if not rows:
        console.print("No budgets are registered in this back-end (pass --config budgets.toml).")
        return
    table = Table(title="budgets")
    for column in (
        "budget",
        "scope",
        "window",
        "spent",
        "reserved",
        "limit",
        "remaining",
        "used",
        "resets at",
    ):
        table.add_column(
            column,
            justify="right" if column in ("spent", "reserved", "limit", "remaining", "used") else "left",
        )
    for row in rows:
        scope = ", ".join(f"{k}={v}" for k, v in row.scope.items()) or "(all)"
        usd = row.limit_usd is not None
        table.add_row(
            row.budget,
            scope,
            row.window,
            f"${row.spent_usd:.6f}" if usd else f"{row.spent_tokens:,}",
            f"${row.reserved_usd:.6f}" if usd else f"{row.reserved_tokens:,}",
            f"${row.limit_usd}" if usd else f"{row.limit_tokens:,}",
            f"${row.remaining_usd:.6f}"
            if usd and row.remaining_usd is not None
            else f"{row.remaining_tokens or 0:,}",
            f"{row.percent:.1f}%",
            row.resets_at.isoformat(timespec="minutes") if row.resets_at else "-",
        )
    console.print(table)


@budget_app.command("set")
def set_limit(
    name: Annotated[str, typer.Argument(help="Budget name (see `budget status`).")],
    usd: Annotated[str | None, typer.Option("--usd", help="New USD limit, e.g. 10 or 2.50.")] = None,
    tokens: Annotated[int | None, typer.Option("--tokens", help="New token limit.")] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Drop the override: the code's limits apply.")
    ] = False,
    backend: BackendOption = None,
    config: ConfigOption = None,
) -> None:
    """Override a budget's limits for every process using the back-end (picked up within seconds)."""
    if not clear and usd is None and tokens is None:
        raise typer.BadParameter("give --usd, --tokens or --clear")
    with _manager(backend, config) as manager:
        try:
            if clear:
                manager.clear_limit(name)
                console.print(f"{name}: override cleared")
                return
            current = next(b for b in manager.budgets if b.name == name) if _known(manager, name) else None
            limit_usd = _usd(usd) if usd is not None else (current.limit_usd if current else None)
            limit_tokens = tokens if tokens is not None else (current.limit_tokens if current else None)
            manager.set_limit(name, limit_usd=limit_usd, limit_tokens=limit_tokens)
        except (BudgetConfigError, TokentrailError) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(code=1) from None
    shown = ", ".join(
        part
        for part in (
            f"${limit_usd}" if limit_usd is not None else "",
            f"{limit_tokens:,} tokens" if limit_tokens is not None else "",
        )
        if part
    )
    console.print(f"{name}: limit set to {shown}")


@budget_app.command()
def reset(
    name: Annotated[str, typer.Argument(help="Budget name (see `budget status`).")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", "-s", help="Only this instance, e.g. --scope user=alice.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    backend: BackendOption = None,
    config: ConfigOption = None,
) -> None:
    """Forget a budget's spend, reservations and fired alerts (all windows)."""
    values = dict(_pair(item) for item in scope or ())
    with _manager(backend, config) as manager:
        if not _known(manager, name):
            console.print(f"[red]no budget named {name!r} in this back-end[/red]")
            raise typer.Exit(code=1)
        if not yes:
            typer.confirm(f"Reset budget {name!r}{' for ' + str(values) if values else ''}?", abort=True)
        removed = manager.reset(name, values or None)
    console.print(f"{name}: reset ({removed} counter{'s' if removed != 1 else ''} removed)")


def _known(manager: BudgetManager, name: str) -> bool:
    return any(b.name == name for b in manager.budgets)


def _usd(text: str) -> Decimal:
    try:
        return Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        raise typer.BadParameter(f"{text!r} is not an amount of dollars", param_hint="--usd") from None


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--scope")
    return key.strip(), value.strip()


def main() -> None:  # pragma: no cover - `python -m tokentrail.cli.budget`
    budget_app()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("COLUMNS", "160")
    main()
