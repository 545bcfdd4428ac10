"""The fingerprints table keyed by record (migration 0005): (entity, hub id, system), one
B-tree on SQLite, and a store migrated from 0004 keeps every fingerprint, both ways."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import command

from hub.store import create_store_engine
from hub.store.migrate import alembic_config, head_revision, upgrade

ROWS = [
    ("sap", "customer", "CUS-1", "a" * 64),
    ("salesforce", "customer", "CUS-1", "b" * 64),
    ("sap~owned", "customer", "CUS-1", "c" * 64),
    ("sap", "invoice", "INV-9", "d" * 64),
]


def _fingerprints(url: str) -> list[tuple[Any, ...]]:
    engine = create_store_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT system, entity, hub_id, fingerprint FROM fingerprints"))
        out = sorted(tuple(r) for r in rows)
    engine.dispose()
    return out


def _shape(url: str) -> tuple[list[str], set[str], str]:
    """The key's columns in order, the table's index names, and (SQLite) its DDL."""
    engine = create_store_engine(url)
    inspector = sa.inspect(engine)
    key = inspector.get_pk_constraint("fingerprints")["constrained_columns"]
    indexes = {str(i["name"]) for i in inspector.get_indexes("fingerprints")}
    ddl = ""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            ddl = conn.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE name = 'fingerprints'")
            ).scalar_one()
    engine.dispose()
    return list(key), indexes, ddl


def test_a_0004_store_is_rekeyed_by_record_and_keeps_its_fingerprints(store_url: str) -> None:
    assert upgrade(store_url, "0004") == "0004"
    engine = create_store_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO fingerprints (system, entity, hub_id, fingerprint, updated_at) "
                "VALUES (:s, :e, :h, :f, :t)"
            ),
            [dict(zip("sehf", r, strict=True), t=datetime(2026, 1, 1)) for r in ROWS],
        )
    engine.dispose()
    assert _shape(store_url)[0] == ["system", "entity", "hub_id"]

    assert upgrade(store_url) == head_revision()
    key, indexes, ddl = _shape(store_url)
    assert key == ["entity", "hub_id", "system"]
    assert "ix_fingerprints_entity_hub_id" not in indexes  # the key serves its lookups
    if store_url.startswith("sqlite"):
        assert "WITHOUT ROWID" in ddl.upper()
    assert _fingerprints(store_url) == sorted(ROWS)

    command.downgrade(alembic_config(store_url), "0004")
    key, indexes, ddl = _shape(store_url)
    assert key == ["system", "entity", "hub_id"] and "ix_fingerprints_entity_hub_id" in indexes
    assert "WITHOUT ROWID" not in ddl.upper()
    assert _fingerprints(store_url) == sorted(ROWS)
    assert upgrade(store_url) == head_revision()
    assert _fingerprints(store_url) == sorted(ROWS)


def test_a_batch_reads_its_fingerprints_through_the_key(tmp_path) -> None:
    """The batch lookup (entity and hub ids, every system) is a search of the key, not a
    scan of the table."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    engine = create_store_engine(url)
    with engine.connect() as conn:
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                sa.text(
                    "EXPLAIN QUERY PLAN SELECT system, hub_id, fingerprint FROM fingerprints "
                    "WHERE entity = 'customer' AND hub_id IN ('CUS-1', 'CUS-2')"
                )
            )
        )
    engine.dispose()
    assert "SEARCH fingerprints USING PRIMARY KEY (entity=? AND hub_id=?)" in plan, plan
