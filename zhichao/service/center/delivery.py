"""Handing accepted items to the accept hook, at least once (a mixin of
:class:`~zhichao.service.center.store.CenterStore`).

Items are marked delivered only after the hook took them; :meth:`HookDelivery.redeliver`
offers the rest again (at start-up of any replica). A replica may so offer an item another
replica is delivering at the same moment: the hook must be idempotent under concurrency
(the service hook is: unique keys in the service tables, and a retry of the transaction
that lost a race, :mod:`zhichao.service.center.service_hook`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from zhichao.evidence.reader import read_package
from zhichao.service.center.models import SyncPackage, SyncPassage
from zhichao.service.center.outcomes import Accepted, AcceptHook, package_manifest
from zhichao.service.objectstore import PackageFiles

log = logging.getLogger("zhichao.service.center.store")


class HookDelivery:
    """Needs ``hook``, ``files`` and ``_sessions`` (set by the store)."""

    hook: AcceptHook | None
    files: PackageFiles
    _sessions: sessionmaker[Session]

    # ---------------------------------------------------------------- hook
    def _deliver(self, items: list[Accepted]) -> None:
        if self.hook is None or not items:
            return
        many = getattr(self.hook, "deliver_many", None)
        if many is not None and len(items) > 1:  # e.g. one transaction for a passage batch
            try:
                many(items)
            except Exception:  # all or nothing: fall back to one by one below
                log.warning("sync accept hook failed for a batch of %d items; delivering "
                            "them one by one", len(items), exc_info=True)
            else:
                self._mark_delivered(items)
                return
        done: list[Accepted] = []
        for item in items:
            try:
                self.hook(item)
            except Exception:  # the hook is the main service's code: never lose the item
                log.exception("sync accept hook failed for %s %s; will redeliver",
                              item.kind, item.item_sha256)
                continue
            done.append(item)
        self._mark_delivered(done)

    def _mark_delivered(self, items: list[Accepted]) -> None:
        if not items:
            return
        with self._sessions.begin() as session:
            for item in items:
                model: Any = SyncPackage if item.kind == "package" else SyncPassage
                column = (SyncPackage.manifest_sha256 if item.kind == "package"
                          else SyncPassage.record_sha256)
                row = session.scalar(select(model).where(column == item.item_sha256))
                if row is not None:
                    row.hook_delivered = True

    def redeliver(self) -> int:
        """Call the hook again for every accepted item it has not yet taken; return how many."""
        if self.hook is None:
            return 0
        pending: list[Accepted] = []
        with self._sessions() as session:
            for pkg in session.scalars(select(SyncPackage).where(
                    SyncPackage.hook_delivered.is_(False)).order_by(SyncPackage.id)):
                path = self.files.local_copy(pkg.stored_path)
                pending.append(Accepted("package", pkg.station_id, pkg.manifest_sha256,
                                        json.loads(pkg.receipt), path,
                                        manifest=package_manifest(read_package(path)),
                                        location=pkg.stored_path))
            for psg in session.scalars(select(SyncPassage).where(
                    SyncPassage.hook_delivered.is_(False)).order_by(SyncPassage.id)):
                pending.append(Accepted("passage", psg.station_id, psg.record_sha256,
                                        json.loads(psg.receipt), record=json.loads(psg.record)))
        before = len(pending)
        self._deliver(pending)
        return before
