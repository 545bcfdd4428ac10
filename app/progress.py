"""Live progress of a run: per system and entity, records read and written, rate, elapsed.

The sync engine reports after every committed batch (``SyncEngine.progress``). A step's
reporter does two things with it: it keeps the latest counts on a process-wide board, which
the CLI draws live on a terminal while the run goes (the run executes in a worker thread,
app.cli.launch), and it writes the counts to the Dagster run's log every few seconds, so the
UI shows a long sync moving, not only its final table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from hub.sync.engine import Counts

#: seconds between two log lines of one step about one system and entity
LOG_EVERY = 5.0


@dataclass
class Line:
    system: str
    entity: str
    counts: dict[str, int]
    started: float
    updated: float

    @property
    def written(self) -> int:
        return self.counts["created"] + self.counts["updated"]

    @property
    def rate(self) -> float:
        """Records read and written per second since the first batch."""
        elapsed = max(self.updated - self.started, 1e-9)
        return (self.counts["read"] + self.written) / elapsed if elapsed > 0.5 else 0.0

    def text(self) -> str:
        c = self.counts
        return (
            f"{self.system} {self.entity}: read {c['read']}, written {self.written} "
            f"(created {c['created']}, updated {c['updated']}), quarantined "
            f"{c['quarantined']}, failed {c['failed']}; {self.rate:.0f} records/s, "
            f"{self.updated - self.started:.0f} s"
        )


class Board:
    """The counts of every system and entity of the run in progress, summed over its
    steps (extract and push report separately), as the CLI's final table sums them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[tuple[str, str], Line] = {}
        self._steps: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
        self.started = time.monotonic()

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()
            self._steps.clear()
            self.started = time.monotonic()

    def update(self, step: str, system: str, entity: str, counts: Counts) -> None:
        now = time.monotonic()
        with self._lock:
            by_step = self._steps.setdefault((system, entity), {})
            by_step[step] = asdict(counts)
            line = self._lines.get((system, entity))
            if line is None:
                line = self._lines[(system, entity)] = Line(system, entity, {}, now, now)
            line.counts = {k: sum(c[k] for c in by_step.values()) for k in by_step[step]}
            line.updated = now

    def lines(self) -> list[Line]:
        with self._lock:
            return [Line(**asdict(line)) for line in self._lines.values()]


BOARD = Board()


def step_reporter(context: Any, every: float | None = None) -> Callable[[str, str, Counts], None]:
    """The engine's ``progress`` callback for one step: the board, and the run's log
    (a line per system and entity every ``every`` seconds, LOG_EVERY by default)."""
    step = f"{id(context)}"
    seen: dict[tuple[str, str], Line] = {}

    def report(system: str, entity: str, counts: Counts) -> None:
        BOARD.update(step, system, entity, counts)
        now = time.monotonic()
        line = seen.get((system, entity))
        if line is None:  # the first batch: its time is where the rate starts
            seen[(system, entity)] = Line(system, entity, asdict(counts), now, now)
            return
        if now - line.updated >= (LOG_EVERY if every is None else every):
            line.counts = asdict(counts)
            line.updated = now
            context.log.info(line.text())

    return report


def render(lines: list[Line], elapsed: float) -> Table | Text:
    """The board as a table for the terminal."""
    title = f"running for {elapsed:.0f} s (Ctrl+C stops after the current batch)"
    if not lines:
        return Text(title)
    table = Table(title=title)
    for name in ("system", "entity", "read", "written", "quarantined", "failed", "rate"):
        table.add_column(name, justify="left" if name in ("system", "entity") else "right")
    for line in lines:
        c = line.counts
        table.add_row(
            line.system,
            line.entity,
            str(c["read"]),
            str(line.written),
            str(c["quarantined"]),
            str(c["failed"]),
            f"{line.rate:.0f}/s",
        )
    return table
