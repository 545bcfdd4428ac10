"""A backfill of one entity split into partitions that run at the same time.

The initial load (or a full re-pull after an incident) of an entity is cut into ``n``
partitions by a time window on each system's change stamp: partition ``i`` of ``n``
covers the ``i``-th contiguous slice of ``[earliest, started)``, the first one also
everything before ``earliest`` and the last one everything from its start on (so a change
made while the backfill runs is read too). A partition applies the same window to every
system's ``read_snapshot`` and ingests each batch through the sync engine in its own
transaction, with the engine's row locks on (``SyncEngine.lock_rows``), so two partitions
writing the same golden record wait for each other instead of losing an update.

A partition runs in two phases, with a barrier between them that the caller keeps (the
Dagster assets depend on every partition of the phase before; ``run_backfill`` joins
its threads), where :func:`settle` retries the entity's quarantine once: ``creators``
(the systems that may start golden records) and then
``others``, so a record of a non-creator never arrives before the creator's record that
another partition brings in (it would be quarantined as an orphan, as a single run never
does).

Conflicts between partitions are expected and retried: two partitions creating the same
golden record or link (a unique violation: the other committed first), a deadlock or a
serialization failure roll the batch back and stage it again from the same records,
which then finds what the other partition committed (``max_retries`` times, each logged).

After every partition of an entity finished, :func:`finish` sets the entity's polling
cursors and runs one ordinary sync pass of the entity under its ``sync:<entity>`` lease:
the plan of every golden record the partitions created (the ``<entity>:plan`` cursor was
placed before the first partition ingested), delivery planning, the pushes in push order,
and the quarantine retry - the same code as a normal pass.

**The cursor rule.** Each system's polling cursor is set to the hub's clock read when the
backfill started (``started``, stored with the backfill), with the lowest tie-breaking
key its format allows; never later, so no change made during the backfill is skipped: the
next incremental read starts the system's cursor overlap (300 s by default) before that
stamp, which re-reads every change at an equal stamp, and what the backfill already
ingested is unchanged for the fingerprints. A cursor already at or after ``started`` is
kept (no backfill moves a cursor back). Partitions never write polling cursors; only
:func:`finish` does, once. SAP reservations, compared by content hashes and without a
stamp, get no cursor: the next pass compares the whole book, as each pass does.

Locks: each partition holds the store lease ``backfill:<entity>:<i>/<n>``; a partition
refuses to start (:class:`BackfillRefused`) while an ordinary sync of the entity holds
``sync:<entity>``, and :func:`finish` takes ``sync:<entity>`` itself. An ordinary sync
started while partitions run is not stopped by the store (pause the entity's schedules:
docs/operations.md)."""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from connectors.base import Window
from hub.store import repo
from hub.store.models import Cursor, Lock, utcnow
from hub.sync.engine import HUB, SyncEngine
from hub.sync.lock import store_lock

log = logging.getLogger("hub.sync.backfill")

Phase = Literal["creators", "others"]
PHASES: tuple[Phase, Phase] = ("creators", "others")
#: PostgreSQL's codes for a conflict a retry resolves: unique violation (another
#: partition created the record or link first), serialization failure, deadlock
RETRY_SQLSTATES = frozenset({"23505", "40001", "40P01"})
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


class BackfillRefused(RuntimeError):
    """The backfill cannot start now (an ordinary sync of the entity is running)."""


def _state_slot(entity: str) -> str:
    return f"backfill:{entity}"


def lock_name(entity: str, index: int, partitions: int) -> str:
    return f"backfill:{entity}:{index + 1}/{partitions}"


@dataclass(frozen=True)
class BackfillState:
    """What every partition of one backfill of an entity agrees on, stored in the hub
    store (cursor ``hub / backfill:<entity>``) by the first partition to start."""

    entity: str
    partitions: int
    earliest: datetime
    started: datetime
    #: where the slices end (the last partition is open past it); the start by default
    latest: datetime | None = None
    #: the n-1 inner bounds, when probed (probe_bounds) or given: used instead of even
    #: slices of [earliest, latest)
    bounds: tuple[datetime, ...] = ()

    def window(self, index: int) -> Window:
        """Partition ``index``'s slice: contiguous, the first open at the start, the last
        open at the end."""
        if not 0 <= index < self.partitions:
            raise ValueError(f"partition {index} of {self.partitions}")
        if len(self.bounds) == self.partitions - 1:
            start = None if index == 0 else self.bounds[index - 1]
            end = None if index == self.partitions - 1 else self.bounds[index]
            return Window(start=start, end=end)
        top = self.latest or self.started
        span = max(top - self.earliest, timedelta(0)) / self.partitions

        def bound(k: int) -> datetime:
            return self.earliest + span * k

        start = None if index == 0 else bound(index)
        end = None if index == self.partitions - 1 else bound(index + 1)
        return Window(start=start, end=end)

    def to_json(self) -> str:
        return json.dumps(
            {
                "partitions": self.partitions,
                "earliest": self.earliest.isoformat(),
                "started": self.started.isoformat(),
                "latest": self.latest.isoformat() if self.latest else None,
                "bounds": [b.isoformat() for b in self.bounds],
            }
        )

    @classmethod
    def from_json(cls, entity: str, text: str) -> BackfillState:
        data = json.loads(text)
        return cls(
            entity=entity,
            partitions=int(data["partitions"]),
            earliest=datetime.fromisoformat(data["earliest"]),
            started=datetime.fromisoformat(data["started"]),
            latest=datetime.fromisoformat(data["latest"]) if data.get("latest") else None,
            bounds=tuple(datetime.fromisoformat(b) for b in data.get("bounds") or ()),
        )


# -- cursors in each connector's format --------------------------------------------------
def cursor_at(system: str, entity: str, stamp: datetime) -> str | None:
    """A polling cursor of ``system`` standing at ``stamp`` with the lowest tie-breaker its
    format has (every record at that stamp is after it), or None where the system's
    changes are not read by stamp."""
    iso = stamp.astimezone(UTC).isoformat()
    if system == "billing":
        return json.dumps([iso, None])  # no primary key: every row at or after the stamp
    if system == "salesforce":  # the lowest well-formed Id (SOQL compares Ids as text)
        return f"{iso}|000000000000000AAA"
    if system == "sap":  # keys compare as numbers when numeric, and before any text
        from connectors.sap import CHANGE_DETECTION

        return None if CHANGE_DETECTION.get(entity) == "snapshot" else f"{iso}|0"
    if system == "pim":
        return json.dumps([iso, []])
    if system == "wms":
        return json.dumps({"updated_at": iso, "id": "0"}, separators=(",", ":"))
    return None


def cursor_stamp(system: str, value: str | None) -> datetime | None:
    """The change stamp a stored polling cursor stands at (None: unknown or none)."""
    if not value:
        return None
    try:
        if system in ("salesforce", "sap"):
            text = value.split("|", 1)[0] if "|" in value else ""
        elif system == "wms":
            text = str(json.loads(value)["updated_at"])
        elif system in ("billing", "pim"):
            text = str(json.loads(value)[0])
        else:
            return None
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: the change-stamp fields of the connectors' native records (the probe reads them)
STAMP_FIELDS = (
    "updated_at",
    "SystemModstamp",
    "LastChangeDateTime",
    "updated",
    "BusinessPartnerLastChange",
)


def probe_earliest(engine: SyncEngine, entity: str) -> datetime | None:
    """The oldest change stamp of ``entity`` over its systems, from the first page of
    each system's change read (oldest first): one page per system. None when no system
    tells. Only balances the partitions: the first one reads everything before it."""
    found: list[datetime] = []
    for system in engine.pull_order(entity, _connected(engine, entity)):
        try:
            batches = engine.connectors[system].read_changes(entity, None)
            try:
                first = next(iter(batches), None)
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
        except Exception as exc:  # a probe only balances partitions: never fatal
            log.warning("could not probe %s %s for its earliest change: %s", system, entity, exc)
            continue
        for record in first.records if first is not None else ():
            for field in STAMP_FIELDS:
                stamp = _parse(record.get(field))
                if stamp is not None:
                    found.append(stamp)
                    break
    return min(found) if found else None


def probe_bounds(engine: SyncEngine, entity: str, partitions: int) -> tuple[datetime, ...]:
    """The n-1 inner bounds that cut ``entity``'s change stamps into equal shares, from the
    stamps of one creator (billing when connected: a database read, the cheapest), read
    in full through ``read_changes``. Empty when that system tells no stamps."""
    order = engine.pull_order(entity, _connected(engine, entity))
    creators = [s for s in order if engine.specs[(s, entity)].creates] or order
    if not creators or partitions < 2:
        return ()
    system = "billing" if "billing" in creators else creators[0]
    stamps: list[datetime] = []
    for batch in engine.connectors[system].read_changes(entity, None):
        for record in batch.records:
            for field in STAMP_FIELDS:
                stamp = _parse(record.get(field))
                if stamp is not None:
                    stamps.append(stamp)
                    break
    if len(stamps) < partitions:
        return ()
    stamps.sort()
    bounds = [stamps[len(stamps) * k // partitions] for k in range(1, partitions)]
    return tuple(bounds) if bounds == sorted(set(bounds)) else ()


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _connected(engine: SyncEngine, entity: str) -> list[str]:
    return [s for s in engine.systems_for(entity) if s in engine.connectors]


# -- the shared state --------------------------------------------------------------------
def begin(
    engine: SyncEngine,
    entity: str,
    partitions: int,
    *,
    earliest: datetime | None = None,
    latest: datetime | None = None,
    now: datetime | None = None,
    probe: bool = True,
) -> BackfillState:
    """The backfill of ``entity`` in progress, or a new one: its start (the hub's clock)
    and bounds stored once, whichever partition comes first (a race is settled by the
    store's key). ``probe``: cut at the quantiles of one creator's stamps (probe_bounds, a
    full read of that system's stamps), else in even slices of [earliest, latest). Also
    places the ``<entity>:plan`` cursor before anything is ingested, so
    the records the partitions create are planned by :func:`finish`."""
    slot = _state_slot(entity)
    for _ in range(5):
        with engine.sessions() as s:
            stored = repo.get_cursor(s, HUB, slot)
        if stored is not None:
            state = BackfillState.from_json(entity, stored)
            if state.partitions != partitions:
                raise BackfillRefused(
                    f"a backfill of {entity} in {state.partitions} partitions (started "
                    f"{state.started.isoformat()}) is in progress: finish it, or run "
                    f"`hub`'s backfill reset for {entity}, before one in {partitions}"
                )
            return state
        started = now or utcnow()
        low = earliest or probe_earliest(engine, entity) or started
        bounds = probe_bounds(engine, entity, partitions) if probe else ()
        state = BackfillState(entity, partitions, min(low, started), started, latest, bounds)
        try:
            with engine.sessions.begin() as s:
                s.add(Cursor(system=HUB, entity=slot, value=state.to_json()))
                plan = f"{entity}:plan"
                if repo.get_cursor(s, HUB, plan) is None:
                    start = started if repo.existing_any(s, entity) else _BEGINNING
                    s.add(Cursor(system=HUB, entity=plan, value=f"{start.isoformat()}|"))
            log.info("backfill of %s in %d partitions started at %s", entity, partitions, started)
            return state
        except IntegrityError:
            continue  # another partition stored it first: read theirs
    raise RuntimeError(f"could not store the backfill state of {entity}")


def current(engine: SyncEngine, entity: str) -> BackfillState | None:
    with engine.sessions() as s:
        stored = repo.get_cursor(s, HUB, _state_slot(entity))
    return BackfillState.from_json(entity, stored) if stored else None


def reset(engine: SyncEngine, entity: str) -> None:
    """Forget an unfinished backfill of ``entity`` (what it ingested stays)."""
    with engine.sessions.begin() as s:
        s.execute(delete(Cursor).where(Cursor.system == HUB, Cursor.entity == _state_slot(entity)))


# -- one partition -----------------------------------------------------------------------
@dataclass
class PartitionResult:
    entity: str
    index: int
    partitions: int
    phase: Phase
    read: int = 0
    batches: int = 0
    retries: int = 0


def _retryable(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    if code in RETRY_SQLSTATES:
        return True
    return "database is locked" in str(orig)  # SQLite: partitions take turns


def _ensure_no_sync(engine: SyncEngine, entity: str) -> None:
    with engine.sessions() as s:
        held = s.scalar(
            select(Lock).where(Lock.name == f"sync:{entity}", Lock.expires_at > utcnow())
        )
        if held is not None:
            raise BackfillRefused(
                f"a sync of {entity} is running (lease sync:{entity} held by {held.holder} "
                f"since {held.acquired_at.isoformat()}): a backfill partition does not run "
                "beside it; retry when it is done, with the entity's schedules paused"
            )


def ingest_batch(
    engine: SyncEngine,
    system: str,
    entity: str,
    records: list[dict[str, Any]],
    *,
    max_retries: int = 8,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> int:
    """Ingest one batch in its own transaction; a conflict with another partition rolls
    it back and stages it again (the counts of the failed attempt are undone). Returns
    the number of retries."""
    for attempt in range(max_retries + 1):
        saved = {key: copy.copy(engine.counts[key][entity]) for key in (system, HUB)}
        try:
            with engine.sessions.begin() as s:
                engine._ingest(s, system, entity, records)
            return attempt
        except DBAPIError as exc:
            for key, counts in saved.items():
                engine.counts[key][entity] = counts
            if not _retryable(exc) or attempt == max_retries:
                raise
            if on_retry is not None:
                on_retry(attempt + 1, exc)
            log.warning(
                "%s %s batch of %d records met another partition's write (%s): rolled back, "
                "staging it again (retry %d of %d)",
                system, entity, len(records), type(exc.orig).__name__, attempt + 1, max_retries,
            )  # fmt: skip
            time.sleep(min(0.05 * 2**attempt, 2.0) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def run_partition(
    engine: SyncEngine,
    state: BackfillState,
    index: int,
    phase: Phase,
    *,
    max_retries: int = 8,
) -> PartitionResult:
    """Partition ``index`` of the backfill, one phase: every system of the phase (in the
    engine's pull order) read through ``read_snapshot`` over the partition's window, a
    batch per transaction, plans deferred to :func:`finish`."""
    entity = state.entity
    result = PartitionResult(entity, index, state.partitions, phase)
    window = state.window(index)
    _ensure_no_sync(engine, entity)
    order = engine.pull_order(entity, _connected(engine, entity))
    creators = {s for s in order if engine.specs[(s, entity)].creates}
    systems = [s for s in order if (s in creators) == (phase == "creators")]
    engine.lock_rows = True
    with store_lock(
        engine.engine, lock_name(entity, index, state.partitions),
        wait_seconds=engine.lock_wait_seconds,
    ):  # fmt: skip
        engine._deferred = set()  # planned once, by finish (plan_new_records)
        try:
            for system in systems:
                for batch in engine.connectors[system].read_snapshot(entity, window):
                    if not batch.records:
                        continue
                    result.retries += ingest_batch(
                        engine, system, entity, batch.records, max_retries=max_retries
                    )
                    result.read += len(batch.records)
                    result.batches += 1
                    engine._tick(system, entity)
        finally:
            engine._deferred = None
    log.info(
        "backfill %s partition %d/%d (%s): %d records in %d batches, %d retries",
        entity, index + 1, state.partitions, phase, result.read, result.batches, result.retries,
    )  # fmt: skip
    return result


# -- between the phases ------------------------------------------------------------------
def settle(engine: SyncEngine, state: BackfillState) -> int:
    """After every partition's creators phase, before the others: the entity's open
    quarantine retried once, as an ordinary pass retries it after its creators. A
    creator's record refused because what it refers to in its own entity (a parent
    account) was still being loaded by another partition is taken now; left for the
    finishing pass, it would be merged after the owners spoke and could override the
    owner's confirmation of a provisional value. Returns the entries retried."""
    engine.lock_rows = True
    return engine.retry_quarantine(state.entity)


# -- after every partition ---------------------------------------------------------------
def set_cursors(engine: SyncEngine, state: BackfillState) -> dict[str, str]:
    """Each connected system's polling cursor of the entity at ``state.started`` (the
    cursor rule in the module's docstring); a cursor already at or after it is kept.
    Returns the cursors written."""
    written: dict[str, str] = {}
    with engine.sessions.begin() as s:
        for system in _connected(engine, state.entity):
            value = cursor_at(system, state.entity, state.started)
            if value is None:
                continue
            stored = repo.get_cursor(s, system, state.entity)
            at = cursor_stamp(system, stored)
            if stored is not None and (at is None or at >= state.started):
                continue  # never moved back (or a format this module does not read)
            repo.set_cursor(s, system, state.entity, value)
            written[system] = value
    return written


def finish(engine: SyncEngine, state: BackfillState) -> dict[str, dict[str, dict[str, int]]]:
    """After every partition: the polling cursors set (never back), then one ordinary
    pass of the entity under ``sync:<entity>`` (plans, deliveries, pushes, quarantine
    retry, and the changes made during the backfill re-read through the cursor overlap);
    the backfill's state is removed. Returns the pass's report."""
    entity = state.entity
    if any(
        _partition_running(engine, entity, i, state.partitions) for i in range(state.partitions)
    ):
        raise BackfillRefused(f"a partition of the {entity} backfill is still running")
    set_cursors(engine, state)
    engine.lock_rows = False
    report = engine.run([entity])
    reset(engine, entity)
    return report


def _partition_running(engine: SyncEngine, entity: str, index: int, partitions: int) -> bool:
    with engine.sessions() as s:
        lease = s.get(Lock, lock_name(entity, index, partitions))
        return lease is not None and lease.expires_at > utcnow()


# -- everything, in threads (tests, the CLI, one machine) --------------------------------
def run_backfill(
    make_engine: Callable[[], SyncEngine],
    entities: Sequence[str],
    partitions: int,
    *,
    earliest: datetime | None = None,
    latest: datetime | None = None,
    max_retries: int = 8,
) -> list[PartitionResult]:
    """A backfill of each entity (in the given order) with its partitions in threads, each
    with its own engine (``make_engine``: its own connectors and store connections)."""
    from concurrent.futures import ThreadPoolExecutor

    results: list[PartitionResult] = []
    engines = [make_engine() for _ in range(partitions)]
    with ThreadPoolExecutor(max_workers=partitions, thread_name_prefix="backfill") as pool:
        for entity in entities:
            state = begin(engines[0], entity, partitions, earliest=earliest, latest=latest)
            for phase in PHASES:
                futures = [
                    pool.submit(run_partition, engines[i], state, i, phase, max_retries=max_retries)
                    for i in range(partitions)
                ]
                results.extend(f.result() for f in futures)
                if phase == "creators":
                    settle(engines[0], state)
            finish(engines[0], state)
    return results
