"""Bulk loading of native-shaped records straight into the store (no HTTP), for the seed
generator (:mod:`sandbox.seed.wms`) and tests: fills what the WMS maintains itself."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sandbox.store import DocumentStore
from sandbox.wms.model import format_ts, normalise_ts
from sandbox.wms.repository import ALLOCATIONS, STOCK, new_generation

_CHUNK = 5000


def seed_records(store: DocumentStore, object_name: str, records: Iterable[dict[str, Any]]) -> int:
    """Insert or replace ``allocations`` (keyed by ``id``, the WMS's own id) or ``stock``
    (``sku``, ``location``, ``on_hand``) records; returns how many were written.

    Allocations get ``updated_at`` = now when absent (normalised to the API's UTC ``Z``
    form when given), ``created_at`` = ``updated_at`` and ``version`` = the stored
    version + 1 (1 when new) when absent, ``status`` reserved when absent. A running app
    notices the write (generation stamp) and re-reads its index."""
    if object_name not in (ALLOCATIONS, STOCK):
        raise ValueError(f"the WMS has no object {object_name!r}; known: {ALLOCATIONS}, {STOCK}")
    now = format_ts(datetime.now(UTC))
    count = 0
    pending: list[tuple[str, dict[str, Any]]] = []
    for record in records:
        if object_name == ALLOCATIONS:
            doc_id, doc = _allocation(store, record, now)
        else:
            doc_id, doc = _stock(record, now)
        pending.append((doc_id, doc))
        count += 1
        if len(pending) >= _CHUNK:
            store.put_many(object_name, pending)
            pending.clear()
    if pending:
        store.put_many(object_name, pending)
    new_generation(store)
    return count


def _allocation(
    store: DocumentStore, record: dict[str, Any], now: str
) -> tuple[str, dict[str, Any]]:
    for name in ("id", "external_ref", "sku", "location", "quantity", "delivery_date"):
        if record.get(name) in (None, ""):
            raise ValueError(f"allocation {record.get('id')!r}: {name} is required")
    doc = dict(record)
    existing = store.get(ALLOCATIONS, str(doc["id"]))
    doc["updated_at"] = normalise_ts(doc["updated_at"]) if doc.get("updated_at") else now
    doc.setdefault("created_at", existing["created_at"] if existing else doc["updated_at"])
    doc["created_at"] = normalise_ts(doc["created_at"])
    doc.setdefault("status", "reserved")
    doc.setdefault("order_ref", None)
    doc.setdefault("line_ref", None)
    doc["quantity"] = int(doc["quantity"])
    if "version" not in doc:
        doc["version"] = int(existing["version"]) + 1 if existing else 1
    return str(doc["id"]), doc


def _stock(record: dict[str, Any], now: str) -> tuple[str, dict[str, Any]]:
    doc = {
        "sku": str(record["sku"]),
        "location": str(record["location"]),
        "on_hand": int(record["on_hand"]),
        "updated_at": normalise_ts(record["updated_at"]) if record.get("updated_at") else now,
    }
    return f"{doc['sku']}|{doc['location']}", doc
