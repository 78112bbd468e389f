"""`tokentrail serve`: the dashboard (or only `/metrics`) over a ledger, via uvicorn.

Registered on the main app by `tokentrail.cli`; FastAPI and uvicorn are imported only when it runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tokentrail.cli._common import LOOPBACK, HostOption, StoreOption, TokenOption, console

__all__ = ["serve_command"]


def serve_command(
    store: StoreOption,
    host: HostOption = LOOPBACK,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    token: TokenOption = None,
    metrics_only: Annotated[
        bool, typer.Option("--metrics-only", "--metrics", help="Serve only /metrics (Prometheus).")
    ] = False,
    budget_backend: Annotated[
        str | None,
        typer.Option(
            "--budget-backend", envvar="TOKENTRAIL_BUDGET_BACKEND", help="Budget ledger URL to show."
        ),
    ] = None,
    budget_config: Annotated[
        str | None, typer.Option("--budget-config", help="Budget file (.toml/.json) describing the budgets.")
    ] = None,
) -> None:
    """Serve a read-only dashboard, JSON API and /metrics over a ledger, and POST /v1/traces (OTLP)."""
    from tokentrail.errors import StoreError
    from tokentrail.server._bind import BindRefused, check_bind

    try:
        check_bind(host, token)
    except BindRefused as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(code=2) from None
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        console.print(
            "[red]tokentrail serve needs FastAPI and uvicorn:[/red] pip install 'tokentrail[server]'"
        )
        raise typer.Exit(code=1) from None

    from tokentrail.server._app import create_app
    from tokentrail.server._auth import TokenAuth
    from tokentrail.server._metrics import create_metrics_app
    from tokentrail.server._readonly import open_read_only
    from tokentrail.tracker import Tracker

    try:
        read_only = open_read_only(store)
    except StoreError as exc:
        console.print(f"[red]Cannot open the store:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    budgets = None
    if budget_backend or budget_config:
        from tokentrail.cli.budget import _manager

        budgets = _manager(budget_backend, budget_config)
    tracker = Tracker(store=read_only, budgets=budgets)
    if metrics_only:
        app = create_metrics_app(tracker)
        served = TokenAuth(app, token) if token else app
    else:
        from tokentrail.ingest.held import default_journal

        # POST /v1/traces writes to the store; spans held for their agent span are journaled
        options = {"journal": default_journal(store, port)}
        served = create_app(tracker, token=token, ingest=store, ingest_options=options)
    try:
        uvicorn.run(served, host=host, port=port, log_level="info")
    finally:
        read_only.close()  # spans still held are recorded at exit (the ingestor's atexit hook)
