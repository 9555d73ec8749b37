"""owner tokens can be ended before they expire; an index on an audit entry's object

A new table ``owner_token_revocations``: the id of each owner token ended by 结束查询
(portal logout, ``POST /api/v1/owner/logout``) with the token's expiry; such a token is
refused (401) until it would have expired, and rows past their expiry are pruned. Before
this revision an owner token stayed valid for its whole life (30 min) after 结束查询.

``audit_log`` gets an index on ``(object_type, object_id)``: the 回避 bar of 案卷评查
reads every entry on a case (``duties.handler_ids``).

Revision ID: 0012_owner_token_revocation
Revises: 0011_station_key_history
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_owner_token_revocation"
down_revision = "0011_station_key_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "owner_token_revocations",
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("expires_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_utc", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_id"),
    )
    op.create_index("ix_owner_token_revocations_expires_utc", "owner_token_revocations",
                    ["expires_utc"], unique=False)
    op.create_index("ix_audit_log_object", "audit_log", ["object_type", "object_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_log_object", table_name="audit_log")
    op.drop_index("ix_owner_token_revocations_expires_utc",
                  table_name="owner_token_revocations")
    op.drop_table("owner_token_revocations")
