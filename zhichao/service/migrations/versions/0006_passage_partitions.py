"""passages partitioned by month on PostgreSQL; owner-query index on cases (issue 21)

PostgreSQL: ``passages`` becomes a RANGE-partitioned table on ``time_utc`` (one partition
per UTC month, ``passages_pYYYYMM``); its rows are copied over, so the upgrade takes time
and space in proportion to the table (about the table's size again, once). The primary
key becomes ``(id, time_utc)``, ``source_key`` is unique with ``time_utc``, and the
foreign key of ``cases`` names ``(passage_id, time_utc)``; see ``service/partitions.py``.
A case whose ``time_utc`` differs from its passage's stops the upgrade (the foreign key
cannot be made; the transaction rolls back, nothing changed).
SQLite: unchanged but for the index.

Both: ``ix_cases_plate (plate, plate_colour)`` is replaced by ``ix_cases_owner (plate,
plate_colour, time_utc, id)``, the owner query's filter and keyset order in one index.

Revision ID: 0006_passage_partitions
Revises: 0005_supervision
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op
from sqlalchemy import Connection, text

from zhichao.service import partitions

revision = "0006_passage_partitions"
down_revision = "0005_supervision"
branch_labels = None
depends_on = None

_OLD = "passages_unpartitioned"


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_plate")
        batch_op.create_index("ix_cases_owner", ["plate", "plate_colour", "time_utc", "id"],
                              unique=False)
    if op.get_bind().dialect.name == "postgresql":
        _partition()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _unpartition()
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_owner")
        batch_op.create_index("ix_cases_plate", ["plate", "plate_colour"], unique=False)


def _months(bind: Connection) -> list[tuple[int, int]]:
    first, last = bind.execute(text(f"SELECT min(time_utc), max(time_utc) FROM {_OLD}")).one()
    now = datetime.now(UTC)
    start = partitions.month_of(first if first is not None else now)
    end = partitions.month_of(max(last, now) if last is not None else now)
    for _ in range(partitions.MONTHS_AHEAD):
        end = partitions.next_month(*end)
    return partitions.months_between(start, end)


def _partition() -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE cases DROP CONSTRAINT cases_passage_id_fkey")
    op.execute(f"ALTER TABLE passages RENAME TO {_OLD}")
    op.execute(f"ALTER TABLE {_OLD} DROP CONSTRAINT passages_pkey")
    op.execute(f"ALTER TABLE {_OLD} DROP CONSTRAINT passages_source_key_key")
    op.execute("DROP INDEX ix_passages_plate")
    op.execute("DROP INDEX ix_passages_site_time")
    op.execute(f"CREATE TABLE passages (LIKE {_OLD} INCLUDING DEFAULTS) "
               "PARTITION BY RANGE (time_utc)")
    op.execute("ALTER SEQUENCE passages_id_seq OWNED BY passages.id")
    op.execute("ALTER TABLE passages ADD CONSTRAINT passages_pkey PRIMARY KEY (id, time_utc)")
    op.execute("ALTER TABLE passages ADD CONSTRAINT uq_passages_source_key_time "
               "UNIQUE (source_key, time_utc)")
    op.execute("CREATE INDEX ix_passages_plate ON passages (plate, plate_colour)")
    op.execute("CREATE INDEX ix_passages_site_time ON passages (site_id, time_utc)")
    partitions.ensure_months(bind, _months(bind))
    op.execute(f"INSERT INTO passages SELECT * FROM {_OLD}")
    op.execute(f"DROP TABLE {_OLD}")
    op.execute("ALTER TABLE cases ADD CONSTRAINT fk_cases_passage_month FOREIGN KEY "
               "(passage_id, time_utc) REFERENCES passages (id, time_utc) ON UPDATE CASCADE")
    op.execute("ANALYZE passages")


def _unpartition() -> None:
    op.execute("ALTER TABLE cases DROP CONSTRAINT fk_cases_passage_month")
    op.execute(f"ALTER TABLE passages RENAME TO {_OLD}")
    op.execute(f"CREATE TABLE passages (LIKE {_OLD} INCLUDING DEFAULTS)")
    op.execute("ALTER SEQUENCE passages_id_seq OWNED BY passages.id")
    op.execute(f"INSERT INTO passages SELECT * FROM {_OLD}")
    op.execute(f"DROP TABLE {_OLD}")  # its partitions, indexes and constraints go with it
    op.execute("ALTER TABLE passages ADD CONSTRAINT passages_pkey PRIMARY KEY (id)")
    op.execute("ALTER TABLE passages ADD CONSTRAINT passages_source_key_key "
               "UNIQUE (source_key)")
    op.execute("CREATE INDEX ix_passages_plate ON passages (plate, plate_colour)")
    op.execute("CREATE INDEX ix_passages_site_time ON passages (site_id, time_utc)")
    op.execute("ALTER TABLE cases ADD CONSTRAINT cases_passage_id_fkey FOREIGN KEY "
               "(passage_id) REFERENCES passages (id)")
