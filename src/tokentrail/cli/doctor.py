"""`tokentrail doctor`: what `instrument()` tracks of each installed SDK, what it does not, and why.

For every SDK tokentrail instruments: the installed version beside the version the test suite drives,
then each public method that returns a usage-bearing type — tracked, not tracked (with the reviewed
reason), or a GAP (neither: please report it). Nothing is called and nothing goes over the network.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tokentrail.cli._common import console

__all__ = ["doctor_command"]


def doctor_command(
    all_methods: Annotated[
        bool, typer.Option("--all", help="List every method, not only what is not tracked.")
    ] = False,
) -> None:
    """Show, for the installed SDKs, what instrument() tracks, what it does not and why."""
    from tokentrail.adapters._coverage import TESTED_VERSIONS, coverage
    from tokentrail.adapters._instrument import SUPPORTED

    summary = Table(title="SDKs tokentrail instruments")
    for column in ("SDK", "installed", "tested with", "tracked", "not tracked", "gaps"):
        summary.add_column(
            column, justify="right" if column in ("tracked", "not tracked", "gaps") else "left"
        )
    reports = [coverage(sdk) for sdk in SUPPORTED]
    for report in reports:
        counts = {
            status: sum(1 for m in report.methods if m.status == status)
            for status in ("tracked", "not tracked")
        }
        summary.add_row(
            report.sdk,
            report.installed or "not installed",
            TESTED_VERSIONS.get(report.sdk) or "-",
            str(counts["tracked"]) if report.methods else "-",
            str(counts["not tracked"]) if report.methods else "-",
            str(len(report.gaps)) if report.methods else "-",
        )
    console.print(summary)
    for report in reports:
        shown = [m for m in report.methods if all_methods or m.status != "tracked"]
        if not shown:
            continue
        table = Table(title=f"{report.sdk} {report.installed}", title_justify="left")
        table.add_column("method", overflow="fold")
        table.add_column("status")
        table.add_column("why", overflow="fold")
        for method in shown:
            style = "bold red" if method.status == "GAP" else "green" if method.status == "tracked" else ""
            table.add_row(
                method.name, f"[{style}]{method.status}[/{style}]" if style else method.status, method.reason
            )
        console.print(table)
    gaps = sum(len(r.gaps) for r in reports)
    if gaps:
        console.print(f"[bold red]{gaps} usage-bearing methods are neither tracked nor reviewed.[/bold red]")
