"""`tokentrail collect`: only the OTLP/HTTP endpoint (`POST /v1/traces`), recording exported GenAI spans
into a ledger — for hosts that ingest and serve nothing else. uvicorn is imported only when it runs."""

from __future__ import annotations

from typing import Annotated

import typer

from tokentrail.cli._common import LOOPBACK, HostOption, StoreOption, TokenOption, console, shown_url

__all__ = ["collect_command"]


def collect_command(
    store: StoreOption,
    host: HostOption = LOOPBACK,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (OTLP/HTTP's is 4318).")
    ] = 4318,
    token: TokenOption = None,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=1024, help="Largest export body accepted (after gzip too).")
    ] = 16 * 1024 * 1024,
    hold_seconds: Annotated[
        float,
        typer.Option(
            "--hold-seconds",
            min=0,
            help="How long a call span waits for its agent's span when that comes in a later export (0: never).",
        ),
    ] = 60.0,
    journal: Annotated[
        str | None,
        typer.Option(
            "--journal",
            help="File keeping the held spans across a crash (default: beside a SQLite ledger, else in "
            "the spool directory; one per store and port).",
        ),
    ] = None,
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
    from tokentrail.ingest.held import JournalInUse, default_journal
    from tokentrail.tracker import Tracker

    try:
        tracker = Tracker(store=store)
    except StoreError as exc:
        console.print(f"[red]Cannot open the store:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    try:
        app = collector_app(
            tracker,
            token=token,
            max_bytes=max_bytes,
            hold_seconds=hold_seconds,
            journal=journal or (default_journal(store, port) if hold_seconds else None),
        )
    except (JournalInUse, OSError) as exc:
        tracker.close()
        console.print(f"[red]Cannot open the journal of held spans:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    console.print(
        f"tokentrail collect: POST http://{host}:{port}/v1/traces → {shown_url(store)}", highlight=False
    )
    ingestor = app.traces.ingestor
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", lifespan="off")
    finally:
        try:
            ingestor.close()  # the held spans are recorded with what is known
        finally:
            tracker.close()
        console.print(f"spans: {ingestor.totals.as_dict()}", highlight=False, soft_wrap=True)
