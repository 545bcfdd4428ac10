"""Shared plumbing of the writers that seed an emulator's DocumentStore.

Each emulator package exposes ``seed_records(store, object_name, records) -> int`` that
inserts native-shaped records and fills the fields the system maintains itself (change
stamps, etags). The per-system writers only translate canonical records to native ones;
this base buffers them per object and hands them over in large batches.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sandbox.seed.book import CustomerSlice, Record
from sandbox.seed.drift import Drift
from sandbox.store import DocumentStore

SeedFn = Callable[[DocumentStore, str, Iterable[dict[str, Any]]], int]


class EmulatorWriter:
    """Base of the Salesforce, SAP, PIM and WMS writers."""

    system = ""
    module = ""
    flush_at = 5_000

    def __init__(self, store: DocumentStore) -> None:
        self.store = store
        self.seed_fn: SeedFn = importlib.import_module(self.module).seed_records
        self._pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)

    # -- the Writer protocol ---------------------------------------------------------------
    def write_products(self, products: list[Record]) -> None:
        for product in products:
            self.product(product)
        self.flush()

    def write_slices(self, slices: Iterable[CustomerSlice]) -> None:
        for s in slices:
            self.customer_slice(s)
        if sum(len(v) for v in self._pending.values()) >= self.flush_at:
            self.flush()

    def finish(self) -> None:
        self.flush()

    def apply(self, drift: Drift, at: datetime) -> bool:
        return False

    # -- for subclasses --------------------------------------------------------------------
    def product(self, product: Record) -> None:
        """Queue the native form of one product (default: the system keeps no products)."""

    def customer_slice(self, s: CustomerSlice) -> None:
        """Queue the native records of one customer's slice."""

    def emit(self, object_name: str, record: dict[str, Any]) -> None:
        self._pending[object_name].append(record)

    def flush(self) -> None:
        for object_name in list(self._pending):
            records = self._pending.pop(object_name)
            if records:
                self.counts[object_name] += self.seed_fn(self.store, object_name, records)
