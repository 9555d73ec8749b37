"""Alembic environment: runs on the engine handed over by ``zhichao.service.db.upgrade``.

One database holds the service core (``models.Base``) and, at a center, the sync tables
(``sync.models.SyncBase``, from revision 0003); both metadata are the migration target.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from zhichao.service.center.models import SyncBase
from zhichao.service.models import Base
from zhichao.service.partitions import include_object

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("run the migrations through zhichao.service.db.upgrade(engine)")

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=[Base.metadata, SyncBase.metadata],
                      render_as_batch=engine.dialect.name == "sqlite",
                      include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
