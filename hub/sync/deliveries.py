"""Delivery planning: the inventory allocations a subscription needs, kept in step with it.

Billing sells and changes subscriptions; it does not plan stock. When a subscription
changes, the hub derives what its deliveries must look like and writes the difference as
allocation golden records, which the sync then pushes like any other change (to billing,
the WMS as reservations, SAP as stock reservations):

- a delivering subscription (``DELIVERING_STATUSES``) keeps, for each shipped item (a
  product whose family ``mappings/deliveries.yaml`` lists as physical), one *reserved*
  allocation of the item's quantity: an upgrade or downgrade adjusts the reserved
  quantity; an item without one gets the next delivery, reopening a released allocation
  still ahead of today (a resumed pause) or planning a new one on the next cycle date, at
  the subscription's warehouse - unless its product takes no new deliveries (the rules'
  ``no_new_deliveries``, e.g. a SKU the PIM has retired);
- a bundle item ships its physical components instead, each as an allocation of its
  own (the bundle's quantity times the component's per-unit quantity, of the
  component's SKU), still referencing the bundle item;
- a paused, cancelled or otherwise not delivering subscription, or an item removed from
  it, releases its reserved allocations.

The same ``no_new_deliveries`` rules hold back, at push time, a new allocation made
elsewhere (in billing, say) from the systems that do not hold it yet (:func:`withheld`):
the sync engine asks them and knows no product state itself.

Picked and shipped allocations are the WMS's and are never touched. The rules only look
at the current state, so planning again changes nothing: a replay after a crash, or the
same subscription seen twice, plans the same records under the same hub ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub import yamlio
from hub.mapping.spec import MAPPINGS_DIR
from hub.model import DELIVERING_STATUSES, BillingPeriod, add_months

RULES_FILE = MAPPINGS_DIR / "deliveries.yaml"
OPEN, RELEASED = "reserved", "released"
#: the entity the rules plan (and may hold back), and the one its ``sku`` refers to
ALLOCATION, PRODUCT = "allocation", "product"


class NoNewDeliveries(BaseModel):
    """Products that take no new deliveries: those whose golden record's ``field`` holds
    one of ``values``. ``decided_in`` names where that is decided (and undone), for the
    person who reads the quarantine."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    field: str
    values: frozenset[str] = Field(min_length=1)
    decided_in: str


class DeliveryRules(BaseModel):
    """``mappings/deliveries.yaml``: which products ship, from where, and which take no
    new deliveries."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    physical_families: frozenset[str] = Field(min_length=1)
    #: ship-from location (WMS location = SAP plant) by the customer's shipping country
    #: (its billing country when it has no shipping address)
    warehouses: dict[str, str]
    default_warehouse: str | None = None
    no_new_deliveries: tuple[NoNewDeliveries, ...] = ()

    @classmethod
    def load(cls, path: Path = RULES_FILE) -> DeliveryRules:
        try:
            return cls.model_validate(yamlio.load(path.read_text()) or {})
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise ValueError(f"{path}: delivery rules are invalid: {exc}") from None

    def warehouse_for(self, customer: Mapping[str, Any] | None) -> str | None:
        return self.warehouses.get(str(_country(customer)), self.default_warehouse)

    def no_new_delivery(
        self, product: Mapping[str, Any] | None
    ) -> tuple[NoNewDeliveries, str] | None:
        """The rule that keeps ``product`` (its golden record's data) from new deliveries,
        with the value that trips it; None when it may be delivered."""
        for rule in self.no_new_deliveries:
            value = (product or {}).get(rule.field)
            if value is not None and str(value) in rule.values:
                return rule, str(value)
        return None


class NoWarehouseError(ValueError):
    """A delivery is due but no warehouse is known for the customer's country."""


@dataclass(frozen=True)
class Withheld:
    """Why a new allocation is not sent to a system: the quarantine entry's reason and
    field errors."""

    reason: str
    errors: list[dict[str, str]]


#: golden records' data by entity and hub ids (those found)
GoldenLookup = Callable[[str, Sequence[str]], Mapping[str, Mapping[str, Any]]]


@dataclass(frozen=True)
class Planned:
    """One allocation to write: ``changed`` names the fields the plan set (all of a new
    one's)."""

    hub_id: str
    data: dict[str, Any]
    changed: tuple[str, ...]
    created: bool


def next_delivery(subscription: Mapping[str, Any], today: date) -> date:
    """The first cycle date on or after ``today``, counted from the first billed day
    (the trial's end, else the start) in billing periods."""
    first = date.fromisoformat(str(subscription.get("trial_end") or subscription["start_date"]))
    months = BillingPeriod(subscription.get("billing_period") or "month").months
    cycle, day = 0, first
    while day < today:
        cycle += 1
        day = add_months(first, cycle * months)
    return day


def plan(
    subscription: Mapping[str, Any],
    allocations: Sequence[Mapping[str, Any]],
    products: Mapping[str, Mapping[str, Any]],
    customer: Mapping[str, Any] | None,
    rules: DeliveryRules,
    *,
    today: date,
    now: datetime,
) -> list[Planned]:
    """The allocations to create or change so ``allocations`` (this subscription's
    golden allocations) match ``subscription``."""
    sub_id = str(subscription["hub_id"])
    delivering = subscription.get("status") in DELIVERING_STATUSES
    shipped = _shipments(subscription, products, rules)
    end = subscription.get("end_date")
    out: list[Planned] = []
    current = {str(a["hub_id"]): dict(a) for a in allocations}

    def change(hub_id: str, **values: Any) -> None:
        record = current[hub_id]
        changed = tuple(k for k, v in values.items() if record.get(k) != v)
        if changed:
            record.update(values, updated_at=now.isoformat())
            out.append(Planned(hub_id, record, changed, created=False))

    for hub_id, alloc in sorted(current.items()):
        if alloc.get("status") != OPEN:
            continue
        unit = shipped.get(_shipment_key(alloc, shipped))
        if not delivering or unit is None:
            change(hub_id, status=RELEASED)
        elif alloc.get("quantity") != unit.quantity:
            change(hub_id, quantity=unit.quantity)
    if not delivering:
        return out
    location = _location(current.values()) or rules.warehouse_for(customer)
    for key, unit in sorted(shipped.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        mine = [a for a in current.values() if _shipment_key(a, shipped) == key]
        if any(a.get("status") == OPEN for a in mine):
            continue
        if rules.no_new_delivery(products.get(unit.sku)) is not None:
            continue  # e.g. a retired SKU: no new deliveries (reported by the reconciliation)
        reopen = sorted(
            (a for a in mine if a.get("status") == RELEASED and _day(a) >= today),
            key=lambda a: (_day(a), str(a["hub_id"])),
        )
        if reopen:
            change(str(reopen[0]["hub_id"]), status=OPEN, quantity=unit.quantity)
            continue
        if location is None:
            raise NoWarehouseError(
                f"subscription {sub_id} item {unit.item_id} needs a delivery, but no warehouse "
                f"is known for its customer's country {_country(customer)!r}: add it under "
                f"warehouses in {RULES_FILE.name} (or set default_warehouse)"
            )
        when = next_delivery(subscription, today)
        if end is not None and when > date.fromisoformat(str(end)):
            continue  # it ends before its next cycle: no further delivery
        hub_id = _allocation_id(sub_id, unit.allocation_key, when)
        if hub_id in current:  # planned and shipped or picked already this cycle
            continue
        record = {
            "hub_id": hub_id,
            "subscription_id": sub_id,
            "subscription_item_id": unit.item_id,
            "sku": unit.sku,
            "location": location,
            "quantity": unit.quantity,
            "delivery_date": when.isoformat(),
            "status": OPEN,
            "updated_at": now.isoformat(),
        }
        current[hub_id] = record
        out.append(Planned(hub_id, record, tuple(record), created=True))
    return out


@dataclass(frozen=True)
class Shipment:
    """What one delivery cycle of a subscription ships for one item: a plain item's
    quantity of its SKU, or for a bundle item one per shipped component - the bundle's
    quantity times the component's per-unit quantity, of the component's SKU. The
    allocation references the item (``subscription_item_id``) either way, so billing's
    item reference holds; a component's allocation is told apart by its SKU."""

    item_id: str
    sku: str
    quantity: int
    #: the component's SKU for a bundle component, None for a plain item
    component: str | None = None

    @property
    def allocation_key(self) -> str:
        """What names the allocation's hub id besides the subscription and the date:
        the item, plus ``/<component sku>`` for a bundle component."""
        return self.item_id if self.component is None else f"{self.item_id}/{self.component}"


#: (item_id, component SKU or None) -> what it ships
Shipments = dict[tuple[str, str | None], Shipment]


def _shipments(
    subscription: Mapping[str, Any],
    products: Mapping[str, Mapping[str, Any]],
    rules: DeliveryRules,
) -> Shipments:
    """What each delivery cycle ships: an item (its latest version of a quantity of at
    least one) or a bundle component whose product is physical
    (``rules.physical_families``)."""
    latest = {
        str(item["item_id"]): item
        for item in subscription.get("items") or ()
        if int(item.get("quantity") or 0) >= 1  # a zero quantity ships nothing
    }
    out: Shipments = {}

    def physical(sku: str) -> bool:
        return (products.get(sku) or {}).get("family") in rules.physical_families

    for item_id, item in latest.items():
        quantity = int(item["quantity"])
        components = item.get("bundle") or ()
        if not components and physical(str(item["sku"])):
            out[(item_id, None)] = Shipment(item_id, str(item["sku"]), quantity)
        for c in components:
            sku = str(c["sku"])
            if physical(sku):
                each = int(c.get("quantity") or 1)
                out[(item_id, sku)] = Shipment(item_id, sku, quantity * each, component=sku)
    return out


def _shipment_key(allocation: Mapping[str, Any], shipped: Shipments) -> tuple[str, str | None]:
    """The shipment an allocation serves: its item's, or - when that item ships as a
    bundle - its component's (by the allocation's SKU)."""
    item_id = str(allocation.get("subscription_item_id"))
    if (item_id, None) in shipped:
        return item_id, None
    return item_id, str(allocation.get("sku"))


def may_withhold(entity: str) -> bool:
    """Whether the rules may hold back pushes of ``entity`` (they govern allocations)."""
    return entity == ALLOCATION


def withheld(
    rules: DeliveryRules, system: str, new: Sequence[str], golden: GoldenLookup
) -> dict[str, Withheld]:
    """The new allocations (``new``: hub ids ``system`` does not hold yet) the rules keep
    from it - those of a product that takes no new deliveries - each with why. They wait
    in quarantine until the product or the allocation changes; the reconciliation reports
    the subscription's reference. Allocations a system already holds are not asked about:
    they are still kept in step."""
    if not rules.no_new_deliveries or not new:
        return {}
    allocations = golden(ALLOCATION, new)
    skus = {str(a["sku"]) for a in allocations.values() if a.get("sku")}
    products = golden(PRODUCT, sorted(skus))
    out: dict[str, Withheld] = {}
    for hub_id, allocation in allocations.items():
        sku = allocation.get("sku")
        stop = rules.no_new_delivery(products.get(str(sku))) if sku else None
        if stop is None:
            continue
        rule, value = stop
        out[hub_id] = Withheld(
            f"new {ALLOCATION} {hub_id} not sent to {system}: SKU {sku} is {value} in "
            f"{rule.decided_in} ({rule.field} {value!r}). Reinstate the SKU in "
            f"{rule.decided_in} or cancel the {ALLOCATION} in its owning system, then "
            f"`hub quarantine retry`",
            [{"field": "sku", "message": f"SKU {sku} is {value}"}],
        )
    return out


def _allocation_id(sub_id: str, item_id: str, when: date) -> str:
    """A planned delivery's hub id: the same plan always names it the same (a replay
    never duplicates it), short enough for every system's key field (SAP's YY1_HubId
    holds 40): a digest of subscription and item (``Shipment.allocation_key``: a bundle
    component's names its SKU too), and the delivery date."""
    digest = hashlib.sha256(f"{sub_id}|{item_id}".encode()).hexdigest()[:12]
    return f"ALC-{digest}-{when:%Y%m%d}"


def _country(customer: Mapping[str, Any] | None) -> str | None:
    """Where the customer's goods go: its shipping country, else its billing country."""
    address = (customer or {}).get("shipping_address") or (customer or {}).get("billing_address")
    return (address or {}).get("country")


def _location(allocations: Iterable[Mapping[str, Any]]) -> str | None:
    """Where the subscription's newest allocation ships from."""
    latest = max(allocations, key=lambda a: (_day(a), str(a["hub_id"])), default=None)
    return str(latest["location"]) if latest and latest.get("location") else None


def _day(allocation: Mapping[str, Any]) -> date:
    return date.fromisoformat(str(allocation["delivery_date"])[:10])
