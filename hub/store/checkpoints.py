"""A SQLite hub store's write-ahead log copied into the database file by a thread of its
own while a sync writes.

Why: in WAL mode a commit appends its pages to the log, and the commit that takes the log
past ``wal_autocheckpoint`` pages (hub.store.db.WAL_CHECKPOINT_PAGES) copies the log into
the database file and syncs that file to disk itself. The sync thread stood still for the
copy and, above all, for the fsync: a 10,000-customer initial load spent 17 s of its 244 s
waiting on the disk (wall time minus CPU time; 3 s with no checkpoint at all), and a
100,000-customer one 754 s of 4,112 s.

Here a thread with its own connection runs a PASSIVE checkpoint every
:data:`CHECKPOINT_EVERY_SECONDS`: one that never waits for, nor blocks, a reader or a
writer. SQLite releases the GIL while it copies and syncs, so the work runs on the other
core while the sync goes on (10,000 customers: 232.7 s wall against 244.3 s, process CPU
228.5 s against 226.8 s with the checkpointer's own 3.9 s; docs/sync.md). The committing
connection's own checkpoint stays as the backstop for a log that still outgrows its
bound. Durability is unchanged: the same kind of checkpoint, with the store's
``synchronous=NORMAL``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine

log = logging.getLogger(__name__)

#: how often the background thread copies what the log holds into the database file. An
#: initial load appends about 6,900 pages a second (10,000 and 30,000 customers alike), so
#: the log stays under the commit's own bound of 16,000 and that backstop rarely fires;
#: copying more often rewrites the same hot index pages more often.
CHECKPOINT_EVERY_SECONDS = 1.0
#: the background thread's name (one per store file and process)
THREAD_NAME = "hub-wal-checkpointer"


class _Checkpointer:
    """The thread checkpointing one store file, shared by every writer of that file in
    this process (nested or concurrent sync runs)."""

    def __init__(self, path: str, every: float) -> None:
        self.path, self.every = path, every
        self.users = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)

    def _loop(self) -> None:
        try:
            # read-write, never created: a store that is not there is not made empty here
            conn = sqlite3.connect(f"{Path(self.path).as_uri()}?mode=rw", timeout=0, uri=True)
        except sqlite3.Error as exc:
            self._warn(exc)
            return
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            while not self.stop.wait(self.every):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            self._warn(exc)
        finally:
            conn.close()

    def _warn(self, exc: sqlite3.Error) -> None:
        log.warning(
            "background checkpoints of the hub store %s stopped: %s. The sync goes on; "
            "its commits copy the write-ahead log into the store themselves, as without "
            "this thread (if the disk is full, free space: those commits fail too).",
            self.path,
            exc,
        )


_lock = threading.Lock()
_running: dict[tuple[int, str], _Checkpointer] = {}


def store_file(engine: Engine) -> str | None:
    """The SQLite file behind ``engine`` (None: another database, or one in memory)."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return None
    name = url.database or ""
    if not name or name == ":memory:" or name.startswith("file:") or url.query.get("mode"):
        return None
    return os.path.realpath(name)


@contextmanager
def checkpoints_in_background(
    engine: Engine, every: float = CHECKPOINT_EVERY_SECONDS
) -> Iterator[None]:
    """Run the body with the store's write-ahead log checkpointed by a background thread
    (SQLite files only; for any other store, nothing happens)."""
    path = store_file(engine)
    if path is None:
        yield
        return
    key = (os.getpid(), path)  # a forked child starts its own thread
    with _lock:
        checkpointer = _running.get(key)
        if checkpointer is None:
            checkpointer = _running[key] = _Checkpointer(path, every)
            checkpointer.thread.start()
        checkpointer.users += 1
    try:
        yield
    finally:
        with _lock:
            checkpointer.users -= 1
            last = checkpointer.users == 0
            if last:
                del _running[key]
        if last:
            checkpointer.stop.set()
            checkpointer.thread.join()
