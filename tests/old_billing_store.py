"""A billing store made before some columns existed, upgraded in place: what the tests
of ``create_billing_schema``'s added columns start from."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa

from connectors import billing_schema as S


def upgraded_old_store(path: Path, tables: Iterable[str]) -> sa.Engine:
    """A SQLite billing store at ``path`` whose ``tables`` were made with only an id and
    ``updated_at`` and hold one row each, then upgraded by ``create_billing_schema`` twice
    (the second run must change nothing)."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for table in tables:
            conn.execute(sa.text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, updated_at)"))
            conn.execute(sa.text(f"INSERT INTO {table} (id) VALUES (1)"))
    S.create_billing_schema(engine)
    S.create_billing_schema(engine)  # idempotent
    return engine
