"""the procedure by the law: notice service, waivers, 公示 deadline and withdrawal,
决定书 text, 抄告 outbox, passage retention (issue 17)

Revision ID: 0004_procedure_by_law
Revises: 0003
Create Date: 2026-12-06 11:00:00

Only nullable columns are added (``ADD COLUMN``, no table rebuild: the ``cases`` triggers
that refuse deletion stay in place) and one table is created.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import zhichao.service.models

revision = "0004_procedure_by_law"
down_revision = "0003"
branch_labels = None
depends_on = None

_UTC = zhichao.service.models.UTCDateTime
COLUMNS: dict[str, list[tuple[str, sa.types.TypeEngine[object] | type]]] = {
    "cases": [("statement_waived_utc", _UTC), ("hearing_waived_utc", _UTC),
              ("waiver_record_zh", sa.Text), ("publish_due", sa.Date),
              ("publication_withdrawn_utc", _UTC), ("withdrawal_reason_zh", sa.Text)],
    "notices": [("delivered_utc", _UTC), ("served_on", sa.Date),
                ("service_proof_zh", sa.Text)],
    "decisions": [("text_zh", sa.Text)],
    "passages": [("plate_removed_utc", _UTC)],
}


def _type(kind: object) -> sa.types.TypeEngine[object]:
    if kind is _UTC:
        return _UTC(timezone=True)  # type: ignore[return-value]
    return kind() if isinstance(kind, type) else kind  # type: ignore[return-value]


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        for name, kind in columns:
            op.add_column(table, sa.Column(name, _type(kind), nullable=True))
    op.create_table(
        "copy_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("authority_zh", sa.String(length=200), nullable=False),
        sa.Column("due", sa.Date(), nullable=False),
        sa.Column("referral", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_utc", _UTC(timezone=True), nullable=False),
        sa.Column("sent_utc", _UTC(timezone=True), nullable=True),
        sa.Column("acknowledged_utc", _UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id"),
    )


def downgrade() -> None:
    op.drop_table("copy_notices")
    for table, columns in COLUMNS.items():
        for name, _kind in columns:
            op.drop_column(table, name)  # SQLite >= 3.35: no rebuild, triggers kept
