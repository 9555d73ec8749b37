"""copy notices record how they were sent (issue 17 item 6, the console's 抄告 page)

``copy_notices`` gains ``sent_channel`` (a key of ``copy_notices.SENT_CHANNELS_ZH``:
公文交换, 电子公文系统, 邮寄, 直接递交, 传真) and ``sent_reference`` (the letter's 文号, the
邮件单号 or the system's receipt number), both recorded with ``sent_utc``; rows sent before
this revision keep them null ("not recorded").

Both columns are added and dropped in place (SQLite >= 3.35, as 0004). Downgrade is
refused while any row has either set (how a legal letter was sent would be lost from the
outbox; the audit log's copy is not where an officer reads it); otherwise it drops them.

Revision ID: 0009_copy_notice_channel
Revises: 0008_copy_notice_withdrawal
Create Date: 2026-12-06 20:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zhichao.service.errors import WorkflowError

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
    held = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM copy_notices "
        "WHERE sent_channel IS NOT NULL OR sent_reference IS NOT NULL")).scalar_one()
    if held:
        raise WorkflowError(
            f"migration 0009 downgrade refused: {held} copy notice rows record how they "
            "were sent (sent_channel, sent_reference), which the old schema would drop",
            f"拒绝降级：{held} 条抄告记录了发送方式或文号、单号，降级将丢失这些记录")
    # SQLite >= 3.35 drops a column in place, as 0004 does: no rebuild, which would fail on
    # the self-reference of a withdrawal's ``withdraws_id`` with foreign keys on
    for name in ("sent_reference", "sent_channel"):
        op.drop_column("copy_notices", name)
