"""Allocations as the WMS holds them: its own id, the hub id as ``external_ref``, and the
fulfilment status the WMS owns.

Written before the WMS emulator existed: field names are a guess at its convention;
check them against the emulator's ``seed_records`` and docs/sandbox-wms.md when it lands.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.seed import xref
from sandbox.seed.book import CustomerSlice, Record
from sandbox.seed.drift import Drift
from sandbox.seed.emulator import EmulatorWriter

ALLOCATIONS = "allocations"


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


class WmsWriter(EmulatorWriter):
    system = "wms"
    module = "sandbox.wms"

    def customer_slice(self, s: CustomerSlice) -> None:
        for a in s.allocations:
            self.emit(ALLOCATIONS, allocation(a))

    def apply(self, drift: Drift, at: datetime) -> bool:
        if drift.entity != "allocation":
            return False
        if drift.action == "insert_orphan" and drift.value is not None:
            return self.seed_fn(self.store, ALLOCATIONS, [allocation(drift.value)]) == 1
        if drift.action == "set_field" and drift.record is not None and drift.field:
            changed = {**drift.record, drift.field: drift.value, "updated_at": at}
            return self.seed_fn(self.store, ALLOCATIONS, [allocation(changed)]) == 1
        return False
