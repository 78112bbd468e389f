"""`tokentrail gateway` (serve the HTTP gateway) and `tokentrail keys create|list|revoke` (its virtual keys).

Registered on the main app by `tokentrail.cli`; the gateway package (aiohttp, uvicorn, prometheus_client)
is imported only when `gateway` runs.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from tokentrail.cli._common import LOOPBACK, HostOption, console, shown_url

if TYPE_CHECKING:
    from tokentrail.gateway.keys import KeyStore

__all__ = ["gateway_command", "keys_app", "server_implementation"]

_DEFAULT_KEYS = "tokentrail-keys.db"
_MIN_TOKEN = 16  # characters of a gateway token

_KEYS_HELP = (
    "Virtual key store: a SQLite file, or postgresql://…[?schema=…] shared by gateways on several "
    "machines (only key hashes are kept)."
)
KeysOption = Annotated[str, typer.Option("--keys", envvar="TOKENTRAIL_KEYS", help=_KEYS_HELP)]


def gateway_command(
    upstream: Annotated[
        list[str],
        typer.Option(
            "--upstream",
            "-u",
            help="NAME=URL (repeatable): openai, anthropic, google, or any name for an OpenAI-compatible host.",
        ),
    ],
    store: Annotated[
        str,
        typer.Option("--store", envvar="TOKENTRAIL_STORE", help="Ledger URL (sqlite:///…, postgresql://…)."),
    ] = "sqlite:///tokentrail.db",
    budgets: Annotated[
        str | None,
        typer.Option(
            "--budgets",
            envvar="TOKENTRAIL_BUDGET_BACKEND",
            help="Budget back-end URL (sqlite:///…, redis://…, postgresql://…?schema=…) shared by gateways.",
        ),
    ] = None,
    budget_config: Annotated[
        str | None,
        typer.Option("--budget-config", help="Budget file (.toml/.json) with the budgets to enforce."),
    ] = None,
    keys: Annotated[
        str | None,
        typer.Option(
            "--keys",
            envvar="TOKENTRAIL_KEYS",
            help=f"{_KEYS_HELP} Default: {_DEFAULT_KEYS} when it exists.",
        ),
    ] = None,
    key_refresh: Annotated[
        float,
        typer.Option(
            "--key-refresh",
            min=0,
            help="Seconds between re-reads of the virtual keys (revocations take effect within it).",
        ),
    ] = 30.0,
    require_key: Annotated[
        bool, typer.Option("--require-key", help="Refuse requests that carry no virtual key.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="TOKENTRAIL_GATEWAY_TOKEN",
            help="Gateway token: requests without a virtual key must send it in X-Tokentrail-Token.",
        ),
    ] = None,
    host: HostOption = LOOPBACK,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 4000,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Seconds to wait for the upstream's next bytes.")
    ] = 600.0,
    max_body: Annotated[int, typer.Option("--max-body", min=1, help="Largest request body, in bytes.")] = 32
    * 1024
    * 1024,
    max_in_flight: Annotated[
        int,
        typer.Option(
            "--max-in-flight",
            min=1,
            help="Requests forwarded at once; above it clients get 503 + Retry-After.",
        ),
    ] = 4096,
    journal: Annotated[
        str | None,
        typer.Option(
            "--journal",
            help="File keeping OTLP spans held for their agent span across a crash (default: beside a "
            "SQLite ledger, else in the spool directory; one per store and port).",
        ),
    ] = None,
) -> None:
    """Serve the gateway: clients set their base URL to it; every call is forwarded, recorded and budgeted."""
    from tokentrail.server._bind import is_loopback

    if token is not None and len(token) < _MIN_TOKEN:
        console.print(f"[red]--token must be at least {_MIN_TOKEN} characters[/red]", highlight=False)
        raise typer.Exit(code=2)
    if not is_loopback(host) and not require_key and token is None:
        console.print(
            f"[red]refusing to listen on {host!r} without --require-key or --token[/red] (or bind "
            "127.0.0.1): beyond this machine only holders of a virtual key or the gateway token may use it",
            highlight=False,
        )
        raise typer.Exit(code=2)
    try:
        import uvicorn

        from tokentrail.gateway import Gateway, GatewayConfig, parse_upstream
    except ImportError as exc:
        console.print(f"[red]tokentrail gateway needs {exc.name}:[/red] pip install 'tokentrail[gateway]'")
        raise typer.Exit(code=1) from None
    from tokentrail.budgets.config import config_from_env, load_config
    from tokentrail.errors import TokentrailError
    from tokentrail.ingest.held import JournalInUse, default_journal

    try:
        upstreams = {u.name: u for u in map(parse_upstream, upstream)}
        config = load_config(budget_config) if budget_config else config_from_env()
        if keys is None and os.path.exists(_DEFAULT_KEYS):
            keys = _DEFAULT_KEYS
        gateway = Gateway(
            GatewayConfig(
                upstreams,
                store=store,
                budgets=config.budgets,
                budget_backend=budgets or config.backend,
                keys=keys,
                key_refresh_seconds=key_refresh,
                require_key=require_key,
                token=token,
                timeout=timeout,
                max_body_bytes=max_body,
                max_in_flight=max_in_flight,
                journal=journal or default_journal(store, port),
            )
        )
    except JournalInUse as exc:
        console.print(f"[red]Cannot open the journal of held spans:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    except (ValueError, OSError, TokentrailError) as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(code=1) from None
    names = ", ".join(f"{u.name}→{u.url}" for u in upstreams.values())
    console.print(
        f"tokentrail gateway on http://{host}:{port} ({names}); ledger {shown_url(store)}", highlight=False
    )
    gateway.warm()  # the catalog and tokenizer, before serving (the lifespan finds them built)
    # what start-up built is never scanned again by the cycle collector: a full collection over it took
    # ~20 ms, a p99 stall
    gc.freeze()
    # the event loop waits at most 1 ms (not 5) for the GIL while the capture worker records a batch:
    # p99/p99.9 at 500/s fell from 5-6.5/11-24 ms to 4.2-5.4/8-9.4 ms in A/B runs
    sys.setswitchinterval(0.001)
    # no access log: a Gemini `?key=` would be written to it; no server/date headers of uvicorn's own
    http, loop = server_implementation()
    uvicorn.run(
        gateway,
        host=host,
        port=port,
        http=http,
        loop=loop,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-* is not read: the gateway uses no client address
        server_header=False,
        date_header=False,
        log_level="warning",
        timeout_graceful_shutdown=int(timeout),
    )


def server_implementation() -> tuple[Literal["httptools", "h11"], Literal["uvloop", "asyncio"]]:
    """uvicorn's HTTP parser and event loop: httptools and uvloop when installed (the `gateway` extra), a
    fraction of the CPU a request of h11 and asyncio, which stand in without them."""
    from importlib.util import find_spec

    return (
        "httptools" if find_spec("httptools") is not None else "h11",
        "uvloop" if find_spec("uvloop") is not None else "asyncio",
    )


keys_app = typer.Typer(help="Virtual keys for the gateway: create, list, revoke.", no_args_is_help=True)


@keys_app.command("create")
def create_key(
    keys: KeysOption = _DEFAULT_KEYS,
    user: Annotated[str | None, typer.Option("--user", help="The user its calls are attributed to.")] = None,
    team: Annotated[str | None, typer.Option("--team", help="Team (recorded as the tag team:NAME).")] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="The agent its calls are attributed to.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag for its calls (repeatable).")] = None,
    budget: Annotated[
        str | None, typer.Option("--budget", help="Its own budget: 50usd/month, 200000tokens/day, …")
    ] = None,
) -> None:
    """Issue a virtual key; it is printed once and only its hash is stored."""
    with _key_store(keys) as store:
        secret, key = store.create(user=user, team=team, agent=agent, tags=tuple(tag or ()), budget=budget)
    typer.echo(secret)
    typer.echo(f"key id {key.id}: shown once, store it now", err=True)


@keys_app.command("list")
def list_keys(
    keys: KeysOption = _DEFAULT_KEYS,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
) -> None:
    """The issued keys (ids and attribution; never the keys themselves)."""
    from rich.table import Table

    with _key_store(keys) as store:
        found = store.keys(include_revoked=revoked)
    table = Table(title=f"Virtual keys in {shown_url(keys)}")
    for column in ("id", "user", "team", "agent", "tags", "budget", "revoked"):
        table.add_column(column)
    for key in found:
        table.add_row(
            key.id,
            key.user or "",
            key.team or "",
            key.agent or "",
            ",".join(key.tags),
            key.budget or "",
            "yes" if key.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")],
    keys: KeysOption = _DEFAULT_KEYS,
) -> None:
    """Revoke a key: gateways refuse it from their next key refresh on."""
    with _key_store(keys) as store:
        revoked = store.revoke(key_id)
    if not revoked:
        console.print(f"[red]no live key with id {key_id!r}[/red]", highlight=False)
        raise typer.Exit(code=1)
    console.print(f"revoked {key_id}", highlight=False)


@contextmanager
def _key_store(location: str) -> Iterator[KeyStore]:
    """The key store at `location`, closed after; its errors (unreachable, a bad budget spec) printed and
    exiting 1."""
    from tokentrail.errors import TokentrailError
    from tokentrail.gateway.keys import open_key_store

    try:
        store = open_key_store(location)
    except TokentrailError as exc:
        console.print(f"[red]Cannot open the virtual keys:[/red] {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    try:
        yield store
    except TokentrailError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(code=1) from None
    finally:
        store.close()
