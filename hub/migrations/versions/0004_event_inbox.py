"""event inbox: change events stored before they are acknowledged

``event_inbox`` holds every change event received (SAP business events, Salesforce change
events), unique on (system, event id) so a redelivery stores nothing new;
``event_replay_position`` holds each channel's last stored replay id, written in the same
transaction as the events it covers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import hub.store.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "event_inbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=True),
        sa.Column("record_keys", _JSON, nullable=False),
        sa.Column("change_type", sa.String(length=16), nullable=True),
        sa.Column("changed_fields", _JSON, nullable=True),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("replay_id", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(length=255), nullable=True),
        sa.Column("received_at", hub.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", hub.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_inbox")),
        sa.UniqueConstraint("system", "event_id", name=op.f("uq_event_inbox_system_event_id")),
    )
    op.create_index(
        op.f("ix_event_inbox_processed_at_id"), "event_inbox", ["processed_at", "id"], unique=False
    )
    op.create_table(
        "event_replay_position",
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("replay_id", sa.Text(), nullable=False),
        sa.Column("updated_at", hub.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("system", "channel", name=op.f("pk_event_replay_position")),
    )


def downgrade() -> None:
    op.drop_table("event_replay_position")
    op.drop_index(op.f("ix_event_inbox_processed_at_id"), table_name="event_inbox")
    op.drop_table("event_inbox")
