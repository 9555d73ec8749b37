"""Review events into the evidence Merkle log, through an outbox.

Every workflow step that 行政处罚法 Art. 47 asks to be recorded (审核、告知/送达、陈述申辩、
听证、决定) adds an :class:`EvidenceEvent` row in the same transaction as the step
(:func:`enqueue`). :func:`flush_to_log` later appends the pending rows, oldest first,
to a Merkle log with :func:`zhichao.evidence.events.record_review_event` (which signs a
new checkpoint) and marks each row with its log index, committing after each one. If the
process dies between an append and its commit, that one event is appended again on the
next flush (at-least-once; ``find_events`` on the log shows both copies).

The log's actor ids are pseudonymous (``U-<user id>``, ``owner``), never names.
"""

from __future__ import annotations

import json
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from zhichao.evidence.events import EventType, ReviewEvent, record_review_event
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station
from zhichao.service.errors import IngestError
from zhichao.service.models import Case, EvidenceEvent, User, utc_now


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
    path = Path(package_path)

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
                 limit: int = 1000) -> int:
    """Append up to ``limit`` pending events to ``log``; returns how many were appended."""
    done = 0
    while done < limit:
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
