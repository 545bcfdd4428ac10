"""Staging: the first half of ingesting one extracted batch (merging is the second).

Staging maps the batch's records to canonical form, finds the hub id each one merges
under (quarantining what does not map or belongs to no golden record), and reads what the
store holds for the batch's keys - golden records, xrefs, fingerprints, pending pushes,
open quarantine - in a few queries.

Why a step of its own: merging judges every record against that store state. Asked per
record and per system it cost ~20 statements a record (an initial load of 100k customers
would take hours); staging the whole batch first lets the state of all its keys be read
at once (:class:`hub.store.repo.BatchRows`) before any record is merged."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import uuid6
from sqlalchemy.orm import Session

from connectors.base import NativeRecord
from hub.mapping.mapper import Mapper, MappingValueError
from hub.mapping.spec import MappingSpec
from hub.model import ENTITIES
from hub.store import repo
from hub.sync.fingerprints import with_owned


class Quarantine(Protocol):
    """The engine's quarantine (it also counts and logs what it holds)."""

    def __call__(
        self,
        s: Session,
        system: str,
        entity: str,
        key: str | None,
        payload: Any,
        reason: str,
        errors: list[Any] | None = None,
        direction: str = "inbound",
        held: repo.BatchRows | None = None,
    ) -> None: ...


class ReadCounts(Protocol):
    read: int


@dataclass(frozen=True)
class Staged:
    """One record that mapped: as the system sent it (kept for quarantine), its id in the
    system (None when it gave none), the hub id it merges under, and its canonical form
    (partial: only the fields this system maps)."""

    native: NativeRecord
    sid: str | None
    hub_id: str
    partial: dict[str, Any]


@dataclass
class StagedBatch:
    """A batch mapped and validated, with the store state of its keys."""

    s: Session
    mapper: Mapper
    #: the xrefs, fingerprints, pending pushes and open quarantine of the batch's records
    held: repo.BatchRows
    records: list[Staged] = field(default_factory=list)
    #: the golden records the batch's hub ids already have (merging adds the new ones, so
    #: a record read twice in one batch merges into what the first made)
    goldens: dict[str, repo.GoldenRow] = field(default_factory=dict)
    #: each record's fingerprint as the hub last read it from (or pushed it to) the system
    fps: dict[str, str] = field(default_factory=dict)
    #: fields the hub never writes to this system but takes from it, watched through a
    #: fingerprint of their own (``owned_fps``): see :func:`owned_read_only`
    owned_fields: list[str] = field(default_factory=list)
    owned_fps: dict[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> MappingSpec:
        return self.mapper.spec

    def canonicals(self) -> list[Mapping[str, Any]]:
        """Every canonical record of the batch, as read and as the hub holds it (the
        references they make are what a push may need to translate)."""
        return [r.partial for r in self.records] + [g.data for g in self.goldens.values()]


def stage(
    s: Session,
    mapper: Mapper,
    records: list[NativeRecord],
    counts: ReadCounts,
    quarantine: Quarantine,
    *,
    lock_rows: bool = False,
    linked: Callable[[], None] | None = None,
) -> StagedBatch:
    """Map ``records`` (one extracted batch of ``mapper``'s system and entity) and load
    the store state of their keys; quarantined records are left out. ``linked`` is
    called once the batch's links are recorded, before any record is mapped."""
    spec = mapper.spec
    sys_ids = [mapper.system_id(r) for r in records]
    present = [i for i in sys_ids if i]
    known = repo.hub_ids_for(s, spec.entity, spec.system, present)
    # this batch's xrefs, fingerprints, pending pushes and open quarantine: read once
    # here, not per record and system (see repo.BatchRows)
    carried = [h for h in map(mapper.hub_id, records) if h]
    held = repo.BatchRows(
        s, spec.entity, [*carried, *known.values()], {spec.system: present}, lock_rows=lock_rows
    )
    link_batch(s, spec, mapper, records, sys_ids, held)
    if linked is not None:
        linked()
    batch = StagedBatch(s, mapper, held)
    for native, sid in zip(records, sys_ids, strict=True):
        counts.read += 1
        staged = _map_record(batch, native, sid, known, quarantine)
        if staged is not None:
            batch.records.append(staged)
    _load_state(batch)
    return batch


def link_batch(
    s: Session,
    spec: MappingSpec,
    mapper: Mapper,
    records: list[NativeRecord],
    sys_ids: list[str | None],
    held: repo.BatchRows,
) -> None:
    """Record the links a batch carries before mapping any of it: a record may refer
    to another in the same batch (a child account read before its parent), and its
    reference resolves through the xref table. A non-creating system's links are
    taken only for records the hub already knows (anything else is an orphan)."""
    linked: list[tuple[str, str]] = []
    for record, sid in zip(records, sys_ids, strict=True):
        hub_id = mapper.hub_id(record)
        if hub_id and sid:
            linked.append((hub_id, sid))
    if not linked:
        return
    if not spec.creates:
        existing = repo.existing_golden_ids(s, spec.entity, [h for h, _ in linked])
        linked = [(h, sid) for h, sid in linked if h in existing]
    for hub_id, sid in linked:
        held.set_xref(hub_id, spec.system, sid)


def _map_record(
    batch: StagedBatch,
    native: NativeRecord,
    sid: str | None,
    known: Mapping[str, str],
    quarantine: Quarantine,
) -> Staged | None:
    """Map one record and find the hub id it merges under: the one it carries, else the
    one its system id is linked to, else (an entity with a natural key, like a product's
    SKU) its key; a creating system's new record gets a new hub id. A record that does not
    map, or that a non-creating system holds unlinked, is quarantined (None)."""
    spec, mapper, s, held = batch.spec, batch.mapper, batch.s, batch.held
    system, entity = spec.system, spec.entity
    hub_id = mapper.hub_id(native) or (known.get(sid) if sid else None)
    try:
        partial = mapper.to_canonical(native)
    except MappingValueError as exc:
        problems = [asdict(p) for p in exc.problems]
        quarantine(s, system, entity, hub_id or sid, native, str(exc), problems, held=held)
        return None
    key_field = ENTITIES[entity].key_field
    if hub_id is None and key_field != "hub_id":
        hub_id = partial.get(key_field)
    if hub_id is None:
        if not spec.creates:
            reason = (
                f"{system} {entity} {sid} is not linked to a hub record "
                f"and {system} does not create {entity} records; link it "
                f"or create it in the owning system"
            )
            quarantine(s, system, entity, sid, native, reason, held=held)
            return None
        hub_id = new_hub_id(entity)
    return Staged(native, sid, str(hub_id), partial)


def new_hub_id(entity: str) -> str:
    """A hub id for a record no system has given one: the entity's prefix and an RFC 9562
    version 7 UUID. Its 74 random bits keep two records from ever sharing an id (with 48
    random bits, as before, four million records had a 3% chance of a clash, and a clash
    merges one customer into another); its millisecond time prefix makes ids minted later sort
    later, so an initial load appends to the store's hub-id indexes instead of writing a
    random page of each for every record."""
    return f"{entity[:3].upper()}-{uuid6.uuid7().hex}"


def _load_state(batch: StagedBatch) -> None:
    """Read the golden records and store rows of the hub ids the batch merges under
    (a new record's hub id, or one only its key named, was not known before mapping)."""
    spec, held = batch.spec, batch.held
    hub_ids = [r.hub_id for r in batch.records]
    batch.goldens = held.goldens(hub_ids)
    held.extend(hub_ids)
    batch.fps = {h: fp for h in hub_ids if (fp := held.fingerprint(spec.system, h)) is not None}
    batch.owned_fields = owned_read_only(spec)
    if batch.owned_fields:
        slot = with_owned(spec.system)
        batch.owned_fps = {h: fp for h in hub_ids if (fp := held.fingerprint(slot, h)) is not None}


def owned_read_only(spec: MappingSpec) -> list[str]:
    """Fields the hub never writes to this system but takes from it - what it owns, and
    what it claims now and then (SAP's payment clearing): not part of what the hub
    pushes, so a change to them would not show in the push fingerprint."""
    return sorted(
        f
        for f, fmap in spec.fields.items()
        if fmap.read_only and (f in spec.owns or fmap.compare.claim_only)
    )
