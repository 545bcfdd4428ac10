"""A SQLite store's write-ahead log is copied into the store file by a background thread
while a sync writes (hub.store.checkpoints), not by the sync's own commits."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.store import create_store_engine
from hub.store.checkpoints import THREAD_NAME, checkpoints_in_background, store_file
from hub.sync.engine import SyncEngine
from tests.sync.conftest import account, landscape

#: rows of 1 KB: ~500 pages, far under the store's own checkpoint bound (16,000 pages)
ROWS = 2000


def _store(tmp_path: Path) -> sa.Engine:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    return engine


def _write(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t (body) VALUES (?)", [("x" * 1000,)] * ROWS)


def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _threads() -> int:
    return sum(t.name == THREAD_NAME for t in threading.enumerate())


def test_the_log_reaches_the_store_file_while_the_writer_goes_on(tmp_path: Path) -> None:
    engine, db = _store(tmp_path), tmp_path / "hub.sqlite"
    with checkpoints_in_background(engine, every=0.05):
        _write(engine)
        assert _eventually(lambda: db.stat().st_size > ROWS * 1000)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == ROWS


def test_without_it_the_commits_leave_the_pages_in_the_log(tmp_path: Path) -> None:
    """The control: what the test above sees in the store file is the thread's work."""
    engine, db = _store(tmp_path), tmp_path / "hub.sqlite"
    _write(engine)
    time.sleep(0.3)
    assert db.stat().st_size < ROWS * 1000 / 4
    assert (tmp_path / "hub.sqlite-wal").stat().st_size > ROWS * 1000


def test_one_thread_per_store_file_and_none_once_its_writers_are_done(tmp_path: Path) -> None:
    engine = _store(tmp_path)
    other = create_store_engine(f"sqlite:///{tmp_path / 'hub.sqlite'}")  # same file
    with checkpoints_in_background(engine):
        with checkpoints_in_background(other):
            assert _threads() == 1
        assert _threads() == 1
    assert _threads() == 0


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "postgresql+psycopg2://hub@localhost/hub"]
)
def test_a_store_that_is_not_a_sqlite_file_gets_no_thread(url: str) -> None:
    engine = sa.create_engine(url)
    assert store_file(engine) is None
    with checkpoints_in_background(engine):
        assert _threads() == 0


def test_a_store_it_cannot_open_is_named_in_a_warning_and_not_created(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "missing.sqlite"
    ran, engine = False, sa.create_engine(f"sqlite:///{missing}")
    with (
        caplog.at_level(logging.WARNING, logger="hub.store.checkpoints"),
        checkpoints_in_background(engine, every=0.01),
    ):
        ran = True
    assert ran and not missing.exists()
    assert str(missing) in caplog.text and "The sync goes on" in caplog.text


def test_a_sync_run_checkpoints_in_the_background_and_stops_with_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, crm, _, _ = landscape(tmp_path, f"sqlite:///{tmp_path / 'hub.sqlite'}")
    crm.put(account())
    during: list[int] = []
    sync_entity = SyncEngine.sync_entity

    def watched(self: SyncEngine, *args: object, **kwargs: object) -> None:
        during.append(_threads())
        sync_entity(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SyncEngine, "sync_entity", watched)
    report = make().run(["customer"])
    assert report["hub"]["customer"]["created"] == 1
    assert during == [1] and _threads() == 0
