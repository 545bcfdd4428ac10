"""An in-memory system behind the connector protocol, for unit tests of the sync engine's
logic (ownership, quarantine, echo suppression, outbox replay). Integration tests use the
sandbox's real emulators and connectors instead."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from connectors.base import Batch, Health, NativeRecord, Outcome, Window, WriteResult
from connectors.errors import TransientError


class MemorySystem:
    def __init__(self, system: str, hub_id_field: str, id_prefix: str) -> None:
        self.system = system
        self.hub_id_field = hub_id_field
        self.id_prefix = id_prefix
        self.rows: dict[str, dict[str, Any]] = {}  # system id -> record
        self.seq = 0
        self.writes = 0
        self.write_calls = 0
        self.reject: set[str] = set()
        self.fail_writes = 0
        self.page = 2  # records per batch read: small, so batch edges are exercised

    def entities(self) -> Sequence[str]:
        return ["customer"]

    def put(self, record: dict[str, Any]) -> str:
        """A change made directly in the system (by a user, not the hub)."""
        self.seq += 1
        sid = record.get("Id") or f"{self.id_prefix}{len(self.rows) + 1:05d}"
        self.rows[sid] = {**self.rows.get(sid, {}), **record, "Id": sid, "_seq": self.seq}
        return sid

    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        since = int(cursor or 0)
        changed = sorted(
            (r for r in self.rows.values() if r["_seq"] > since), key=lambda r: r["_seq"]
        )
        for i in range(0, len(changed), self.page):
            page = changed[i : i + self.page]
            yield Batch(
                [{k: v for k, v in r.items() if k != "_seq"} for r in page], str(page[-1]["_seq"])
            )

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        yield Batch(list(self.rows.values()))

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> Iterator[Batch]:
        yield Batch([r for r in self.rows.values() if r.get(self.hub_id_field) in keys])

    def write_batch(self, entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        self.write_calls += 1
        if self.fail_writes:
            self.fail_writes -= 1
            raise TransientError(self.system, "503 Service Unavailable", status=503)
        results = []
        for record in records:
            key = record[self.hub_id_field]
            if key in self.reject:
                results.append(
                    WriteResult(
                        key, Outcome.REJECTED, error="Name too long", error_code="STRING_TOO_LONG"
                    )
                )
                continue
            existing = record.get("Id") or next(
                (sid for sid, r in self.rows.items() if r.get(self.hub_id_field) == key), None
            )
            self.writes += 1
            if existing is None:
                sid = self.put(dict(record))
                results.append(WriteResult(key, Outcome.CREATED, external_id=sid))
            else:
                current = {k: v for k, v in self.rows[existing].items() if k not in ("Id", "_seq")}
                if all(current.get(k) == v for k, v in record.items()):
                    results.append(WriteResult(key, Outcome.UNCHANGED, external_id=existing))
                else:
                    self.put({**record, "Id": existing})
                    results.append(WriteResult(key, Outcome.UPDATED, external_id=existing))
        return results

    def health(self) -> Health:
        return Health(self.system, True)

    def close(self) -> None:
        pass
