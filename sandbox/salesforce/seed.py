"""Bulk loading of native records straight into the store (no HTTP, no validation
round-trips), for the seed generator: fills what Salesforce maintains itself.

Records are dicts keyed by API field name with ``Id`` given (the seed derives ids from hub
ids). Filled here: ``IsDeleted``, ``CreatedDate`` / ``LastModifiedDate`` / ``SystemModstamp``
(from ``LastModifiedDate`` when given, else now), the audit user fields, ``OwnerId``,
defaults, auto numbers and ``Contact.Name``, plus the external-id index the REST and
Bulk APIs upsert through. Values may be Python dates, datetimes and Decimals; unknown
fields raise, so a seed writer that drifts from the schema fails loudly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sandbox.salesforce import ids
from sandbox.salesforce.repository import write_index
from sandbox.salesforce.schema import (
    AUTO_NUMBER_FORMATS,
    COUNTRIES,
    COUNTRY_FIELDS,
    DEFAULT_SCHEMA,
    STATE_FIELDS,
    STATES,
    Field,
    Schema,
    SObjectType,
)
from sandbox.salesforce.settings import SalesforceSettings
from sandbox.salesforce.values import NUMBER_TYPES, format_datetime, parse_datetime
from sandbox.store import DocumentStore

CHUNK = 5000
_USER_ID = SalesforceSettings().user_id


def _stored(f: Field, value: Any) -> Any:
    """The stored form of a Python value (fast path: no full coercion)."""
    if value is None:
        return None
    if f.type == "datetime":
        if isinstance(value, dt.datetime):
            return format_datetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
        moment = parse_datetime(str(value))
        if moment is None:
            raise ValueError(f"{f.name}: not a datetime: {value!r}")
        return format_datetime(moment)
    if f.type == "date":
        if isinstance(value, dt.datetime):
            return value.date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        return str(value)[:10]
    if f.type in NUMBER_TYPES:
        if isinstance(value, bool):
            raise ValueError(f"{f.name}: not a number: {value!r}")
        if f.type == "int":
            return int(value)
        return float(value) if isinstance(value, Decimal | int | float) else float(str(value))
    if f.type == "boolean":
        return bool(value)
    return str(value)


def _document(
    obj: SObjectType, record: dict[str, Any], now: str, auto: list[int]
) -> dict[str, Any]:
    raw_id = record.get("Id")
    record_id = ids.normalize(str(raw_id)) if raw_id else None
    if record_id is None or record_id[:3] != obj.key_prefix:
        raise ValueError(f"{obj.name}: seed records need a valid {obj.key_prefix} Id: {raw_id!r}")
    doc: dict[str, Any] = {}
    for key, value in record.items():
        f = obj.field(key)
        if f is None:
            raise ValueError(f"{obj.name} has no field {key!r}")
        doc[f.name] = _stored(f, value)
    for f in obj.fields:
        if f.name in doc:
            continue
        if f.auto_number:
            auto[0] += 1
            doc[f.name] = AUTO_NUMBER_FORMATS.get(obj.name, "{:08d}").format(auto[0])
        elif f.default is not None:
            doc[f.name] = f.default
    doc["Id"] = record_id
    doc.setdefault("IsDeleted", False)
    changed = doc.get("LastModifiedDate") or doc.get("SystemModstamp") or now
    doc["LastModifiedDate"] = changed
    doc["SystemModstamp"] = doc.get("SystemModstamp") or changed
    doc["CreatedDate"] = doc.get("CreatedDate") or changed
    if obj.field("CreatedById"):
        doc.setdefault("CreatedById", _USER_ID)
        doc.setdefault("LastModifiedById", _USER_ID)
    if obj.field("OwnerId"):
        doc["OwnerId"] = doc.get("OwnerId") or _USER_ID
    if obj.name == "Contact":
        doc["Name"] = " ".join(p for p in (doc.get("FirstName"), doc.get("LastName")) if p)
    if obj.field("BillingCountryCode") is not None:
        picklist_addresses(obj, doc)
    return doc


def _lookup(value: Any, names: dict[str, str], what: str) -> str | None:
    """The code of ``value``, given as a code or a name (seed data may hold either)."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    if text in names:
        return text
    by_name = {name.lower(): code for code, name in names.items()}
    if text.lower() in by_name:
        return by_name[text.lower()]
    raise ValueError(f"{what} {value!r} is not in the org's State and Country picklists")


def picklist_addresses(obj: SObjectType, doc: dict[str, Any]) -> bool:
    """Put an Account document's addresses in a State and Country/Territory Picklists
    org's shape (what Salesforce's conversion does when the picklists are enabled): the
    country and state, given as code or name in the code or the text field, become the
    code field and the name. Whether anything changed; an unknown value is an error."""
    before = dict(doc)
    for code_name, text_name in COUNTRY_FIELDS:
        if obj.field(code_name) is None:
            continue
        code = _lookup(doc.get(code_name) or doc.get(text_name), COUNTRIES, text_name)
        doc[code_name], doc[text_name] = code, COUNTRIES[code] if code else None
    for code_name, text_name, country_name in STATE_FIELDS:
        if obj.field(code_name) is None:
            continue
        states = STATES.get(str(doc.get(country_name) or ""), {})
        value = doc.get(code_name) or doc.get(text_name)
        code = _lookup(value, states, f"{text_name} of {doc.get(country_name)}")
        doc[code_name], doc[text_name] = code, states[code] if code else None
    return doc != before


def convert_addresses(store: DocumentStore, schema: Schema) -> int:
    """Bring the stored Accounts into ``schema``'s address shape (records seeded without
    the org's settings); returns how many changed."""
    obj = schema.sobject("Account")
    if obj is None or obj.field("BillingCountryCode") is None:
        return 0
    changed = [doc for doc in store.iter(obj.name) if picklist_addresses(obj, doc)]
    for i in range(0, len(changed), CHUNK):
        chunk = changed[i : i + CHUNK]
        store.put_many(obj.name, ((d["Id"], d) for d in chunk))
        write_index(store, obj, chunk)
    return len(changed)


def seed_records(
    store: DocumentStore,
    object_name: str,
    records: Iterable[dict[str, Any]],
    schema: Schema = DEFAULT_SCHEMA,
) -> int:
    """Insert (or replace) records of ``object_name`` (as the org of ``schema`` has its
    fields); returns how many were written."""
    obj = schema.sobject(object_name)
    if obj is None:
        raise ValueError(f"unknown sObject {object_name!r}")
    now = format_datetime(dt.datetime.now(dt.UTC))
    meta_key = f"autonumber:{obj.name}"
    auto = [int(store.get_meta(meta_key, "0") or 0)]
    count = 0
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        if not chunk:
            return
        store.put_many(obj.name, ((d["Id"], d) for d in chunk))
        write_index(store, obj, chunk)
        chunk.clear()

    for record in records:
        chunk.append(_document(obj, record, now, auto))
        count += 1
        if len(chunk) >= CHUNK:
            flush()
    flush()
    store.set_meta(meta_key, str(auto[0]))
    return count
