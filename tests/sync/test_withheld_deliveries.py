"""New deliveries held back by the delivery rules' ``no_new_deliveries`` (declared in
mappings/deliveries.yaml, not in the engine): the planner plans none, and the engine
does not send a new allocation made elsewhere to a system that does not hold it yet.
Each test changes the rule in a rules object and sees the behaviour follow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from hub.mapping.spec import MappingSpec
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import QuarantineEntry
from hub.sync.deliveries import DeliveryRules, NoNewDeliveries, plan, withheld
from hub.sync.engine import SyncEngine
from tests.sync.memory_system import MemorySystem
from tests.sync.test_deliveries import CUSTOMER, NOW, PRODUCTS, TODAY, _sub

RULES = DeliveryRules.load()
NO_RULE = RULES.model_copy(update={"no_new_deliveries": ()})
NO_HARDWARE = RULES.model_copy(
    update={
        "no_new_deliveries": (
            NoNewDeliveries(field="family", values=frozenset({"hardware"}), decided_in="x"),
        )
    }
)


def test_the_rules_file_declares_retired_skus_take_no_new_deliveries() -> None:
    assert RULES.no_new_deliveries == (
        NoNewDeliveries(field="lifecycle", values=frozenset({"retired"}), decided_in="the PIM"),
    )
    assert RULES.no_new_delivery(PRODUCTS["OLD-1"]) == (RULES.no_new_deliveries[0], "retired")
    assert RULES.no_new_delivery(PRODUCTS["HW-1"]) is None


def test_planning_follows_the_rule() -> None:
    sub = _sub(items={"OLD-1": 1, "HW-1": 2})

    def skus(rules: DeliveryRules) -> list[str]:
        return [
            p.data["sku"] for p in plan(sub, [], PRODUCTS, CUSTOMER, rules, today=TODAY, now=NOW)
        ]

    assert skus(RULES) == ["HW-1"]
    assert skus(NO_RULE) == ["HW-1", "OLD-1"]
    assert skus(NO_HARDWARE) == []


def test_withheld_follows_the_rule() -> None:
    goldens: dict[str, dict[str, Mapping[str, Any]]] = {
        "allocation": {"A-OLD": {"sku": "OLD-1"}, "A-HW": {"sku": "HW-1"}, "A-NONE": {}},
        "product": PRODUCTS,
    }

    def golden(entity: str, keys: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        return {k: goldens[entity][k] for k in keys if k in goldens[entity]}

    new = ["A-OLD", "A-HW", "A-NONE"]
    held = withheld(RULES, "wms", new, golden)
    assert list(held) == ["A-OLD"]
    assert held["A-OLD"].reason.startswith(
        "new allocation A-OLD not sent to wms: SKU OLD-1 is retired in the PIM "
        "(lifecycle 'retired'). Reinstate the SKU in the PIM"
    )
    assert held["A-OLD"].errors == [{"field": "sku", "message": "SKU OLD-1 is retired"}]
    assert withheld(NO_RULE, "wms", new, golden) == {}
    assert sorted(withheld(NO_HARDWARE, "wms", new, golden)) == ["A-HW", "A-OLD"]
    assert withheld(RULES, "wms", ["A-HW"], golden) == {}  # only the new ones are asked


ALLOCATION_FIELDS = {
    "subscription_id": {"field": "Order"},
    "subscription_item_id": {"field": "Line"},
    "sku": {"field": "Sku"},
    "location": {"field": "Location"},
    "quantity": {"field": "Quantity", "transform": ["int"]},
    "delivery_date": {"field": "Day", "transform": ["date"]},
    "status": {"field": "Status"},
}
SPECS = [
    MappingSpec.model_validate(spec)
    for spec in (
        {
            "system": "pim",
            "entity": "product",
            "object": "products",
            "creates": True,
            "key": {"system_id_field": "Id"},
            "fields": {
                "sku": {"field": "Id"},
                "name": {"field": "Name"},
                "lifecycle": {"field": "Lifecycle"},
                "family": {"field": "Family"},
            },
            "owns": ["sku", "name", "lifecycle", "family"],
        },
        {
            "system": "billing",
            "entity": "allocation",
            "object": "allocations",
            "creates": True,
            "key": {"hub_id_field": "HubId", "system_id_field": "Id"},
            "fields": ALLOCATION_FIELDS,
            "owns": ["sku", "quantity", "location", "delivery_date"],
        },
        {
            "system": "wms",
            "entity": "allocation",
            "object": "allocations",
            "key": {"hub_id_field": "HubId", "system_id_field": "Id"},
            "fields": ALLOCATION_FIELDS,
            "owns": ["status"],
        },
    )
]


@pytest.mark.parametrize(
    ("rules", "sent"),
    [(RULES, ["HW-1"]), (NO_RULE, ["HW-1", "OLD-1"]), (NO_HARDWARE, [])],
    ids=["retired", "none", "hw"],
)
def test_held_back_by_rules(store_url: str, rules: DeliveryRules, sent: list[str]) -> None:
    """Billing creates two allocations; what reaches the WMS, and what waits in
    quarantine for it, is what the rules object says - the engine knows no product state."""
    upgrade(store_url)
    engine = create_store_engine(store_url)
    pim = MemorySystem("pim", "Id", "P")
    billing = MemorySystem("billing", "HubId", "B")
    wms = MemorySystem("wms", "HubId", "W")
    pim.put({"Id": "OLD-1", "Name": "Old", "Lifecycle": "retired", "Family": "hardware"})
    pim.put({"Id": "HW-1", "Name": "New", "Lifecycle": "active", "Family": "hardware"})
    for sku in ("OLD-1", "HW-1"):
        billing.put(
            {
                "Order": "SUB-1",
                "Line": f"IT-{sku}",
                "Sku": sku,
                "Location": "NL01",
                "Quantity": 1,
                "Day": "2026-12-15",
                "Status": "reserved",
            }
        )
    sync = SyncEngine(
        engine,
        {"pim": pim, "billing": billing, "wms": wms},
        specs=SPECS,
        code_lists={},
        lock_wait_seconds=2,
        delivery_rules=rules,
    )
    report = sync.run(["product", "allocation"])
    assert sorted(r["Sku"] for r in wms.rows.values()) == sent
    with engine.connect() as conn:
        waiting = conn.execute(
            sa.select(QuarantineEntry.system, QuarantineEntry.reason).where(
                QuarantineEntry.status == "open", QuarantineEntry.direction == "outbound"
            )
        ).all()
    held = sorted({"OLD-1", "HW-1"} - set(sent))
    assert sorted(s for s, _ in waiting) == ["wms"] * len(held)
    assert all(any(sku in reason for _, reason in waiting) for sku in held)
    # (>=: a push that minted an id re-plans what waits, which is held, and counted, again)
    assert (report["wms"]["allocation"]["quarantined"] >= 1) == bool(held)
    assert len(billing.rows) == 2, "billing, which creates allocations, is never held back"
    engine.dispose()
