"""The append-only, hash-chained audit log.

Each entry's ``entry_sha256`` is SHA-256 over ``prev_sha256`` and the RFC 8785 canonical
JSON of the entry's fields, so removing, reordering or altering an entry breaks the chain
(:func:`verify_chain`). The database itself refuses UPDATE and DELETE on ``audit_log``
(triggers, migration 0001). Owner queries are logged apart, in ``owner_access_log``, and
sealed into this chain in batches (``access_log.py``). Appends are serialised: PostgreSQL
takes a transaction-level advisory lock; SQLite has one writer at a time anyway. An entry
is written in the same transaction as the change it records, so either both exist or
neither does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.evidence.canonical import canonicalize
from zhichao.service.db import advisory_lock_sql
from zhichao.service.models import AuditEntry

GENESIS_SHA256 = "0" * 64
_PG_AUDIT_LOCK_KEY = 0x7A68_6175  # "zhau": one lock for every appender (int4; per schema)
_CHAIN_LOCK = advisory_lock_sql("pg_advisory_xact_lock")


def _entry_hash(prev_sha256: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(prev_sha256.encode("ascii") + b"\n" + canonicalize(fields)).hexdigest()


def _fields(time_utc: datetime, actor: str, action: str, object_type: str, object_id: str,
            detail: dict[str, Any]) -> dict[str, Any]:
    return {"time_utc": time_utc.isoformat(timespec="microseconds"), "actor": actor,
            "action": action, "object_type": object_type, "object_id": object_id,
            "detail": detail}


def lock_chain(session: Session) -> None:
    """Take the chain's append lock for the rest of the caller's transaction (PostgreSQL:
    the advisory lock; SQLite: the transaction's ``BEGIN IMMEDIATE`` already is one).
    A caller that must read the chain and then append consistently takes it first;
    :func:`append` takes it again (the same transaction may hold it more than once)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_CHAIN_LOCK, {"k": _PG_AUDIT_LOCK_KEY})


def append(session: Session, *, actor: str, action: str, object_type: str, object_id: str,
           detail: dict[str, Any] | None = None, now: datetime | None = None) -> AuditEntry:
    """Append one entry to the chain inside the caller's transaction."""
    lock_chain(session)
    session.flush()
    last = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).first()
    prev = GENESIS_SHA256 if last is None else last.entry_sha256
    time_utc = now or utc_now()
    detail = dict(detail or {})
    fields = _fields(time_utc, actor, action, object_type, object_id, detail)
    entry = AuditEntry(time_utc=time_utc, actor=actor, action=action, object_type=object_type,
                       object_id=object_id, detail=detail, prev_sha256=prev,
                       entry_sha256=_entry_hash(prev, fields))
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class ChainProblem:
    """A problem found at row ``entry_id`` of ``table`` (``audit_log``, or
    ``owner_access_log`` from :func:`zhichao.service.access_log.verify_access_log`)."""

    entry_id: int
    problem: str
    table: str = "audit_log"


def verify_chain(session: Session) -> list[ChainProblem]:
    """Recompute the chain; an empty list means every entry verifies and links."""
    problems: list[ChainProblem] = []
    prev = GENESIS_SHA256
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)).yield_per(1000):
        if entry.prev_sha256 != prev:
            problems.append(ChainProblem(entry.id, "prev_sha256 does not match the previous "
                                                   "entry (removed or reordered entries)"))
        fields = _fields(entry.time_utc, entry.actor, entry.action, entry.object_type,
                         entry.object_id, entry.detail)
        if _entry_hash(entry.prev_sha256, fields) != entry.entry_sha256:
            problems.append(ChainProblem(entry.id, "entry_sha256 does not match its content "
                                                   "(altered entry)"))
        prev = entry.entry_sha256
    return problems
