"""Bulk loading of native-shaped records straight into the store (no HTTP), for the seed
generator: fills what the PIM maintains itself (``created``/``updated``, the defaults of
absent properties) and registers any family a product names, so a seed never fails on a
catalogue the emulator's defaults do not list."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sandbox.pim.products import (
    FAMILIES,
    PRODUCTS,
    akeneo_stamp,
    empty_product,
    family_doc,
    now_stamp,
)
from sandbox.pim.settings import PimSettings
from sandbox.store import DocumentStore

_CHUNK = 5000


def seed_records(store: DocumentStore, object_name: str, records: Iterable[dict[str, Any]]) -> int:
    """Insert ``products`` (Akeneo standard format, keyed by ``identifier``) or
    ``families`` (keyed by ``code``). Missing ``created``/``updated`` become now; given
    ones are normalised to UTC whole seconds. Returns the number of records written."""
    if object_name == FAMILIES:
        attributes = list(PimSettings().attributes)
        docs = [
            (str(f["code"]), {**family_doc(str(f["code"]), str(f["code"]), attributes), **f})
            for f in records
        ]
        if docs:
            store.put_many(FAMILIES, docs)
        return len(docs)
    if object_name != PRODUCTS:
        raise ValueError(f"the PIM emulator has no {object_name!r} objects (products, families)")
    count = 0
    pending: list[tuple[str, dict[str, Any]]] = []
    families: set[str] = set()
    for record in records:
        identifier = str(record["identifier"])
        doc = {**empty_product(identifier), **record}
        now = now_stamp()
        doc["created"] = akeneo_stamp(doc.get("created") or doc.get("updated") or now)
        doc["updated"] = akeneo_stamp(doc.get("updated") or now)
        if doc.get("family"):
            families.add(str(doc["family"]))
        pending.append((identifier, doc))
        count += 1
        if len(pending) >= _CHUNK:
            store.put_many(PRODUCTS, pending)
            pending = []
    if pending:
        store.put_many(PRODUCTS, pending)
    missing = [
        (code, family_doc(code, code, list(PimSettings().attributes)))
        for code in sorted(families)
        if store.get(FAMILIES, code) is None
    ]
    if missing:
        store.put_many(FAMILIES, missing)
    return count
