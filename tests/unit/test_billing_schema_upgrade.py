"""A billing store created before item versions, line kinds and proration policies gets
the new columns from ``create_billing_schema`` (issue 17); old rows read with defaults."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from connectors import billing_schema as S
from tests.old_billing_store import upgraded_old_store


def test_an_old_store_gets_the_added_columns(tmp_path: Path) -> None:
    # the three tables as they were, trimmed to a few columns
    engine = upgraded_old_store(
        tmp_path / "old.sqlite", ("subscriptions", "subscription_items", "invoice_lines")
    )
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
