"""Exports that round-trip: JSON (summary + full history) and CSV (history, one row per call).

`save(tracker, "usage.json")` then `load("usage.json")` gives a tracker whose history equals the
original record for record: ids, timestamps, token counts, exact costs, price rules, attribution.
Costs are written as exact decimal strings, never floats.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from tokentrail._money import decimal_to_units, units_to_decimal
from tokentrail._record import Record, SummaryRow, intern_attribution, to_timestamp_us
from tokentrail._types import TOKEN_FIELDS, PriceRule, Usage, UsageStatus
from tokentrail.tracker import Tracker

__all__ = [
    "load",
    "read_csv",
    "read_json",
    "record_from_dict",
    "record_to_dict",
    "save",
    "summary_row_to_dict",
    "to_csv",
    "to_dict",
    "to_json",
]

FORMAT_VERSION = 1
CSV_COLUMNS = (
    "id",
    "timestamp",
    "model",
    "provider",
    "agent",
    "session",
    "user",
    "tool",
    "tags",
    "path",
    "status",
    "usage_reason",
    *TOKEN_FIELDS,
    "priced",
    "cost",
    "non_token_cost",
    "unpriced_reason",
    "duration_ms",
    "provider_cost",
    "context",
    "price_rule",
    "estimated_input_tokens",
    "ttft_ms",
)


# -- records -----------------------------------------------------------------------------------------


def record_to_dict(record: Record) -> dict[str, Any]:
    """A JSON-ready mapping of one record (cost as an exact decimal string)."""
    usage = record.usage
    return {
        "id": f"{record.id:032x}",
        "timestamp": record.timestamp.isoformat(),
        "model": record.model,
        "provider": record.provider,
        "agent": record.agent,
        "session": record.session,
        "user": record.user,
        "tool": record.tool,
        "tags": list(record.tags),
        "path": list(record.path),
        "status": usage.status.value,
        "usage_reason": usage.reason,
        **{name: getattr(usage, name) for name in TOKEN_FIELDS},
        "priced": record.priced,
        "cost": None if record.cost_units is None else str(units_to_decimal(record.cost_units)),
        "non_token_cost": None
        if record.cost_units is None
        else str(units_to_decimal(record.non_token_units)),
        "unpriced_reason": record.unpriced_reason,
        "duration_ms": record.duration_ms,
        "provider_cost": None if record.provider_cost is None else str(record.provider_cost),
        "context": None if record.context is None else dict(record.context),
        "price_rule": _rule_to_dict(record.price_rule),
        "estimated_input_tokens": record.estimated_input_tokens,
        "ttft_ms": record.ttft_ms,
    }


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """The record `record_to_dict` described."""
    usage = Usage(
        **{name: int(data.get(name) or 0) for name in TOKEN_FIELDS if name != "requests"},
        requests=int(data.get("requests", 1)),
        status=UsageStatus(data.get("status") or "complete"),
        reason=data.get("usage_reason"),
    )
    cost = data.get("cost")
    non_token = data.get("non_token_cost")  # absent from exports made before it was kept: not known, 0
    duration = data.get("duration_ms")
    reported = data.get("provider_cost")
    estimate = data.get("estimated_input_tokens")
    ttft = data.get("ttft_ms")
    return Record(
        id=int(data["id"], 16),
        timestamp_us=to_timestamp_us(datetime.fromisoformat(data["timestamp"])),
        usage=usage,
        model=data.get("model"),
        provider=data.get("provider"),
        cost_units=decimal_to_units(Decimal(cost), what="cost")
        if cost is not None and data.get("priced")
        else None,
        price_rule=_rule_from_dict(data.get("price_rule")),
        unpriced_reason=data.get("unpriced_reason"),
        duration_ms=None if duration is None else float(duration),
        attribution=intern_attribution(
            data.get("agent"),
            data.get("session"),
            data.get("user"),
            data.get("tool"),
            tuple(data.get("tags") or ()),
            tuple(data.get("path") or ()),
        ),
        provider_cost=None if reported is None else Decimal(reported),
        context=data.get("context"),
        estimated_input_tokens=None if estimate is None else int(estimate),
        ttft_ms=None if ttft is None else float(ttft),
        non_token_units=decimal_to_units(Decimal(non_token), what="non_token_cost")
        if non_token is not None and cost is not None and data.get("priced")
        else 0,
    )


def _rule_to_dict(rule: PriceRule | None) -> dict[str, Any] | None:
    return None if rule is None else rule.as_dict()


def _rule_from_dict(data: Mapping[str, Any] | None) -> PriceRule | None:
    return None if data is None else PriceRule.from_dict(data)


# -- summaries ---------------------------------------------------------------------------------------


def summary_row_to_dict(row: SummaryRow) -> dict[str, Any]:
    """A JSON-ready mapping of a summary row: exact costs as strings, metrics as numbers."""
    usage = row.usage
    return {
        **{name: _plain(value) for name, value in row.group.items()},
        "calls": row.calls,
        "unpriced_calls": row.unpriced_calls,
        **{name: getattr(usage, name) for name in TOKEN_FIELDS},
        "cost": str(row.cost),
        "non_token_cost": str(row.non_token_cost),
        "cost_per_call": _text(row.cost_per_call),
        "cost_per_1k_tokens": _text(row.cost_per_1k_tokens),
        "duration_ms": row.duration_ms,
        "timed_calls": row.timed_calls,
        "tokens_per_second": row.tokens_per_second,
        "cache_hit_ratio": row.cache_hit_ratio,
        "provider_cost": _text(row.provider_cost),
        "provider_cost_difference": _text(row.provider_cost_difference),
        "status_counts": row.status_counts,
    }


def to_dict(tracker: Tracker) -> dict[str, Any]:
    """Totals, spend by agent and by model, and every record of `tracker` (its node and below)."""
    return {
        "format": "tokentrail",
        "version": FORMAT_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "node": list(tracker.path),
        "totals": summary_row_to_dict(tracker.totals()),
        "by_agent": [summary_row_to_dict(row) for row in tracker.summary(by=("agent",))],
        "by_model": [summary_row_to_dict(row) for row in tracker.summary(by=("model", "provider"))],
        "records": [record_to_dict(record) for record in tracker.history()],
    }


def to_json(tracker: Tracker, indent: int | None = 2) -> str:
    return json.dumps(to_dict(tracker), indent=indent, ensure_ascii=False)


def to_csv(tracker: Tracker) -> str:
    """The usage history, one call per row; nested fields (tags, path, context, rule) as JSON."""
    buffer = io.StringIO()
    _write_csv(buffer, tracker.history())
    return buffer.getvalue()


def _write_csv(stream: io.TextIOBase | Any, records: Iterable[Record]) -> None:
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = record_to_dict(record)
        for name in ("tags", "path", "context", "price_rule"):
            row[name] = json.dumps(row[name], ensure_ascii=False) if row[name] is not None else ""
        row["priced"] = "true" if row["priced"] else "false"
        for name in ("duration_ms", "ttft_ms"):
            row[name] = "" if row[name] is None else repr(row[name])
        writer.writerow({name: "" if value is None else value for name, value in row.items()})


# -- reading ------------------------------------------------------------------------------------------


def read_json(text: str) -> list[Record]:
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != "tokentrail":
        raise ValueError("not a tokentrail JSON export")
    return [record_from_dict(item) for item in data["records"]]


def read_csv(text: str) -> list[Record]:
    records = []
    for row in csv.DictReader(io.StringIO(text)):
        data: dict[str, Any] = {name: (value if value != "" else None) for name, value in row.items()}
        for name in ("tags", "path", "context", "price_rule"):
            data[name] = json.loads(data[name]) if data[name] is not None else None
        data["priced"] = data["priced"] == "true"
        records.append(record_from_dict(data))
    return records


def save(tracker: Tracker, path: str | os.PathLike[str]) -> Path:
    """Write `tracker`'s export to `path`: `.csv` for the history as CSV, anything else JSON."""
    target = Path(path)
    text = to_csv(tracker) if target.suffix.lower() == ".csv" else to_json(tracker)
    target.write_text(text, encoding="utf-8", newline="")
    return target


def load(path: str | os.PathLike[str], tracker: Tracker | None = None) -> Tracker:
    """Read a `save`d export into `tracker` (a new in-memory one by default) and return it."""
    source = Path(path)
    text = source.read_text(encoding="utf-8")
    records = read_csv(text) if source.suffix.lower() == ".csv" else read_json(text)
    target = tracker if tracker is not None else Tracker()
    for record in records:
        target.store.append(record)
    return target


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, date) else value


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


# -- streaming: pages of history, record-per-line and columnar formats ---------------------------------
# `tokentrail export` / `import` move ledgers of any size: history is read in time windows sized from the
# hourly rollups, and files are written and read a page at a time.

EXPORT_FORMATS = ("json", "jsonl", "csv", "parquet")
IMPORT_FORMATS = (
    "auto",
    "tokentrail-json",
    "tokentrail-jsonl",
    "tokentrail-csv",
    "tokentrail-parquet",
    "tinyagent",
)
DEFAULT_PAGE_SIZE = 10_000
_HOUR_US = 3_600_000_000
_NESTED_CSV = ("tags", "path", "context", "price_rule")


class ImportFormatError(ValueError):
    """A file that is not what its format says (the message names the file and the record)."""


def iter_record_pages(
    tracker: Tracker,
    *,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    **filters: Any,
) -> Iterator[list[Record]]:
    """What `tracker.history(since, until, **filters)` returns, oldest first, a page at a time.

    Pages are contiguous time windows sized from the hourly counts of `summary(by=("hour",))` (rollups,
    cheap); an hour holding more than `page_size` records is halved until each part fits, so memory
    stays near one page whatever the ledger holds. Empty windows (pruned hours) yield nothing.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    since_us = None if since is None else to_timestamp_us(since)
    until_us = None if until is None else to_timestamp_us(until)
    rows = tracker.summary(("hour",), since, until, **filters)
    hours = sorted((to_timestamp_us(_bucket_start(row.group["hour"])) // _HOUR_US, row.calls) for row in rows)
    if not hours:
        return
    start = since_us if since_us is not None else hours[0][0] * _HOUR_US
    pending = 0
    for hour, calls in hours:
        hour_start = hour * _HOUR_US if since_us is None else max(hour * _HOUR_US, since_us)
        hour_end = (hour + 1) * _HOUR_US if until_us is None else min((hour + 1) * _HOUR_US, until_us)
        if pending and pending + calls > page_size:
            yield from _window(tracker, start, hour_start, filters)
            start, pending = hour_start, 0
        pending += calls
        if pending > page_size:  # one busy hour: split it by time
            yield from _split(tracker, start, hour_end, page_size, filters)
            start, pending = hour_end, 0
    if pending or start != until_us:
        yield from _window(tracker, start, until_us, filters)


def _bucket_start(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected an hour bucket, got {value!r}")
    return value


def _window(
    tracker: Tracker, start_us: int | None, end_us: int | None, filters: Mapping[str, Any]
) -> Iterator[list[Record]]:
    page = tracker.history(from_timestamp_us(start_us), from_timestamp_us(end_us), **filters)
    if page:
        yield page


def _split(
    tracker: Tracker, start_us: int, end_us: int, page_size: int, filters: Mapping[str, Any]
) -> Iterator[list[Record]]:
    calls = tracker.totals(from_timestamp_us(start_us), from_timestamp_us(end_us), **filters).calls
    if calls <= page_size or end_us - start_us <= 1:
        yield from _window(tracker, start_us, end_us, filters)
        return
    middle = (start_us + end_us) // 2
    yield from _split(tracker, start_us, middle, page_size, filters)
    yield from _split(tracker, middle, end_us, page_size, filters)


def from_timestamp_us(timestamp_us: int | None) -> datetime | None:
    """The UTC datetime of a microsecond timestamp (exact: datetimes hold microseconds)."""
    if timestamp_us is None:
        return None
    return _EPOCH + timedelta(microseconds=timestamp_us)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def csv_row(record: Record) -> dict[str, str]:
    """One CSV row of `record` (nested fields as JSON, None as an empty cell), as `to_csv` writes it."""
    row = record_to_dict(record)
    for name in _NESTED_CSV:
        row[name] = json.dumps(row[name], ensure_ascii=False) if row[name] is not None else ""
    row["priced"] = "true" if row["priced"] else "false"
    for name in ("duration_ms", "ttft_ms"):
        row[name] = "" if row[name] is None else repr(row[name])
    return {name: "" if value is None else str(value) for name, value in row.items()}


def record_from_csv_row(row: Mapping[str, str | None]) -> Record:
    """The record a `csv_row` describes."""
    data: dict[str, Any] = {name: (value if value != "" else None) for name, value in row.items()}
    for name in _NESTED_CSV:
        data[name] = json.loads(data[name]) if data.get(name) is not None else None
    data["priced"] = data.get("priced") == "true"
    return record_from_dict(data)


def write_json_pages(pages: Iterable[list[Record]], stream: TextIO, header: Mapping[str, Any]) -> int:
    """A `to_json`-shaped document (readable by `read_json` / `load`) written a page at a time;
    `header` holds the fields before "records" (format, version, totals …). Returns the record count."""
    head = json.dumps(dict(header), ensure_ascii=False)
    stream.write(head[:-1] + (', "records": [' if header else '"records": ['))
    written = 0
    for page in pages:
        for record in page:
            stream.write(",\n" if written else "\n")
            stream.write(json.dumps(record_to_dict(record), ensure_ascii=False))
            written += 1
    stream.write("\n]}\n")
    return written


def write_jsonl_pages(pages: Iterable[list[Record]], stream: TextIO) -> int:
    """One `record_to_dict` JSON object per line."""
    written = 0
    for page in pages:
        stream.writelines(json.dumps(record_to_dict(r), ensure_ascii=False) + "\n" for r in page)
        written += len(page)
    return written


def write_csv_pages(pages: Iterable[list[Record]], stream: TextIO) -> int:
    """The `to_csv` layout, a page at a time."""
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    written = 0
    for page in pages:
        writer.writerows(csv_row(record) for record in page)
        written += len(page)
    return written


def _pyarrow() -> Any:
    import importlib

    try:
        pyarrow = importlib.import_module("pyarrow")
        importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise ImportError(
            "Parquet needs pyarrow: pip install 'tokentrail[parquet]' (or pip install pyarrow)"
        ) from None
    return pyarrow


def parquet_schema() -> Any:
    """Column types of a Parquet export: exact costs as decimal strings, time as UTC microseconds."""
    pa = _pyarrow()
    text, count = pa.string(), pa.int64()
    fields = [
        ("id", text),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        *((name, text) for name in ("model", "provider", "agent", "session", "user", "tool")),
        ("tags", pa.list_(text)),
        ("path", pa.list_(text)),
        ("status", text),
        ("usage_reason", text),
        *((name, count) for name in TOKEN_FIELDS),
        ("priced", pa.bool_()),
        ("cost", text),
        ("non_token_cost", text),
        ("unpriced_reason", text),
        ("duration_ms", pa.float64()),
        ("provider_cost", text),
        ("context", text),
        ("price_rule", text),
        ("estimated_input_tokens", count),
        ("ttft_ms", pa.float64()),
    ]
    return pa.schema(fields)


def write_parquet_pages(pages: Iterable[list[Record]], path: str | os.PathLike[str]) -> int:
    """A Parquet file, one row group per page (needs pyarrow)."""
    pa = _pyarrow()
    schema = parquet_schema()
    written = 0
    with pa.parquet.ParquetWriter(os.fspath(path), schema) as writer:
        for page in pages:
            rows = [_parquet_row(record) for record in page]
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            written += len(rows)
        if not written:
            writer.write_table(pa.Table.from_pylist([], schema=schema))
    return written


def _parquet_row(record: Record) -> dict[str, Any]:
    row = record_to_dict(record)
    row["timestamp"] = record.timestamp
    for name in ("context", "price_rule"):
        row[name] = None if row[name] is None else json.dumps(row[name], ensure_ascii=False)
    return row


def _record_from_parquet_row(row: dict[str, Any]) -> Record:
    row["timestamp"] = row["timestamp"].isoformat()
    for name in ("context", "price_rule"):
        row[name] = None if row[name] is None else json.loads(row[name])
    return record_from_dict(row)


# -- reading files of any size ------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike[str]) -> str:
    """The import format of a file, from its suffix and, for JSON, its first bytes."""
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix == ".csv":
        return "tokentrail-csv"
    if suffix in (".jsonl", ".ndjson"):
        return "tokentrail-jsonl"
    if suffix in (".parquet", ".pq"):
        return "tokentrail-parquet"
    with source.open("rb") as handle:
        if handle.read(4) == b"PAR1":
            return "tokentrail-parquet"
        handle.seek(0)
        start = handle.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if start.startswith("{") and '"tracker_name"' in start:
        return "tinyagent"
    if start.startswith("{") and '"format"' in start:
        return "tokentrail-json"
    if start.startswith("{"):
        first_line = start.split("\n", 1)[0]
        if '"id"' in first_line and '"timestamp"' in first_line:
            return "tokentrail-jsonl"
    raise ImportFormatError(
        f"{source}: cannot tell its format; pass --format (one of {', '.join(IMPORT_FORMATS[1:])})"
    )


def iter_file_records(
    path: str | os.PathLike[str], file_format: str = "auto", *, at: datetime | None = None
) -> Iterator[Record]:
    """The records of an export file, read as they are needed (a tokentrail JSON document and a
    TinyAgent report are parsed whole; JSONL, CSV and Parquet are streamed).

    `at` is the time given to TinyAgent entries, which carry none (default: the file's modification
    time). Raises `ImportFormatError` naming the file and record for anything malformed.
    """
    source = Path(path)
    if file_format == "auto":
        file_format = detect_format(source)
    if file_format not in IMPORT_FORMATS:
        raise ImportFormatError(f"unknown import format {file_format!r}; known: {', '.join(IMPORT_FORMATS)}")
    readers = {
        "tokentrail-json": _json_records,
        "tokentrail-jsonl": _jsonl_records,
        "tokentrail-csv": _csv_records,
        "tokentrail-parquet": _parquet_records,
    }
    if file_format == "tinyagent":
        when = at or datetime.fromtimestamp(source.stat().st_mtime, timezone.utc)
        yield from _tinyagent_records(source, when)
        return
    yield from readers[file_format](source)


def _bad(source: Path, where: str, exc: BaseException) -> ImportFormatError:
    return ImportFormatError(f"{source}: {where}: {type(exc).__name__}: {exc}")


def _json_records(source: Path) -> Iterator[Record]:
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(source, "not JSON", exc) from None
    if (
        not isinstance(data, dict)
        or data.get("format") != "tokentrail"
        or not isinstance(data.get("records"), list)
    ):
        raise ImportFormatError(f"{source}: not a tokentrail JSON export (no format/records)")
    for number, item in enumerate(data["records"], 1):
        yield _parsed(source, f"record {number}", record_from_dict, item)


def _jsonl_records(source: Path) -> Iterator[Record]:
    with source.open(encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise _bad(source, f"line {number}", exc) from None
            yield _parsed(source, f"line {number}", record_from_dict, item)


def _csv_records(source: Path) -> Iterator[Record]:
    with source.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"id", "timestamp"} - set(reader.fieldnames or ())
        if missing:
            raise ImportFormatError(
                f"{source}: not a tokentrail CSV export (no {', '.join(sorted(missing))})"
            )
        for row in reader:
            yield _parsed(source, f"line {reader.line_num}", record_from_csv_row, row)


def _parquet_records(source: Path) -> Iterator[Record]:
    pa = _pyarrow()
    try:
        parquet = pa.parquet.ParquetFile(os.fspath(source))
    except Exception as exc:
        raise _bad(source, "not Parquet", exc) from None
    number = 0
    for batch in parquet.iter_batches(batch_size=DEFAULT_PAGE_SIZE):
        for row in batch.to_pylist():
            number += 1
            yield _parsed(source, f"row {number}", _record_from_parquet_row, row)


def _parsed(source: Path, where: str, parse: Any, item: Any) -> Record:
    try:
        record: Record = parse(item)
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise _bad(source, where, exc) from None
    return record


# -- TinyAgent `TokenTracker.save_to_file` reports -------------------------------------------------------
# Shape (tinyagent-py 0.1.20, tinyagent/hooks/token_tracker.py, `get_detailed_report`): tracker_name,
# session_duration_seconds, total_usage, model_breakdown {model: stats}, provider_breakdown,
# child_trackers [same shape]. Stats: prompt_tokens, completion_tokens, total_tokens, cost (float USD),
# call_count, thinking_tokens, reasoning_tokens, cache_creation_input_tokens, cache_read_input_tokens.
# A parent's breakdowns include its children's when child_trackers is filled, so each node's own usage is
# its breakdown minus its children's. Entries are per tracker x model, not per call.

_TINY_COUNTS = (
    "prompt_tokens",
    "completion_tokens",
    "call_count",
    "thinking_tokens",
    "reasoning_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def _tinyagent_records(source: Path, at: datetime) -> Iterator[Record]:
    try:
        data = json.loads(source.read_text(encoding="utf-8"), parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(source, "not JSON", exc) from None
    try:
        yield from tinyagent_records(data, at)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise _bad(source, "TinyAgent report", exc) from None


def tinyagent_records(report: Mapping[str, Any], at: datetime) -> list[Record]:
    """Records for a TinyAgent report: one per tracker x model with the tracker's own calls
    (`Usage.requests` = its call count), attributed to agent = tracker name and path = the tracker
    chain, priced with the current catalog; TinyAgent's (LiteLLM's) cost is kept as `provider_cost`
    (a cost of 0 counts as not reported). Ids are derived from the content, so importing the same
    report again adds nothing."""
    if not isinstance(report, Mapping) or "tracker_name" not in report:
        raise ValueError("not a TinyAgent token tracker report (no tracker_name)")
    session = str(report.get("session_duration_seconds"))
    records: list[Record] = []
    _tiny_node(report, (), session, to_timestamp_us(at), records)
    return records


def _tiny_node(
    node: Mapping[str, Any], parent: tuple[str, ...], session: str, at_us: int, out: list[Record]
) -> None:
    name = str(node["tracker_name"])
    path = (*parent, name)
    children = list(node.get("child_trackers") or ())
    breakdown: dict[str | None, Mapping[str, Any]] = dict(node.get("model_breakdown") or {})
    if not breakdown:
        breakdown = {None: node.get("total_usage") or {}}
    for model, stats in sorted(breakdown.items(), key=lambda item: str(item[0])):
        own = _tiny_stats(stats)
        for child in children:
            if model is None:
                child_stats = child.get("total_usage")
            else:
                child_stats = (child.get("model_breakdown") or {}).get(model)
            if child_stats:
                own = {key: own[key] - value for key, value in _tiny_stats(child_stats).items()}
        if own["call_count"] <= 0 and not any(own[key] for key in _TINY_COUNTS):
            continue
        if any(own[key] < 0 for key in _TINY_COUNTS) or own["call_count"] <= 0:
            raise ValueError(f"tracker {'/'.join(path)!r} model {model!r}: children exceed the parent")
        out.append(_tiny_record(path, model, own, session, at_us))
    for child in children:
        _tiny_node(child, path, session, at_us, out)


def _tiny_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    counts: dict[str, Any] = {key: int(stats.get(key) or 0) for key in _TINY_COUNTS}
    counts["cost"] = Decimal(str(stats.get("cost") or 0))
    return counts


def _tiny_record(
    path: tuple[str, ...], model: str | None, own: Mapping[str, Any], session: str, at_us: int
) -> Record:
    import hashlib

    from tokentrail.pricing.catalog import price

    usage = _tiny_usage(own)
    content = json.dumps([session, list(path), model, {k: str(v) for k, v in own.items()}], sort_keys=True)
    record_id = int.from_bytes(hashlib.sha256(content.encode("utf-8")).digest()[:16], "big")
    try:
        cost = price(usage, model, None, from_timestamp_us(at_us))
        units, rule, reason = (
            (cost.total_units, cost.rule, None) if cost.priced else (None, None, cost.reason)
        )
    except Exception as exc:  # an unknown model or a catalog problem: unpriced, with the reason
        units, rule, reason = None, None, f"{type(exc).__name__}: {exc}"
    reported = own["cost"]
    return Record(
        id=record_id,
        timestamp_us=at_us,
        usage=usage,
        model=model,
        provider=None,
        cost_units=units,
        price_rule=rule,
        unpriced_reason=reason,
        attribution=intern_attribution(path[-1], None, None, None, (), path),
        provider_cost=reported if reported > 0 else None,
    )


def _tiny_usage(own: Mapping[str, Any]) -> Usage:
    """TinyAgent counts LiteLLM's `prompt_tokens` (cache reads and writes included for OpenAI and, in
    LiteLLM, Anthropic); if the cache counts exceed it, they were reported beside it and are added."""
    reasoning = max(own["reasoning_tokens"], own["thinking_tokens"])
    cache_read, cache_write = own["cache_read_input_tokens"], own["cache_creation_input_tokens"]
    prompt = own["prompt_tokens"]
    if cache_read + cache_write > prompt:
        prompt += cache_read + cache_write
    return Usage(
        input_tokens=prompt,
        output_tokens=max(own["completion_tokens"], reasoning),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        requests=own["call_count"],
    )
