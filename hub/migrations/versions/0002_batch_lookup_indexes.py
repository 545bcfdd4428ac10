"""indexes for the sync's per-batch lookups by entity and key

Fingerprints and pending outbox entries are loaded per batch by entity and hub id, open
quarantine entries by entity and external key. The fingerprint primary key opens with the
system, the outbox index with the status, and quarantine's unique key with the system, so
each lookup scanned the table (or every pending push) once per batch: quadratic in the
book on an initial load of 100,000 customers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 14:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_fingerprints_entity_hub_id"), "fingerprints", ["entity", "hub_id"], unique=False
    )
    op.create_index(op.f("ix_outbox_entity_hub_id"), "outbox", ["entity", "hub_id"], unique=False)
    op.create_index(
        op.f("ix_quarantine_entity_external_key"),
        "quarantine",
        ["entity", "external_key"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_quarantine_entity_external_key"), table_name="quarantine")
    op.drop_index(op.f("ix_outbox_entity_hub_id"), table_name="outbox")
    op.drop_index(op.f("ix_fingerprints_entity_hub_id"), table_name="fingerprints")
