"""Bad input from every system, through the real mappings and the real sync engine.

Five in-memory systems (billing, Salesforce, SAP, PIM, WMS) speak the connector protocol
with native records built by each system's REAL mapping from mappings/ (the seed book's
canonical customers, products and allocations pushed through ``Mapper.to_native``). A
clean landscape is synced once; then hypothesis corrupts one field of one record in one
system (wrong type, overlong string, lone surrogate, huge number, negative money, unknown
currency or code, date out of range), changes a good record in the same batch, and runs
the sync again. Whatever the value:

* the run does not crash (the engine, not the test, decides what is bad),
* the bad record is in quarantine for that system with a reason naming the field,
* the good record of the same batch goes through,
* nothing of the bad record reaches another system (no write for its key) and the golden
  record keeps its last good state.

Records missing a required key and the same record twice in one batch are covered too.
"""

from __future__ import annotations

import contextlib
import copy
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import Batch, Health, NativeRecord, Outcome, Window, WriteResult
from hub.mapping.mapper import Mapper, get_path, set_path
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_all
from hub.mapping.transforms import load_code_lists
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import Finding, GoldenRecord, QuarantineEntry
from hub.sync.engine import SyncEngine
from sandbox.seed.book import Book

ENTITIES = ("product", "customer", "allocation")
#: the mappings of this landscape: a copy that refers to an entity it does not hold (SAP's
#: reservations name their sales contract) has no place in it
SPECS = [
    spec
    for spec in load_all(MAPPINGS_DIR)[0]
    if spec.entity in ENTITIES and all(f.ref in (None, *ENTITIES) for f in spec.fields.values())
]
CODES = load_code_lists(MAPPINGS_DIR)
#: the system whose records hypothesis corrupts, and in which entity
TARGETS = {
    "billing": "customer",
    "salesforce": "customer",
    "sap": "customer",
    "pim": "product",
    "wms": "allocation",
}
STAMP = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(system: str, entity: str) -> MappingSpec:
    return next(s for s in SPECS if s.system == system and s.entity == entity)


def _sid(system: str, hub_id: str) -> str:
    """A system's own id for a hub record: deterministic, different per system."""
    return f"{system[:2].upper()}{hub_id}"


class _Ids:
    """Outbound reference resolver for building native records (hub id -> system id)."""

    def to_hub(self, entity: str, system: str, external_id: str) -> str | None:
        return None

    def to_system(self, entity: str, system: str, hub_id: str) -> str | None:
        return _sid(system, hub_id)


class MemorySystem:
    """One system in memory behind the connector protocol, keyed like the real one: by its
    own id (the mapping's system id field), with the hub id in the mapping's hub id field.
    Every write is recorded by key so a test can say what reached the system."""

    def __init__(self, system: str) -> None:
        self.system = system
        self.rows: dict[str, dict[str, dict[str, Any]]] = {}
        self.seq = 0
        self.written: list[tuple[str, str]] = []  # (entity, hub key) of every write

    def _keys(self, entity: str) -> tuple[str | None, str]:
        spec = _spec(self.system, entity)
        return spec.key.hub_id_field, spec.key.system_id_field

    def entities(self) -> Sequence[str]:
        return [
            e for e in ENTITIES if any(s.system == self.system and s.entity == e for s in SPECS)
        ]

    def put(self, entity: str, record: dict[str, Any], stamp: bool = True) -> str:
        """A change made in the system by a user (or the seed)."""
        _, sid_field = self._keys(entity)
        sid = str(get_path(record, sid_field))
        self.seq += 1
        self.rows.setdefault(entity, {})[sid] = {**record, "_seq": self.seq}
        return sid

    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        since = int(cursor or 0)
        rows = sorted(
            (r for r in self.rows.get(entity, {}).values() if r["_seq"] > since),
            key=lambda r: r["_seq"],
        )
        if rows:
            yield Batch([_clean(r) for r in rows], str(rows[-1]["_seq"]))

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        yield Batch([_clean(r) for r in self.rows.get(entity, {}).values()])

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> Iterator[Batch]:
        hub_field, sid_field = self._keys(entity)
        wanted = set(keys)
        yield Batch(
            [
                _clean(r)
                for r in self.rows.get(entity, {}).values()
                if (hub_field and r.get(hub_field) in wanted) or get_path(r, sid_field) in wanted
            ]
        )

    def write_batch(self, entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        hub_field, sid_field = self._keys(entity)
        results = []
        for record in records:
            key = str(record.get(hub_field) if hub_field else get_path(record, sid_field))
            self.written.append((entity, key))
            sid = get_path(record, sid_field)
            existing = self.rows.get(entity, {})
            if sid in (None, "") or str(sid) not in existing:
                sid = next(
                    (s for s, r in existing.items() if hub_field and r.get(hub_field) == key),
                    None,
                ) or _sid(self.system, key)
                set_path(record, sid_field, sid)
            outcome = Outcome.UPDATED if str(sid) in existing else Outcome.CREATED
            merged = {**_clean(existing.get(str(sid), {})), **record}
            self.put(entity, merged)
            results.append(WriteResult(key, outcome, external_id=str(sid)))
        return results

    def health(self) -> Health:
        return Health(self.system, True)

    def close(self) -> None:
        pass


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in row.items() if k != "_seq"})


def _native(spec: MappingSpec, canonical: dict[str, Any]) -> dict[str, Any]:
    """The system's native record for a canonical one, by its real mapping; read-only
    fields (a change stamp the system maintains) are written too, as the system would."""
    writable = spec.model_copy(deep=True)
    for fmap in writable.fields.values():
        fmap.read_only = False
    native = Mapper(writable, CODES, _Ids()).to_native(canonical)
    key = canonical.get("hub_id") or canonical.get("sku")
    if get_path(native, spec.key.system_id_field) in (None, "") or spec.key.hub_id_field:
        set_path(native, spec.key.system_id_field, _sid(spec.system, str(key)))
    return native


def _book() -> dict[str, list[dict[str, Any]]]:
    book = Book(seed=5, customers=3)
    slices = list(book.slices())
    skus = {a["sku"] for s in slices for a in s.allocations}
    customers = [{**s.customer, "parent_id": None} for s in slices]
    return {
        "product": [p for p in book.products() if p["sku"] in skus or p["sellable"]][:6],
        "customer": customers,
        "allocation": [a for s in slices for a in s.allocations][:6],
    }


def _landscape() -> dict[str, MemorySystem]:
    """Each system holds what it is meant to: creators and the others alike (the state of
    a landscape the hub has already linked)."""
    systems = {name: MemorySystem(name) for name in TARGETS}
    for entity, records in _book().items():
        for spec in SPECS:
            if spec.entity != entity or spec.system not in systems:
                continue
            for canonical in records:
                if spec.holds(canonical):
                    systems[spec.system].put(entity, _native(spec, {**canonical}))
    return systems


def _engine(url: str, systems: dict[str, MemorySystem]) -> SyncEngine:
    return SyncEngine(create_store_engine(url), systems, specs=SPECS, code_lists=CODES)


def _quarantine_rows(url: str) -> list[dict[str, Any]]:
    table = QuarantineEntry.__table__
    with create_store_engine(url).connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(sa.select(table).where(table.c.status == "open")).all()
        ]


def _conflicts(url: str, entity: str, key: str, system: str, field: str) -> int:
    table = Finding.__table__
    with create_store_engine(url).connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    table.c.entity == entity,
                    table.c.key == key,
                    table.c.system == system,
                    table.c.field == field,
                    table.c.kind == "conflict",
                )
            ).scalar_one()
        )


def _golden(url: str, entity: str, key: str) -> Any:
    table = GoldenRecord.__table__
    with create_store_engine(url).connect() as conn:
        return conn.execute(
            sa.select(table.c.data).where(table.c.entity == entity, table.c.hub_id == key)
        ).scalar_one_or_none()


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, MemorySystem]]:
    """A clean landscape after two syncs: nothing quarantined, nothing left to write."""
    assert load_all(MAPPINGS_DIR)[1] == []
    folder = tmp_path_factory.mktemp("bad-input")
    db = folder / "hub.sqlite"
    url = f"sqlite:///{db}"
    upgrade(url)
    systems = _landscape()
    _engine(url, systems).run(entities=ENTITIES)
    assert _quarantine_rows(url) == [], "the clean landscape syncs without quarantine"
    for s in systems.values():
        s.written.clear()
    _engine(url, systems).run(entities=ENTITIES)
    assert [w for s in systems.values() for w in s.written] == [], "and then settles"
    return db, systems


def _fresh(synced: tuple[Path, dict[str, MemorySystem]], tmp: Path) -> tuple[str, dict]:
    db, systems = synced
    target = tmp / f"hub-{uuid.uuid4().hex}.sqlite"  # hypothesis reuses tmp per example
    # SQLite's backup API, not a file copy: what sits in the WAL file is part of the store
    with (
        contextlib.closing(sqlite3.connect(db)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
    return f"sqlite:///{target}", copy.deepcopy(systems)


# -- what makes a value bad ------------------------------------------------------------
def _kind(spec: MappingSpec, name: str) -> str:
    fmap = spec.fields[name]
    if "money_decimal" in fmap.transform or name.endswith("_minor"):
        return "money"
    if "int" in fmap.transform or name in ("quantity", "dunning_level"):
        return "int"
    if "date" in fmap.transform or "datetime" in fmap.transform:
        return "date"
    if "bool" in fmap.transform:
        return "bool"
    if fmap.codes or name == "currency":
        return "code"
    return "text"


def _corruptible(spec: MappingSpec) -> list[str]:
    """Writable, value-carrying fields (not keys, references or other systems' ids)."""
    return sorted(
        name
        for name, fmap in spec.fields.items()
        if not fmap.read_only
        and fmap.ref is None
        and not name.startswith("external_ids.")
        and name not in ("sku", "subscription_id", "subscription_item_id", "parent_id")
        and fmap.field != spec.key.hub_id_field
        and fmap.field != spec.key.system_id_field
    )


WRONG_TYPE = st.sampled_from([{"value": 1}, [1, 2], {"nested": {"x": []}}])
OVERLONG = st.integers(300, 3000).map(lambda n: "Ж" * n)
SURROGATE = st.sampled_from(["\ud800", "Acme \udfff GmbH", "\udc00x"])
HUGE = st.sampled_from([10**20, -(10**20), 10**30, float("1e300"), "1" * 40])
NEGATIVE_MONEY = st.integers(-(10**9), -1)
UNKNOWN_CODE = st.sampled_from(["ZZZ", "XX9", "bogus_code", "€€€", "usd "])
BAD_DATE = st.sampled_from(
    ["0000-00-00", "2024-13-45", "99999-01-01", "2024-02-30", "yesterday", "1-1-1"]
)


def _bad_values(kind: str) -> st.SearchStrategy[Any]:
    common = [WRONG_TYPE, SURROGATE]
    per_kind: dict[str, list[st.SearchStrategy[Any]]] = {
        "money": [HUGE, NEGATIVE_MONEY],
        "int": [HUGE, st.integers(-(10**6), -1)],
        "date": [BAD_DATE],
        "bool": [UNKNOWN_CODE],
        "code": [UNKNOWN_CODE, OVERLONG],
        "text": [OVERLONG],
    }
    return st.one_of(*common, *per_kind[kind])


def _set_bad(spec: MappingSpec, record: dict[str, Any], name: str, value: Any) -> None:
    fmap = spec.fields[name]
    if "akeneo_value" in fmap.transform:  # Akeneo: [{locale, scope, data}]
        set_path(record, fmap.field, [{"locale": None, "scope": None, "data": value}])
    else:
        set_path(record, fmap.field, value)


@pytest.mark.parametrize("system", list(TARGETS))
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_one_bad_field_is_quarantined_and_goes_nowhere(
    system: str,
    data: st.DataObject,
    synced: tuple[Path, dict[str, MemorySystem]],
    tmp_path: Path,
) -> None:
    entity = TARGETS[system]
    spec = _spec(system, entity)
    url, systems = _fresh(synced, tmp_path)
    mine = systems[system]
    ids = sorted(mine.rows[entity])
    bad_sid, good_sid = data.draw(st.permutations(ids).map(lambda p: (p[0], p[1])), "records")
    name = data.draw(st.sampled_from(_corruptible(spec)), "field")
    value = data.draw(_bad_values(_kind(spec, name)), "value")
    bad = _clean(mine.rows[entity][bad_sid])
    good = _clean(mine.rows[entity][good_sid])
    bad_key = str(bad.get(spec.key.hub_id_field) if spec.key.hub_id_field else bad_sid)
    good_key = str(good.get(spec.key.hub_id_field) if spec.key.hub_id_field else good_sid)
    before = _golden(url, entity, bad_key)
    _set_bad(spec, bad, name, value)
    mine.put(entity, bad)
    mine.put(entity, good)  # touched in the same batch: must still go through

    engine = _engine(url, systems)
    engine.run(entities=[entity])  # never crashes, and nothing it can reach is failing

    open_entries = [
        e for e in _quarantine_rows(url) if e["system"] == system and e["entity"] == entity
    ]
    mine_open = [e for e in open_entries if e["external_key"] == bad_key]
    text = " ".join(str(e["reason"]) + " " + str(e["errors"]) for e in mine_open)
    if name in spec.owns or not _conflicts(url, entity, bad_key, system, name):
        # what the system owns would become the golden value: it must be held back; a
        # field it does not own may instead be a conflict (the owner's value wins)
        assert mine_open, f"{system} {entity} {bad_key} with {name}={value!r} was not quarantined"
        assert name in text or spec.fields[name].field in text, (name, text)
    assert not [e for e in open_entries if e["external_key"] == good_key], "good record held"
    assert engine.counts[system][entity].read >= 2
    reached = {
        other: [w for w in s.written if w == (entity, bad_key)]
        for other, s in systems.items()
        if other != system
    }
    assert all(not w for w in reached.values()), f"the bad record reached {reached}"
    assert _golden(url, entity, bad_key) == before, "the golden record kept its good state"


#: per creating system, a required field a new record may arrive without
MISSING = {
    ("billing", "customer"): "legal_name",
    ("salesforce", "customer"): "legal_name",
    ("pim", "product"): "name",
    ("billing", "allocation"): "quantity",
}


@pytest.mark.parametrize(("system", "entity"), list(MISSING))
def test_new_record_missing_a_required_key_is_quarantined(
    system: str, entity: str, synced: tuple[Path, dict[str, MemorySystem]], tmp_path: Path
) -> None:
    spec = _spec(system, entity)
    url, systems = _fresh(synced, tmp_path)
    mine = systems[system]
    template = _clean(next(iter(mine.rows[entity].values())))
    new_key = "NEW-0001" if spec.key.hub_id_field else "SKU-NEW-0001"
    if spec.key.hub_id_field:
        template[spec.key.hub_id_field] = new_key
    set_path(template, spec.key.system_id_field, _sid(system, new_key))
    if entity == "product":
        set_path(template, spec.fields["sku"].field, new_key)
    field = spec.fields[MISSING[(system, entity)]].field
    parent, _, leaf = field.rpartition(".")
    holder = get_path(template, parent) if parent else template
    holder.pop(leaf)
    mine.put(entity, template)

    engine = _engine(url, systems)
    engine.run(entities=[entity])

    entries = [
        e
        for e in _quarantine_rows(url)
        if e["system"] == system and e["entity"] == entity and e["external_key"] == new_key
    ]
    assert entries, f"a new {entity} without {field} was not quarantined"
    assert MISSING[(system, entity)] in entries[0]["reason"] + str(entries[0]["errors"])
    assert _golden(url, entity, new_key) is None
    assert all((entity, new_key) not in s.written for s in systems.values())


@pytest.mark.parametrize("system", ["billing", "salesforce", "pim"])
def test_the_same_new_record_twice_in_one_batch_is_created_once(
    system: str, synced: tuple[Path, dict[str, MemorySystem]], tmp_path: Path
) -> None:
    """A source that repeats a record in one page (an unstable sort across a page edge):
    the hub creates it once and writes it once to each other system."""
    entity = "product" if system == "pim" else "customer"
    spec = _spec(system, entity)
    url, systems = _fresh(synced, tmp_path)
    mine = systems[system]
    record = _clean(next(iter(mine.rows[entity].values())))
    new_key = "SKU-TWICE-1" if entity == "product" else "CUS-TWICE-1"
    set_path(record, spec.key.system_id_field, _sid(system, new_key))
    if spec.key.hub_id_field:
        record[spec.key.hub_id_field] = new_key
    else:  # the PIM's own id is the SKU
        set_path(record, spec.fields["sku"].field, new_key)
    sid = get_path(record, spec.key.system_id_field)
    original_read = mine.read_changes

    def twice(entity_: str, cursor: str | None) -> Iterator[Batch]:
        for batch in original_read(entity_, cursor):
            dup = [r for r in batch.records if get_path(r, spec.key.system_id_field) == sid]
            yield Batch(batch.records + dup, batch.cursor)

    mine.read_changes = twice
    mine.put(entity, record)
    engine = _engine(url, systems)
    engine.run(entities=[entity])

    table = GoldenRecord.__table__
    with create_store_engine(url).connect() as conn:
        goldens = conn.execute(
            sa.select(sa.func.count()).where(table.c.entity == entity, table.c.hub_id == new_key)
        ).scalar_one()
    assert goldens == 1
    for other, s in systems.items():
        if other != system:
            assert s.written.count((entity, new_key)) <= 1, (other, s.written)
    assert not [
        e for e in _quarantine_rows(url) if e["external_key"] == new_key and e["system"] != system
    ]
