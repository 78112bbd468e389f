"""`tokentrail collect`: only the OTLP/HTTP endpoint (`POST /v1/traces`), recording exported GenAI spans
into a ledger — for hosts that ingest and serve nothing else. uvicorn is imported only when it runs."""

from __future__ import annotations

from typing import Annotated

import typer

from tokentrail.cli._common import StoreOption, console

__all__ = ["collect_command"]


def collect_command(
    store: StoreOption,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (OTLP/HTTP's is 4318).")
    ] = 4318,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", envvar="TOKENTRAIL_TOKEN", help="Require this bearer token on every request."
        ),
    ] = None,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=1024, help="Largest export body accepted (after gzip too).")
    ] = 16 * 1024 * 1024,
) -> None:
    """Receive OTLP/HTTP trace exports (protobuf or JSON, gzip) on POST /v1/traces and record the
    GenAI spans' usage in the store, each span once."""
    from tokentrail.server._bind import BindRefused, check_bind

    try:
        check_bind(host, token)
    except BindRefused as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(code=2) from None
    try:
        import uvicorn
    except ImportError:
        console.print("[red]tokentrail collect needs uvicorn:[/red] pip install 'tokentrail[server,otlp]'")
        raise typer.Exit(code=1) from None

    from tokentrail.errors import StoreError
    from tokentrail.ingest.app import collector_app
    from tokentrail.tracker import Tracker

    try:
        tracker = Tracker(store=store)
    except StoreError as exc:
        console.print(f"[red]Cannot open the store:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    app = collector_app(tracker, token=token, max_bytes=max_bytes)
    console.print(f"tokentrail collect: POST http://{host}:{port}/v1/traces → {store}", highlight=False)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", lifespan="off")
    finally:
        tracker.close()
        console.print(f"spans: {app.traces.ingestor.totals.as_dict()}", highlight=False)
