"""A billing store created before item versions, line kinds and proration policies gets
the new columns from ``create_billing_schema`` (issue 17); old rows read with defaults."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from connectors import billing_schema as S


def test_an_old_store_gets_the_added_columns(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    with engine.begin() as conn:  # the three tables as they were, trimmed to a few columns
        for table in ("subscriptions", "subscription_items", "invoice_lines"):
            conn.execute(sa.text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, updated_at)"))
        for table in ("subscriptions", "subscription_items", "invoice_lines"):
            conn.execute(sa.text(f"INSERT INTO {table} (id) VALUES (1)"))
    S.create_billing_schema(engine)
    S.create_billing_schema(engine)  # idempotent
    inspector = sa.inspect(engine)
    for table, column in S.ADDED_COLUMNS:
        assert column in {c["name"] for c in inspector.get_columns(table)}, (table, column)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT proration_policy FROM subscriptions")).scalar() == (
            "daily"
        )
        assert conn.execute(sa.text("SELECT kind, proration_of FROM invoice_lines")).one() == (
            "recurring",
            None,
        )
        assert conn.execute(
            sa.text("SELECT effective_from, effective_to FROM subscription_items")
        ).one() == (None, None)
