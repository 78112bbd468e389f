"""Reconcile the ledger with a provider's own usage and cost reports, per UTC day x model.

    provider = read_report("usage.json", "openai")          # ProviderReport
    ledger = ledger_figures(tracker, "openai", provider.days)
    rows = reconcile(ledger, provider)                       # one ReconcileRow per day x model

Understood reports (JSON as the APIs return them, one page, a list of pages, or {"usage": …, "costs": …}):
OpenAI organization Usage API for completions (`organization.usage.completions.result`) and Costs API
(`organization.costs.result`); Anthropic Admin API messages usage report (`uncached_input_tokens`, …) and
cost report (`amount` in cents as a decimal string). CSV: one row per result, the same field names as
columns plus the bucket start (`start_time` / `starting_at` / `date`). Money stays `Decimal` throughout
(JSON numbers are parsed as decimals, never floats).

Model names are compared by `model_key`: lower case, provider prefix and snapshot date dropped, so the
ledger's `gpt-4o` meets the report's `gpt-4o-2024-08-06`.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokentrail.tracker import Tracker

__all__ = [
    "PROVIDERS",
    "Figures",
    "ProviderReport",
    "ReconcileRow",
    "ReportFormatError",
    "ledger_figures",
    "model_key",
    "parse_report",
    "read_report",
    "reconcile",
    "row_to_dict",
]

PROVIDERS = ("openai", "anthropic")
DEFAULT_TOLERANCE = Decimal("0.0001")  # USD; provider cost reports round below this
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")

DayModel = tuple[date, str | None]  # model None: the report does not break the day out by model


class ReportFormatError(ValueError):
    """A provider report that cannot be read (the message says what was expected)."""


@dataclass(frozen=True, slots=True)
class Figures:
    """Requests, tokens (the tokentrail convention: input includes cache reads and writes) and USD of
    one day x model on one side; None where that side does not report the figure."""

    requests: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost: Decimal | None = None
    unpriced_calls: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            **{f.name: _add(getattr(self, f.name), getattr(other, f.name)) for f in fields(Figures)}
        )


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@dataclass(frozen=True, slots=True)
class ProviderReport:
    """The provider's figures by day x model, and which days its usage / cost reports cover (a covered
    day without a line means the provider saw nothing that day)."""

    provider: str
    figures: dict[DayModel, Figures]
    usage_days: frozenset[date] = frozenset()
    cost_days: frozenset[date] = frozenset()
    reports_requests: bool = False
    ignored_results: int = 0  # results of other endpoints (embeddings, images …) left out

    @property
    def days(self) -> list[date]:
        return sorted(self.usage_days | self.cost_days | {day for day, _ in self.figures})


@dataclass(frozen=True, slots=True)
class ReconcileRow:
    """One day x model: the ledger's figures, the provider's, their differences and likely causes."""

    day: date
    model: str | None
    ledger: Figures
    provider: Figures
    causes: tuple[str, ...] = field(default=())

    def difference(self, name: str) -> Any:
        """Provider minus ledger for figure `name`, or None when either side does not report it."""
        mine, theirs = getattr(self.ledger, name), getattr(self.provider, name)
        if mine is None or theirs is None:
            return None
        return theirs - mine

    @property
    def matches(self) -> bool:
        return not self.causes


# -- model names ------------------------------------------------------------------------------------------

_PREFIX = re.compile(r"^(openai|anthropic|azure|models)/")
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def model_key(name: str | None) -> str | None:
    """The name both sides are compared by: lower case, no provider prefix, no snapshot date."""
    if name is None:
        return None
    key = _PREFIX.sub("", name.strip().lower())
    return _SNAPSHOT.sub("", key)


# -- reading provider reports ---------------------------------------------------------------------------------


def read_report(path: str | os.PathLike[str], provider: str) -> ProviderReport:
    """Parse a saved provider report: JSON (`.json`, numbers read as decimals) or CSV (`.csv`)."""
    source = Path(path)
    text = source.read_text(encoding="utf-8-sig")
    if source.suffix.lower() == ".csv":
        return parse_report(list(csv.DictReader(text.splitlines())), provider)
    try:
        data = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise ReportFormatError(f"{source}: not JSON ({exc})") from None
    return parse_report(data, provider)


def parse_report(data: Any, provider: str) -> ProviderReport:
    """The figures of a parsed report (JSON pages or CSV rows as dicts) from `provider`."""
    if provider not in PROVIDERS:
        raise ReportFormatError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    figures: dict[DayModel, Figures] = {}
    usage_days: set[date] = set()
    cost_days: set[date] = set()
    kinds: set[str] = set()
    ignored = 0
    for buckets in _pages(data):
        page_kinds: set[str] = set()
        empty_days: set[date] = set()
        for day, results in buckets:
            if not results:
                empty_days.add(day)
            for result in results:
                kind = _kind(result)
                if kind is None:
                    ignored += 1
                    continue
                page_kinds.add(kind)
                (usage_days if kind.endswith("usage") else cost_days).add(day)
                model, figure = _READERS[kind](result)
                key = (day, model_key(model))
                figures[key] = figures.get(key, Figures()) + figure
        for kind in page_kinds:  # a bucket without results: the provider saw nothing that day
            (usage_days if kind.endswith("usage") else cost_days).update(empty_days)
        kinds |= page_kinds
    if not kinds and not usage_days and not cost_days:
        raise ReportFormatError(
            "no usage or cost results found: expected an OpenAI organization usage/costs page or an "
            "Anthropic usage/cost report"
        )
    other = {kind.split("-")[0] for kind in kinds} - {provider}
    if other:
        raise ReportFormatError(f"this is a {', '.join(sorted(other))} report, not {provider}")
    return ProviderReport(
        provider,
        figures,
        frozenset(usage_days),
        frozenset(cost_days),
        reports_requests="openai-usage" in kinds,
        ignored_results=ignored,
    )


def _pages(data: Any) -> Iterator[list[tuple[date, list[Mapping[str, Any]]]]]:
    """The (UTC day, results) buckets of each page found in a page, a list of pages, a mapping of
    pages ({"usage": …, "costs": …}) or CSV rows."""
    if isinstance(data, list):
        if data and all(isinstance(item, Mapping) and _is_csv_row(item) for item in data):
            yield [(_bucket_day(item, csv_row=True), [_csv_result(item)]) for item in data]
        elif data and all(isinstance(item, Mapping) and "results" in item for item in data):
            yield [_bucket(item) for item in data]
        else:
            for item in data:
                yield from _pages(item)
        return
    if not isinstance(data, Mapping):
        return
    if isinstance(data.get("data"), list):
        yield [_bucket(item) for item in data["data"] if isinstance(item, Mapping)]
        return
    if isinstance(data.get("results"), list):
        yield [_bucket(data)]
        return
    for value in data.values():
        if isinstance(value, (list, Mapping)):
            yield from _pages(value)


def _bucket(bucket: Mapping[str, Any]) -> tuple[date, list[Mapping[str, Any]]]:
    results = bucket.get("results")
    if not isinstance(results, list):
        raise ReportFormatError(f"a bucket without results: {dict(bucket)!r:.200}")
    return _bucket_day(bucket), [r for r in results if isinstance(r, Mapping)]


def _is_csv_row(item: Mapping[str, Any]) -> bool:
    return "results" not in item and any(key in item for key in ("start_time", "starting_at", "date", "day"))


def _bucket_day(bucket: Mapping[str, Any], csv_row: bool = False) -> date:
    for key in ("start_time", "starting_at", "date", "day"):
        value = bucket.get(key)
        if value in (None, ""):
            continue
        try:
            if isinstance(value, (int, Decimal)) or (isinstance(value, str) and value.isdigit()):
                return datetime.fromtimestamp(int(value), timezone.utc).date()
            text = str(value).replace("Z", "+00:00")
            when = datetime.fromisoformat(text)
        except (ValueError, OverflowError) as exc:
            raise ReportFormatError(f"bad bucket time {key}={value!r}: {exc}") from None
        if when.tzinfo is not None:
            when = when.astimezone(timezone.utc)
        return when.date()
    where = "row" if csv_row else "bucket"
    raise ReportFormatError(f"a {where} without start_time / starting_at / date: {dict(bucket)!r:.200}")


def _csv_result(row: Mapping[str, Any]) -> dict[str, Any]:
    """A CSV row as an API result: empty cells are absent, `amount_value`/`amount.value` rebuild
    OpenAI's amount object, and nested cache-creation columns Anthropic's."""
    result: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
    for value_key, currency_key in (("amount_value", "amount_currency"), ("amount.value", "amount.currency")):
        if value_key in result:
            result["amount"] = {"value": result.pop(value_key), "currency": result.pop(currency_key, "usd")}
    nested = {}
    for name in ("ephemeral_1h_input_tokens", "ephemeral_5m_input_tokens"):
        for key in (name, f"cache_creation.{name}", f"cache_creation_{name}"):
            if key in result:
                nested[name] = result.pop(key)
    if nested:
        result["cache_creation"] = nested
    return result


def _kind(result: Mapping[str, Any]) -> str | None:
    obj = result.get("object")
    if obj == "organization.usage.completions.result" or (
        obj is None and "num_model_requests" in result and "input_tokens" in result
    ):
        return "openai-usage"
    if obj == "organization.costs.result" or (obj is None and isinstance(result.get("amount"), Mapping)):
        return "openai-cost"
    if obj is None and "uncached_input_tokens" in result:
        return "anthropic-usage"
    if obj is None and "amount" in result and "currency" in result:
        return "anthropic-cost"
    return None


def _int(result: Mapping[str, Any], name: str) -> int | None:
    value = result.get(name)
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ReportFormatError(f"{name} is not a number: {value!r}") from None
    if number != number.to_integral_value() or number < 0:
        raise ReportFormatError(f"{name} is not a token count: {value!r}")
    return int(number)


def _money(value: Any, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ReportFormatError(f"{what} is not a number: {value!r}") from None
    if not amount.is_finite():
        raise ReportFormatError(f"{what} is not a finite amount: {value!r}")
    return amount


def _openai_usage(result: Mapping[str, Any]) -> tuple[str | None, Figures]:
    return result.get("model"), Figures(
        requests=_int(result, "num_model_requests") or 0,
        input_tokens=_int(result, "input_tokens") or 0,
        output_tokens=_int(result, "output_tokens") or 0,
        cache_read_tokens=_int(result, "input_cached_tokens") or 0,
        cache_write_tokens=_int(result, "input_cache_write_tokens"),
    )


def _openai_cost(result: Mapping[str, Any]) -> tuple[str | None, Figures]:
    amount = result.get("amount") or {}
    currency = str(amount.get("currency") or "usd").lower()
    if currency != "usd":
        raise ReportFormatError(f"costs in {currency!r}: only USD reports can be reconciled")
    line = result.get("line_item")
    return _line_item_model(line), Figures(cost=_money(amount.get("value") or 0, "amount.value"))


def _line_item_model(line: Any) -> str | None:
    """OpenAI cost line items read '<model>, <kind>' (e.g. 'gpt-4o-2024-08-06, input'); other items
    (tools, storage) keep their whole name."""
    if line is None:
        return None
    text = str(line)
    head, sep, tail = text.rpartition(", ")
    if sep and head and " " not in head and re.fullmatch(r"[a-z0-9 _-]+", tail):
        return head
    return text


def _anthropic_usage(result: Mapping[str, Any]) -> tuple[str | None, Figures]:
    creation = result.get("cache_creation") or {}
    writes = sum(
        _int(source, name) or 0
        for source, name in (
            (creation, "ephemeral_5m_input_tokens"),
            (creation, "ephemeral_1h_input_tokens"),
            (result, "cache_creation_5m_input_tokens"),
            (result, "cache_creation_1h_input_tokens"),
        )
    )
    reads = _int(result, "cache_read_input_tokens") or 0
    return result.get("model"), Figures(
        input_tokens=(_int(result, "uncached_input_tokens") or 0) + reads + writes,
        output_tokens=_int(result, "output_tokens") or 0,
        cache_read_tokens=reads,
        cache_write_tokens=writes,
    )


def _anthropic_cost(result: Mapping[str, Any]) -> tuple[str | None, Figures]:
    currency = str(result.get("currency") or "USD").upper()
    if currency != "USD":
        raise ReportFormatError(f"costs in {currency!r}: only USD reports can be reconciled")
    cents = _money(result.get("amount") or 0, "amount")  # lowest currency units, e.g. "123.45" = $1.2345
    return result.get("model"), Figures(cost=cents / 100)


_READERS = {
    "openai-usage": _openai_usage,
    "openai-cost": _openai_cost,
    "anthropic-usage": _anthropic_usage,
    "anthropic-cost": _anthropic_cost,
}


# -- the ledger side ----------------------------------------------------------------------------------------


def ledger_figures(
    tracker: Tracker, provider: str, days: Iterable[date], **filters: Any
) -> dict[DayModel, Figures]:
    """The ledger's records of `provider` on `days` (UTC), summed by day x `model_key`."""
    wanted = sorted(set(days))
    if not wanted:
        return {}
    since = datetime(wanted[0].year, wanted[0].month, wanted[0].day, tzinfo=timezone.utc)
    until = datetime(wanted[-1].year, wanted[-1].month, wanted[-1].day, tzinfo=timezone.utc) + timedelta(1)
    out: dict[DayModel, Figures] = {}
    for row in tracker.summary(("day", "model"), since, until, provider=provider, **filters):
        day = row.group["day"]
        if not isinstance(day, date) or day not in wanted:
            continue
        usage = row.usage
        figure = Figures(
            requests=row.calls,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cost=row.cost,
            unpriced_calls=row.unpriced_calls,
        )
        model = row.group["model"]
        key = (day, model_key(model if isinstance(model, str) else None))
        out[key] = out.get(key, Figures()) + figure
    return out


# -- comparing ------------------------------------------------------------------------------------------------

_ZERO_LEDGER = Figures(0, 0, 0, 0, 0, Decimal(0), 0)


def reconcile(
    ledger: Mapping[DayModel, Figures],
    report: ProviderReport,
    tolerance: Decimal = DEFAULT_TOLERANCE,
) -> list[ReconcileRow]:
    """One row per day x model that either side has, with the likely causes of any difference.

    A day the provider reports without a model breakdown is compared with the ledger's whole day."""
    rows: list[ReconcileRow] = []
    for day in sorted({d for d, _ in ledger} | set(report.days)):
        mine = {model: figure for (d, model), figure in ledger.items() if d == day}
        theirs = {model: figure for (d, model), figure in report.figures.items() if d == day}
        by_model = {model: figure for model, figure in theirs.items() if model is not None}
        usage_lines = [f for f in theirs.values() if f.input_tokens is not None]
        cost_lines = [f for f in theirs.values() if f.cost is not None]
        # a figure is zero for a model the provider did not list only when it lists that figure by model
        model_usage = day in report.usage_days and (
            any(f.input_tokens is not None for f in by_model.values()) or not usage_lines
        )
        model_cost = day in report.cost_days and (
            any(f.cost is not None for f in by_model.values()) or not cost_lines
        )
        if None in theirs:  # the provider's day total (some figures not broken out by model)
            whole = sum(theirs.values(), Figures())
            billed = _fill_provider(whole, report, day in report.usage_days, day in report.cost_days)
            own = sum(mine.values(), _ZERO_LEDGER)
            rows.append(
                ReconcileRow(day, None, own, billed, _causes(own, billed, report, day, None, tolerance))
            )
        if by_model or None not in theirs:
            for model in sorted({m for m in mine if m is not None} | set(by_model)):
                own = mine.get(model, _ZERO_LEDGER)
                billed = _fill_provider(by_model.get(model, Figures()), report, model_usage, model_cost)
                causes = _causes(own, billed, report, day, model, tolerance)
                rows.append(ReconcileRow(day, model, own, billed, causes))
            if None in mine:  # ledger records without a model
                own = mine[None]
                billed = _fill_provider(Figures(), report, model_usage, model_cost)
                causes = _causes(own, billed, report, day, "(no model)", tolerance)
                rows.append(ReconcileRow(day, "(no model)", own, billed, causes))
    return rows


def _fill_provider(figure: Figures, report: ProviderReport, usage: bool, cost: bool) -> Figures:
    """The provider's figures, with zeros where a report lists that figure for the day but not this row."""
    updates: dict[str, Any] = {}
    if usage:
        for name in ("input_tokens", "output_tokens", "cache_read_tokens"):
            if getattr(figure, name) is None:
                updates[name] = 0
        if report.reports_requests and figure.requests is None:
            updates["requests"] = 0
    if cost and figure.cost is None:
        updates["cost"] = Decimal(0)
    return replace(figure, **updates) if updates else figure


def _causes(
    mine: Figures,
    theirs: Figures,
    report: ProviderReport,
    day: date,
    model: str | None,
    tolerance: Decimal,
) -> tuple[str, ...]:
    causes: list[str] = []
    name = model or "all models"
    token_gaps = {
        column: theirs_value - mine_value
        for column in TOKEN_COLUMNS
        if (theirs_value := getattr(theirs, column)) is not None
        and (mine_value := getattr(mine, column)) is not None
        and theirs_value != mine_value
    }
    request_gap = (
        None if theirs.requests is None or mine.requests is None else theirs.requests - mine.requests
    )
    provider_saw = any(getattr(theirs, c) for c in ("requests", *TOKEN_COLUMNS)) or bool(theirs.cost)
    if mine.requests == 0 and provider_saw:
        causes.append(f"untracked: the provider billed {name} on {day} and the ledger has no record of it")
    elif request_gap and request_gap > 0:
        causes.append(f"untracked calls: {request_gap:,} more requests at the provider than in the ledger")
    elif any(gap > 0 for column, gap in token_gaps.items() if column in ("input_tokens", "output_tokens")):
        causes.append(
            "untracked usage: " + _gap_text(token_gaps, lambda gap: gap > 0) + " more at the provider"
        )
    if mine.requests and not provider_saw and _covered(report, day):
        causes.append(
            "not in the provider report: another organization or key, a model-name mismatch, "
            "or a report not yet complete"
        )
    elif (request_gap is not None and request_gap < 0) or any(
        gap < 0 for column, gap in token_gaps.items() if column in ("input_tokens", "output_tokens")
    ):
        text = f"{-request_gap:,} requests" if request_gap and request_gap < 0 else ""
        tokens = _gap_text({c: -g for c, g in token_gaps.items()}, lambda gap: gap > 0)
        causes.append(
            "ledger above provider: "
            + ", ".join(part for part in (text, tokens) if part)
            + " more in the ledger (another organization or key, or a provider report not yet complete)"
        )
    cost_gap = None if theirs.cost is None or mine.cost is None else theirs.cost - mine.cost
    if mine.unpriced_calls and theirs.cost is not None:
        causes.append(
            f"unpriced in the ledger: {mine.unpriced_calls:,} call(s) of {name} have no price, so their "
            "cost is missing from the ledger's dollars"
        )
    totals_match = not any(c in token_gaps for c in ("input_tokens", "output_tokens")) and not request_gap
    if cost_gap is not None and abs(cost_gap) > tolerance and totals_match and not mine.unpriced_calls:
        if mine.requests or provider_saw:
            split = {c: g for c, g in token_gaps.items() if c in ("cache_read_tokens", "cache_write_tokens")}
            why = (
                "the cached-token split differs (" + _gap_text(split, lambda gap: gap != 0) + ")"
                if split
                else "the ledger's price differs from what was billed (a price change, batch / flex / "
                "priority tier, or a discount)"
            )
            causes.append(f"price drift: same tokens, ${_usd(cost_gap)} difference: {why}")
    elif not causes and (split := {c: g for c, g in token_gaps.items()}):
        causes.append("cached-token split differs: " + _gap_text(split, lambda gap: gap != 0))
    return tuple(causes)


def _covered(report: ProviderReport, day: date) -> bool:
    return day in report.usage_days or day in report.cost_days


def _gap_text(gaps: Mapping[str, int], keep: Any) -> str:
    return ", ".join(
        f"{gap:,} {column.removesuffix('_tokens').replace('_', ' ')}"
        for column, gap in gaps.items()
        if keep(gap)
    )


def _usd(amount: Decimal) -> str:
    return f"{amount:+f}"


# -- output -----------------------------------------------------------------------------------------------------


def row_to_dict(row: ReconcileRow) -> dict[str, Any]:
    """A JSON-ready mapping: both sides, the differences (provider minus ledger), causes; money as strings."""
    out: dict[str, Any] = {"day": row.day.isoformat(), "model": row.model}
    for name in ("requests", *TOKEN_COLUMNS, "cost"):
        for side, figures in (("ledger", row.ledger), ("provider", row.provider)):
            out[f"{side}_{name}"] = _plain(getattr(figures, name))
        out[f"difference_{name}"] = _plain(row.difference(name))
    out["ledger_unpriced_calls"] = row.ledger.unpriced_calls
    out["matches"] = row.matches
    out["causes"] = list(row.causes)
    return out


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value
