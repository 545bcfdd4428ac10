"""Applying stored change events: the inbox's pending rows through the sync engine.

One pass (:func:`process_pending`) takes the pending inbox rows in arrival order, groups
them by (system, entity) and, per group, under the entity's sync lock (a poll of the same
entity never interleaves):

- **records changed** (Salesforce CREATE/UPDATE/UNDELETE and their ``GAP_*`` forms, SAP
  Created/Changed/...): the system ids are turned into hub ids (the xref, or the hub id a
  Salesforce event carries) and the records are read back by key from the system that
  sent the event, in one ``read_by_keys`` for the whole group (S/4 events carry keys only;
  a Salesforce event is read back too, so the full current record is merged, never a
  partial one). The records go through the engine's ingest (mapping, validation, merge by
  ownership, outbox planning) and the rows are marked processed in the same transaction.
- **records deleted** (DELETE / GAP_DELETE / SAP Deleted): the deletions path of the poll
  (hub.sync.deletions: tombstone when the sender owns the records, recreate when it does
  not; a tombstone is never resurrected).
- **records the hub does not know yet** (a record created in Salesforce carries no hub
  id) and **GAP_OVERFLOW** (the object's window must be read back): the entity's normal
  cursor poll of that system, then the rows are marked.

Then the planned outbox of the entity is pushed to the other systems. A re-processed event
changes nothing: the records read back have the fingerprints the hub recorded, so nothing
is planned, and an event already marked is never picked again.

**Echoes of the hub's own writes** (counted as ``echoes``, no system written):

- recognised from the header, without a read-back (outcome ``echo``), when all of these
  hold for a Salesforce CREATE/UPDATE event (:meth:`EventProcessor._header_echoes`):
  ``commitUser`` is the integration user (the user id of the token's identity URL,
  :class:`HubIdentity`); ``changeOrigin`` names the hub's client (``client=<name>``, which
  Salesforce takes from the ``Sforce-Call-Options`` header every REST call of the hub
  carries); and for every record of the event the hub's fingerprint of what Salesforce
  holds is the golden record's (what the hub last pushed or read is what it holds now)
  and every changed field (besides ``LastModifiedDate``/``LastModifiedById``/
  ``SystemModstamp``) is one the hub writes, with the value the hub writes. A change by
  the integration user through another client (another ``changeOrigin``), by another
  user, or one the hub cannot judge (a field it does not write, a value that differs or
  does not compare, no identity yet) is read back as below;
- otherwise by the fingerprint after the read-back: it matches and plans nothing."""

from __future__ import annotations

import logging
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.base import Deletion, NativeRecord
from connectors.errors import ConnectorError
from hub.events.inbox import InboxRow, mark_processed, pending
from hub.fingerprint import fingerprint
from hub.mapping.mapper import MappingValueError
from hub.store import repo
from hub.store.models import utcnow
from hub.sync import deletions
from hub.sync.engine import HUB, SyncEngine, _XrefResolver
from hub.sync.fingerprints import EXTERNAL_IDS, push_projection
from hub.sync.lock import store_lock

log = logging.getLogger("hub.events")

#: outcomes recorded on inbox rows
APPLIED, DELETED, POLLED, FAILED_OUTCOME = "applied", "deleted", "polled", "failed"
#: the outcome of an event recognised from its header as the echo of the hub's own write
ECHO = "echo"
#: change types whose header may mark the hub's own write (their values are the write's)
_ECHO_TYPES = frozenset({"create", "update"})
#: fields Salesforce sets on every write itself: in changedFields, never written by the hub
_AUDIT_FIELDS = frozenset(
    {
        "LastModifiedDate",
        "LastModifiedById",
        "SystemModstamp",
        "CreatedDate",
        "CreatedById",
        "LastReferencedDate",
        "LastViewedDate",
    }
)


@dataclass(frozen=True)
class HubIdentity:
    """Who the hub is in a system's change event headers: the integration user's id
    (Salesforce: the user id of the OAuth token's identity URL, the events'
    ``commitUser``) and the client its API calls name (``Sforce-Call-Options:
    client=<client>``, the events' ``changeOrigin``)."""

    user_id: str
    client: str


def origin_client(change_origin: str) -> str:
    """The ``client`` of a ``changeOrigin`` (``com/salesforce/api/rest/61.0;client=x``);
    empty when the write named none."""
    for part in change_origin.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "client":
            return value.strip()
    return ""


def same_user(a: str, b: str) -> bool:
    """Two Salesforce user ids are the same user (a 15-character id is the
    case-sensitive prefix of its 18-character form)."""
    if not a or not b:
        return False
    if len(a) != len(b):
        return a[:15] == b[:15]
    return a == b


def _flat_field_names(names: Iterable[str]) -> list[str]:
    """changedFields / nulledFields names as REST field names (``BillingAddress.City`` ->
    ``BillingCity``, as :func:`flatten_compound` names the values)."""
    from connectors.salesforce_pubsub.events import flatten_compound

    out: list[str] = []
    for name in names:
        parent, dot, part = name.partition(".")
        out += list(flatten_compound({parent: {part: None}})) if dot else [name]
    return out


def _same_value(event_value: Any, written: Any) -> bool:
    """The event's value is the one the hub writes; anything that does not clearly compare
    (dates as Avro numbers, structures) is not."""
    if event_value is None or written is None:
        return event_value is None and written in (None, "")
    if isinstance(event_value, bool) or isinstance(written, bool):
        return (
            isinstance(event_value, bool) and isinstance(written, bool) and (event_value == written)
        )
    if isinstance(event_value, int | float) and isinstance(written, int | float):
        return float(event_value) == float(written)
    if isinstance(event_value, str) and isinstance(written, str):
        return event_value == written
    return False


_DELETES = frozenset({"delete", "gap_delete"})
_OVERFLOW = "gap_overflow"


@dataclass
class BatchStats:
    """What one (system, entity) group of events did."""

    system: str
    entity: str
    events: int = 0
    #: hub ids of the records read back and merged (or tombstoned)
    keys: list[str] = field(default_factory=list)
    read: int = 0
    deleted: int = 0
    #: golden records the group changed (created or updated)
    changed: int = 0
    #: echoes of the hub's own writes: events recognised from their header (no read-back)
    #: or whose read-back matched what the hub holds; nothing was written for them
    echoes: int = 0
    #: the entity's cursor poll ran (overflow, or a record the hub does not know yet)
    polled: bool = False
    #: writes per target system: created + updated + deleted
    pushed: dict[str, int] = field(default_factory=dict)
    #: seconds from each event's commit in its system to this group being applied
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def latency_p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else 0.0

    @property
    def latency_max(self) -> float:
        return max(self.latencies) if self.latencies else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "entity": self.entity,
            "events": self.events,
            "keys": self.keys,
            "read": self.read,
            "deleted": self.deleted,
            "changed": self.changed,
            "echoes": self.echoes,
            "polled": self.polled,
            "pushed": self.pushed,
            "latency_p50": round(self.latency_p50, 3),
            "latency_max": round(self.latency_max, 3),
            "errors": self.errors,
        }


def _change(row: InboxRow) -> str:
    return (row.change_type or "").lower()


def _system_ids(row: InboxRow, key_field: str | None) -> list[str]:
    """The system's own ids of the records an event covers: Salesforce record ids, or the
    key field's value of SAP's key objects."""
    out: list[str] = []
    for key in row.record_keys:
        if isinstance(key, Mapping):
            value = (
                key.get(key_field)
                if key_field and key_field in key
                else next(iter(key.values()), None)
            )
            if value not in (None, ""):
                out.append(str(value))
        elif key not in (None, ""):
            out.append(str(key))
    return out


def committed_at(row: InboxRow) -> datetime | None:
    """When the change was committed in its system: Salesforce's ``commitTimestamp`` (the
    listener stores it as ``commit_timestamp``), a CloudEvent's ``time``."""
    payload = row.payload or {}
    raw = payload.get("commit_timestamp") or payload.get("time")
    if not raw:
        return None
    try:
        stamp = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


class EventProcessor:
    """Applies pending inbox rows through ``engine`` (a :class:`SyncEngine` whose
    connectors include every system the events come from and go to)."""

    def __init__(
        self,
        engine: SyncEngine,
        *,
        batch_size: int = 500,
        lock_wait_seconds: float = 60,
        clock: Callable[[], datetime] | None = None,
        identities: Mapping[str, Callable[[], HubIdentity | None]] | None = None,
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.lock_wait_seconds = lock_wait_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        #: system -> who the hub is in its event headers (None until known, e.g. before
        #: the first login): without one, echoes are recognised after the read-back only
        self.identities: dict[str, Callable[[], HubIdentity | None]] = dict(identities or {})

    # -- one pass --------------------------------------------------------------------------
    def process_pending(self) -> list[BatchStats]:
        """Apply what is pending (at most ``batch_size`` rows); one stats per group."""
        with self.engine.engine.connect() as conn:
            rows = pending(conn, limit=self.batch_size)
        groups: dict[tuple[str, str], list[InboxRow]] = defaultdict(list)
        for row in rows:
            if row.entity is None:
                continue  # stored as ignored; never pending, but be safe
            groups[(row.system, row.entity)].append(row)
        out: list[BatchStats] = []
        for (system, entity), group in groups.items():
            out.append(self.process_group(system, entity, group))
        return out

    def process_group(self, system: str, entity: str, rows: Sequence[InboxRow]) -> BatchStats:
        stats = BatchStats(system=system, entity=entity, events=len(rows))
        engine = self.engine
        if system not in engine.connectors or (system, entity) not in engine.specs:
            stats.errors.append(f"{system} is not connected or has no {entity} mapping")
            with engine.sessions.begin() as s:
                mark_processed(s.connection(), [r.id for r in rows], FAILED_OUTCOME)
            return stats
        engine.errors.clear()
        golden = engine.counts[HUB][entity]
        before = golden.created + golden.updated
        with store_lock(engine.engine, f"sync:{entity}", wait_seconds=self.lock_wait_seconds):
            readable = self._apply(system, entity, rows, stats)
            self._push(system, entity, stats)
        stats.changed = golden.created + golden.updated - before
        if readable and not stats.changed and not stats.pushed:
            # read back, matched the fingerprints, nothing planned: the hub's own writes
            # coming back (or a redelivery) - no system was written
            stats.echoes += readable
        stats.errors.extend(engine.errors)
        now = self.clock()
        for row in rows:
            stamp = committed_at(row)
            if stamp is not None:
                stats.latencies.append(max((now - stamp).total_seconds(), 0.0))
        return stats

    # -- the parts -------------------------------------------------------------------------
    def _key_field(self, system: str, entity: str) -> str:
        return self.engine.specs[(system, entity)].key.system_id_field

    def _resolve(self, system: str, entity: str, rows: Iterable[InboxRow]) -> dict[str, str]:
        """system id -> hub id for the records of ``rows`` the hub knows (the xref, or the
        hub id field a Salesforce event's values carry)."""
        spec = self.engine.specs[(system, entity)]
        key_field = spec.key.system_id_field
        hub_field = spec.key.hub_id_field
        wanted: list[str] = []
        carried: dict[str, str] = {}
        for row in rows:
            ids = _system_ids(row, key_field)
            wanted += ids
            values = (row.payload or {}).get("values") or {}
            if hub_field and values.get(hub_field) and len(ids) == 1:
                carried[ids[0]] = str(values[hub_field])
        with self.engine.sessions() as s:
            known = repo.hub_ids_for(s, entity, system, sorted(set(wanted)))
        return {**carried, **known}

    def _apply(self, system: str, entity: str, rows: Sequence[InboxRow], stats: BatchStats) -> int:
        """Apply the rows; returns how many were read back by key."""
        engine = self.engine
        key_field = self._key_field(system, entity)
        overflow = [r for r in rows if _change(r) == _OVERFLOW]
        deletes = [r for r in rows if _change(r) in _DELETES]
        changes = [r for r in rows if r not in overflow and r not in deletes]
        resolved = self._resolve(system, entity, rows)
        deleted_ids = {sid for r in deletes for sid in _system_ids(r, key_field)}
        unknown = [
            r for r in changes if any(sid not in resolved for sid in _system_ids(r, key_field))
        ]
        # echoes of the hub's own writes, told by their header: marked, never read back
        echoes = self._header_echoes(
            system, entity, [r for r in changes if r not in unknown], resolved, deleted_ids
        )
        if echoes:
            with engine.sessions.begin() as s:
                mark_processed(s.connection(), list(echoes), ECHO)
            stats.echoes += len(echoes)
            stats.keys += sorted({h for ids in echoes.values() for h in ids})
        # records changed: one read by keys for the whole group, ingested with the rows'
        # outcome in one transaction
        readable = [r for r in changes if r not in unknown and r.id not in echoes]
        hub_ids = sorted(
            {
                resolved[sid]
                for r in readable
                for sid in _system_ids(r, key_field)
                if sid not in deleted_ids
            }
        )
        if readable:
            try:
                records: list[NativeRecord] = []
                for batch in engine.connectors[system].read_by_keys(entity, hub_ids):
                    records.extend(batch.records)
            except ConnectorError as exc:
                # left pending: the next pass (or the poll) reads them
                stats.errors.append(f"reading {entity} back from {exc}")
                log.warning("reading %s back from %s; the events stay pending", entity, exc)
                readable = []
            else:
                with engine.sessions.begin() as s:
                    if records:
                        engine._ingest(s, system, entity, records)
                    deletions.settle_blanking(s, entity, engine.guard)
                    mark_processed(s.connection(), [r.id for r in readable], APPLIED)
                stats.read += len(records)
                stats.keys += hub_ids
        # records deleted: the poll's deletions path, rows marked in its transaction
        if deletes:
            found = []
            for r in deletes:
                stamp = committed_at(r) or utcnow()
                for sid in _system_ids(r, key_field):
                    found.append(Deletion(external_id=sid, key=resolved.get(sid), deleted_at=stamp))
            with engine.sessions.begin() as s:
                applied = deletions.DeletionPass(engine, s, system, entity).apply(
                    found, engine.guard
                )
                mark_processed(s.connection(), [r.id for r in deletes], DELETED)
            stats.deleted += applied.tombstoned
            stats.keys += [resolved[sid] for sid in deleted_ids if sid in resolved]
            if applied.held:
                engine.held[(system, entity)] = engine.held.get((system, entity), 0) + applied.held
        # what only the window can tell: the entity's cursor poll of that system
        if overflow or unknown:
            why = "an overflow event" if overflow else "records the hub does not know yet"
            log.info("%s %s: %s: running the %s poll", system, entity, why, entity)
            engine.pull(system, entity)
            stats.polled = True
            with engine.sessions.begin() as s:
                mark_processed(s.connection(), [r.id for r in [*overflow, *unknown]], POLLED)
        return len(readable)

    def _header_echoes(
        self,
        system: str,
        entity: str,
        rows: Sequence[InboxRow],
        resolved: Mapping[str, str],
        deleted_ids: set[str],
    ) -> dict[int, list[str]]:
        """Rows that are echoes of the hub's own writes by their header (row id -> hub ids
        of its records). The rule, every part required:

        1. the event's ``commitUser`` is the integration user and its ``changeOrigin``
           names the hub's client (:class:`HubIdentity`): the write was made by the hub's
           API calls, not by someone using the same user through another tool;
        2. it is a CREATE or UPDATE of records the hub knows (not a gap event);
        3. for every record: the fingerprint the hub holds of the system's copy is the
           golden record's (the system held what the hub last pushed or read), and every
           changed field - for a CREATE every field with a value - apart from the audit
           fields Salesforce sets itself is a field the hub writes to that record, with
           the value the hub writes.

        Anything unsure (no identity yet, a field the hub does not write, a value that
        differs or does not compare) is not an echo: it is read back as any other."""
        provider = self.identities.get(system)
        me = provider() if provider is not None else None
        if me is None or not me.user_id or not me.client:
            return {}
        engine = self.engine
        key_field = self._key_field(system, entity)
        candidates: dict[int, tuple[InboxRow, list[str]]] = {}
        for row in rows:
            payload = row.payload or {}
            if _change(row) not in _ECHO_TYPES:
                continue
            if not same_user(str(payload.get("commit_user") or ""), me.user_id):
                continue
            if origin_client(str(payload.get("change_origin") or "")) != me.client:
                continue
            ids = _system_ids(row, key_field)
            if not ids or any(sid not in resolved or sid in deleted_ids for sid in ids):
                continue
            candidates[row.id] = (row, [resolved[sid] for sid in ids])
        if not candidates:
            return {}
        hub_ids = sorted({h for _row, ids in candidates.values() for h in ids})
        out: dict[int, list[str]] = {}
        with engine.sessions() as s:
            held = repo.BatchRows(s, entity, hub_ids)
            goldens = repo.golden_for(s, entity, hub_ids)
            resolver = _XrefResolver(s, entity)
            engine._prime(resolver, entity, canonicals=[g.data for g in goldens.values()])
            mapper = engine._mapper(system, entity, s, resolver)
            written: dict[str, dict[str, Any] | None] = {}
            for hub_id in hub_ids:
                written[hub_id] = None
                golden = goldens.get(hub_id)
                if golden is None or golden.deleted:
                    continue
                with_ids = {**golden.data, EXTERNAL_IDS: held.external_ids(hub_id)}
                if not mapper.spec.holds(with_ids):
                    continue
                pushed = fingerprint(push_projection(mapper, with_ids))
                if held.fingerprint(system, hub_id) != pushed:
                    continue  # the system's copy is not the golden record's: unsure
                try:
                    written[hub_id] = mapper.to_native(with_ids)
                except MappingValueError:
                    continue
            for row_id, (row, ids) in candidates.items():
                payload = row.payload or {}
                values = payload.get("values") or {}
                if _change(row) == "create":
                    fields = [f for f, v in values.items() if v is not None]
                else:
                    fields = _flat_field_names(row.changed_fields or [])
                    if not fields:
                        continue  # an update naming no field: let the read-back judge
                fields = [f for f in fields if f not in _AUDIT_FIELDS and f != key_field]
                if all(
                    (native := written[h]) is not None
                    and all(f in native and _same_value(values.get(f), native[f]) for f in fields)
                    for h in ids
                ):
                    out[row_id] = ids
        return out

    def _push(self, source: str, entity: str, stats: BatchStats) -> None:
        engine = self.engine
        targets = [
            t
            for t in engine._push_order(entity, engine._systems(entity, None))
            if t in engine.connectors
        ]
        for target in targets:
            counts = engine.counts[target][entity]
            before = counts.created + counts.updated + counts.deleted
            engine.push(target, entity)
            written = counts.created + counts.updated + counts.deleted - before
            if written:
                stats.pushed[target] = stats.pushed.get(target, 0) + written


def process_pending(engine: SyncEngine, batch_size: int = 500) -> list[BatchStats]:
    """One pass over the inbox (see :class:`EventProcessor`)."""
    return EventProcessor(engine, batch_size=batch_size).process_pending()


def drain(engine: SyncEngine, batch_size: int = 500, rounds: int = 100) -> list[BatchStats]:
    """Pass after pass until nothing is pending (tests, and a listener's start)."""
    processor = EventProcessor(engine, batch_size=batch_size)
    out: list[BatchStats] = []
    for _ in range(rounds):
        done = processor.process_pending()
        if not done:
            break
        out += done
        time.sleep(0)
    return out
