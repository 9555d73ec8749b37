"""a station's earlier keys stay trusted for what they sealed (key rotation)

A new table ``sync_station_key``: a station's replaced public keys, each with the log size
below which it signed (``valid_below_log_size``: the station's log size when the key was
replaced, as the operator gives it, or the size the center had accepted then). A package
signed with a replaced key is accepted and verifies in the console only where its log
index is below that size; before this revision, rotating a key made every package sealed
before it (uploaded later, or already accepted and shown) fail ``key.mismatch``.

Revision ID: 0011_station_key_history
Revises: 0010_case_vin
Create Date: 2026-12-07 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_station_key_history"
down_revision = "0010_case_vin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_station_key",
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("replaced_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_below_log_size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["station_id"], ["sync_station.station_id"]),
        sa.PrimaryKeyConstraint("station_id", "key_sha256"),
    )


def downgrade() -> None:
    op.drop_table("sync_station_key")
