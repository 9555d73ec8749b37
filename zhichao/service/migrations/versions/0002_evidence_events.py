"""evidence_events: outbox of review events for the evidence Merkle log

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import zhichao.service.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("time_utc", zhichao.service.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=48), nullable=False),
        sa.Column("reason_zh", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("log_origin", sa.String(length=200), nullable=True),
        sa.Column("log_index", sa.Integer(), nullable=True),
        sa.Column("appended_utc", zhichao.service.models.UTCDateTime(timezone=True),
                  nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("evidence_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evidence_events_case_id"), ["case_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("evidence_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evidence_events_case_id"))
    op.drop_table("evidence_events")
