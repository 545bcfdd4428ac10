"""SAP S/4HANA business events: which hub entity, change and keys an event stands for.

S/4 names its business events ``sap.s4.beh.<object>.v<n>.<Object>.<Operation>.v<n>`` and
sends them from ``/default/sap.s4.beh/<system id>``; they carry keys only (the data of
``sap.s4.beh.businesspartner.v1.BusinessPartner.Changed.v1`` is ``{"BusinessPartner":
"1000123"}``), so the hub reads each record back by key through the OData connector.

The business partner names and key are SAP's published ones (SAP Business Accelerator
Hub, "Business Partner Events"); those of sales contracts (``SalesContract``) and billing
documents (``BillingDocument``, with its ``Canceled`` operation) follow the same published
pattern. The reservation event name could not be confirmed from a public source here:
``sap.s4.beh.reservationdocument.v1.ReservationDocument.<Operation>.v1`` with key
``Reservation`` (the key of API_RESERVATION_DOCUMENT_SRV) is assumed, and
``sap.s4.beh.reservation.v1.Reservation.*`` is accepted as well.

A type the hub does not map is not an error: it is stored as ignored (an S/4 system sends
whatever its event bindings say, and a new binding must not make the webhook fail).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hub.events.cloudevents import CloudEvent, CloudEventError

SYSTEM = "sap"
SOURCE_PREFIX = "/default/sap.s4.beh/"
TYPE_PATTERN = re.compile(
    r"^sap\.s4\.beh\.(?P<namespace>[a-z0-9]+)\.v(?P<version>\d+)"
    r"\.(?P<object>[A-Za-z0-9]+)\.(?P<operation>[A-Za-z]+)\.v(?P<op_version>\d+)$"
)

#: change types of the inbox (Salesforce's CDC header values, lower-cased)
CREATE, UPDATE, DELETE = "create", "update", "delete"


@dataclass(frozen=True)
class SapObject:
    """An S/4 business object the hub maps: its hub entity and the key field(s) its events'
    data carries."""

    entity: str
    keys: tuple[str, ...]


#: (namespace, object) of the event type -> the hub entity and the event's key fields
OBJECTS: dict[tuple[str, str], SapObject] = {
    ("businesspartner", "BusinessPartner"): SapObject("customer", ("BusinessPartner",)),
    # the customer role's own events, where a system has them bound
    ("customer", "Customer"): SapObject("customer", ("Customer",)),
    ("salescontract", "SalesContract"): SapObject("subscription", ("SalesContract",)),
    ("billingdocument", "BillingDocument"): SapObject("invoice", ("BillingDocument",)),
    # assumed name (see the module docstring)
    ("reservationdocument", "ReservationDocument"): SapObject("allocation", ("Reservation",)),
    ("reservation", "Reservation"): SapObject("allocation", ("Reservation",)),
}

#: S/4 operations -> the inbox's change type. A cancelled billing document still exists
#: (with BillingDocumentIsCancelled set), so Canceled is an update, not a delete.
OPERATIONS: dict[str, str] = {
    "Created": CREATE,
    "Changed": UPDATE,
    "Updated": UPDATE,
    "Canceled": UPDATE,
    "Cancelled": UPDATE,
    "Blocked": UPDATE,
    "Unblocked": UPDATE,
    "Released": UPDATE,
    "Deleted": DELETE,
}


@dataclass(frozen=True)
class SapChange:
    """What one SAP event means to the hub. ``entity`` is None when the type is not one
    the hub maps (``ignored`` then says why)."""

    event_type: str
    entity: str | None
    change_type: str | None
    #: one item per record: its key fields and values
    record_keys: tuple[dict[str, str], ...]
    #: the S/4 system id from the event's source, when it has SAP's form
    system_id: str | None
    ignored: str | None = None


def system_id(source: str) -> str | None:
    """``/default/sap.s4.beh/<system id>`` -> the system id (None for another form)."""
    if source.startswith(SOURCE_PREFIX):
        rest = source[len(SOURCE_PREFIX) :].strip("/")
        return rest or None
    return None


def classify(event: CloudEvent) -> SapChange:
    """The hub entity, change type and keys of ``event``. An unmapped type comes back with
    ``ignored`` set; a mapped type whose data lacks a key field raises
    :class:`CloudEventError` naming it (``data.<Key>``)."""
    sid = system_id(event.source)
    match = TYPE_PATTERN.match(event.type)
    if match is None:
        return SapChange(event.type, None, None, (), sid, "not an S/4HANA business event type")
    obj = OBJECTS.get((match["namespace"], match["object"]))
    if obj is None:
        return SapChange(
            event.type, None, None, (), sid, f"business object {match['object']} is not mapped"
        )
    change = OPERATIONS.get(match["operation"])
    if change is None:
        return SapChange(
            event.type, None, None, (), sid, f"operation {match['operation']} is not mapped"
        )
    return SapChange(event.type, obj.entity, change, (_keys(event.data, obj),), sid)


def _keys(data: Any, obj: SapObject) -> dict[str, str]:
    if not isinstance(data, dict):
        raise CloudEventError("data", f"must be a JSON object with {', '.join(obj.keys)}")
    out: dict[str, str] = {}
    for name in obj.keys:
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise CloudEventError(f"data.{name}", "key field is missing or empty")
        out[name] = value.strip()
    return out
