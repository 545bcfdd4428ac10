"""Merging: the second half of ingesting one extracted batch (staging is the first).

Each staged record is merged into its golden record by field ownership
(:func:`hub.sync.merge.merge`): a non-owner's different value is a conflict, recorded as a
finding. What changed is validated against the canonical model (a record that breaks it
waits in quarantine), written as a new version of the golden record, and planned as pushes
to the systems whose copies now differ; the record's xref and fingerprints are recorded
so its echo, read back on a later pass, is recognised and not propagated again.

Why a record the system sends unchanged stops early: most of an incremental pass is
records the hub has seen (or pushed itself); judging them by fingerprint alone, before
any merge or validation, keeps that pass cheap and writes nothing new."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from hub.fingerprint import fingerprint
from hub.model import ENTITIES, CanonicalValidationError, dump_utc_datetime, validate_record
from hub.store import findings as finding_store
from hub.store.repo import GoldenRow
from hub.sync.fingerprints import (
    EXTERNAL_IDS,
    NO_HUB_ID,
    flat_projection,
    known_ids_only,
    with_claims,
    with_flat_ids,
    with_owned,
)
from hub.sync.merge import Conflict, MergeResult, collapse_empty, flatten, merge
from hub.sync.staging import Quarantine, Staged, StagedBatch


class ConflictCounts(Protocol):
    conflicts: int


class GoldenCounts(Protocol):
    created: int
    updated: int
    unchanged: int


@dataclass(frozen=True)
class Prints:
    """A record's fingerprints as read now: of what the hub pushes to the system (``push``)
    and of the fields the hub only takes from it (``owned``; empty when there are none)."""

    push: str
    owned: str


class BatchMerger:
    """Merges a staged batch into the golden records, record by record in the batch's
    order (a record read twice in one batch merges into what the first made), in the
    caller's transaction.

    ``plan(hub_id, data, blanks, created)`` queues the pushes a changed golden record needs
    (``blanks``: it empties a field that had a value, which the guard counts; ``created``:
    this merge made it, so the engine may plan it once after the pass's pulls); ``creators``
    are the systems that create the entity (named when an orphan is quarantined)."""

    def __init__(
        self,
        batch: StagedBatch,
        *,
        owners: Mapping[str, str],
        creators: Sequence[str],
        counts: ConflictCounts,
        golden_counts: GoldenCounts,
        quarantine: Quarantine,
        plan: Callable[[str, dict[str, Any], bool, bool], None],
        now: datetime,
    ) -> None:
        self.batch, self.spec, self.held = batch, batch.spec, batch.held
        self.system, self.entity = batch.spec.system, batch.spec.entity
        self.owners, self.creators = owners, creators
        self.counts, self.golden_counts = counts, golden_counts
        self.quarantine, self.plan, self.now = quarantine, plan, now
        # a view of a child list (SAP's contract items) is derived from its owner's list:
        # fingerprinted and pushed, never merged into it
        self.not_merged = frozenset({"updated_at", EXTERNAL_IDS, *batch.mapper.view_names})

    def merge_all(self) -> None:
        for record in self.batch.records:
            self.merge(record)

    def merge(self, record: Staged) -> None:
        """Merge one record: an orphan is quarantined, a record unchanged since the hub
        last saw it (or its own echo) only releases what held it back."""
        golden = self.batch.goldens.get(record.hub_id)
        if golden is None and not self.spec.creates:
            self._quarantine_orphan(record)
            return
        if golden is not None and golden.deleted:
            # its owner deleted it (tombstone): a copy elsewhere does not bring it back;
            # ``hub tombstones restore`` does
            self.golden_counts.unchanged += 1
            return
        if record.sid:
            self.held.set_xref(record.hub_id, self.system, record.sid)
        flat = flatten(record.partial)  # once, for the fingerprints and the merge
        prints = self._fingerprint(record, flat)
        if golden is not None and self._seen(record.hub_id, prints):
            self.golden_counts.unchanged += 1  # unchanged since last seen, or our own echo
            # held back before, it now agrees with the hub: no longer held
            self.held.release_quarantine(self.system, record.hub_id)
            return
        merged = self._merged(record, golden, flat)
        if merged is None:
            return
        result, clean = merged
        # unchanged, the merged record is the golden one restamped: it blanks nothing
        blanks = golden is not None and bool(result.changed) and blanks_a_field(golden.data, clean)
        self._record_conflicts(record, result.conflicts)
        self._write_golden(record.hub_id, golden, clean, result)
        self._record_seen(record.hub_id, prints)
        self.plan(record.hub_id, clean, blanks, golden is None)

    def _quarantine_orphan(self, record: Staged) -> None:
        """A non-creating system holds a record under a hub id no creator brought in."""
        system, entity, hub_id = self.system, self.entity, record.hub_id
        self.quarantine(
            self.batch.s,
            system,
            entity,
            hub_id,
            record.native,
            f"{system} {entity} {record.sid or hub_id} carries hub id {hub_id}, which the hub "
            f"does not know, and {system} does not create {entity} records: an orphan. "
            f"Create it in {' or '.join(self.creators) or 'its owning system'} or remove it "
            f"from {system}",
            held=self.held,
        )

    def _fingerprint(self, record: Staged, flat_partial: dict[str, Any]) -> Prints:
        """The record's fingerprints as read now (``flat_partial``: the record flattened).
        One carrying other systems' ids the hub does not know (yet) is judged without
        them, and fingerprinted in full in its claims slot (so a push planned once the hub
        learns them is seen as not needed)."""
        mapper, hub_id, partial = self.batch.mapper, record.hub_id, record.partial
        judged = known_ids_only(partial, self.held, hub_id)
        unstamped = bool(self.spec.key.hub_id_field) and mapper.hub_id(record.native) is None
        if unstamped:
            # a record its creator made without the hub's id: no push matches this,
            # so the id the hub gave it is written back (to billing, say)
            fp = NO_HUB_ID
        elif judged is partial:
            fp = fingerprint(flat_projection(mapper, flat_partial))
        else:
            judged_flat = with_flat_ids(flat_partial, judged[EXTERNAL_IDS])
            fp = fingerprint(flat_projection(mapper, judged_flat))
        if judged is not partial:  # it carries ids the hub does not know (yet)
            full = NO_HUB_ID if unstamped else fingerprint(flat_projection(mapper, flat_partial))
            self.held.set_fingerprint(with_claims(self.system), hub_id, full)
        owned = ""
        if self.batch.owned_fields:
            owned = fingerprint({f: flat_partial.get(f) for f in self.batch.owned_fields})
        return Prints(fp, owned)

    def _seen(self, hub_id: str, prints: Prints) -> bool:
        """Whether the system sends what the hub last read from it (or pushed to it)."""
        fps, owned = self.batch.fps, self.batch.owned_fps
        return fps.get(hub_id) == prints.push and owned.get(hub_id, "") == prints.owned

    def _merged(
        self, record: Staged, golden: GoldenRow | None, flat_partial: dict[str, Any]
    ) -> tuple[MergeResult, dict[str, Any]] | None:
        """The golden record with this record (``flat_partial``: flattened) merged in by
        ownership, validated (None: it breaks the canonical model, and waits in
        quarantine)."""
        partial, hub_id = record.partial, record.hub_id
        changed_at = _as_datetime(partial.get("updated_at")) or self.now
        # a new record takes the model's defaults for what its creator leaves empty
        incoming = merged_fields(flat_partial, self.not_merged, new=golden is None)
        result = merge(
            golden.data if golden else None,
            golden.field_meta if golden else None,
            incoming,
            system=self.system,
            changed_at=changed_at,
            owners=self.owners,
            flattened=True,
        )
        previous = _as_datetime(golden.data.get("updated_at")) if golden else None
        stamp = max(filter(None, (previous, changed_at)))
        if golden is not None and not result.changed:
            # nothing changed: the golden record (valid when written) with the newer
            # stamp, in the model's own form - no second validation (the initial load
            # merges two systems' agreeing copies into most records it creates)
            return result, {**golden.data, "updated_at": dump_utc_datetime(stamp)}
        data = collapse_empty(dict(result.data))
        data.pop(EXTERNAL_IDS, None)
        data[ENTITIES[self.entity].key_field] = hub_id
        data["updated_at"] = stamp.isoformat()
        try:
            clean = validate_record(self.entity, data).model_dump(mode="json")
        except CanonicalValidationError as exc:
            errors: list[Any] = [e.model_dump() for e in exc.errors]
            s, system, entity, native = self.batch.s, self.system, self.entity, record.native
            self.quarantine(s, system, entity, hub_id, native, str(exc), errors, held=self.held)
            return None
        return result, clean

    def _record_conflicts(self, record: Staged, conflicts: Sequence[Conflict]) -> None:
        """Each field a non-owner holds differently becomes a finding."""
        for conflict in conflicts:
            self.counts.conflicts += 1
            finding_store.record_conflict(
                self.batch.s,
                entity=self.entity,
                key=record.hub_id,
                system=self.system,
                external_id=record.sid,
                field=conflict.field,
                expected=conflict.golden_value,
                actual=conflict.system_value,
                seen_at=self.now,
            )

    def _write_golden(
        self, hub_id: str, golden: GoldenRow | None, clean: dict[str, Any], result: MergeResult
    ) -> None:
        """Create the golden record, or write a new version of it when its content
        changed. A system restating what the golden record already says - e.g. the echo
        of the hub's own push, stamped later - changes nothing: no new version."""
        if golden is None:
            golden = GoldenRow(self.entity, hub_id, clean, result.field_meta, fingerprint(clean))
            self.held.create_golden(golden)
            self.batch.goldens[hub_id] = golden
            self.golden_counts.created += 1
        elif result.changed and _content(clean) != _content(golden.data):
            # (unchanged, ``clean`` is the golden record restamped: the same content)
            golden.data, golden.field_meta = clean, result.field_meta
            golden.fingerprint, golden.version = fingerprint(clean), golden.version + 1
            self.held.update_golden(golden)
            self.golden_counts.updated += 1
        elif result.field_meta != golden.field_meta:
            # same content, new provenance: the owner confirmed a value a non-owner had
            # filled provisionally. Kept (no new version), or a later non-owner value
            # would still replace it and be pushed to its owner.
            golden.field_meta = result.field_meta
            self.held.update_golden(golden, provenance_only=True)
            self.golden_counts.unchanged += 1
        else:
            self.golden_counts.unchanged += 1

    def _record_seen(self, hub_id: str, prints: Prints) -> None:
        """Remember what the system sent (its next unchanged read, or the echo of a push
        that matches it, stops early) and release what held the record back."""
        self.held.set_fingerprint(self.system, hub_id, prints.push)
        if self.batch.owned_fields:
            self.held.set_fingerprint(with_owned(self.system), hub_id, prints.owned)
        self.held.release_quarantine(self.system, hub_id)


def merged_fields(flat: Mapping[str, Any], skipped: frozenset[str], *, new: bool) -> dict[str, Any]:
    """The fields of a flattened record that merge into its golden record: none under a
    top-level field in ``skipped``, and for a ``new`` record no top-level field left
    empty (the model's default applies). Equals flattening the record with those
    top-level fields dropped (tests/unit/test_merging_fields.py)."""
    return {
        name: value
        for name, value in flat.items()
        if name.partition(".")[0] not in skipped and (value is not None or not new or "." in name)
    }


def _content(data: Mapping[str, Any]) -> dict[str, Any]:
    """A golden record's data without its change stamp."""
    return {k: v for k, v in data.items() if k != "updated_at"}


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def blanks_a_field(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether ``after`` empties a field ``before`` had a value in: what the blast-radius
    guard counts (hub.sync.deletions), since a source blanking a field across thousands of
    records is a mistake far more often than a decision."""
    old, new = flatten(before), flatten(after)
    return any(
        name != "updated_at" and value not in _EMPTY and new.get(name) in _EMPTY
        for name, value in old.items()
    )


_EMPTY: tuple[Any, ...] = (None, "", [])
