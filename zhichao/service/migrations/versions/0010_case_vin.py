"""each case is bound to the VIN that held its plate when it was registered (owner query)

A new table ``case_holders`` (case id, VIN, when bound): the VIN of the vehicle registered
under the case's plate and colour when the case was registered (no row while the registry
does not know the plate). The owner query shows a case only to the holder of that VIN, so
a plate that passes to another vehicle no longer shows the former holder's cases and
statements to the new one (docs/service.md, "Owner portal functions"). A table of its
own: the ``cases`` rows and their triggers stay as they were.

Existing cases are bound to the VIN the plate's registry row holds now (the best this
database knows: before this revision the row's VIN was replaced in place on re-import).

Downgrade is refused while a case is bound to a VIN other than its plate's current one
(the old schema would show that case to the plate's new holder); otherwise it drops the
table.

Revision ID: 0010_case_vin
Revises: 0009_copy_notice_channel
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import zhichao.service.models
from zhichao.service.errors import WorkflowError

revision = "0010_case_vin"
down_revision = "0009_copy_notice_channel"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_holders",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("vin", sa.String(length=17), nullable=False),
        sa.Column("bound_utc", zhichao.service.models.UTCDateTime(timezone=True),
                  nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.execute(
        "INSERT INTO case_holders (case_id, vin, bound_utc) "
        "SELECT c.id, v.vin, CURRENT_TIMESTAMP FROM cases c JOIN vehicles v "
        "ON v.plate = c.plate AND v.plate_colour = c.plate_colour")


def downgrade() -> None:
    moved = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM case_holders h JOIN cases c ON c.id = h.case_id "
        "WHERE NOT EXISTS (SELECT 1 FROM vehicles v WHERE v.plate = c.plate "
        "AND v.plate_colour = c.plate_colour AND v.vin = h.vin)")).scalar_one()
    if moved:
        raise WorkflowError(
            f"migration 0010 downgrade refused: {moved} cases belong to a VIN that no longer "
            "holds their plate; the old schema would show them to the plate's new holder",
            f"拒绝降级：{moved} 件案件所属车辆的号牌已转给其他车辆，"
            "降级后将向新车主显示原车主的案件")
    op.drop_table("case_holders")
