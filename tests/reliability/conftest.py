"""Collects the fault matrix's cells and prints the table at the end of the session.

The table goes through pytest's terminal reporter, so it shows whether or not output
capture is on (``-s``): the matrix is the suite's summary, not debug output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors import registry

#: (system, fault) -> outcome of the cell ("FAILED" until the cell finishes)
MATRIX: dict[tuple[str, str], str] = {}
SYSTEM_ORDER = registry.NAMES
MATRIX_PROPERTY = "fault_matrix_cell"


@pytest.fixture
def matrix(request: pytest.FixtureRequest) -> Iterator[dict[tuple[str, str], str]]:
    """Where a cell records its outcome. The outcome travels as a user property of the
    test's report, so the table is complete when the cells run in pytest-xdist workers
    too (the controller sees the workers' reports, not their memory)."""
    cells: dict[tuple[str, str], str] = {}
    yield cells
    for (system, fault), outcome in cells.items():
        request.node.user_properties.append((MATRIX_PROPERTY, [system, fault, outcome]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == MATRIX_PROPERTY:
            system, fault, outcome = value
            MATRIX[(system, fault)] = outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MATRIX:
        return
    seen = {s for s, _ in MATRIX}
    systems = [s for s in SYSTEM_ORDER if s in seen] + sorted(seen - set(SYSTEM_ORDER))
    modes = list(dict.fromkeys(m for _, m in MATRIX))
    first = max(len("fault"), *(len(m) for m in modes)) + 2
    widths = {
        s: max(len(s), *(len(v) for (t, _), v in MATRIX.items() if t == s)) + 2 for s in systems
    }
    terminalreporter.section("fault matrix (fault x system -> outcome)")
    terminalreporter.write_line("fault".ljust(first) + "".join(s.ljust(widths[s]) for s in systems))
    for mode in modes:
        cells = "".join(MATRIX.get((s, mode), "-").ljust(widths[s]) for s in systems)
        terminalreporter.write_line(mode.ljust(first) + cells.rstrip())
