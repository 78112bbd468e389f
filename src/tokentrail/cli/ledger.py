"""Ledger commands that move records in and out and check them: export, tail, import, reconcile, chart.

Registered on the `tokentrail` app in `cli.py`. Heavy modules (reports, pyarrow, matplotlib) load inside
the commands. Errors go to stderr with exit code 1 (bad data, missing file, unreachable store) or 2
(a bad option value).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from tokentrail.cli._common import StoreOption, close_ledger, open_ledger, parse_when

if TYPE_CHECKING:
    from tokentrail._record import Record
    from tokentrail.tracker import Tracker

__all__ = ["chart_command", "export_command", "import_command", "reconcile_command", "tail_command"]

Since = Annotated[str | None, typer.Option(help="From this ISO date/time (UTC), inclusive.")]
Until = Annotated[str | None, typer.Option(help="Up to this ISO date/time (UTC), exclusive.")]
Agent = Annotated[list[str] | None, typer.Option(help="Only this agent (repeatable).")]
Session = Annotated[list[str] | None, typer.Option(help="Only this session (repeatable).")]
User = Annotated[list[str] | None, typer.Option(help="Only this user (repeatable).")]
Tool = Annotated[list[str] | None, typer.Option(help="Only this tool (repeatable).")]
Model = Annotated[list[str] | None, typer.Option(help="Only this model (repeatable).")]
ProviderFilter = Annotated[list[str] | None, typer.Option(help="Only this provider (repeatable).")]
Tag = Annotated[list[str] | None, typer.Option(help="Only records with this tag (repeatable).")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=code)


def _filters(**given: list[str] | None) -> dict[str, Any]:
    return {name: values for name, values in given.items() if values}


def _window(since: str | None, until: str | None) -> dict[str, datetime | None]:
    return {"since": parse_when(since, "--since"), "until": parse_when(until, "--until")}


def parse_duration(text: str, option: str) -> float:
    """Seconds from `2s`, `500ms`, `1.5m`, `1h` or a plain number of seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    value = text.strip().lower()
    for suffix in ("ms", "s", "m", "h"):
        if value.endswith(suffix):
            value, scale = value[: -len(suffix)], units[suffix]
            break
    else:
        scale = 1.0
    try:
        seconds = float(value) * scale
    except ValueError:
        raise typer.BadParameter(f"{option} takes a duration such as 2s, 500ms or 1m, got {text!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise typer.BadParameter(f"{option} must be a finite, non-negative duration, got {text!r}")
    return seconds


# -- export ----------------------------------------------------------------------------------------------


def export_command(
    store: StoreOption,
    output: Annotated[
        str, typer.Option("--output", "-o", help="File to write; '-' for stdout (not parquet).")
    ],
    output_format: Annotated[
        str | None,
        typer.Option("--format", "-f", help="json, jsonl, csv or parquet (default: from the -o suffix)."),
    ] = None,
    since: Since = None,
    until: Until = None,
    agent: Agent = None,
    session: Session = None,
    user: User = None,
    tool: Tool = None,
    model: Model = None,
    provider: ProviderFilter = None,
    tag: Tag = None,
    page_size: Annotated[int, typer.Option("--page-size", min=1, help="Records read per page.")] = 10_000,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: when stderr is a TTY)."),
    ] = None,
) -> None:
    """Write a ledger's records (all, or those selected) to JSON, JSONL, CSV or Parquet, a page at a time."""
    from tokentrail.reports import export

    fmt = output_format or _format_from_suffix(output)
    if fmt not in export.EXPORT_FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(export.EXPORT_FORMATS)}, got {fmt!r}")
    if fmt == "parquet":
        if output == "-":
            raise typer.BadParameter("parquet cannot be written to stdout; give -o FILE.parquet")
        try:
            export.parquet_schema()
        except ImportError as exc:
            _fail(str(exc))
    target = None if output == "-" else Path(output)
    if target is not None and not target.parent.is_dir():
        _fail(f"no directory {str(target.parent)!r} for {output!r}")
    window = _window(since, until)
    filters = _filters(agent=agent, session=session, user=user, tool=tool, model=model)
    filters |= _filters(provider=provider, tag=tag)
    tracker = open_ledger(store)
    try:
        expected = tracker.totals(**window, **filters).calls
        pages = export.iter_record_pages(tracker, page_size=page_size, **window, **filters)
        show = sys.stderr.isatty() if progress is None else progress
        with _progress(expected, show, f"export {fmt}") as advance:
            counted = _counting(pages, advance)
            written = _write_export(export, fmt, counted, target, tracker, window, filters)
    finally:
        close_ledger(tracker)
    typer.echo(f"Exported {written:,} records to {output} ({fmt}).", err=True)


def _format_from_suffix(output: str) -> str:
    suffix = Path(output).suffix.lower().lstrip(".")
    return {"ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix) if output != "-" else "jsonl"


def _counting(pages: Iterable[list[Record]], advance: Any) -> Iterator[list[Record]]:
    for page in pages:
        yield page
        advance(len(page))


class _progress:
    """A rich progress bar on stderr, or nothing; `with` gives the function that advances it."""

    def __init__(self, total: int, show: bool, description: str) -> None:
        self.total, self.show, self.description = total, show, description
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not self.show:
            return lambda count: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.bar.start()
        task = self.bar.add_task(self.description, total=self.total or None)
        return lambda count: self.bar.advance(task, count)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _write_export(
    export: Any,
    fmt: str,
    pages: Iterable[list[Record]],
    target: Path | None,
    tracker: Tracker,
    window: dict[str, Any],
    filters: dict[str, Any],
) -> int:
    """Write to a temporary file beside `target` and move it into place, so a failed export leaves no
    half-written file."""
    if target is None:
        return int(_write_stream(export, fmt, pages, sys.stdout, tracker, window, filters))
    partial = target.with_name(f".{target.name}.partial")
    try:
        if fmt == "parquet":
            written = int(export.write_parquet_pages(pages, partial))
        else:
            with partial.open("w", encoding="utf-8", newline="") as stream:
                written = _write_stream(export, fmt, pages, stream, tracker, window, filters)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return written


def _write_stream(
    export: Any,
    fmt: str,
    pages: Iterable[list[Record]],
    stream: Any,
    tracker: Tracker,
    window: dict[str, Any],
    filters: dict[str, Any],
) -> int:
    if fmt == "jsonl":
        return int(export.write_jsonl_pages(pages, stream))
    if fmt == "csv":
        return int(export.write_csv_pages(pages, stream))
    header = {
        "format": "tokentrail",
        "version": export.FORMAT_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "node": [],
        "selection": {
            "since": None if window["since"] is None else window["since"].isoformat(),
            "until": None if window["until"] is None else window["until"].isoformat(),
            **filters,
        },
        "totals": export.summary_row_to_dict(tracker.totals(**window, **filters)),
        "by_agent": [export.summary_row_to_dict(r) for r in tracker.summary(("agent",), **window, **filters)],
        "by_model": [
            export.summary_row_to_dict(r) for r in tracker.summary(("model", "provider"), **window, **filters)
        ],
    }
    return int(export.write_json_pages(pages, stream, header))


# -- tail --------------------------------------------------------------------------------------------------------


def tail_command(
    store: StoreOption,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="How many of the latest records to show.")
    ] = 10,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep printing records as they land.")
    ] = False,
    duration: Annotated[
        str | None, typer.Option("--for", help="With --follow: stop after this long (e.g. 2s, 5m).")
    ] = None,
    interval: Annotated[str, typer.Option(help="With --follow: time between polls.")] = "1s",
    lookback: Annotated[
        str,
        typer.Option(
            help="With --follow: how late a record may land (its timestamp behind the newest seen)."
        ),
    ] = "30s",
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or jsonl.")] = "text",
    agent: Agent = None,
    session: Session = None,
    user: User = None,
    tool: Tool = None,
    model: Model = None,
    provider: ProviderFilter = None,
    tag: Tag = None,
) -> None:
    """Print the latest records; with --follow, print new ones as they land (each once)."""
    if output_format not in ("text", "jsonl"):
        raise typer.BadParameter(f"--format must be text or jsonl, got {output_format!r}")
    limit = parse_duration(duration, "--for") if duration is not None else None
    pause = parse_duration(interval, "--interval")
    late_us = int(parse_duration(lookback, "--lookback") * 1_000_000)
    filters = _filters(agent=agent, session=session, user=user, tool=tool, model=model)
    filters |= _filters(provider=provider, tag=tag)
    show = _tail_printer(output_format)
    tracker = open_ledger(store)
    try:
        # with --follow, what is there before the first lines are read counts as seen, printed or not
        seen = _recent(tracker, filters, _now_us() - late_us) if follow else {}
        latest = tracker.history(limit=lines, **filters) if lines else []
        for record in latest:
            show(record)
        if follow:
            _follow(tracker, filters, show, latest, seen, pause=pause, late_us=late_us, limit=limit)
    except KeyboardInterrupt:
        pass
    finally:
        close_ledger(tracker)


def _follow(
    tracker: Tracker,
    filters: dict[str, Any],
    show: Any,
    latest: list[Record],
    seen: dict[int, int],
    *,
    pause: float,
    late_us: int,
    limit: float | None,
) -> None:
    """Poll for records newer than (newest seen - lookback), print the unseen ones oldest first.

    The ids seen inside the lookback window are remembered, so a record is printed once even when
    writers commit out of timestamp order; one that lands later than the lookback is missed."""
    from tokentrail.reports.export import from_timestamp_us

    deadline = None if limit is None else time.monotonic() + limit
    newest = max((r.timestamp_us for r in latest), default=_now_us())
    seen.update((record.id, record.timestamp_us) for record in latest)
    while True:
        last_round = deadline is not None and time.monotonic() >= deadline
        if not last_round:
            wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(wait)
        low = min(newest, _now_us()) - late_us
        for record in tracker.history(from_timestamp_us(low), **filters):
            if record.id not in seen:
                seen[record.id] = record.timestamp_us
                newest = max(newest, record.timestamp_us)
                show(record)
        seen = {key: at for key, at in seen.items() if at >= low}
        sys.stdout.flush()
        if last_round:
            return


def _recent(tracker: Tracker, filters: dict[str, Any], since_us: int) -> dict[int, int]:
    from tokentrail.reports.export import from_timestamp_us

    return {r.id: r.timestamp_us for r in tracker.history(from_timestamp_us(since_us), **filters)}


def _now_us() -> int:
    return time.time_ns() // 1000


_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(32), 127)} | {10: "\\n", 9: "\\t", 13: "\\r"}


def _tail_printer(output_format: str) -> Any:
    from tokentrail.reports.export import record_to_dict

    if output_format == "jsonl":
        return lambda record: typer.echo(json.dumps(record_to_dict(record), ensure_ascii=False))

    def text(record: Record) -> None:
        usage = record.usage
        cost = "unpriced" if record.cost is None else f"${record.cost}"
        fields = [
            record.timestamp.isoformat(),
            f"agent={_visible(record.agent)}",
            f"model={_visible(record.model)}",
            f"provider={_visible(record.provider)}",
            f"in={usage.input_tokens}",
            f"out={usage.output_tokens}",
            f"cost={cost}",
            f"id={record.id:032x}",
        ]
        typer.echo("  ".join(fields))

    return text


def _visible(value: str | None) -> str:
    """A name on one line: verbatim except control characters, which are shown escaped."""
    return "-" if value is None else value.translate(_CONTROL_ESCAPES)


# -- import ----------------------------------------------------------------------------------------------------


def import_command(
    file: Annotated[
        Path, typer.Argument(help="Export to import (tokentrail JSON/JSONL/CSV/Parquet, TinyAgent JSON).")
    ],
    store: StoreOption,
    file_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="auto, tokentrail-json, tokentrail-jsonl, tokentrail-csv, tokentrail-parquet or tinyagent.",
        ),
    ] = "auto",
    at: Annotated[
        str | None,
        typer.Option(
            help="Time of TinyAgent entries, which carry none (default: the file's modification time)."
        ),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Records written per batch.")
    ] = 5_000,
) -> None:
    """Add the records of an export to a ledger; records already there (same id) are skipped."""
    from tokentrail.reports import export

    if file_format not in export.IMPORT_FORMATS:
        raise typer.BadParameter(
            f"--format must be one of {', '.join(export.IMPORT_FORMATS)}, got {file_format!r}"
        )
    when = parse_when(at, "--at")
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if not file.is_file():
        _fail(f"no file {str(file)!r}")
    tracker = _open_or_create(store)
    added = present = 0
    try:
        records = export.iter_file_records(file, file_format, at=when)
        for chunk in _chunks(records, chunk_size):
            fresh = _not_in_ledger(tracker, chunk)
            for record in fresh:
                tracker.store.append(record)
            flush = getattr(tracker.store, "flush", None)
            if callable(flush):
                flush()
            added += len(fresh)
            present += len(chunk) - len(fresh)
    except (export.ImportFormatError, ImportError, UnicodeDecodeError, OSError) as exc:
        close_ledger(tracker)
        done = f" ({added:,} records were imported before it; importing again skips them)" if added else ""
        _fail(f"{exc}{done}")
    close_ledger(tracker)
    typer.echo(f"Imported {added:,} new records from {file} ({present:,} already in the ledger).")


def _open_or_create(url: str) -> Tracker:
    from tokentrail.errors import StoreError
    from tokentrail.tracker import Tracker

    try:
        return Tracker(store=url)
    except StoreError as exc:
        _fail(f"cannot open the store: {exc}")


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _not_in_ledger(tracker: Tracker, chunk: list[Record]) -> list[Record]:
    """The records of `chunk` whose id is neither in the ledger nor earlier in the chunk.

    The ledger is asked hour by hour for the exact time span the chunk's records of that hour cover."""
    from tokentrail.reports.export import from_timestamp_us

    spans: dict[int, tuple[int, int]] = {}
    for record in chunk:
        hour = record.timestamp_us // 3_600_000_000
        low, high = spans.get(hour, (record.timestamp_us, record.timestamp_us))
        spans[hour] = (min(low, record.timestamp_us), max(high, record.timestamp_us))
    known: set[int] = set()
    for low, high in spans.values():
        known.update(r.id for r in tracker.history(from_timestamp_us(low), from_timestamp_us(high + 1)))
    fresh = []
    for record in chunk:
        if record.id not in known:
            known.add(record.id)
            fresh.append(record)
    return fresh


# -- reconcile -------------------------------------------------------------------------------------------------


def reconcile_command(
    store: StoreOption,
    provider: Annotated[str, typer.Option("--provider", "-p", help="openai or anthropic.")],
    file: Annotated[Path, typer.Option("--file", help="The provider's usage/cost report (JSON or CSV).")],
    since: Since = None,
    until: Until = None,
    tolerance: Annotated[str, typer.Option(help="USD difference still counted as equal.")] = "0.0001",
    output_format: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 when anything differs.")] = False,
) -> None:
    """Compare the ledger with a provider's own usage and cost report, per UTC day and model."""
    from tokentrail.reports import reconcile as rec

    if provider not in rec.PROVIDERS:
        raise typer.BadParameter(f"--provider must be one of {', '.join(rec.PROVIDERS)}, got {provider!r}")
    if output_format not in ("table", "json", "csv"):
        raise typer.BadParameter(f"--format must be table, json or csv, got {output_format!r}")
    try:
        allowed = Decimal(tolerance)
    except InvalidOperation:
        raise typer.BadParameter(f"--tolerance must be a USD amount, got {tolerance!r}") from None
    window = _window(since, until)
    if not file.is_file():
        _fail(f"no file {str(file)!r}")
    try:
        report = rec.read_report(file, provider)
    except (rec.ReportFormatError, UnicodeDecodeError) as exc:
        _fail(f"{file}: {exc}")
    days = [day for day in report.days if _day_in(day, window["since"], window["until"])]
    tracker = open_ledger(store)
    try:
        ledger = rec.ledger_figures(tracker, provider, days)
    finally:
        close_ledger(tracker)
    rows = [row for row in rec.reconcile(ledger, report, allowed) if row.day in set(days)]
    _print_reconcile(rows, output_format, report.ignored_results)
    if strict and any(not row.matches for row in rows):
        raise typer.Exit(code=1)


def _day_in(day: Any, since: datetime | None, until: datetime | None) -> bool:
    """Whether UTC day `day` overlaps [since, until) (naive times are UTC)."""
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    end = start + timedelta(days=1)
    low = None if since is None else (since if since.tzinfo else since.replace(tzinfo=timezone.utc))
    high = None if until is None else (until if until.tzinfo else until.replace(tzinfo=timezone.utc))
    return (low is None or end > low) and (high is None or start < high)


def _print_reconcile(rows: list[Any], output_format: str, ignored: int) -> None:
    from tokentrail.reports.reconcile import row_to_dict

    data = [row_to_dict(row) for row in rows]
    if output_format == "json":
        typer.echo(json.dumps({"rows": data, "ignored_results": ignored}, ensure_ascii=False))
        return
    if output_format == "csv":
        import csv
        import io

        buffer = io.StringIO()
        columns = list(data[0]) if data else ["day", "model"]
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for item in data:
            item["causes"] = "; ".join(item["causes"])
            writer.writerow({k: "" if v is None else v for k, v in item.items()})
        typer.echo(buffer.getvalue(), nl=False)
        return
    _reconcile_table(rows, ignored)


def _reconcile_table(rows: list[Any], ignored: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tokentrail.reports.fit import Fitted

    table = Table(
        title="Ledger (L) vs provider (P), per UTC day and model", box=box.SIMPLE, title_justify="left"
    )
    table.add_column("Day", no_wrap=True)
    table.add_column("Model")
    for name in ("Requests L / P", "Input L / P", "Output L / P", "Cost L / P", "P - L"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)

    def pair(name: str, row: Any) -> str:
        return f"{_shown(getattr(row.ledger, name))} / {_shown(getattr(row.provider, name))}"

    for row in rows:
        diff = row.difference("cost")
        table.add_row(
            Text(row.day.isoformat()),
            Text(row.model or "(all models)"),
            Text(pair("requests", row)),
            Text(pair("input_tokens", row)),
            Text(pair("output_tokens", row)),
            Text(pair("cost", row)),
            Text("-" if diff is None else f"{diff:+f}"),
            Text("ok", style="green") if row.matches else Text("differs", style="red"),
        )
    console = Console(soft_wrap=True)
    console.print(Fitted(table, drop=("Requests L / P", "Input L / P", "Output L / P")))
    differing = [row for row in rows if not row.matches]
    console.print(Text(f"{len(differing)} of {len(rows)} day x model rows differ."))
    for row in differing:
        console.print(Text(f"{row.day.isoformat()} {row.model or '(all models)'}:", style="bold"))
        for cause in row.causes:
            console.print(Text(f"  - {cause}"))
    if ignored:
        console.print(Text(f"{ignored} results of other endpoints (embeddings, images …) were left out."))


def _shown(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, Decimal):
        return f"${value}"
    return f"{value:,}"


# -- chart -------------------------------------------------------------------------------------------------------


def chart_command(
    store: StoreOption,
    kind: Annotated[
        str,
        typer.Option(
            "--kind", "-k", help="cost-by-agent, cost-by-model, cost-over-time or tokens-over-time."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Image to write: .png or .svg.")],
    since: Since = None,
    until: Until = None,
    bucket: Annotated[str, typer.Option(help="Over time: auto, hour, day or month.")] = "auto",
    title: Annotated[str | None, typer.Option(help="Chart title.")] = None,
    agent: Agent = None,
    session: Session = None,
    user: User = None,
    tool: Tool = None,
    model: Model = None,
    provider: ProviderFilter = None,
    tag: Tag = None,
) -> None:
    """Draw a chart of a ledger's spend as PNG or SVG (needs matplotlib, the charts extra)."""
    from tokentrail.reports.charts import CHART_KINDS, CHART_SUFFIXES, TIME_BUCKETS

    if kind not in CHART_KINDS:
        raise typer.BadParameter(f"--kind must be one of {', '.join(CHART_KINDS)}, got {kind!r}")
    if output.suffix.lower() not in CHART_SUFFIXES:
        raise typer.BadParameter(f"-o must end in .png or .svg, got {str(output)!r}")
    if bucket not in TIME_BUCKETS:
        raise typer.BadParameter(f"--bucket must be one of {', '.join(TIME_BUCKETS)}, got {bucket!r}")
    if not output.parent.is_dir():
        _fail(f"no directory {str(output.parent)!r} for {str(output)!r}")
    window = _window(since, until)
    filters = _filters(agent=agent, session=session, user=user, tool=tool, model=model)
    filters |= _filters(provider=provider, tag=tag)
    try:
        import matplotlib  # noqa: F401

        from tokentrail.reports.charts import plot
    except ImportError:
        _fail("charts need matplotlib: pip install 'tokentrail[charts]'")
    tracker = open_ledger(store)
    try:
        written = plot(tracker, kind, output, title=title, bucket=bucket, **window, **filters)
    finally:
        close_ledger(tracker)
    typer.echo(f"Wrote {written}")
