"""sync tables of the station → center ingest (zhichao.service.center.models.SyncBase)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 14:05:00

Before this revision the center made these four tables with ``create_all``. A database
that already holds all four (made that way by an earlier version) is adopted as it is:
the tables were created from the same models, so nothing is recreated and no row is
touched. A database holding only some of them is refused (a human must look).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SYNC_TABLES = ("sync_station", "sync_package", "sync_passage", "sync_quarantine")


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names()) & set(SYNC_TABLES)
    if present == set(SYNC_TABLES):
        return  # made by create_all before this migration existed: adopt them
    if present:
        raise RuntimeError(f"migration 0003: only some sync tables exist ({sorted(present)}); "
                           "refusing to guess how they were made — inspect the database")
    op.create_table(
        "sync_station",
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("log_origin", sa.String(length=200), nullable=False),
        sa.Column("registered_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_size", sa.BigInteger(), nullable=False),
        sa.Column("accepted_root", sa.LargeBinary(length=32), nullable=True),
        sa.Column("accepted_note", sa.LargeBinary(), nullable=True),
        sa.Column("fork_alarm_utc", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("station_id"),
    )
    op.create_table(
        "sync_quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("station_id", sa.String(length=64), nullable=True),
        sa.Column("claimed_sha256", sa.String(length=64), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message_zh", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("stored_path", sa.Text(), nullable=False),
        sa.Column("received_utc", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("content_sha256", "code", name="uq_sync_quarantine"),
    )
    op.create_table(
        "sync_package",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("package_id", sa.String(length=200), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.Column("stored_path", sa.Text(), nullable=False),
        sa.Column("received_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("receipt", sa.LargeBinary(), nullable=False),
        sa.Column("receipt_signature", sa.String(length=100), nullable=False),
        sa.Column("hook_delivered", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["station_id"], ["sync_station.station_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("manifest_sha256"),
        sa.UniqueConstraint("station_id", "log_index", name="uq_sync_package_log_index"),
    )
    op.create_table(
        "sync_passage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_sha256", sa.String(length=64), nullable=False),
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("station_signature", sa.String(length=100), nullable=False),
        sa.Column("time_utc", sa.String(length=40), nullable=False),
        sa.Column("received_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("receipt", sa.LargeBinary(), nullable=False),
        sa.Column("receipt_signature", sa.String(length=100), nullable=False),
        sa.Column("hook_delivered", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["station_id"], ["sync_station.station_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("record_sha256"),
    )


def downgrade() -> None:
    for name in ("sync_passage", "sync_package", "sync_quarantine", "sync_station"):
        op.drop_table(name)
