"""copy notices follow a revoked decision: cancel an unsent one, withdraw a sent one
(issue 17 item 6)

``copy_notices`` gains ``kind`` (``copy``, the default of every existing row, or
``withdrawal``: the 撤回抄告 of a sent copy), ``withdraws_id`` (the copy a withdrawal
names), ``cancelled_utc`` and ``cancel_reason_zh`` (an unsent copy of a revoked decision,
never to be sent). The one-row-per-case unique constraint on ``case_id`` becomes one row
per case and kind, so a case holds its copy and at most one withdrawal.

SQLite rebuilds the table (batch mode; ``copy_notices`` has no triggers and no table
refers to it); its unnamed unique constraint of 0004 is named by the naming convention so
it can be dropped. PostgreSQL alters it in place (``copy_notices_case_id_key`` is the
name PostgreSQL gave 0004's constraint).

Downgrade is refused while any withdrawal row or any cancelled copy exists: the old schema
cannot hold a withdrawal (a legal record) nor mark a copy cancelled (it would be pending
and sendable again). On a table without them it drops the new columns.

Revision ID: 0008_copy_notice_withdrawal
Revises: 0007_owner_access_log
Create Date: 2026-12-06 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zhichao.service.errors import WorkflowError
from zhichao.service.models import UTCDateTime

revision = "0008_copy_notice_withdrawal"
down_revision = "0007_owner_access_log"
branch_labels = None
depends_on = None

_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_unique() -> str:
    """The name of 0004's unique constraint on ``case_id`` on this backend."""
    if op.get_bind().dialect.name == "sqlite":
        return "uq_copy_notices_case_id"  # unnamed there; named by _NAMING in batch mode
    return "copy_notices_case_id_key"


def upgrade() -> None:
    old = _old_unique()
    with op.batch_alter_table("copy_notices", naming_convention=_NAMING) as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), server_default="copy",
                                   nullable=False))
        batch.add_column(sa.Column("withdraws_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cancelled_utc", UTCDateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column("cancel_reason_zh", sa.Text(), nullable=True))
        batch.drop_constraint(old, type_="unique")
        batch.create_unique_constraint("uq_copy_notices_case_kind", ["case_id", "kind"])
        batch.create_foreign_key("fk_copy_notices_withdraws_id", "copy_notices",
                                 ["withdraws_id"], ["id"])


def downgrade() -> None:
    held = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM copy_notices WHERE kind <> 'copy' OR cancelled_utc IS NOT NULL"
    )).scalar_one()
    if held:
        raise WorkflowError(
            f"migration 0008 downgrade refused: {held} withdrawal or cancelled copy notice "
            "rows exist; the old schema would delete the withdrawals and make the cancelled "
            "copies sendable again",
            f"拒绝降级：存在 {held} 条撤回抄告或已作废抄告记录，"
            "降级将删除撤回抄告、使作废抄告可再次发送")
    with op.batch_alter_table("copy_notices", naming_convention=_NAMING) as batch:
        batch.drop_constraint("fk_copy_notices_withdraws_id", type_="foreignkey")
        batch.drop_constraint("uq_copy_notices_case_kind", type_="unique")
        batch.create_unique_constraint(_old_unique(), ["case_id"])
        for name in ("cancel_reason_zh", "cancelled_utc", "withdraws_id", "kind"):
            batch.drop_column(name)
