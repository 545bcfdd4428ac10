"""The catalogue as the PIM holds it (Akeneo product shape: identifier, family, enabled,
``values`` as ``[{locale, scope, data}]`` lists), written through the PIM emulator's
``seed_records``. Every product it writes passes the emulator's own PATCH validation
unchanged (tests/sandbox/pim checks it), and mappings/pim/product.yaml reads it back to the
book's canonical products (tests/connectors/test_pim.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.seed.book import Record
from sandbox.seed.drift import Drift
from sandbox.seed.emulator import EmulatorWriter

PRODUCTS = "products"


def _value(data: Any) -> list[dict[str, Any]]:
    return [{"locale": None, "scope": None, "data": data}]


def product(p: Record) -> dict[str, Any]:
    return {
        "identifier": p["sku"],
        "family": p["family"],
        "enabled": p["sellable"],
        "categories": [p["family"]] if p["family"] else [],
        "values": {
            "name": _value(p["name"]),
            "lifecycle": _value(p["lifecycle"]),
            "unit": _value(p["unit"]),
        },
        "created": p["updated_at"].isoformat(),
        "updated": p["updated_at"].isoformat(),
    }


class PimWriter(EmulatorWriter):
    system = "pim"
    module = "sandbox.pim"

    def product(self, p: Record) -> None:
        self.emit(PRODUCTS, product(p))

    def apply(self, drift: Drift, at: datetime) -> bool:
        if drift.action != "retire_product" or drift.record is None:
            return False
        retired = {**drift.record, "sellable": False, "lifecycle": "retired", "updated_at": at}
        return self.seed_fn(self.store, PRODUCTS, [product(retired)]) == 1
