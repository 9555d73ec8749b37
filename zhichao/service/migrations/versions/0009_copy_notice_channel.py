"""copy notices record how they were sent (issue 17 item 6, the console's 抄告 page)

``copy_notices`` gains ``sent_channel`` (a key of ``copy_notices.SENT_CHANNELS_ZH``:
公文交换, 电子公文系统, 邮寄, 直接递交, 传真) and ``sent_reference`` (the letter's 文号, the
邮件单号 or the system's receipt number), both recorded with ``sent_utc``; rows sent before
this revision keep them null ("not recorded").

Both columns are added and dropped in place (SQLite >= 3.35, as 0004); downgrade drops
them (the audit log keeps what was recorded).

Revision ID: 0009_copy_notice_channel
Revises: 0008_copy_notice_withdrawal
Create Date: 2026-12-06 20:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_copy_notice_channel"
down_revision = "0008_copy_notice_withdrawal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("copy_notices", sa.Column("sent_channel", sa.String(length=32),
                                            nullable=True))
    op.add_column("copy_notices", sa.Column("sent_reference", sa.String(length=200),
                                            nullable=True))


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place, as 0004 does: no rebuild, which would fail on
    # the self-reference of a withdrawal's ``withdraws_id`` with foreign keys on
    for name in ("sent_reference", "sent_channel"):
        op.drop_column("copy_notices", name)
