"""A billing store created before pause dates, usage records, dunning events and
expiring discounts gets them from ``create_billing_schema`` (issue 17): old rows read with
no pause, no discount end and empty usage and dunning lists."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from connectors import billing_schema as S
from tests.old_billing_store import upgraded_old_store

ADDED = {
    ("subscriptions", "paused_at"),
    ("subscriptions", "resume_at"),
    ("subscriptions", "usage_records"),
    ("subscription_items", "discount_until"),
    ("invoices", "dunning_events"),
}


def test_an_old_store_gets_pause_usage_dunning_and_discount_columns(tmp_path: Path) -> None:
    assert set(S.ADDED_COLUMNS) >= ADDED
    engine = upgraded_old_store(
        tmp_path / "old.sqlite", ("subscriptions", "subscription_items", "invoices")
    )
    with engine.connect() as conn:
        assert conn.execute(
            sa.text("SELECT paused_at, resume_at, usage_records FROM subscriptions")
        ).one() == (None, None, "[]")
        assert conn.execute(sa.text("SELECT discount_until FROM subscription_items")).one() == (
            None,
        )
        assert conn.execute(sa.text("SELECT dunning_events FROM invoices")).one() == ("[]",)
