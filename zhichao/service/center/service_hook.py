"""The center's accept hook: every accepted item becomes a passage (and a case) in the
service database.

:class:`ServiceHook` is an :data:`~zhichao.service.center.store.AcceptHook`. For a package it
calls :func:`zhichao.service.ingest.register_ingested_package` with the stored zip (which
stores the passage and opens a case in ``technical_review`` when a penalty is proposed and
the gate did not say UNUSABLE); for a passage record,
:func:`zhichao.service.ingest.register_passage` with ``source_key = "sync:<item_sha256>"``.
Each delivery is one service transaction (a passage batch or a redelivery: one for all its
items, through ``deliver_many``; if that fails the store offers each item alone). Both
functions are idempotent (a package on its ``package_id`` and manifest hash, a passage on
its source key), so the store's at-least-once delivery (a redelivery after a failure or a
restart) adds nothing twice. A package's passage is keyed like the passage record of the
same vehicle (``sync:<SHA-256 of the canonical vehicle record>``): a station that sends a
vehicle both ways gets one passage, linked to its package, whichever arrives first.

Replicas: several center processes may deliver at once (and a replica starting up offers
again what another is delivering). Every row the hook writes has a unique key (passage
source key, case package id, site, lane, device), so of two concurrent deliveries of one
item, or of two items that add the same site, one commits and the other fails with an
integrity error; :meth:`ServiceHook.deliver_many` then runs its transaction again (up to
``RETRIES`` times), which now finds the rows and adds nothing.

``zhichao center serve`` installs it on the database the sync tables live in (the same URL
and schema), unless ``--no-service-hook``.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.errors import EvidenceError
from zhichao.service import partitions
from zhichao.service.center.store import Accepted
from zhichao.service.db import session_factory, transaction
from zhichao.service.ingest import (
    read_package_manifest,
    register_ingested_package,
    register_passage,
)
from zhichao.service.models import Case
from zhichao.service.objectstore import S3_SCHEME
from zhichao.service.reweigh import is_reweigh, register_reweigh
from zhichao.sync.errors import SyncError

log = logging.getLogger(__name__)
RETRIES = 5


def passage_key(record_sha256: str) -> str:
    """The service ``source_key`` of a passage record the center accepted."""
    return f"sync:{record_sha256}"


def _retryable(exc: IntegrityError | OperationalError) -> bool:
    """A unique-key race, a deadlock / serialization failure PostgreSQL resolved by
    aborting this transaction, or a lock wait past a configured ``lock_timeout``:
    running it again is the remedy."""
    if isinstance(exc, IntegrityError):
        return True
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in ("40P01", "40001", "55P03")


def _time_of(item: Accepted) -> datetime | None:
    """The passage time an item will insert (its month's partition), where known."""
    raw: Any = item.record if item.kind == "passage" else (
        ((item.manifest or {}).get("case") or {}).get("vehicle"))
    text = raw.get("time_utc") if isinstance(raw, dict) else None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _vehicle_key(manifest: dict[str, Any]) -> str | None:
    """The key a passage record equal to the package's vehicle record would have (the
    sync's record hash is the SHA-256 of its RFC 8785 bytes), so both are one passage."""
    case = manifest.get("case")
    vehicle = case.get("vehicle") if isinstance(case, dict) else None
    if not isinstance(vehicle, dict):
        return None
    try:
        return passage_key(hashlib.sha256(canonicalize(vehicle)).hexdigest())
    except EvidenceError:
        return None


class ServiceHook:
    """Registers accepted packages and passages in the service database behind ``sessions``."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @classmethod
    def for_engine(cls, engine: Engine) -> ServiceHook:
        """On a service engine (``zhichao.service.db.make_engine``), already migrated."""
        return cls(session_factory(engine))

    def __call__(self, item: Accepted) -> None:
        """Register one item in its own transaction."""
        self.deliver_many([item])

    def deliver_many(self, items: list[Accepted]) -> None:
        """Register ``items`` in one transaction (all or nothing); a transaction that lost
        a race on a unique key to another replica, or that PostgreSQL chose as a deadlock
        victim, is run again. The months' passage partitions are made first, outside the
        transaction: made inside it, their locks would wait on other replicas' inserts
        while those wait on this transaction's audit lock."""
        self._partitions_for(items)
        for attempt in range(1, RETRIES + 1):
            try:
                self._deliver_once(items)
                return
            except (IntegrityError, OperationalError) as exc:
                if attempt == RETRIES or not _retryable(exc):
                    raise
                log.info("accept hook: a concurrent delivery wrote the same rows first or "
                         "deadlocked with this one; again (%d/%d)", attempt, RETRIES)

    def _partitions_for(self, items: list[Accepted]) -> None:
        engine = self.sessions.kw.get("bind")
        if not isinstance(engine, Engine) or engine.dialect.name != "postgresql":
            return
        for moment in sorted({t for t in map(_time_of, items) if t is not None}):
            try:
                partitions.ensure_month(engine, moment)
            except partitions.PartitionError as exc:  # busy: made inside the transaction
                log.warning("accept hook: partition for %s not made ahead: %s", moment, exc)

    def _deliver_once(self, items: list[Accepted]) -> None:
        with transaction(self.sessions) as session:
            for item in items:
                if item.kind == "package":
                    self._package(session, item)
                elif item.kind == "passage":
                    self._passage(session, item)
                else:
                    raise SyncError(f"accept hook: unknown item kind {item.kind!r} "
                                    f"({item.item_sha256})")

    @staticmethod
    def _package(session: Session, item: Accepted) -> None:
        if item.package_path is None:
            raise SyncError(f"accept hook: package {item.item_sha256} has no stored path")
        path = Path(item.package_path).resolve()
        manifest = item.manifest
        if manifest is None:  # read it from the stored zip (and check it is the one accepted)
            manifest, _sha = read_package_manifest(path, expected_sha256=item.item_sha256)
        # An object-store location (s3://…) is what every replica can open; a folder path
        # is this machine's.
        where: Path | str = item.location if item.location is not None and \
            item.location.startswith(S3_SCHEME) else path
        if is_reweigh(manifest):  # a static re-weighing: attached to its case or passage
            entry = register_reweigh(session, manifest, where,
                                     manifest_sha256=item.item_sha256)
            log.info("re-weighing %s from %s attached to %s %s", item.item_sha256[:16],
                     item.station_id, entry.object_type, entry.object_id)
            return
        row = register_ingested_package(session, manifest, where,
                                        manifest_sha256=item.item_sha256,
                                        passage_source_key=_vehicle_key(manifest))
        log.info("package %s from %s registered: %s", item.item_sha256[:16], item.station_id,
                 f"case {row.id} ({row.state})" if isinstance(row, Case)
                 else f"passage {row.id}, no case due")

    @staticmethod
    def _passage(session: Session, item: Accepted) -> None:
        if item.record is None:
            raise SyncError(f"accept hook: passage {item.item_sha256} has no record")
        register_passage(session, item.record, station_id=item.station_id,
                         source_key=passage_key(item.item_sha256))
