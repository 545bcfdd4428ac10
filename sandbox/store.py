"""Persistent document store every emulator keeps its records in.

One SQLite file per emulator under the sandbox data directory, so state survives a
restart of the sandbox. Documents are JSON objects in named collections (an sObject type,
an OData entity set, ...). ``seq`` is a store-wide monotonically increasing change number
that emulators use for change timestamps and cursor paging.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE INDEX IF NOT EXISTS docs_seq ON docs (collection, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: above every character an id holds: ``[prefix, prefix + ID_TOP)`` is every id starting with prefix
ID_TOP = "\U0010ffff"


class DocumentStore:
    """A small thread-safe JSON document store on SQLite (WAL mode)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        row = self._conn.execute("SELECT max(seq) FROM docs").fetchone()
        self._seq = int(row[0] or 0)
        #: writes (puts and deletes) through this store per collection, for the caches
        #: of what emulators render from a collection (see :meth:`writes`)
        self._writes: dict[str, int] = {}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def writes(self, collection: str) -> int:
        """How many writes (puts and deletes, even failed ones) this store has taken for
        ``collection`` since it was opened: a cache of anything read from the collection
        is stale once this moves."""
        return self._writes.get(collection, 0)

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT data FROM docs WHERE collection=? AND id=?", (collection, doc_id)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, collection: str, doc_id: str, doc: dict[str, Any]) -> int:
        """Insert or replace one document; returns its new change number."""
        return self.put_many(collection, [(doc_id, doc)])

    def put_many(self, collection: str, items: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Insert or replace documents in one transaction; returns the last change number."""
        with self._lock:
            self._writes[collection] = self._writes.get(collection, 0) + 1
            self._conn.execute("BEGIN")
            try:
                for doc_id, doc in items:
                    self._seq += 1
                    self._conn.execute(
                        "INSERT OR REPLACE INTO docs (collection, id, seq, data) VALUES (?,?,?,?)",
                        (collection, doc_id, self._seq, json.dumps(doc, separators=(",", ":"))),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return self._seq

    def delete(self, collection: str, doc_id: str) -> bool:
        with self._lock:
            self._writes[collection] = self._writes.get(collection, 0) + 1
            cur = self._conn.execute(
                "DELETE FROM docs WHERE collection=? AND id=?", (collection, doc_id)
            )
            return cur.rowcount > 0

    def count(self, collection: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FROM docs WHERE collection=?", (collection,)
            ).fetchone()
        return int(row[0])

    def iter(self, collection: str, batch_size: int = 2000) -> Iterator[dict[str, Any]]:
        """All documents of a collection in id order, read in batches (bounded memory)."""
        last = ""
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT id, data FROM docs WHERE collection=? AND id>? ORDER BY id LIMIT ?",
                    (collection, last, batch_size),
                ).fetchall()
            if not rows:
                return
            for _, data in rows:
                yield json.loads(data)
            last = rows[-1][0]

    def iter_prefix(self, collection: str, prefix: str) -> Iterator[dict[str, Any]]:
        """Documents whose id starts with ``prefix``, in id order (an index range scan);
        emulators use composite ids ``parent<sep>child`` to list a parent's children."""
        return self.iter_range(collection, prefix, prefix + ID_TOP)

    def iter_range(self, collection: str, low: str, high: str) -> Iterator[dict[str, Any]]:
        """Documents with ``low <= id < high``, in id order (an index range scan)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT data FROM docs WHERE collection=? AND id>=? AND id<? ORDER BY id",
                (collection, low, high),
            ).fetchall()
        for (data,) in rows:
            yield json.loads(data)

    def index_field(self, field: str) -> None:
        """Index one top-level field of every document (an SQLite expression index), so
        :meth:`iter_from` answers "changed since" without reading the collection: the real
        systems keep their change stamps indexed, and an emulator that scans instead makes
        every incremental read cost as much as the whole book."""
        if not _FIELD.fullmatch(field):
            raise ValueError(f"not a plain field name: {field!r}")
        with self._lock:
            self._conn.execute(
                f"CREATE INDEX IF NOT EXISTS docs_by_{field} "
                f"ON docs (collection, json_extract(data, '$.{field}'), id)"
            )

    def iter_from(
        self, collection: str, field: str, low: Any, batch_size: int = 2000
    ) -> Iterator[dict[str, Any]]:
        """Documents whose ``field`` is ``>= low``, in (field, id) order, read in batches
        from the :meth:`index_field` index (documents without the field are left out).
        ``low`` must have the type the field holds (SQLite orders numbers before text)."""
        if not _FIELD.fullmatch(field):
            raise ValueError(f"not a plain field name: {field!r}")
        value = f"json_extract(data, '$.{field}')"
        first = f"SELECT {value}, id, data FROM docs WHERE collection=? AND {value}>=? "  # noqa: S608
        after = (  # the range stays on the index: value >= last, then past the last id
            f"SELECT {value}, id, data FROM docs WHERE collection=? AND {value}>=? "  # noqa: S608
            f"AND ({value}>? OR id>?) "
        )
        order = f"ORDER BY {value}, id LIMIT ?"
        with self._lock:
            rows = self._conn.execute(first + order, (collection, low, batch_size)).fetchall()
        while rows:
            for _, _, data in rows:
                yield json.loads(data)
            if len(rows) < batch_size:
                return
            last_value, last_id = rows[-1][0], rows[-1][1]
            with self._lock:
                rows = self._conn.execute(
                    after + order, (collection, last_value, last_value, last_id, batch_size)
                ).fetchall()

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", (key, value)
            )
