"""Review events into the evidence Merkle log, through an outbox.

Every workflow step that 行政处罚法 Art. 47 asks to be recorded (审核、告知/送达、陈述申辩、
听证、决定) adds an :class:`EvidenceEvent` row in the same transaction as the step
(:func:`enqueue`). :func:`flush_to_log` later appends the pending rows, oldest first,
to a Merkle log with :func:`zhichao.evidence.events.record_review_event` (which signs a
new checkpoint) and marks each row with its log index, committing after each one. If the
process dies between an append and its commit, that one event is appended again on the
next flush (at-least-once; ``find_events`` on the log shows both copies).

The log's actor ids are pseudonymous (``U-<user id>``, ``owner``), never names.

:class:`EventFlusher` does the flushing in the background of the service app (started by
``create_app``'s lifespan when ``Settings.evidence_log_dir`` is set): every
``events_flush_interval_s`` it opens the log (taking its writer lock, so two app workers or
a concurrent ``zhichao events flush`` never append at once), appends what is pending and
closes it. On PostgreSQL a round first takes a session-level advisory lock
(``pg_try_advisory_lock``) and skips the round when another replica holds it, so any number
of ``zhichao serve`` replicas may run the flusher on one log directory (the directory must
be one: local to one machine, or a shared folder) and exactly one appends at a time. An
error (the log locked by another writer, a package whose log position cannot
be read, the database away) is logged and retried at the next interval; nothing is marked
done that was not appended.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from zhichao.common import utc_now
from zhichao.errors import ZhichaoError
from zhichao.evidence.events import EventType, ReviewEvent, record_review_event
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station
from zhichao.evidence.signing import load_private_key
from zhichao.service.background import Periodic
from zhichao.service.db import advisory_lock_sql
from zhichao.service.errors import ConfigError, IngestError
from zhichao.service.models import Case, EvidenceEvent, User
from zhichao.service.objectstore import local_package


def actor_id(user: User | None) -> str:
    return "owner" if user is None else f"U-{user.id:04d}"


def enqueue(session: Session, case: Case, *, event_type: EventType, actor: str,
            outcome: str, reason_zh: str, now: datetime,
            details: dict[str, Any] | None = None) -> None:
    session.add(EvidenceEvent(case_id=case.id, event_type=event_type.value, actor_id=actor,
                              time_utc=now, outcome=outcome, reason_zh=reason_zh,
                              details=dict(details or {})))


def package_log_position(package_path: str) -> tuple[str, int]:
    """(station log origin, index of the sealing entry) of a stored package."""
    path = local_package(package_path)

    def read(name: str) -> Any:
        if path.is_dir():
            return json.loads((path / name).read_bytes())
        with zipfile.ZipFile(path) as zf:
            match = [n for n in zf.namelist() if n == name or n.endswith("/" + name)]
            return json.loads(zf.read(min(match, key=len)))

    try:
        manifest = read("manifest.json")
        inclusion = read("seal/inclusion.json")
        return str(manifest["station"]["log_origin"]), int(inclusion["index"])
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise IngestError(f"package at {package_path}: log position unreadable ({exc})",
                          "证据包的日志位置无法读取") from exc


def flush_to_log(sessions: sessionmaker[Session], log: MerkleLog, signer: Station, *,
                 limit: int = 1000, should_stop: Callable[[], bool] | None = None) -> int:
    """Append up to ``limit`` pending events to ``log``; returns how many were appended.

    ``should_stop`` is asked before each event (a shutting-down flusher stops between two
    events, never inside one).
    """
    done = 0
    while done < limit and not (should_stop is not None and should_stop()):
        with sessions() as session, session.begin():
            row = session.scalars(select(EvidenceEvent).where(EvidenceEvent.log_index.is_(None))
                                  .order_by(EvidenceEvent.id).limit(1)).first()
            if row is None:
                break
            case = session.get(Case, row.case_id)
            assert case is not None
            origin, index = package_log_position(case.package_path)
            receipt = record_review_event(log, signer, ReviewEvent(
                event_type=EventType(row.event_type), package_id=case.package_id,
                manifest_sha256=case.manifest_sha256, package_log_origin=origin,
                package_log_index=index, actor_id=row.actor_id, time_utc=row.time_utc,
                outcome=row.outcome, reason_zh=row.reason_zh, details=row.details))
            row.log_origin, row.log_index, row.appended_utc = log.origin, receipt.index, \
                utc_now()
        done += 1
    return done


_PG_FLUSH_LOCK_KEY = 0x7A68_6576  # "zhev": one flusher at a time across replicas (int4; per schema)
_TRY_FLUSH_LOCK = advisory_lock_sql("pg_try_advisory_lock")
_FLUSH_UNLOCK = advisory_lock_sql("pg_advisory_unlock")


class EventFlusher(Periodic):
    """Appends pending review events to the center's log every ``interval_s`` seconds.

    Raises
    ------
    ConfigError
        If the key cannot be read, or the log does not exist and no ``origin`` is given to
        create it.
    """

    name_zh = "审核事件写入证据日志"

    def __init__(self, sessions: sessionmaker[Session], log_dir: Path, *, key_path: Path,
                 key_name: str, origin: str | None = None, interval_s: float = 5.0,
                 fsync: bool = True) -> None:
        if interval_s <= 0:
            raise ConfigError(f"events flush interval {interval_s} s: must be positive",
                              "审核事件写入间隔须为正数")
        try:
            key = load_private_key(Path(key_path))
        except (OSError, ZhichaoError) as exc:
            raise ConfigError(f"evidence log key {key_path}: {exc}",
                              "证据日志签名密钥无法读取") from exc
        if not (Path(log_dir) / "log.json").exists() and origin is None:
            raise ConfigError(f"evidence log {log_dir} does not exist; set its origin to "
                              "create it", "证据日志不存在，且未配置日志来源，无法创建")
        super().__init__(interval_s)
        self.sessions = sessions
        self.log_dir = Path(log_dir)
        self.signer = Station("center", key_name, key)
        self.origin = origin
        self.fsync = fsync
        self.appended = 0  # events appended since start (for tests and health)

    def flush_once(self) -> int:
        """One round: open the log, append what is pending, close it; returns the count
        (0 when another replica is flushing: PostgreSQL advisory lock)."""
        with self.sessions() as guard:
            postgres = guard.get_bind().dialect.name == "postgresql"
            if postgres and not guard.execute(_TRY_FLUSH_LOCK,
                                              {"k": _PG_FLUSH_LOCK_KEY}).scalar_one():
                return 0
            try:
                create = self.origin is not None and not (self.log_dir / "log.json").exists()
                with MerkleLog(self.log_dir, origin=self.origin, create=create,
                               fsync=self.fsync) as merkle:
                    count = flush_to_log(self.sessions, merkle, self.signer,
                                         should_stop=self.stopping.is_set)
            finally:
                if postgres:
                    guard.execute(_FLUSH_UNLOCK,
                                  {"k": _PG_FLUSH_LOCK_KEY})
                    guard.commit()
        self.appended += count
        return count

    def round(self) -> str | None:
        count = self.flush_once()
        return (f"appended {count} review event(s) to the evidence log {self.log_dir}"
                if count else None)
