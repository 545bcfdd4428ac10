"""Allocations and stock as the WMS holds them (docs/sandbox-wms.md): the WMS's own id,
the hub id as ``external_ref``, the subscription and item as ``order_ref``/``line_ref``,
and the fulfilment status the WMS owns. Stock on hand per SKU and warehouse is the same
figure SAP's plant stock gets (open allocations x 1.5 + 25), so the two agree.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sandbox.seed import xref
from sandbox.seed.book import CustomerSlice, Record
from sandbox.seed.catalog import AS_OF_TS
from sandbox.seed.drift import Drift
from sandbox.seed.emulator import EmulatorWriter
from sandbox.store import DocumentStore

ALLOCATIONS = "allocations"
STOCK = "stock"
OPEN = ("reserved", "picked")


def allocation(a: Record) -> dict[str, Any]:
    return {
        "id": xref.wms_allocation_id(a["hub_id"]),
        "external_ref": a["hub_id"],
        "order_ref": a["subscription_id"],
        "line_ref": a["subscription_item_id"],
        "sku": a["sku"],
        "location": a["location"],
        "quantity": a["quantity"],
        "delivery_date": a["delivery_date"].isoformat(),
        "status": a["status"],
        "updated_at": a["updated_at"].isoformat(),
    }


def on_hand(open_quantity: int) -> int:
    """Stock on hand that covers every open allocation with room to spare (as SAP's)."""
    return open_quantity + open_quantity // 2 + 25


class WmsWriter(EmulatorWriter):
    system = "wms"
    module = "sandbox.wms"

    def __init__(self, store: DocumentStore) -> None:
        super().__init__(store)
        self._open: dict[tuple[str, str], int] = defaultdict(int)

    def customer_slice(self, s: CustomerSlice) -> None:
        for a in s.allocations:
            self.emit(ALLOCATIONS, allocation(a))
            if a["status"] in OPEN:
                self._open[(a["sku"], a["location"])] += a["quantity"]

    def finish(self) -> None:
        for (sku, location), allocated in sorted(self._open.items()):
            self.emit(
                STOCK,
                {
                    "sku": sku,
                    "location": location,
                    "on_hand": on_hand(allocated),
                    "updated_at": AS_OF_TS.isoformat(),
                },
            )
        super().finish()

    def apply(self, drift: Drift, at: datetime) -> bool:
        if drift.entity != "allocation":
            return False
        if drift.action == "insert_orphan" and drift.value is not None:
            return self.seed_fn(self.store, ALLOCATIONS, [allocation(drift.value)]) == 1
        if drift.action == "set_field" and drift.record is not None and drift.field:
            changed = {**drift.record, drift.field: drift.value, "updated_at": at}
            return self.seed_fn(self.store, ALLOCATIONS, [allocation(changed)]) == 1
        return False
