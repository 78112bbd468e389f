"""The conformance matrix: each framework, driven for real against the local mock LLM server, in each
mode (sync/async, streamed or not) and with each recording layer (`instrument()`, the framework
integration alone, or both at once).

A test calls `matrix.check(...)` once per cell: calls made (counted at the mock server) must equal the
records written, the records' tokens must equal the framework's own usage numbers, statuses must be
`complete` where the provider reported usage, known models must be priced, and each record must carry
the agent the framework says made the call. Every checked cell is printed as a table at the end of the
run, failed cells included.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from tokentrail._record import Record
from tokentrail.adapters import uninstrument
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

LAYERS = ("instrument", "integration", "both")


def require_framework(name: str) -> ModuleType:
    """Import a framework package of the separate frameworks env (LlamaIndex, CrewAI: they pin openai<3):
    a failure there, a skip in the main env (where `make test` leaves these modules out)."""
    if os.environ.get("TOKENTRAIL_FRAMEWORKS_ENV") or Path(sys.prefix).name == ".venv-frameworks":
        return importlib.import_module(name)
    return pytest.importorskip(
        name,
        reason=f"{name} is installed only in .venv-frameworks (run `make test-frameworks`): it pins openai<3",
    )


@dataclass
class Cell:
    framework: str
    mode: str
    layer: str
    made: int
    recorded: int
    tokens: tuple[int, int]  # (input, output) summed over the records
    expected_tokens: tuple[int, int]  # the framework's own totals
    statuses: list[str]
    unpriced: int
    agents: list[str | None]
    expected_agents: list[str | None] | None
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "ok" if not self.problems else "; ".join(self.problems)


_CELLS: list[Cell] = []


class Matrix:
    """Checks one cell of the conformance matrix and keeps it for the printed table."""

    def check(
        self,
        framework: str,
        mode: str,
        layer: str,
        *,
        made: int,
        records: Sequence[Record],
        expected_tokens: tuple[int, int],
        expected_agents: Sequence[str | None] | None = None,
        expected_status: str = "complete",
    ) -> Cell:
        """Assert the cell; `expected_agents` is compared as a multiset (order of records may differ)."""
        tokens = (
            sum(r.usage.input_tokens for r in records),
            sum(r.usage.output_tokens for r in records),
        )
        cell = Cell(
            framework,
            mode,
            layer,
            made,
            len(records),
            tokens,
            tuple(expected_tokens),  # type: ignore[arg-type]
            [r.usage.status.value for r in records],
            sum(1 for r in records if not r.priced),
            [r.attribution.agent for r in records],
            None if expected_agents is None else list(expected_agents),
        )
        if made == 0:
            cell.problems.append("no call reached the server")
        if cell.recorded < made:
            cell.problems.append(f"missing {made - cell.recorded}")
        if cell.recorded > made:
            cell.problems.append(f"doubled {cell.recorded - made}")
        if tokens != cell.expected_tokens:
            cell.problems.append(f"tokens {tokens} != framework's {cell.expected_tokens}")
        wrong_status = [s for s in cell.statuses if s != expected_status]
        if wrong_status:
            cell.problems.append(f"status {wrong_status} (expected {expected_status})")
        if cell.unpriced:
            cell.problems.append(f"{cell.unpriced} unpriced")
        if expected_agents is not None and sorted(map(str, cell.agents)) != sorted(map(str, expected_agents)):
            cell.problems.append(f"agents {cell.agents} != {list(expected_agents)}")
        _CELLS.append(cell)
        assert not cell.problems, f"{framework} / {mode} / {layer}: {cell.verdict}"
        return cell


@pytest.fixture
def matrix() -> Matrix:
    return Matrix()


@pytest.fixture(scope="module")
def server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as running:
        yield running


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    """A synchronous tracker (records land before the call returns); `instrument()` undone after."""
    tracker = Tracker(capture="sync")
    try:
        yield tracker
    finally:
        uninstrument()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _CELLS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("framework conformance matrix")
    header = (
        f"{'framework':<16} {'mode':<22} {'layer':<12} {'made':>4} {'rec':>4} {'tokens in/out':>15}  verdict"
    )
    write(header)
    write("-" * len(header))
    for c in sorted(
        _CELLS, key=lambda c: (c.framework, c.mode, LAYERS.index(c.layer) if c.layer in LAYERS else 9)
    ):
        tokens = f"{c.tokens[0]}/{c.tokens[1]}"
        write(
            f"{c.framework:<16} {c.mode:<22} {c.layer:<12} {c.made:>4} {c.recorded:>4} {tokens:>15}  {c.verdict}"
        )
