"""The one small protocol every system connector implements.

The sync engine and the reconciliation only ever talk to systems through this: read
changes since a cursor, read a (windowed) snapshot, read by keys, write a batch with one
result per record, and a health check. Records crossing this boundary are the system's
*native* shape (field names as the system has them); mapping to canonical form is the
sync engine's job, driven by ``mappings/``. Reads stream in batches so no connector ever
holds a whole table.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

NativeRecord = dict[str, Any]


@dataclass(frozen=True)
class MappedObject:
    """What the hub's mappings tell a connector of one entity's native object: its name,
    the field that holds the hub id (or the native key when there is none) and the fields
    the mappings read or write. Connectors that discover their objects ignore it."""

    name: str
    external_id: str
    fields: tuple[str, ...]


#: Mapped objects by entity, as ``connectors.registry.build`` hands them to ``from_env``.
MappedObjects = Mapping[str, MappedObject]


@dataclass(frozen=True)
class Batch:
    """Records read in one page, and the cursor that is safe to store once they are
    committed (``None`` for snapshot reads, which have no cursor)."""

    records: list[NativeRecord]
    cursor: str | None = None


class Outcome(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"
    DELETED = "deleted"


@dataclass(frozen=True)
class WriteResult:
    """What happened to one record of a written batch. ``key`` is the hub's key of the
    record; ``error`` carries the system's own error code and message when rejected."""

    key: str
    outcome: Outcome
    external_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    #: rejected because the record this write addressed by its native id was deleted in
    #: the system (Salesforce ``ENTITY_IS_DELETED``): the hub decides whether that is drift
    #: to recreate or a delete to respect, so the connector only says so
    gone: bool = False


@dataclass(frozen=True)
class Deletion:
    """A record deleted in the system: its own id, the hub key it carried (when the system
    still tells it) and when the system says it was deleted (UTC)."""

    external_id: str
    key: str | None
    deleted_at: datetime


@dataclass(frozen=True)
class Health:
    system: str
    ok: bool
    detail: str = ""
    latency_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Window:
    """A time window for snapshot reads (inclusive start, exclusive end, UTC)."""

    start: datetime | None = None
    end: datetime | None = None


@runtime_checkable
class Connector(Protocol):
    system: str

    def entities(self) -> Sequence[str]:
        """Canonical entities this system holds."""
        ...

    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        """Records changed after ``cursor`` (all, when None), oldest first, each batch
        carrying the cursor to store once it is committed. No record is skipped at equal
        change timestamps: cursors carry a tie-breaking key."""
        ...

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        """Every record (optionally changed within ``window``), for reconciliation."""
        ...

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> Iterator[Batch]:
        """Records whose hub key is in ``keys`` (for targeted resyncs)."""
        ...

    def write_batch(self, entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        """Upsert by external id; exactly one result per input record, in input order."""
        ...

    def health(self) -> Health: ...

    def close(self) -> None: ...


@runtime_checkable
class ReadsDeletions(Protocol):
    """A connector whose system tells which records were deleted (Salesforce's recycle
    bin through ``queryAll``). Optional: the hub asks only connectors that implement it."""

    def read_deletions(self, entity: str, since: datetime | None) -> list[Deletion] | None:
        """Records deleted after ``since`` (every one the system still remembers, when
        None). ``None`` when ``since`` lies beyond what the system remembers (Salesforce
        empties its recycle bin after 15 days): the hub then compares keys instead."""
        ...


@runtime_checkable
class DeletesRecords(Protocol):
    """A connector that can delete records (a mapping's ``on_delete: {action: delete}``
    needs one). Optional: the hub asks only connectors that implement it."""

    def delete_batch(self, entity: str, external_ids: Sequence[str]) -> list[WriteResult]:
        """Delete by the system's own ids; one result per id, in order (``key``: the id).
        A record already gone is ``DELETED`` too: the delete is what was wanted."""
        ...


@runtime_checkable
class DescribesFields(Protocol):
    """A connector that can ask the connected system which fields each object has
    (Salesforce's describe, SAP's ``$metadata``), for ``hub systems check``: a mapped field
    the customer's system lacks is named before the first sync touches anything."""

    def native_fields(self) -> Mapping[str, frozenset[str]]:
        """{object: field names} as the live system declares them, in the names the
        connector hands to the mappings (fields it flattens or derives included)."""
        ...
