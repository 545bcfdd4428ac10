"""tombstones: records deleted in their owner, kept restorable

A delete read from the system that owns or creates a record marks its golden record
deleted and leaves a tombstone saying who deleted it, where and when, so no later sync or
resync brings it back and an operator can restore it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.store.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tombstones",
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("deleted_at", hub.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", hub.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("restored_at", hub.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("entity", "hub_id", name=op.f("pk_tombstones")),
    )


def downgrade() -> None:
    op.drop_table("tombstones")
