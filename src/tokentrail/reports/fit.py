"""Tables that read well at any terminal width.

`Fitted(table, drop=(...))` renders `table` at the width the console offers: names (the columns that are
not right-aligned) never break mid-word — a name too long for its share of the width ends in "…" on its
own line — and numbers are never cut. Before a name is shortened below `COMFORT` cells, the columns
named in `drop` are left out, first one first, until the rest fits.

    console.print(Fitted(table, drop=("Share", "Unpriced")))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

__all__ = ["Fitted", "fit"]

MIN_NAME = 8  # a name is never shortened below this many cells (the ellipsis included)
COMFORT = 16  # columns are dropped before a name is shortened below this many cells


class Fitted:
    """A table shaped to the console's width when it is printed (see the module's docstring)."""

    def __init__(self, table: Table, drop: Sequence[str] = ()) -> None:
        self.table = table
        self.drop = tuple(drop)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield fit(self.table, options.max_width, self.drop)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, fit(self.table, options.max_width, self.drop))


def fit(table: Table, width: int, drop: Sequence[str] = ()) -> Table:
    """A copy of `table` that fits `width` cells, shaped as the module's docstring says."""
    columns = [_prepared(column) for column in table.columns]
    to_drop = [name for name in drop if any(_header(c) == name for c in columns)]
    while True:
        overhead = _overhead(table, len(columns))
        numbers = sum(_natural(c) for c in columns if not _is_name(c))
        names = [c for c in columns if _is_name(c)]
        comfortable = sum(min(_natural(c), COMFORT) for c in names)
        if overhead + numbers + comfortable <= width or not to_drop:
            break
        gone = to_drop.pop(0)
        columns = [c for c in columns if _header(c) != gone]
    room = width - overhead - numbers
    for column, share in zip(names, _shares([_natural(c) for c in names], room), strict=True):
        column.max_width = max(share, 1)
    fitted = _copy(table)
    fitted.columns = columns
    return fitted


def _prepared(column: Column) -> Column:
    copy = dataclasses.replace(column)
    copy._cells = list(column._cells)
    if _is_name(copy):
        copy.no_wrap = True
        copy.overflow = "ellipsis"
    else:
        copy.no_wrap = True
        copy.min_width = _natural(copy)
    return copy


def _is_name(column: Column) -> bool:
    return column.justify not in ("right", "center")


def _header(column: Column) -> str:
    header = column.header
    return header.plain if isinstance(header, Text) else str(header)


def _natural(column: Column) -> int:
    """The cells the column's widest line needs."""
    lines = [_header(column), *(_plain(cell) for cell in column._cells)]
    return max((cell_len(line) for text in lines for line in text.splitlines() or [""]), default=0)


def _plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _overhead(table: Table, count: int) -> int:
    """Cells a table's borders and padding take around `count` columns."""
    left, right = table.padding[3], table.padding[1]
    padding = count * (left + right) - (0 if table.pad_edge else left + right)
    if table.box is None:
        return padding
    return padding + (2 if table.show_edge else 0) + count - 1


def _shares(naturals: Iterable[int], room: int) -> list[int]:
    """Split `room` cells among names: the longest are shortened first, to a common cap, and never
    below `MIN_NAME` (a shorter name keeps its length)."""
    wants = list(naturals)
    floors = [min(want, MIN_NAME) for want in wants]
    for cap in range(max(wants, default=0), -1, -1):
        given = [min(want, max(cap, floor)) for want, floor in zip(wants, floors, strict=True)]
        if sum(given) <= room:
            return given
    return floors


def _copy(table: Table) -> Table:
    copy = Table.__new__(Table)
    copy.__dict__.update(table.__dict__)
    copy.rows = list(table.rows)
    return copy
