"""Load one book into every system, then plant the drift and write the manifest.

The book is generated once and streamed: each batch of customer slices goes to every
writer before the next batch is generated, so memory stays bounded however big the book.
A writer is whatever turns canonical records into one system's native rows (the billing
tables, an emulator's DocumentStore); a system without a writer is simply not seeded and
its drifts are left out of the manifest. The drift is planned before anything is written:
an invoice billing never issued (the unbilled-period drift) is left out of every system
as the slices stream past, the other drifts are planted in their one system afterwards.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Protocol

from hub.model import ENTITY_ORDER
from sandbox.seed.book import Book, CustomerSlice, Record
from sandbox.seed.drift import (
    DRIFT_TS,
    WITHHOLD_INVOICE,
    Drift,
    manifest,
    plan,
    withheld_invoices,
    withhold,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class Writer(Protocol):
    system: str

    def write_products(self, products: list[Record]) -> None: ...

    def write_slices(self, slices: Iterable[CustomerSlice]) -> None: ...

    def finish(self) -> None: ...

    def apply(self, drift: Drift, at: datetime) -> bool: ...


@dataclass
class SeedReport:
    seed: int
    customers: int
    counts: dict[str, int] = field(default_factory=dict)
    drifts: list[str] = field(default_factory=list)
    skipped_drifts: list[str] = field(default_factory=list)
    seconds: float = 0.0


def seed_systems(
    book: Book,
    writers: list[Writer],
    manifest_path: Path | None = None,
    batch_customers: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> SeedReport:
    """Write ``book`` through every writer, plant its drift, write the manifest.
    ``progress(customers written, customers in the book)`` after every batch: seeding
    5,000 customers takes most of a minute, which must not look like a hang."""
    started = time.monotonic()
    report = SeedReport(book.seed, book.customers)
    products = book.products()
    for writer in writers:
        writer.write_products(products)
    # planned first: an invoice billing never issued is left out of every system
    drifts = plan(book)
    withheld = withheld_invoices(drifts) if "billing" in {w.system for w in writers} else None
    slices = (withhold(s, withheld) if withheld else s for s in book.slices())
    counts = dict.fromkeys(ENTITY_ORDER, 0)
    while batch := list(islice(slices, batch_customers)):
        for writer in writers:
            writer.write_slices(batch)
        for s in batch:
            counts["customer"] += 1
            counts["subscription"] += len(s.subscriptions)
            counts["allocation"] += len(s.allocations)
            counts["invoice"] += len(s.invoices)
        if progress is not None:
            progress(counts["customer"], book.customers)
    counts["product"] = len(products)
    for writer in writers:
        writer.finish()
    report.counts = counts
    by_system = {w.system: w for w in writers}
    applied: list[Drift] = []
    for drift in drifts:
        target = by_system.get(drift.system)
        if drift.action == WITHHOLD_INVOICE:
            planted = target is not None  # left out while writing, above
        else:
            planted = target is not None and target.apply(drift, DRIFT_TS)
        if planted:
            applied.append(drift)
            report.drifts.append(drift.name)
        else:
            report.skipped_drifts.append(drift.name)
            log.warning("drift not planted (no %s writer): %s", drift.system, drift.name)
    if manifest_path is not None:
        write_manifest(manifest_path, applied)
    report.seconds = time.monotonic() - started
    return report


def write_manifest(path: Path, applied: list[Drift]) -> None:
    """Stable bytes for the same drift: sorted entries and keys, fixed indentation."""
    text = json.dumps(manifest(applied), indent=2, sort_keys=True, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
