"""Delivery planning for bundles (issue 17): a bundle item ships its physical components,
each as an inventory allocation of its own - the bundle's quantity times the component's
per-unit quantity, of the component's SKU - referencing the bundle item."""

from __future__ import annotations

from typing import Any

from hub.model import validate_record
from hub.sync.deliveries import plan
from tests.sync.test_deliveries import CUSTOMER, NOW, PRODUCTS, RULES, TODAY

COMPONENTS = [
    {"sku": "HW-1", "quantity": 2, "share_bps": 6_000},
    {"sku": "CON-1", "quantity": 5, "share_bps": 3_000},
    {"sku": "SW-1", "quantity": 1, "share_bps": 1_000},  # software: not shipped
]


def _sub(quantity: int = 3, components: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    bundle = {
        "item_id": "IT-KIT",
        "sku": "SW-1",  # the bundle's own SKU is not what ships: its components are
        "quantity": quantity,
        "price": {"kind": "per_unit", "unit_amount_minor": 5_000},
        "bundle": COMPONENTS if components is None else components,
    }
    return {
        "hub_id": "SUB-1",
        "customer_id": "CUS-1",
        "status": "active",
        "start_date": "2026-01-15",
        "billing_period": "month",
        "items": [bundle, {"item_id": "IT-HW", "sku": "HW-1", "quantity": 1}],
    }


def _plan(sub: dict[str, Any], allocations: list[dict[str, Any]]) -> list[Any]:
    return plan(sub, allocations, PRODUCTS, CUSTOMER, RULES, today=TODAY, now=NOW)


def test_a_bundle_ships_each_physical_component_as_its_own_allocation() -> None:
    planned = _plan(_sub(quantity=3), [])
    rows = [(p.data["subscription_item_id"], p.data["sku"], p.data["quantity"]) for p in planned]
    # 3 kits: 3 x 2 HW-1 = 6, 3 x 5 CON-1 = 15; the plain HW-1 item ships its 1 apart
    assert rows == [("IT-HW", "HW-1", 1), ("IT-KIT", "CON-1", 15), ("IT-KIT", "HW-1", 6)]
    ids = [p.hub_id for p in planned]
    assert len(set(ids)) == 3 and all(len(i) <= 40 for i in ids)
    assert [p.hub_id for p in _plan(_sub(quantity=3), [])] == ids  # same plan, same ids
    for p in planned:
        validate_record("allocation", p.data)


def test_planning_the_planned_bundle_again_plans_nothing() -> None:
    planned = [p.data for p in _plan(_sub(quantity=3), [])]
    assert _plan(_sub(quantity=3), planned) == []


def test_a_bundle_upgrade_adjusts_each_components_reserved_quantity() -> None:
    planned = [p.data for p in _plan(_sub(quantity=3), [])]
    changed = _plan(_sub(quantity=4), planned)
    assert sorted((p.data["sku"], p.data["quantity"], p.changed) for p in changed) == [
        ("CON-1", 20, ("quantity",)),
        ("HW-1", 8, ("quantity",)),
    ]
    assert all(p.data["subscription_item_id"] == "IT-KIT" for p in changed)


def test_a_component_taken_out_of_the_bundle_releases_its_allocation() -> None:
    planned = [p.data for p in _plan(_sub(quantity=3), [])]
    fewer = [{**COMPONENTS[0], "share_bps": 9_000}, COMPONENTS[2]]
    [released] = _plan(_sub(quantity=3, components=fewer), planned)
    assert (released.data["sku"], released.data["status"]) == ("CON-1", "released")
