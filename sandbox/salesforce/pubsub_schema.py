"""Avro schemas of the Change Data Capture channels, generated from the org's describe.

A change event's schema is a record ``<Object>ChangeEvent`` (custom objects
``<Name>__ChangeEvent``) in namespace ``com.sforce.eventbus``: first the
``ChangeEventHeader`` record, then every field of the object as a union with null (default
null), in describe order. The record Id, ``IsDeleted`` and ``SystemModstamp`` are not
fields of a change event (the Id travels in ``recordIds``). Compound fields are nested
records, as in a real org: an address (``BillingStreet`` .. ``BillingCountry``) becomes
``BillingAddress`` of type ``Address`` (``Street``, ``City``, ``State``, ``PostalCode``,
``Country``, and ``StateCode``/``CountryCode`` where the org has the picklists) and a
person's ``FirstName``/``LastName`` become ``Name`` of type ``Name``.

Types: text, picklists and ids are ``string``; booleans ``boolean``; integer fields
``int``; other numbers ``double``; dates ``int`` (``date``: days since 1970-01-01);
date-times ``long`` (``timestamp-millis``).

The bitmap fields of the header (``changedFields``, ``nulledFields``, ``diffFields``) are
lists of hex strings, as Salesforce documents them: the first (``0x...``) has bit *i* set
for the field at position *i* of the schema's top-level fields (the header is position 0),
the others (``<pos>-0x...``) have bit *j* set for the *j*-th field of the compound field
at top-level position *pos*. :func:`encode_bitmap` builds them, :func:`decode_bitmap`
reads them back (tests, and anyone checking a client).

The schema id is a hash of the schema JSON, so it is stable for a given org shape and
changes when the shape changes (a field added, the country picklists switched on).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sandbox.salesforce.schema import Schema, SObjectType
from sandbox.salesforce.values import parse_date, parse_datetime

NAMESPACE = "com.sforce.eventbus"
HEADER_NAMESPACE = "com.salesforce.eventbus"
CHANGE_TYPES = (
    "CREATE", "UPDATE", "DELETE", "UNDELETE",
    "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW",
)  # fmt: skip
#: fields of the object that are not fields of its change events
NOT_IN_EVENTS = frozenset({"Id", "IsDeleted", "SystemModstamp"})
#: objects without Change Data Capture in the emulated org
NO_CDC = frozenset({"Organization"})
#: address sub-fields in the order a real org's Address type has them
ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country", "StateCode", "CountryCode")
#: person name sub-fields, in the order of a real org's Name type
NAME_PARTS = ("Salutation", "FirstName", "LastName", "MiddleName", "Suffix")

_STRING_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "reference", "id"}
)


def header_schema() -> dict[str, Any]:
    def strings() -> dict[str, Any]:
        return {"type": "array", "items": "string"}

    return {
        "type": "record",
        "name": "ChangeEventHeader",
        "namespace": HEADER_NAMESPACE,
        "fields": [
            {"name": "entityName", "type": "string"},
            {"name": "recordIds", "type": strings()},
            {
                "name": "changeType",
                "type": {"type": "enum", "name": "ChangeType", "symbols": list(CHANGE_TYPES)},
            },
            {"name": "changeOrigin", "type": "string"},
            {"name": "transactionKey", "type": "string"},
            {"name": "sequenceNumber", "type": "int"},
            {"name": "commitTimestamp", "type": "long"},
            {"name": "commitNumber", "type": "long"},
            {"name": "commitUser", "type": "string"},
            {"name": "nulledFields", "type": strings()},
            {"name": "diffFields", "type": strings()},
            {"name": "changedFields", "type": strings()},
        ],
    }


@dataclass(frozen=True)
class EventField:
    """One top-level field of a change event: a plain field (``parts`` empty, ``source``
    the sObject field) or a compound one (``parts``: (sub-field name, sObject field))."""

    name: str
    avro: Any
    kind: str  # avro-side kind: string, boolean, int, double, date, datetime, compound
    source: str = ""
    parts: tuple[tuple[str, str, str], ...] = ()  # (sub-field, sObject field, kind)


@dataclass(frozen=True)
class ChannelSchema:
    """The change event schema of one object."""

    entity: str
    event_name: str
    fields: tuple[EventField, ...]  # top-level, after the header (position = index + 1)
    schema: dict[str, Any]
    schema_json: str
    schema_id: str

    def position(self, name: str) -> int:
        for i, f in enumerate(self.fields, start=1):
            if f.name == name:
                return i
        raise KeyError(name)


def event_name(obj: SObjectType) -> str:
    """``AccountChangeEvent``; ``Subscription__ChangeEvent`` for ``Subscription__c``."""
    if obj.name.endswith("__c"):
        return obj.name[: -len("c")] + "ChangeEvent"
    return obj.name + "ChangeEvent"


def _kind(field_type: str) -> str:
    if field_type in _STRING_TYPES:
        return "string"
    if field_type == "boolean":
        return "boolean"
    if field_type == "int":
        return "int"
    if field_type in ("double", "currency", "percent"):
        return "double"
    if field_type == "date":
        return "date"
    if field_type == "datetime":
        return "datetime"
    return "string"


def _avro_type(kind: str) -> Any:
    if kind == "date":
        return {"type": "int", "logicalType": "date"}
    if kind == "datetime":
        return {"type": "long", "logicalType": "timestamp-millis"}
    return kind


def _compounds(obj: SObjectType) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """sObject field -> (compound field name, [(sub-field, sObject field)]) for the
    fields folded into a compound field; the compound sits where its first part was."""
    names = {f.name for f in obj.fields}
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for prefix in ("Billing", "Shipping", "Mailing", "Other"):
        parts = [(p, prefix + p) for p in ADDRESS_PARTS if prefix + p in names]
        if parts:
            for _, source in parts:
                out[source] = (prefix + "Address", parts)
    if "LastName" in names:
        parts = [(p, p) for p in NAME_PARTS if p in names]
        for _, source in parts:
            out[source] = ("Name", parts)
    return out


def channel_schema(obj: SObjectType) -> ChannelSchema:
    compounds = _compounds(obj)
    record_types: dict[str, str] = {}  # compound record type name -> defined already
    fields: list[EventField] = []
    done: set[str] = set()
    by_name = {f.name: f for f in obj.fields}
    for f in obj.fields:
        if f.name in NOT_IN_EVENTS or f.name in done:
            continue
        if f.name == "Name" and "LastName" in by_name:
            continue  # the person's full name is the compound Name, not a field of its own
        if f.name in compounds:
            compound, parts = compounds[f.name]
            done.update(source for _, source in parts)
            type_name = "Address" if compound.endswith("Address") else "Name"
            kinds = tuple((sub, source, _kind(by_name[source].type)) for sub, source in parts)
            if type_name in record_types:
                record: Any = f"{NAMESPACE}.{type_name}"
            else:
                record = {
                    "type": "record",
                    "name": type_name,
                    "namespace": NAMESPACE,
                    "fields": [
                        {"name": sub, "type": ["null", _avro_type(kind)], "default": None}
                        for sub, _, kind in kinds
                    ],
                }
                record_types[type_name] = compound
            fields.append(EventField(compound, ["null", record], "compound", "", kinds))
            continue
        kind = _kind(f.type)
        fields.append(EventField(f.name, ["null", _avro_type(kind)], kind, f.name))
    name = event_name(obj)
    schema = {
        "type": "record",
        "name": name,
        "namespace": NAMESPACE,
        "fields": [
            {"name": "ChangeEventHeader", "type": header_schema(), "doc": "Data:Header"},
            *({"name": f.name, "type": f.avro, "default": None} for f in fields),
        ],
    }
    text = json.dumps(schema, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).digest()[:16]
    schema_id = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return ChannelSchema(obj.name, name, tuple(fields), schema, text, schema_id)


def channels(schema: Schema) -> dict[str, ChannelSchema]:
    """Entity name -> its change event schema, for every object with CDC."""
    out = {}
    for obj in schema.objects.values():
        if obj.name in NO_CDC:
            continue
        out[obj.name] = channel_schema(obj)
    return out


# -- values --------------------------------------------------------------------------------
_EPOCH = dt.date(1970, 1, 1)


def avro_value(kind: str, value: Any) -> Any:
    """A stored field value in its change-event form."""
    if value is None:
        return None
    if kind == "date":
        day = parse_date(str(value))
        return None if day is None else (day - _EPOCH).days
    if kind == "datetime":
        moment = value if isinstance(value, dt.datetime) else parse_datetime(str(value))
        return None if moment is None else int(moment.timestamp() * 1000)
    if kind == "boolean":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind == "double":
        return float(value)
    return str(value)


def field_values(channel: ChannelSchema, doc: dict[str, Any]) -> dict[str, Any]:
    """Every event field of a stored record (compound fields as nested records, or None
    when all their parts are null)."""
    out: dict[str, Any] = {}
    for f in channel.fields:
        if f.parts:
            nested = {sub: avro_value(kind, doc.get(source)) for sub, source, kind in f.parts}
            out[f.name] = nested if any(v is not None for v in nested.values()) else None
        else:
            out[f.name] = avro_value(f.kind, doc.get(f.source))
    return out


# -- bitmaps -------------------------------------------------------------------------------
def _hex(bits: int) -> str:
    digits = f"{bits:X}"
    return "0x" + ("0" * (len(digits) % 2)) + digits


def encode_bitmap(channel: ChannelSchema, names: set[str]) -> list[str]:
    """Field names (top-level ``Name`` or ``Compound.Part``) -> Salesforce's bitmap list."""
    top = 0
    nested: dict[int, int] = {}
    for pos, f in enumerate(channel.fields, start=1):
        if f.parts:
            for j, (sub, _, _) in enumerate(f.parts):
                if f"{f.name}.{sub}" in names:
                    nested[pos] = nested.get(pos, 0) | (1 << j)
        elif f.name in names:
            top |= 1 << pos
    out = [_hex(top)] if top else []
    out.extend(f"{pos}-{_hex(bits)}" for pos, bits in sorted(nested.items()))
    return out


def decode_bitmap(schema: dict[str, Any], bitmap: list[str]) -> list[str]:
    """Salesforce's bitmap list -> field names (``Compound.Part`` for nested ones), read
    against the Avro schema JSON as a subscriber has it (from GetSchema)."""
    top_fields = schema["fields"]
    named: dict[str, Any] = {}

    def record_of(avro: Any) -> Any:
        for member in avro if isinstance(avro, list) else [avro]:
            if isinstance(member, dict) and member.get("type") == "record":
                named[f"{member.get('namespace', NAMESPACE)}.{member['name']}"] = member
                return member
            if isinstance(member, str) and member in named:
                return named[member]
        return None

    for f in top_fields:
        record_of(f["type"])
    out: list[str] = []
    for item in bitmap:
        if "-" in item:
            pos_text, _, hex_text = item.partition("-")
            parent = top_fields[int(pos_text)]
            record = record_of(parent["type"])
            bits = int(hex_text, 16)
            for j, sub in enumerate(record["fields"]):
                if bits >> j & 1:
                    out.append(f"{parent['name']}.{sub['name']}")
        else:
            bits = int(item, 16)
            for i, f in enumerate(top_fields):
                if bits >> i & 1:
                    out.append(f["name"])
    return out
