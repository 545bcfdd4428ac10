"""Bulk loading of native-shaped records straight into the store (no HTTP), for the seed
generator: fills what S/4 maintains itself (numbers, change stamps, initial values)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sandbox.sap.edm import EntitySet, Prop, Service, initial_value, now_ms, to_storage
from sandbox.sap.repository import (
    GENERATION_META,
    KEY_ID,
    apply_stamp,
    collection,
    derive_fields,
    doc_id,
)
from sandbox.sap.services import DEFAULT_HUB_ID_FIELD, find_set
from sandbox.store import DocumentStore

_CHUNK = 5000
_CHANGED_AT = Prop("LastChangeDateTime", "Edm.DateTimeOffset")


class _Loader:
    def __init__(
        self, store: DocumentStore, svc: Service, hub_id_field: str = DEFAULT_HUB_ID_FIELD
    ) -> None:
        self.store = store
        self.svc = svc
        self.hub_id_field = hub_id_field
        self.pending: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.counters: dict[str, int] = {}
        self.item_counters: dict[tuple[str, str], int] = {}
        self.base_stamp = now_ms()

    def add(self, es: EntitySet, record: dict[str, Any]) -> None:
        if self.hub_id_field != DEFAULT_HUB_ID_FIELD and DEFAULT_HUB_ID_FIELD in record:
            record = {**record, self.hub_id_field: record[DEFAULT_HUB_ID_FIELD]}
        doc: dict[str, Any] = {}
        for prop in es.props:
            if prop.name in record:
                doc[prop.name] = to_storage(prop, record[prop.name])
            else:
                doc[prop.name] = initial_value(prop)
        self._assign_keys(es, doc)
        doc[KEY_ID] = doc_id(es, doc)
        derive_fields(es, doc)
        given = doc.get("LastChangeDateTime")
        if given is None and record.get("LastChangeDateTime") is not None:
            # the change time of an entity whose stamps are LastChangeDate/Time (or none)
            given = to_storage(_CHANGED_AT, record["LastChangeDateTime"])
        apply_stamp(es, doc, given if given is not None else self.base_stamp, created=True)
        coll = collection(self.svc, es)
        self.pending.setdefault(coll, []).append((doc[KEY_ID], doc))
        if len(self.pending[coll]) >= _CHUNK:
            self.flush(coll)
        for nav in es.navs:
            children = record.get(nav.name)
            if not children:
                continue
            if isinstance(children, dict):
                children = children.get("results", [children])
            target = self.svc.sets[nav.target]
            for child in children:
                self.add(target, {**child, **{tp: doc[sp] for sp, tp in nav.on}})

    def _assign_keys(self, es: EntitySet, doc: dict[str, Any]) -> None:
        num = es.numbering
        if num is None:
            return
        given = doc.get(num.field)
        if given not in (None, ""):
            # a record seeded with its number still uses up that number: keep the range
            # ahead of it, or the next create through the API would collide with it
            if not num.per_parent and str(given).isdigit():
                meta_key = f"sap.nr.{self.svc.name}.{es.name}"
                if meta_key not in self.counters:
                    self.counters[meta_key] = int(
                        self.store.get_meta(meta_key, str(num.start - 1)) or 0
                    )
                self.counters[meta_key] = max(self.counters[meta_key], int(str(given)))
            return
        if num.per_parent:
            position = es.keys.index(num.field)
            parent = "\x1f".join(str(doc.get(k, "")) for k in es.keys[:position])
            value = self.item_counters.get((es.name, parent), num.start - num.step) + num.step
            self.item_counters[(es.name, parent)] = value
        else:
            meta_key = f"sap.nr.{self.svc.name}.{es.name}"
            if meta_key not in self.counters:
                self.counters[meta_key] = int(
                    self.store.get_meta(meta_key, str(num.start - 1)) or 0
                )
            value = self.counters[meta_key] = self.counters[meta_key] + 1
        doc[num.field] = str(value).zfill(num.width) if num.pad else str(value)

    def flush(self, coll: str | None = None) -> None:
        for name in [coll] if coll else list(self.pending):
            items = self.pending.pop(name, [])
            if items:
                self.store.put_many(name, items)
        if coll is None:
            for meta_key, value in self.counters.items():
                current = int(self.store.get_meta(meta_key, "0") or 0)
                self.store.set_meta(meta_key, str(max(current, value)))
            self.store.set_meta(GENERATION_META, uuid.uuid4().hex)


def seed_records(
    store: DocumentStore,
    object_name: str,
    records: Iterable[dict[str, Any]],
    hub_id_field: str = DEFAULT_HUB_ID_FIELD,
) -> int:
    """Insert records of entity set ``object_name`` (e.g. ``A_BusinessPartner`` or
    ``API_BUSINESS_PARTNER.A_BusinessPartner``) using SAP field names. Inline children under
    navigation names (``to_Item``: [...]) are loaded too. Returns the number of top-level
    records. Missing keys are drawn from the entity set's number range; missing
    ``LastChangeDateTime`` becomes now. ``hub_id_field``: the name the emulator serving
    this store gives the hub id's extension field (SapSettings.hub_id_field); records may
    carry the hub id as ``YY1_HubId`` all the same."""
    name = object_name.rsplit(".", 1)[-1]
    svc, es = find_set(name, hub_id_field)
    loader = _Loader(store, svc, hub_id_field)
    count = 0
    for record in records:
        loader.add(es, record)
        count += 1
    loader.flush()
    return count
