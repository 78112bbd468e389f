"""The framework table in docs/integrations.md is true because a test checks each row: every test it
names exists in tests/frameworks/ (the conformance cells and attribution tests behind that row)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

HERE = Path(__file__).parent
DOC = HERE.parents[1] / "docs" / "integrations.md"


def _rows() -> list[tuple[str, list[str]]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Agent frameworks", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] not in ("framework", "---"):
            rows.append((cells[0], re.findall(r"`(test_\w+\.py::test_\w+)`", cells[5])))
    return rows


def _tests(file: str) -> set[str]:
    tree = ast.parse((HERE / file).read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_framework_row_names_tests_that_exist() -> None:
    rows = _rows()
    assert len(rows) >= 8, rows
    for framework, checks in rows:
        assert checks, f"{framework}: no test named"
        for check in checks:
            file, _, name = check.partition("::")
            assert name in _tests(file), f"{framework}: {check} does not exist"
