"""Estimate vs actual: how far pre-call token counts were from the input tokens the provider billed.

Attach the estimate when recording (`tracker.record(usage, model, estimated_input_tokens=n)`), then

    from tokentrail.tokens import drift
    for row in drift(tracker):
        print(row.model, row.calls, row.mean_relative_error, row.max_relative_error)

Only records that carry an estimate and whose usage the provider reported (`UsageStatus.COMPLETE`)
are compared: a locally counted or partial usage is no ground truth. The relative error of one call is
(estimated − billed) / billed; calls billed 0 input tokens count in the sums but have no relative error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from tokentrail._record import Record
from tokentrail._types import UsageStatus

__all__ = ["DriftRow", "drift"]


class _HasHistory(Protocol):
    def history(self, **filters: Any) -> list[Record]: ...


@dataclass(frozen=True, slots=True)
class DriftRow:
    """Pre-call estimates vs billed input tokens for one model.

    `mean_relative_error` and `max_relative_error` are over |estimated − billed| / billed per call;
    `bias` is the signed mean (positive: estimates run high). They are None when no compared call was
    billed a positive number of input tokens.
    """

    model: str | None
    calls: int  # compared calls: an estimate and provider-reported usage
    estimated_input_tokens: int
    billed_input_tokens: int
    mean_relative_error: float | None
    max_relative_error: float | None
    bias: float | None

    @property
    def difference(self) -> int:
        """Estimated minus billed input tokens, summed over the calls."""
        return self.estimated_input_tokens - self.billed_input_tokens

    @property
    def total_relative_error(self) -> float | None:
        """(Σ estimated − Σ billed) / Σ billed: the error of the totals."""
        if not self.billed_input_tokens:
            return None
        return self.difference / self.billed_input_tokens


def drift(tracker_or_records: _HasHistory | Iterable[Record]) -> list[DriftRow]:
    """One `DriftRow` per model over the records that carry a pre-call input estimate.

    Takes a `Tracker` — its store reads only the records that carry an estimate and provider-reported
    usage (`history(estimated=True, status="complete")`, a partial index on SQL stores) — or any
    iterable of records. Rows are sorted by calls, most first, then by model name.
    """
    history = getattr(tracker_or_records, "history", None)
    records: Iterable[Record] = (
        history(estimated=True, status=UsageStatus.COMPLETE.value)
        if callable(history)
        else tracker_or_records  # type: ignore[assignment]
    )
    groups: dict[str | None, _Sums] = {}
    for record in records:
        estimate = record.estimated_input_tokens
        if estimate is None or record.usage.status is not UsageStatus.COMPLETE:
            continue
        sums = groups.get(record.model)
        if sums is None:
            sums = groups[record.model] = _Sums()
        sums.add(estimate, record.usage.input_tokens)
    rows = [sums.row(model) for model, sums in groups.items()]
    rows.sort(key=lambda row: (-row.calls, row.model is None, row.model or ""))
    return rows


class _Sums:
    __slots__ = ("billed", "calls", "errors", "estimated", "signed")

    def __init__(self) -> None:
        self.calls = 0
        self.estimated = 0
        self.billed = 0
        self.errors: list[float] = []
        self.signed = 0.0

    def add(self, estimate: int, billed: int) -> None:
        self.calls += 1
        self.estimated += estimate
        self.billed += billed
        if billed > 0:
            error = (estimate - billed) / billed
            self.errors.append(abs(error))
            self.signed += error

    def row(self, model: str | None) -> DriftRow:
        errors = self.errors
        return DriftRow(
            model=model,
            calls=self.calls,
            estimated_input_tokens=self.estimated,
            billed_input_tokens=self.billed,
            mean_relative_error=sum(errors) / len(errors) if errors else None,
            max_relative_error=max(errors) if errors else None,
            bias=self.signed / len(errors) if errors else None,
        )
