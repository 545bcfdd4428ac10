"""One sync pass per entity, as in ARCHITECTURE.md:

extract since cursor -> map -> validate (bad -> quarantine) -> merge by ownership
(conflict -> finding, owner's value pushed back) -> plan pushes from fingerprints ->
push in bulk through the outbox -> record external ids and fingerprints -> cursor.

Each extracted batch is committed in one transaction together with its cursor, its golden
records and the outbox rows it planned, so a crash at any point replays safely: the batch
is re-read, and pushes are upserts by external id."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from connectors.base import (
    Connector,
    DeletesRecords,
    Deletion,
    NativeRecord,
    Outcome,
    ReadsDeletions,
    WriteResult,
)
from connectors.errors import AuthError, ConnectorError, PermanentError
from hub.fingerprint import fingerprint
from hub.mapping.mapper import Mapper, MappingValueError, get_path, set_path
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_specs
from hub.mapping.transforms import load_code_lists
from hub.model import ENTITY_ORDER, validate_record
from hub.store import repo
from hub.store.checkpoints import checkpoints_in_background
from hub.store.db import session_factory
from hub.store.models import GoldenRecord, OutboxEntry, QuarantineEntry, utcnow
from hub.sync import deletions, deliveries, staging
from hub.sync.collector import collector_spared
from hub.sync.deliveries import DeliveryRules
from hub.sync.fingerprints import EXTERNAL_IDS, push_projection, with_claims
from hub.sync.lock import LockBusyError, live_leases, store_lock
from hub.sync.merge import flatten
from hub.sync.merging import BatchMerger

log = logging.getLogger("hub.sync")

#: Counts of golden-record changes are reported under this pseudo-system; a real system's
#: created/updated/unchanged count the hub's writes into it.
HUB = "hub"
#: the delivery planner's cursor (under the hub pseudo-system): the last subscription planned
DELIVERY_PLAN = "allocation-plan"


@dataclass
class Counts:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: int = 0
    quarantined: int = 0
    failed: int = 0
    #: records deleted in this system: read from it (the hub tombstoned them: it owns or
    #: creates them) or deleted there by the hub (``on_delete: {action: delete}``)
    deleted: int = 0


class SyncIncompleteError(RuntimeError):
    """Some system could not be read or written; everything else was committed."""


class SyncInterrupted(Exception):
    """The operator asked the sync to stop (Ctrl+C, SIGTERM). Raised between batches, right
    after one was committed: nothing is half-written and the next run resumes from the
    cursors and the outbox."""


class _XrefResolver:
    """Reference lookups for one transaction, cached per batch.

    References to another entity than the batch's (a subscription's customer) cannot
    change while the batch runs - only the batch entity's xrefs are written - so they are
    answered from a cache that :meth:`prime_hub_ids` (per entity and system) and
    :meth:`prime_external_ids` (per entity, every system at once) fill for the whole batch,
    instead of one query per reference. References to the batch's own entity (a child
    account's parent) are answered from :meth:`prime_own` while the batch is mapped, and
    ask the session otherwise: a merge may link them."""

    def __init__(self, session: Session, batch_entity: str | None = None) -> None:
        self.session = session
        self.batch_entity = batch_entity
        self._hub: dict[tuple[str, str, str], str | None] = {}
        self._system: dict[tuple[str, str, str], str | None] = {}
        self._own: dict[tuple[str, str, str], str | None] = {}  # see prime_own
        self._later: Callable[[], None] | None = None  # see prime_later
        #: the batch's mapper per (system, entity): built once, not once per record planned
        self.mappers: dict[tuple[str, str], Mapper] = {}

    def _cacheable(self, entity: str) -> bool:
        return self.batch_entity is not None and entity != self.batch_entity

    def prime_hub_ids(self, entity: str, system: str, external_ids: set[str]) -> None:
        """The hub ids of these ``system`` ids of ``entity`` records, in one query (misses
        cached too)."""
        if not self._cacheable(entity):
            return
        exts = sorted(e for e in external_ids if (entity, system, e) not in self._hub)
        if exts:
            found = repo.hub_ids_for(self.session, entity, system, exts)
            self._hub.update({(entity, system, e): found.get(e) for e in exts})

    def prime_external_ids(self, entity: str, hub_ids: Mapping[str, set[str]]) -> None:
        """Each system's ids of these ``entity`` records ({system: hub ids}), in one
        query for every system at once (misses cached too)."""
        if not self._cacheable(entity):
            return
        wanted = {
            system: sorted(h for h in hubs if (entity, system, h) not in self._system)
            for system, hubs in hub_ids.items()
        }
        wanted = {system: hubs for system, hubs in wanted.items() if hubs}
        if not wanted:
            return
        found = repo.external_ids_by_system(
            self.session, entity, sorted(wanted), sorted(set().union(*wanted.values()))
        )
        for system, hubs in wanted.items():
            self._system.update({(entity, system, h): found.get((system, h)) for h in hubs})

    def prime_own(self, entity: str, system: str, external_ids: set[str]) -> None:
        """References to the batch's own entity, looked up in one query once the batch's
        links are recorded, and answered from it while the batch is mapped (links do not
        change then): until :meth:`forget_own`."""
        found = repo.hub_ids_for(self.session, entity, system, sorted(external_ids))
        self._own = {(entity, system, e): found.get(e) for e in external_ids}

    def prime_later(self, prime: Callable[[], None]) -> None:
        """Run ``prime`` (a :meth:`prime_external_ids` of the batch) only when a system id
        is first asked for: only a push translates hub ids, and a pass that finds its
        systems hold every record (an initial load) plans none."""
        self._later = prime

    def forget_own(self) -> None:
        """The batch is mapped: its own references ask the session again (a merge may
        link what they refer to)."""
        self._own = {}

    def _lookup(
        self,
        cache: dict[tuple[str, str, str], str | None],
        query: Callable[[Session, str, str, Sequence[str]], Mapping[str, str]],
        entity: str,
        system: str,
        value: str,
    ) -> str | None:
        key = (entity, system, value)
        if key in cache:
            return cache[key]
        if cache is self._hub and key in self._own:
            return self._own[key]
        found = query(self.session, entity, system, [value]).get(value)
        if self._cacheable(entity):
            cache[key] = found
        return found

    def to_hub(self, entity: str, system: str, external_id: str) -> str | None:
        return self._lookup(self._hub, repo.hub_ids_for, entity, system, external_id)

    def to_system(self, entity: str, system: str, hub_id: str) -> str | None:
        if self._later is not None:
            prime, self._later = self._later, None
            prime()
        return self._lookup(self._system, repo.external_ids_for, entity, system, hub_id)


class SyncEngine:
    def __init__(
        self,
        engine: Engine,
        connectors: Mapping[str, Connector],
        *,
        specs: Sequence[MappingSpec] | None = None,
        code_lists: dict[str, dict[str, str]] | None = None,
        push_batch_size: int = 200,
        lock_wait_seconds: float = 300,
        progress: Callable[[str, str, Counts], None] | None = None,
        delivery_rules: DeliveryRules | None = None,
        should_stop: Callable[[], bool] | None = None,
        guard: deletions.GuardLimits | None = None,
        scan_every: timedelta | None = None,
        dry_run: bool = False,
    ) -> None:
        if specs is None:
            specs = load_specs(MAPPINGS_DIR)
        self.engine = engine
        self.sessions = session_factory(engine)
        self.connectors = connectors
        self.specs: dict[tuple[str, str], MappingSpec] = {(s.system, s.entity): s for s in specs}
        self.code_lists = code_lists if code_lists is not None else load_code_lists(MAPPINGS_DIR)
        self.owners: dict[str, dict[str, str]] = defaultdict(dict)
        for spec in specs:
            for owned in spec.owns:
                self.owners[spec.entity][owned] = spec.system
        self.push_batch_size = push_batch_size
        self.lock_wait_seconds = lock_wait_seconds
        self.progress = progress
        self.counts: dict[str, dict[str, Counts]] = defaultdict(lambda: defaultdict(Counts))
        self._links_minted = 0  # new external ids recorded by this pass's pushes
        #: during an entity's pulls: the records created in this pass, planned once after
        #: the pulls (plan_new_records) instead of after each system's copy
        self._deferred: set[str] | None = None
        #: lock a batch's golden records while merging it (PostgreSQL): set by writers
        #: that run beside each other on the same entity (backfill partitions)
        self.lock_rows = False
        self.errors: list[str] = []
        #: False once an error no retry can fix was met (credentials or a request refused)
        self.retryable = True
        #: allocations follow the subscriptions that changed (hub.sync.deliveries)
        self.delivery_rules = delivery_rules
        #: asked after every committed batch: True stops the sync there (SyncInterrupted)
        self.should_stop = should_stop
        #: how many tombstones one pass may propagate before its pushes are held
        self.guard = guard or deletions.GuardLimits.from_env()
        #: plan only (hub.sync.dry_run): no connector is written to and no lock is taken
        #: (the caller rolls the whole store transaction back)
        self.dry_run = dry_run
        #: how often systems that do not tell their deletes are compared by key
        self.scan_every = deletions.scan_interval() if scan_every is None else scan_every
        #: pushes held for a person by the guard in this run: {(system, entity): count}
        self.held: dict[tuple[str, str], int] = {}

    # -- public -------------------------------------------------------------------------
    def run(
        self, entities: Sequence[str] | None = None, systems: Sequence[str] | None = None
    ) -> dict[str, dict[str, dict[str, int]]]:
        """Sync the given entities (all by default) with the given systems (all
        connected by default); returns {system: {entity: counts}}. A SQLite store's
        write-ahead log is copied into it by a thread of its own meanwhile, so the pass
        does not wait on that copy and its fsync (hub.store.checkpoints)."""
        background = nullcontext() if self.dry_run else checkpoints_in_background(self.engine)
        with background:
            for entity in ENTITY_ORDER:
                if entities is None or entity in entities:
                    self._refuse_during_backfill(entity)
                    with self._lock(f"sync:{entity}"):
                        self.sync_entity(entity, systems)
        if self.errors:
            raise SyncIncompleteError("; ".join(self.errors))
        return self.report()

    def _refuse_during_backfill(self, entity: str) -> None:
        """A backfill's partitions write the entity without the ``sync:<entity>`` lease
        (hub.sync.backfill); a pass beside them could plan from half a load."""
        if self.dry_run:
            return
        running = live_leases(self.engine, f"backfill:{entity}:")
        if running:
            held = ", ".join(f"{name} (held by {holder})" for name, holder in running)
            raise LockBusyError(
                f"a backfill of {entity} is running ({held}): a sync of {entity} waits "
                "until its partitions finish (the backfill's last step syncs the entity "
                "itself); pause the sync schedule while a backfill runs"
            )

    def _lock(self, name: str) -> AbstractContextManager[object]:
        if self.dry_run:
            return nullcontext()
        return store_lock(self.engine, name, wait_seconds=self.lock_wait_seconds)

    def report(self) -> dict[str, dict[str, dict[str, int]]]:
        return {
            system: {entity: asdict(c) for entity, c in per_entity.items()}
            for system, per_entity in self.counts.items()
        }

    def sync_entity(self, entity: str, systems: Sequence[str] | None = None) -> None:
        self._links_minted = 0
        order = self.pull_order(entity, self._systems(entity, systems))
        creators = [system for system in order if self.specs[(system, entity)].creates]
        # the creators first, then what waited in quarantine before this pass: records held
        # as orphans while their creator was down find the golden records it brings now
        with self.sessions() as s:
            waiting = list(
                s.scalars(
                    select(QuarantineEntry.id).where(
                        QuarantineEntry.entity == entity, QuarantineEntry.status == "open"
                    )
                )
            )
        self._deferred = None if self.dry_run else self._start_plan_walk(entity)
        try:
            for system in creators:
                self.pull(system, entity)
                self.pull_deletions(system, entity)
            if waiting:
                self.retry_quarantine(entity, systems, ids=waiting)
            for system in order:
                if system not in creators:
                    self.pull(system, entity)
                    self.pull_deletions(system, entity)
        finally:
            self._deferred = None
        if not self.dry_run:
            self.plan_new_records(entity)
        if entity == "allocation":
            self.plan_deliveries()
        for system in self._push_order(entity, self._systems(entity, systems)):
            self.push(system, entity)
        # this pass's pushes may have created what quarantined records were waiting for
        # (an SAP customer their billing documents refer to): settle them now, not a run later
        if self._links_minted:
            counted = {s: c[entity].quarantined for s, c in self.counts.items()}
            released = self.retry_quarantine(entity, systems)
            for system, before in counted.items():  # a record still refused: counted once
                self.counts[system][entity].quarantined = before
            if released:
                for system in self._push_order(entity, self._systems(entity, systems)):
                    self.push(system, entity)

    def _start_plan_walk(self, entity: str) -> set[str]:
        """Start deferring the plans of records created in this pass (plan once). The
        durable record of what is still to plan is the golden records themselves: every
        record changed after the ``<entity>:plan`` cursor is planned by plan_new_records,
        so a crash between the pulls and that plan loses nothing. The cursor is written
        by the first pass: at the beginning for an empty store, now for a store that held
        records before the cursor existed (its history was planned when it was loaded)."""
        slot = _plan_slot(entity)
        with self.sessions.begin() as s:
            if repo.get_cursor(s, HUB, slot) is None:
                start = utcnow() if repo.existing_any(s, entity) else _BEGINNING
                repo.set_cursor(s, HUB, slot, f"{start.isoformat()}|")
        return set()

    @collector_spared()
    def plan_new_records(self, entity: str, chunk: int = 1000) -> None:
        """Plan every golden record changed since the ``<entity>:plan`` cursor - the
        records this pass created (their plans were deferred until every system was read,
        so a push planned from the first system's copy is never queued and then dropped)
        and any a crashed pass left - a chunk per transaction with the cursor. A target
        holding a push back for a person (held, or counted by the blanking guard) is not
        planned over. Idempotent: planning a record the systems already hold queues
        nothing."""
        slot = _plan_slot(entity)
        while True:
            with self.sessions.begin() as s:
                after = _split_cursor(repo.get_cursor(s, HUB, slot))
                live, last = repo.live_changed_since(s, entity, after, chunk)
                if last is None:
                    return
                ids = [hub_id for hub_id, _ in live]
                held = repo.BatchRows(s, entity, ids)
                resolver = _XrefResolver(s, entity)
                canonicals = [data for _, data in live]
                resolver.prime_later(partial(self._prime, resolver, entity, canonicals=canonicals))
                waiting = repo.pushes_held_back(s, entity, ids)
                targets = [t for (t, e) in self.specs if e == entity]
                for hub_id, data in live:
                    blocked = waiting.get(hub_id)
                    only = [t for t in targets if t not in blocked] if blocked else None
                    self._plan(s, entity, hub_id, data, only, held=held, resolver=resolver)
                repo.set_cursor(s, HUB, slot, f"{last[0].isoformat()}|{last[1]}")

    def _failed(self, exc: ConnectorError) -> None:
        if isinstance(exc, AuthError | PermanentError):
            self.retryable = False

    def retry_quarantine(
        self,
        entity: str,
        systems: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        seen_before: datetime | None = None,
    ) -> int:
        """Give quarantined records another go: inbound ones are re-read from their system
        (the source may have been fixed) or, failing that, re-processed from the stored
        payload (the mapping may have been fixed); outbound ones are re-planned.
        ``seen_before``: inbound entries judged since then are left alone (this run's
        extract just refused them: trying again in the same pass counted two attempts)."""
        stmt = select(QuarantineEntry).where(
            QuarantineEntry.entity == entity, QuarantineEntry.status == "open"
        )
        if ids is not None:
            stmt = stmt.where(QuarantineEntry.id.in_(ids))
        if seen_before is not None:
            outbound = QuarantineEntry.direction == "outbound"
            stmt = stmt.where(outbound | (QuarantineEntry.last_seen < seen_before))
        with self.sessions() as s:
            entries = [e for e in s.scalars(stmt) if e.system in self._systems(entity, systems)]
        for entry in entries:
            if entry.direction == "outbound":
                with self.sessions.begin() as s:
                    s.execute(
                        delete(OutboxEntry).where(
                            OutboxEntry.system == entry.system,
                            OutboxEntry.entity == entity,
                            OutboxEntry.hub_id == entry.external_key,
                            OutboxEntry.status == "failed",
                        )
                    )
                    repo.release_quarantine(
                        s, entry.system, entity, entry.external_key, direction="outbound"
                    )
                    golden = s.get(GoldenRecord, (entity, entry.external_key))
                    if golden is not None and not golden.deleted:
                        repo.forget_fingerprint(s, entry.system, entity, entry.external_key)
                        repo.forget_fingerprint(
                            s, with_claims(entry.system), entity, entry.external_key
                        )
                        self._plan(s, entity, entry.external_key, golden.data, only=[entry.system])
                continue
        inbound: dict[str, list[QuarantineEntry]] = defaultdict(list)
        for entry in entries:
            if entry.direction != "outbound":
                inbound[entry.system].append(entry)
        step = self.push_batch_size
        for system, waiting in inbound.items():
            for i in range(0, len(waiting), step):
                self._reingest(system, entity, waiting[i : i + step])
            self.settle_blanking(system, entity)
        return len(entries)

    def _reingest(self, system: str, entity: str, entries: Sequence[QuarantineEntry]) -> None:
        """Re-read a chunk of quarantined records from their system in one read by keys
        (not a call per record: a Salesforce org counts every call), and ingest each as
        read now - or, when the system no longer has it or cannot answer, as stored."""
        mapper = Mapper(self.specs[(system, entity)], self.code_lists)
        fresh: dict[str, NativeRecord] = {}
        try:
            keys = [e.external_key for e in entries]
            for batch in self.connectors[system].read_by_keys(entity, keys):
                for record in batch.records:
                    for key in (mapper.hub_id(record), mapper.system_id(record)):
                        if key:
                            fresh.setdefault(str(key), record)
        except ConnectorError as exc:
            log.warning("could not re-read %d quarantined %s: %s", len(entries), entity, exc)
        records: list[NativeRecord] = []
        taken: set[int] = set()
        for entry in entries:
            found = fresh.get(entry.external_key)
            if found is None:
                records.append(entry.payload)
            elif id(found) not in taken:  # two entries of one record: ingested once
                taken.add(id(found))
                records.append(found)
        with self.sessions.begin() as s:
            self._ingest(s, system, entity, records)

    # -- delivery planning --------------------------------------------------------------
    @collector_spared()
    def plan_deliveries(self, chunk: int = 500) -> None:
        """Bring allocations in step with every subscription changed since the last plan
        (hub.sync.deliveries), a chunk of subscriptions per transaction together with the
        plan's cursor, so a crash replays the chunk and plans the same records again.
        Runs under the subscription lock: no subscription commits behind the cursor."""
        rules = self.delivery_rules = self.delivery_rules or DeliveryRules.load()
        counts = self.counts[HUB]["allocation"]
        by_subscription: dict[str, list[str]] | None = None
        with self._lock("sync:subscription"):
            while True:
                with self.sessions.begin() as s:
                    cursor = repo.get_cursor(s, HUB, DELIVERY_PLAN)
                    after = _split_cursor(cursor)
                    subs = repo.golden_changed_since(s, "subscription", after, chunk)
                    if not subs:
                        return
                    if by_subscription is None:
                        by_subscription = repo.golden_ids_by(s, "allocation", "subscription_id")
                    wanted = [h for sub in subs for h in by_subscription.get(sub.hub_id, [])]
                    allocations = repo.golden_for(s, "allocation", wanted)
                    skus = {str(i["sku"]) for sub in subs for i in sub.data.get("items") or ()}
                    products = {
                        k: g.data for k, g in repo.golden_for(s, "product", sorted(skus)).items()
                    }
                    customers = repo.golden_for(
                        s, "customer", sorted({str(sub.data["customer_id"]) for sub in subs})
                    )
                    now = utcnow()
                    for sub in subs:
                        mine = [
                            allocations[h].data
                            for h in by_subscription.get(sub.hub_id, [])
                            if h in allocations
                        ]
                        customer = customers.get(str(sub.data["customer_id"]))
                        try:
                            planned = deliveries.plan(
                                sub.data,
                                mine,
                                products,
                                customer.data if customer is not None else None,
                                rules,
                                today=now.date(),
                                now=now,
                            )
                        except deliveries.NoWarehouseError as exc:
                            counts.failed += 1
                            self.errors.append(str(exc))
                            log.error("%s", exc)
                            continue
                        for p in planned:
                            golden = self._write_planned(s, p, allocations.get(p.hub_id), now)
                            allocations[p.hub_id] = golden
                            if p.created:
                                by_subscription.setdefault(sub.hub_id, []).append(p.hub_id)
                                counts.created += 1
                            else:
                                counts.updated += 1
                            self._plan(s, "allocation", p.hub_id, golden.data)
                    last = subs[-1]
                    repo.set_cursor(
                        s, HUB, DELIVERY_PLAN, f"{last.updated_at.isoformat()}|{last.hub_id}"
                    )
                self._tick(HUB, "allocation")

    @staticmethod
    def _write_planned(
        s: Session, planned: deliveries.Planned, golden: GoldenRecord | None, now: datetime
    ) -> GoldenRecord:
        """The planned allocation as its golden record; the fields the plan set are
        marked as the hub's (their owners' next statement takes them over)."""
        clean = validate_record("allocation", planned.data).model_dump(mode="json")
        stamp = {"system": HUB, "at": now.isoformat()}
        changed = {f: dict(stamp) for f in planned.changed if f not in ("hub_id", "updated_at")}
        if golden is None:
            golden = GoldenRecord(
                entity="allocation",
                hub_id=planned.hub_id,
                data=clean,
                field_meta=changed,
                fingerprint=fingerprint(clean),
            )
            s.add(golden)
            return golden
        golden.data, golden.field_meta = clean, {**golden.field_meta, **changed}
        golden.fingerprint, golden.version = fingerprint(clean), golden.version + 1
        golden.updated_at = now
        return golden

    # -- helpers ------------------------------------------------------------------------
    def _systems(self, entity: str, systems: Sequence[str] | None) -> list[str]:
        return [
            system
            for (system, ent) in self.specs
            if ent == entity
            and system in self.connectors
            and (systems is None or system in systems)
        ]

    def _mapper(
        self, system: str, entity: str, session: Session, resolver: _XrefResolver | None = None
    ) -> Mapper:
        """The mapping of ``system``'s ``entity`` with ``resolver``'s references (one per
        resolver: a batch plans thousands of records with the same few mappers)."""
        if resolver is None:
            return Mapper(self.specs[(system, entity)], self.code_lists, _XrefResolver(session))
        mapper = resolver.mappers.get((system, entity))
        if mapper is None:
            mapper = resolver.mappers[(system, entity)] = Mapper(
                self.specs[(system, entity)], self.code_lists, resolver
            )
        return mapper

    def _prime(
        self,
        resolver: _XrefResolver,
        entity: str,
        *,
        natives: Mapping[str, Sequence[NativeRecord]] | None = None,
        canonicals: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Fill the batch's reference cache: the ids its native records ({system:
        records}) refer to, and the hub ids its canonical records refer to in every
        system they may be pushed to."""
        by_system: dict[str, dict[str, set[str]]] = defaultdict(dict)  # ref -> system -> hub ids
        for (system, ent), spec in self.specs.items():
            if ent != entity or system not in self.connectors:
                continue
            wanted: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
            groups = [(None, spec.fields)] + [(n, c.fields) for n, c in spec.children.items()]
            objects = {n: c.object for n, c in spec.children.items()}
            for child, fields in groups:
                for name, fmap in fields.items():
                    if fmap.ref is None or fmap.ref == entity:
                        continue
                    exts, hubs = wanted[fmap.ref]
                    native_rows = (natives or {}).get(system, ())
                    canonical_rows = canonicals
                    if child is not None:  # the child rows of every record, in one list
                        obj = objects[child]
                        native_rows = [r for n in native_rows for r in n.get(obj) or []]
                        canonical_rows = [r for c in canonicals for r in c.get(child) or []]
                    exts.update(_ref_values(native_rows, fmap.field))
                    hubs.update(_ref_values(canonical_rows, name))
            for ref, (exts, hubs) in wanted.items():
                resolver.prime_hub_ids(ref, system, exts)
                by_system[ref].setdefault(system, set()).update(hubs)
        for ref, hubs_by_system in by_system.items():
            # every system's ids of the referenced records in one query
            resolver.prime_external_ids(ref, hubs_by_system)

    def _own_refs(self, system: str, entity: str, records: Sequence[NativeRecord]) -> set[str]:
        """The ids of ``entity`` records that ``records`` (``system``'s) refer to: a
        child account's parent account."""
        spec, out = self.specs[(system, entity)], set()
        for fmap in spec.fields.values():
            if fmap.ref == entity:
                out.update(_ref_values(records, fmap.field))
        return out

    def _tick(self, system: str, entity: str) -> None:
        """A batch of ``system``'s ``entity`` was committed."""
        if self.progress is not None:
            self.progress(system, entity, self.counts[system][entity])
        if self.should_stop is not None and self.should_stop():
            raise SyncInterrupted(
                f"stopped on request after a committed batch of {system} {entity}: everything "
                "committed is kept, and the next run resumes from the cursors and the outbox"
            )

    # -- pull ---------------------------------------------------------------------------
    @collector_spared()
    def pull(self, system: str, entity: str) -> None:
        """Extract changes since the cursor, merge them into golden records, plan pushes.
        With the objects alive before the pass kept out of the cyclic collector's walks
        (hub.sync.collector)."""
        connector = self.connectors[system]
        with self.sessions() as s:
            cursor = repo.get_cursor(s, system, entity)
        try:
            for batch in connector.read_changes(entity, cursor):
                with self.sessions.begin() as s:
                    self._ingest(s, system, entity, batch.records)
                    if batch.cursor is not None:
                        repo.set_cursor(s, system, entity, batch.cursor)
                self._tick(system, entity)
        except ConnectorError as exc:
            self.counts[system][entity].failed += 1
            self._failed(exc)
            self.errors.append(f"reading {entity} from {exc}")
            log.error("reading %s from %s", entity, exc)
        finally:
            self.settle_blanking(system, entity)

    def settle_blanking(self, source: str, entity: str) -> None:
        """The pushes this pass planned that empty a field go out only if there are few
        enough of them per target; more than the guard allows are held for a person."""
        with self.sessions.begin() as s:
            verdicts = deletions.settle_blanking(s, entity, self.guard)
        for target, n in verdicts.items():
            self.held[(target, entity)] = self.held.get((target, entity), 0) + n
            log.warning(
                "%d %s pushes to %s would empty fields (read from %s): more than the guard "
                "allows in one pass, held for a person (hub outbox held; hub outbox release)",
                n, entity, target, source,
            )  # fmt: skip

    def pull_deletions(self, system: str, entity: str) -> None:
        """Records ``system`` deleted since the last look, applied by who deleted them
        (hub.sync.deletions). A system that tells its deletes (Salesforce's recycle bin)
        is asked every pass; the others are compared by key at most every
        ``HUB_DELETE_SCAN_HOURS``. A read that fails, or returns nothing, deletes nothing."""
        connector = self.connectors[system]
        slot = deletions.cursor_slot(entity)
        with self.sessions() as s:
            raw = repo.get_cursor(s, system, slot)
        last = datetime.fromisoformat(raw) if raw else None
        now = utcnow()
        try:
            if isinstance(connector, ReadsDeletions):
                found = connector.read_deletions(entity, last - deletions.OVERLAP if last else None)
                if found is None:  # beyond what the system remembers
                    found = self._deleted_by_key_compare(system, entity)
            elif last is not None and now - last < self.scan_every:
                return
            else:  # the first pass only starts the clock: its load is the snapshot
                found = self._deleted_by_key_compare(system, entity) if last else []
        except ConnectorError as exc:
            self.counts[system][entity].failed += 1
            self._failed(exc)
            self.errors.append(f"reading deleted {entity} records from {exc}")
            log.error("reading deleted %s records from %s", entity, exc)
            return
        with self.sessions.begin() as s:
            applied = deletions.DeletionPass(self, s, system, entity).apply(found, self.guard)
            # taken before the read: a delete committed while it ran is read next time
            repo.set_cursor(s, system, slot, now.isoformat())
        self.counts[system][entity].deleted += applied.tombstoned
        if applied.held:
            self.held[(system, entity)] = self.held.get((system, entity), 0) + applied.held
            log.warning(
                "%d %s records deleted in %s is more than the guard allows in one pass: "
                "%d pushes are held for a person (hub outbox held; hub outbox release)",
                applied.tombstoned, entity, system, applied.held,
            )  # fmt: skip

    def _deleted_by_key_compare(self, system: str, entity: str) -> list[Deletion]:
        """The records the hub knows in ``system`` that it no longer has, by reading every
        key. A read that returns nothing deletes nothing (an empty source is an outage or
        a mistake, not a mass delete)."""
        with self.sessions() as s:
            mapper = self._mapper(system, entity, s)
            known = repo.known_external_ids(s, entity, system)
        present = {
            sid
            for batch in self.connectors[system].read_snapshot(entity)
            for sid in map(mapper.system_id, batch.records)
            if sid is not None
        }
        if not present:
            log.warning("%s returned no %s records: no deletes are inferred", system, entity)
            return []
        now = utcnow()
        return [
            Deletion(external_id=ext, key=hub_id, deleted_at=now)
            for ext, hub_id in known.items()
            if ext not in present
        ]

    def _ingest(self, s: Session, system: str, entity: str, records: list[NativeRecord]) -> None:
        """One extracted batch into the golden records, in the caller's transaction:
        staged (mapped, validated, the store state of its keys read at once), then merged
        by ownership (conflicts, new versions, planned pushes, xrefs and fingerprints).
        See hub.sync.staging and hub.sync.merging for why the two halves."""
        resolver = _XrefResolver(s, entity)
        self._prime(resolver, entity, natives={system: records})
        mapper = self._mapper(system, entity, s, resolver)
        own_refs = self._own_refs(system, entity, records)
        batch = staging.stage(
            s, mapper, records, self.counts[system][entity], self._quarantine,
            lock_rows=self.lock_rows,
            linked=lambda: resolver.prime_own(entity, system, own_refs),
        )  # fmt: skip
        resolver.forget_own()
        resolver.prime_later(partial(self._prime, resolver, entity, canonicals=batch.canonicals()))

        def plan(hub_id: str, data: dict[str, Any], blanks: bool, created: bool) -> None:
            deferred = self._deferred
            if deferred is not None and not blanks and (created or hub_id in deferred):
                deferred.add(hub_id)  # planned once, after the pulls (plan_new_records)
                return
            status = deletions.BLANKING if blanks else "pending"
            self._plan(s, entity, hub_id, data, held=batch.held, resolver=resolver, status=status)

        BatchMerger(
            batch,
            owners=self.owners[entity],
            creators=sorted(t for (t, e), sp in self.specs.items() if e == entity and sp.creates),
            counts=self.counts[system][entity],
            golden_counts=self.counts[HUB][entity],
            quarantine=self._quarantine,
            plan=plan,
            now=utcnow(),
        ).merge_all()

    def _quarantine(
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
    ) -> None:
        external_key = key or f"unkeyed:{fingerprint(payload)[:16]}"
        repo.quarantine(
            s,
            system=system,
            entity=entity,
            external_key=external_key,
            payload=payload,
            reason=reason,
            errors=errors,
            direction=direction,
        )
        if held is not None:
            held.quarantined(system, external_key, direction)
        self.counts[system][entity].quarantined += 1
        # not a console warning: a record often waits only until a later batch of the same
        # run (its parent's id); what stays quarantined is listed once at the end of a run
        log.debug("quarantined %s %s %s: %s", system, entity, external_key, reason)

    # -- plan ---------------------------------------------------------------------------
    def _plan(
        self,
        s: Session,
        entity: str,
        hub_id: str,
        data: dict[str, Any],
        only: Sequence[str] | None = None,
        dry_run: bool = False,
        held: repo.BatchRows | None = None,
        resolver: _XrefResolver | None = None,
        status: str = "pending",
    ) -> list[tuple[str, dict[str, Any]]]:
        """Queue a push to every system whose copy differs from the golden record; returns
        (system, payload) of each planned push (``dry_run``: planned, not queued).
        ``held``/``resolver``: the batch's rows and references already read (one record's
        are read here otherwise). ``status``: ``blanking`` for a push that empties a
        field, which waits for the guard's count at the end of the pass (settle_blanking)."""
        planned: list[tuple[str, dict[str, Any]]] = []
        if held is None:
            held = repo.BatchRows(s, entity, [hub_id])
        with_ids = {**data, EXTERNAL_IDS: held.external_ids(hub_id)}
        flat_ids = flatten(with_ids)  # once, for every system's push projection
        for system, ent in self.specs:
            if ent != entity:
                continue
            if only is not None and system not in only:
                continue
            mapper = self._mapper(system, entity, s, resolver)
            if not mapper.spec.holds(with_ids):
                continue  # e.g. a draft invoice: SAP only gets posted ones
            fp = fingerprint(push_projection(mapper, with_ids, flat_ids))
            there = held.fingerprint(system, hub_id)
            if there != fp and held.fingerprint(with_claims(system), hub_id) == fp:
                # the system already carried ids the hub has only now learned, and they
                # match: it holds exactly this (no write to tell it what it knows)
                if not dry_run:
                    held.set_fingerprint(system, hub_id, fp)
                there = fp
            if there == fp:
                # the system already holds this: a push planned from an earlier state of
                # the record (e.g. before its owner was read in this pass) is obsolete
                if not dry_run:
                    held.drop_pending(system, hub_id)
                continue
            try:
                payload = mapper.to_native(with_ids)
            except MappingValueError as exc:
                # e.g. its account is not in that system yet: the push waits in quarantine
                # (outbound), is re-planned at the start of every pass, and is never lost
                if not dry_run:
                    self._quarantine(
                        s,
                        system,
                        entity,
                        hub_id,
                        data,
                        f"push of {entity} {hub_id} to {system} waits: {exc}",
                        [asdict(p) for p in exc.problems],
                        direction="outbound",
                    )
                continue
            own_id = with_ids[EXTERNAL_IDS].get(system)
            if own_id is not None:  # update the record the system already has, by its id
                set_path(payload, mapper.spec.key.system_id_field, own_id)
            planned.append((system, payload))
            if not dry_run:
                held.enqueue(system, hub_id, payload, fp, status)
        return planned

    def _hold_back(self, system: str, entity: str, rows: list[OutboxEntry]) -> list[OutboxEntry]:
        """Pushes that may go out. The delivery rules (hub.sync.deliveries, declared in
        mappings/deliveries.yaml) may withhold a record the target does not hold yet -
        a new allocation of a SKU the PIM retired, say: it is not sent and waits in
        quarantine (outbound) until it or what it refers to changes. Checked at delivery,
        when every system's ids are known, so a record the target already holds is never
        held; nor is a push to a system that creates the entity (where such records come
        from)."""
        if self.specs[(system, entity)].creates or not deliveries.may_withhold(entity):
            return rows
        rules = self.delivery_rules = self.delivery_rules or DeliveryRules.load()
        with self.sessions.begin() as s:

            def golden(ent: str, hub_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
                return {h: g.data for h, g in repo.golden_for(s, ent, hub_ids).items()}

            known = repo.external_ids_for(s, entity, system, [r.hub_id for r in rows])
            new = [r.hub_id for r in rows if r.hub_id not in known]
            withheld = deliveries.withheld(rules, system, new, golden)
            keep = []
            for row in rows:
                why = withheld.get(row.hub_id)
                if why is None:
                    keep.append(row)
                    continue
                repo.fail(s, row.id, why.reason)
                self._quarantine(
                    s,
                    system,
                    entity,
                    row.hub_id,
                    row.payload,
                    why.reason,
                    list(why.errors),
                    direction="outbound",
                )
        return keep

    # -- push ---------------------------------------------------------------------------
    def _owns_records(self, system: str, entity: str) -> bool:
        """Whether ``system`` is an authority on ``entity`` records (it owns fields of them
        or creates them): its delete is a decision to respect, never drift to repair."""
        spec = self.specs.get((system, entity))
        owned = system in self.owners[entity].values()
        return owned or bool(spec is not None and spec.creates)

    def systems_for(self, entity: str) -> list[str]:
        """Every system with a mapping for ``entity`` (connected or not)."""
        return sorted(system for (system, ent) in self.specs if ent == entity)

    def pull_order(self, entity: str, systems: Sequence[str]) -> list[str]:
        """Systems that create records first: a record another system holds under a hub
        id is an orphan only if no creator brought that id in."""
        return sorted(
            systems, key=lambda system: (not self.specs[(system, entity)].creates, system)
        )

    def _push_order(self, entity: str, systems: list[str]) -> list[str]:
        """A system before every system that carries its id (SAP, then Salesforce which
        keeps the SAP number, then billing which keeps both), so ids minted by a push reach
        the systems that carry them in the same pass instead of a second one."""

        def carried(system: str) -> set[str]:
            spec = self.specs[(system, entity)]
            return {
                name.split(".", 1)[1] for name in spec.fields if name.startswith(f"{EXTERNAL_IDS}.")
            } - {system}

        remaining, order = sorted(systems), []
        while remaining:
            ready = [s for s in remaining if not (carried(s) & set(remaining))] or remaining[:1]
            order.append(ready[0])
            remaining.remove(ready[0])
        return order

    @collector_spared()
    def push(self, system: str, entity: str) -> None:
        """Deliver the outbox's pending pushes to one system, in bulk batches."""
        if self.dry_run:
            return  # what would go out stays in the (rolled back) outbox for the report
        connector = self.connectors[system]
        after = 0
        while True:
            with self.sessions() as s:
                rows = repo.pending(s, system, entity, self.push_batch_size, after)
            if not rows:
                return
            after = rows[-1].id
            rows = self._hold_back(system, entity, rows)
            deletes = [r for r in rows if r.operation == "delete"]
            if deletes:
                self._push_deletes(system, entity, deletes)
                rows = [r for r in rows if r.operation != "delete"]
            if not rows:
                continue
            try:
                results = connector.write_batch(entity, [dict(r.payload) for r in rows])
            except ConnectorError as exc:
                self._push_failed(system, entity, rows, exc, f"writing {entity} to")
                return
            if len(results) != len(rows):
                raise RuntimeError(
                    f"{system} connector returned {len(results)} results for {len(rows)} records"
                )
            with self.sessions.begin() as s:
                recreating = self._record_results(s, system, entity, rows, results)
            if recreating:  # SQLite may give the new push the id of the one it replaces
                after = rows[0].id - 1
            self._tick(system, entity)

    def _push_failed(
        self, system: str, entity: str, rows: list[OutboxEntry], exc: ConnectorError, what: str
    ) -> None:
        """A batch the system could not take at all: each row keeps its place in the
        outbox with the attempt noted, and the run reports the error."""
        with self.sessions.begin() as s:
            repo.note_attempt(s, [r.id for r in rows], str(exc))
        self.counts[system][entity].failed += len(rows)
        self._failed(exc)
        self.errors.append(f"{what} {exc}")
        log.error("%s %s", what, exc)

    def _push_deletes(self, system: str, entity: str, rows: list[OutboxEntry]) -> None:
        """Deletes the owner's delete asked for (``on_delete: {action: delete}``)."""
        connector, counts = self.connectors[system], self.counts[system][entity]
        if not isinstance(connector, DeletesRecords):
            with self.sessions.begin() as s:
                for row in rows:
                    repo.fail(s, row.id, "the connector cannot delete")
                    self._quarantine(
                        s, system, entity, row.hub_id, row.payload,
                        f"mappings/{system}/{entity}.yaml says on_delete: delete, but the "
                        f"{system} connector cannot delete records: use deactivate or keep",
                        direction="outbound",
                    )  # fmt: skip
            return
        try:
            results = connector.delete_batch(entity, [str(r.payload["id"]) for r in rows])
        except ConnectorError as exc:
            self._push_failed(system, entity, rows, exc, f"deleting {entity} in")
            return
        with self.sessions.begin() as s:
            held = repo.BatchRows(s, entity, [])
            done = []
            for row, result in zip(rows, results, strict=True):
                if result.outcome is not Outcome.DELETED:
                    self._rejected(s, system, entity, row, result, held)
                    continue
                repo.forget_xref(s, entity, row.hub_id, system)
                for slot in (system, with_claims(system)):
                    repo.forget_fingerprint(s, slot, entity, row.hub_id)
                counts.deleted += 1
                done.append(row.id)
            repo.complete(s, done)
        self._tick(system, entity)

    def _record_results(
        self,
        s: Session,
        system: str,
        entity: str,
        rows: list[OutboxEntry],
        results: list[WriteResult],
    ) -> bool:
        """One written batch's results into the store; True when records deleted in the
        system were re-planned as creates (to be sent by the same push)."""
        counts = self.counts[system][entity]
        done, recreating = [], False
        minted = [r.external_id for r in results if r.external_id]
        held = repo.BatchRows(s, entity, [r.hub_id for r in rows], {system: minted})
        linked = [r.hub_id for r, x in zip(rows, results, strict=True) if x.external_id]
        goldens = repo.golden_for(s, entity, linked)
        resolver = _XrefResolver(s, entity)
        self._prime(resolver, entity, canonicals=[g.data for g in goldens.values()])
        for row, result in zip(rows, results, strict=True):
            if result.gone and not self._owns_records(system, entity):
                self._recreate(s, system, entity, row.hub_id, held, resolver)
                recreating = True
                continue
            if result.outcome is Outcome.REJECTED:
                self._rejected(s, system, entity, row, result, held)
                continue
            setattr(counts, result.outcome.value, getattr(counts, result.outcome.value) + 1)
            held.set_fingerprint(system, row.hub_id, row.fingerprint)
            held.release_quarantine(system, row.hub_id, direction="outbound")
            done.append(row.id)
            if result.external_id and held.set_xref(row.hub_id, system, result.external_id):
                self._links_minted += 1
                golden = goldens.get(row.hub_id)
                if golden is not None and not golden.deleted:  # others may carry this id
                    others = [t for (t, e) in self.specs if e == entity and t != system]
                    self._plan(
                        s, entity, row.hub_id, golden.data, only=others, held=held,
                        resolver=resolver,
                    )  # fmt: skip
        repo.complete(s, done)
        return recreating

    def _recreate(
        self,
        s: Session,
        system: str,
        entity: str,
        hub_id: str,
        held: repo.BatchRows,
        resolver: _XrefResolver | None = None,
    ) -> None:
        """Deleted in a system that only receives the record: drift. The stale id is
        forgotten and the record re-planned as a create (an upsert on the hub id), unless
        its owner deleted it too (tombstoned: never resurrected)."""
        stale = held.forget(hub_id, system, (system, with_claims(system)))
        golden = repo.golden_for(s, entity, [hub_id]).get(hub_id)
        if golden is None or golden.deleted:
            return
        log.warning("%s %s was deleted in %s (id %s): recreating it", entity, hub_id, system, stale)
        self._plan(s, entity, hub_id, golden.data, only=[system], held=held, resolver=resolver)

    def _rejected(
        self,
        s: Session,
        system: str,
        entity: str,
        row: OutboxEntry,
        result: WriteResult,
        held: repo.BatchRows,
    ) -> None:
        repo.fail(s, row.id, result.error or "rejected")
        reason = (
            f"{system} rejected {entity} {row.hub_id}: "
            f"{result.error_code or 'error'}: {result.error}"
        )
        if result.gone:
            reason += (
                f". {system} deleted it and holds data of {entity}s as their owner, so the "
                f"hub does not recreate it: restore it from {system}'s recycle bin if the "
                "delete was a mistake"
            )
        self._quarantine(
            s, system, entity, row.hub_id, row.payload, reason, direction="outbound", held=held
        )


def _ref_values(rows: Sequence[Any], path: str) -> set[str]:
    """The reference values at ``path`` in these records, as the resolver is asked them."""
    out = set()
    for row in rows:
        if type(row) is not dict:  # get_path walks dicts: another mapping is copied first
            row = dict(row) if isinstance(row, Mapping) else None
        value = get_path(row, path) if row is not None else None
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            out.add(str(value))
    return out


_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def _plan_slot(entity: str) -> str:
    """The hub's cursor over the golden records planned so far (plan_new_records)."""
    return f"{entity}:plan"


def _split_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    stamp, key = cursor.split("|", 1)
    return datetime.fromisoformat(stamp), key
