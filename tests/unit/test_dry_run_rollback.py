"""The dry run's engine (hub.sync.dry_run._savepoint_engine): a sync's per-batch
transactions become savepoints, and the outer rollback undoes every one of them. On
SQLite this needs SQLAlchemy's pysqlite recipe: without it, a batch committed first
(SAVEPOINT opened outside a transaction, then RELEASE) is a real COMMIT."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from hub.store.db import create_store_engine
from hub.sync.dry_run import _savepoint_engine


def test_a_batch_committed_first_is_still_rolled_back(tmp_path: Path) -> None:
    store = create_store_engine(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    with store.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    engine = _savepoint_engine(store)
    with engine.connect() as conn:
        outer = conn.begin()
        batches = sessionmaker(bind=conn, join_transaction_mode="create_savepoint")
        with batches.begin() as s:  # the first thing the dry run does is a commit
            s.execute(sa.text("INSERT INTO t VALUES (1)"))
        with batches.begin() as s:
            s.execute(sa.text("INSERT INTO t VALUES (2)"))
        outer.rollback()
    engine.dispose()
    with store.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
