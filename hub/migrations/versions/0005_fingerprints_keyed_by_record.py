"""fingerprints keyed by record: (entity, hub id, system), WITHOUT ROWID on SQLite

Every fingerprint lookup names the entity and hub ids (a batch reads all systems'
fingerprints of its records at once), so the primary key now opens with them and the
``(entity, hub_id)`` index 0002 added is dropped. On SQLite the table becomes that key's
own B-tree: a record's fingerprints (about six: one per system and slot) share a page, and
writing one is one index entry instead of three (the row, the primary key, the index).
An initial load writes several per record read; at 100,000 customers most land on a page
of their own.

SQLite cannot change a table's key in place: the rows are copied into a new table in one
transaction. PostgreSQL changes the constraint.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.store.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = "system, entity, hub_id, fingerprint, updated_at"
_NEW_KEY = ["entity", "hub_id", "system"]
_OLD_KEY = ["system", "entity", "hub_id"]


def _fingerprints(name: str, key: Sequence[str], with_rowid: bool) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("updated_at", hub.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(*key, name="pk_fingerprints"),
        sqlite_with_rowid=with_rowid,
    )


def _key() -> list[str]:
    return list(sa.inspect(op.get_bind()).get_pk_constraint("fingerprints")["constrained_columns"])


def _rekey_sqlite(key: Sequence[str], with_rowid: bool) -> None:
    """Copy the rows into a table with the new key (SQLite has no ALTER for a key), in
    one transaction: pysqlite runs DDL outside one, and a crash between the steps would
    leave the store without its fingerprints table. A savepoint opens one either way."""
    bind = op.get_bind()
    op.execute("SAVEPOINT rekey_fingerprints")
    op.execute("DROP INDEX IF EXISTS ix_fingerprints_entity_hub_id")
    _fingerprints("fingerprints_rekeyed", key, with_rowid).create(bind)
    # in the new key's order: each row appends to the new B-tree (a store of a large book
    # holds millions of fingerprints)
    op.execute(
        f"INSERT INTO fingerprints_rekeyed ({_COLUMNS}) "
        f"SELECT {_COLUMNS} FROM fingerprints ORDER BY {', '.join(key)}"
    )
    op.execute("DROP TABLE fingerprints")
    op.execute("ALTER TABLE fingerprints_rekeyed RENAME TO fingerprints")
    op.execute("RELEASE rekey_fingerprints")


def _rekey_postgresql(key: Sequence[str]) -> None:
    op.drop_index(op.f("ix_fingerprints_entity_hub_id"), table_name="fingerprints", if_exists=True)
    op.drop_constraint("pk_fingerprints", "fingerprints", type_="primary")
    op.create_primary_key("pk_fingerprints", "fingerprints", list(key))


def upgrade() -> None:
    if _key() == _NEW_KEY:  # re-keyed already (a crash before alembic noted it)
        return
    if op.get_bind().dialect.name == "sqlite":
        _rekey_sqlite(_NEW_KEY, with_rowid=False)
    else:
        _rekey_postgresql(_NEW_KEY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rekey_sqlite(_OLD_KEY, with_rowid=True)
    else:
        _rekey_postgresql(_OLD_KEY)
    op.create_index(
        op.f("ix_fingerprints_entity_hub_id"), "fingerprints", ["entity", "hub_id"], unique=False
    )
