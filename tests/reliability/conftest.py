"""Collects the fault matrix's cells and prints the table at the end of the session."""

from collections.abc import Generator
from typing import Any

import pytest

MATRIX: dict[tuple[str, str], str] = {}


@pytest.fixture
def matrix() -> dict[tuple[str, str], str]:
    return MATRIX


def pytest_terminal_summary(terminalreporter: Any) -> Generator[None, None, None] | None:
    if not MATRIX:
        return None
    systems = sorted({s for s, _ in MATRIX})
    modes = list(dict.fromkeys(m for _, m in MATRIX))
    width = max(len(v) for v in MATRIX.values()) + 2
    terminalreporter.section("fault matrix (fault x system -> outcome)")
    terminalreporter.write_line(f"{'fault':<16}" + "".join(f"{s:<{width}}" for s in systems))
    for mode in modes:
        cells = "".join(f"{MATRIX.get((s, mode), '-'):<{width}}" for s in systems)
        terminalreporter.write_line(f"{mode:<16}{cells}")
    return None
