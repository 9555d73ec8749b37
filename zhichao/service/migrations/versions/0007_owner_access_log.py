"""owner_access_log: owner queries out of the audit chain's single lock (issue 21 item 4)

One append-only row per owner query (``access_log.py``); batches of them are sealed into
the audit chain as one ``owner.access_sealed`` entry each. The database refuses UPDATE and
DELETE on the table (and TRUNCATE on PostgreSQL) with triggers, as 0001 does for
``audit_log``; PostgreSQL reuses 0001's ``zhichao_refuse_change()``. The index on
``audit_log.action`` becomes ``(action, id)``, so the newest seal is one index probe.

Downgrade drops the table and its rows (the audit chain's seal entries then name rows that
no longer exist).

Revision ID: 0007_owner_access_log
Revises: 0006_passage_partitions
Create Date: 2026-12-06 16:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zhichao.service.models import UTCDateTime

revision = "0007_owner_access_log"
down_revision = "0006_passage_partitions"
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = {
    "owner_access_log_no_update": "BEFORE UPDATE ON owner_access_log",
    "owner_access_log_no_delete": "BEFORE DELETE ON owner_access_log",
}
_PG_TRIGGERS = {
    "owner_access_log_append_only": "BEFORE UPDATE OR DELETE ON owner_access_log "
                                    "FOR EACH ROW",
    "owner_access_log_no_truncate": "BEFORE TRUNCATE ON owner_access_log "
                                    "FOR EACH STATEMENT",
}


def upgrade() -> None:
    op.create_table(
        "owner_access_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time_utc", UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("object_id", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("entry_sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.create_index("ix_audit_log_action_id", "audit_log", ["action", "id"], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        for name, when in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN "
                       f"SELECT RAISE(ABORT, 'owner_access_log is append-only: {name}'); END")
        return
    for name, when in _PG_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION zhichao_refuse_change()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for name in _PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON owner_access_log")
    op.drop_table("owner_access_log")
    op.drop_index("ix_audit_log_action_id", table_name="audit_log")
    op.create_index("ix_audit_log_action", "audit_log", ["action"], unique=False)
