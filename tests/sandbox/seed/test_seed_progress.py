"""`hub sandbox up` shows its seeding (issue 20, item 8: 5,000 customers were 45 silent
seconds): the seeder reports after every batch, and the CLI draws a bar on a terminal and
nothing in a pipe."""

import io
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console

from sandbox.cli import SeedingProgress
from sandbox.seed.book import Book
from sandbox.seed.load import seed_systems


class _Counting:
    system = "billing"

    def __init__(self) -> None:
        self.customers = 0

    def write_products(self, products: list[Any]) -> None:
        pass

    def write_slices(self, slices: Iterable[Any]) -> None:
        self.customers += len(list(slices))

    def finish(self) -> None:
        pass

    def apply(self, drift: Any, at: datetime) -> bool:
        return False


def test_the_seeder_reports_every_batch_up_to_the_whole_book() -> None:
    seen: list[tuple[int, int]] = []
    writer = _Counting()
    seed_systems(Book(7, 12), [writer], batch_customers=5, progress=lambda *a: seen.append(a))
    assert seen == [(5, 12), (10, 12), (12, 12)]
    assert writer.customers == 12


def test_a_terminal_sees_a_bar_and_a_pipe_nothing() -> None:
    shown = io.StringIO()
    progress = SeedingProgress(Console(file=shown, force_terminal=True, width=100))
    progress(500, 5000)
    progress(5000, 5000)
    progress.done()
    assert "seeding the sandbox" in shown.getvalue() and "5000/5000" in shown.getvalue()

    piped = io.StringIO()
    quiet = SeedingProgress(Console(file=piped, force_terminal=False))
    quiet(500, 5000)
    quiet.done()
    assert piped.getvalue() == ""
