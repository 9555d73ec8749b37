"""The owner access log: one row per owner query, sealed into the audit chain in batches.

Why apart from the chain: every audit-chain append holds one global lock until its
COMMIT (``audit.py``), which capped owner queries at 1 / (that hold) per second whatever
the number of replicas (docs/service.md, "Owner queries at provincial scale"). An owner
query now writes one ``owner_access_log`` row (:func:`record_owner_access`) without that
lock; the database refuses UPDATE, DELETE and TRUNCATE on the table (migration 0007),
and each row carries ``entry_sha256`` = SHA-256 of the RFC 8785 JSON of ``{time_utc,
actor, object_id, detail}``. Every ``Settings.owner_access_seal_interval_s`` the service
folds the committed, unsealed rows into ONE chained entry (:func:`seal_pending`, action
``owner.access_sealed``, detail ``first_id``, ``last_id``, ``count`` and
``digest_sha256`` = SHA-256 over the rows' ``entry_sha256`` in id order, each as 64 hex
characters and a line feed). :func:`verify_access_log` checks every row's own hash and
every seal against the rows in its id range.

The barrier (PostgreSQL). A row's id comes from the table's sequence at INSERT but is
visible only at COMMIT, so "every row with id <= M" read now might miss an in-flight row
with a smaller id. Therefore:

1. Every writer (:func:`record_owner_access`) takes ``pg_advisory_xact_lock_shared(K, S)``
   *before* its INSERT, so before its ``nextval``, and holds it to the end of its
   transaction. Shared: queries never wait for each other.
2. The sealer's barrier transaction takes ``pg_advisory_xact_lock(K, S)`` (exclusive) and
   then reads ``M = max(id)`` in a new statement (READ COMMITTED: a snapshot taken after
   the lock was granted), and commits. When the exclusive lock is granted no transaction
   holds the shared one, so every writer either (a) ended before the grant, and its row,
   if committed, is in the snapshot that gives M; or (b) gets its shared lock only after
   the barrier committed, and so calls ``nextval`` after M was read. ``nextval`` hands out
   strictly increasing values in call order (the SERIAL sequence: no CYCLE, CACHE 1 —
   with CACHE > 1 each session pre-allocates a block and this breaks; do not set it), so
   every id of (b) is above every id handed out before the grant, M included. Hence the
   rows with id <= M are final: all committed, all visible, none still to come (a
   rolled-back writer leaves a gap, never a late row).
3. The seal transaction takes the audit chain's lock (``audit.lock_chain``), then reads
   the last seal's ``last_id`` = L (every earlier seal committed under that lock, so this
   statement sees it), seals the rows in (L, M] if M > L, and commits. Two sealers (two
   replicas) are serialised by the chain lock: the second reads the first's L and seals
   (L, M'] only if its own M' > L. The sealed ranges are contiguous and disjoint: every
   row is sealed exactly once.

The barrier and the seal are separate transactions so that the exclusive lock is held for
two round trips only (not while waiting for the chain lock). A *waiting* exclusive request
would make new shared requests queue behind it (PostgreSQL grants no lock that conflicts
with a waiting request), stalling owner queries for the in-flight ones' INSERT + COMMIT;
so the barrier first only tries the lock for a while (a failed try leaves no request
behind) and waits for it only if it never comes free (:func:`barrier_max_id`).

SQLite: every transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time), so no
writer is in flight while the barrier reads M; new rows take ``max(rowid) + 1`` and rows
are never deleted, so later ids are above M. No lock is needed.

What the seal does not cover: rows newer than the last seal (at most one interval's
worth while the sealer runs) rest only on the table's triggers and their own hashes; a
person who can disable the triggers could alter them before they are sealed.
:func:`verify_access_log` reports how many there are.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from zhichao.common import utc_now
from zhichao.evidence.canonical import canonicalize
from zhichao.service import audit
from zhichao.service.audit import ChainProblem
from zhichao.service.background import Periodic
from zhichao.service.db import advisory_lock_sql, transaction
from zhichao.service.errors import ConfigError
from zhichao.service.models import AuditEntry, OwnerAccessEntry

SEALED_ACTION = "owner.access_sealed"
SEALER_ACTOR = "system:access-sealer"
_PG_ACCESS_LOCK_KEY = 0x7A68_6163  # "zhac": owner-query writers vs. the barrier (int4)


def entry_hash(time_utc: datetime, actor: str, object_id: str, detail: dict[str, Any]) -> str:
    """``entry_sha256`` of an access row: SHA-256 of the RFC 8785 JSON of its fields."""
    fields = {"time_utc": time_utc.isoformat(timespec="microseconds"), "actor": actor,
              "object_id": object_id, "detail": detail}
    return hashlib.sha256(canonicalize(fields)).hexdigest()


def batch_digest(entry_sha256s: list[str]) -> str:
    """``digest_sha256`` of a seal: SHA-256 over the rows' hashes in id order, each as its
    64 hex characters followed by a line feed."""
    hasher = hashlib.sha256()
    for value in entry_sha256s:
        hasher.update(value.encode("ascii") + b"\n")
    return hasher.hexdigest()


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def record_owner_access(session: Session, *, actor: str, object_id: str,
                        detail: dict[str, Any], now: datetime | None = None) -> int:
    """Write one access row in the caller's transaction and return its id (PostgreSQL:
    under the shared barrier lock, taken before the INSERT and held to the end of the
    transaction). A Core INSERT, not the ORM's unit of work: this runs once per query."""
    if _is_postgresql(session):
        session.execute(_SHARED_LOCK, {"k": _PG_ACCESS_LOCK_KEY})
    time_utc = now or utc_now()
    detail = dict(detail)
    return int(session.execute(_INSERT, {
        "time_utc": time_utc, "actor": actor, "object_id": object_id, "detail": detail,
        "entry_sha256": entry_hash(time_utc, actor, object_id, detail)}).scalar_one())


# built once: building and keying the statements per query was a good part of its CPU
_SHARED_LOCK = advisory_lock_sql("pg_advisory_xact_lock_shared")
_TRY_EXCLUSIVE_LOCK = advisory_lock_sql("pg_try_advisory_xact_lock")
_EXCLUSIVE_LOCK = advisory_lock_sql("pg_advisory_xact_lock")
_TABLE = cast(Table, OwnerAccessEntry.__table__)
_INSERT = insert(_TABLE).returning(_TABLE.c.id)


def barrier_max_id(sessions: sessionmaker[Session], *, polite_s: float = 0.05) -> int:
    """The largest access-row id such that every row at or below it is committed and no
    row at or below it can still appear (the module docstring's step 2); 0 when empty.

    PostgreSQL: for up to ``polite_s`` the exclusive lock is only *tried* (every
    millisecond): a try does not queue, so queries arriving meanwhile are not held up
    behind it. Under a load that never leaves the lock free, it then waits for it (new
    queries queue behind it for the in-flight ones' INSERT + COMMIT), so sealing never
    starves."""
    with transaction(sessions) as session:
        if _is_postgresql(session):
            _exclusive(session, polite_s)
        return int(session.scalar(select(func.coalesce(func.max(OwnerAccessEntry.id), 0)))
                   or 0)


def _exclusive(session: Session, polite_s: float) -> None:
    deadline = time.monotonic() + polite_s
    while time.monotonic() < deadline:
        if session.execute(_TRY_EXCLUSIVE_LOCK,
                           {"k": _PG_ACCESS_LOCK_KEY}).scalar_one():
            return
        time.sleep(0.001)
    session.execute(_EXCLUSIVE_LOCK, {"k": _PG_ACCESS_LOCK_KEY})


def last_sealed_id(session: Session) -> int:
    """``last_id`` of the newest seal in the chain (0: none yet)."""
    detail = session.scalar(select(AuditEntry.detail).where(AuditEntry.action == SEALED_ACTION)
                            .order_by(AuditEntry.id.desc()).limit(1))
    return 0 if detail is None else int(detail["last_id"])


@dataclass(frozen=True)
class Seal:
    audit_entry_id: int
    first_id: int
    last_id: int
    count: int


def seal_through(session: Session, through_id: int, *, now: datetime | None = None
                 ) -> Seal | None:
    """Seal the rows after the last seal up to ``through_id`` (a value from
    :func:`barrier_max_id`) into one chain entry, in the caller's transaction; None when
    another sealer already went as far (step 3)."""
    audit.lock_chain(session)
    after_id = last_sealed_id(session)
    if through_id <= after_id:
        return None
    hashes = list(session.scalars(
        select(OwnerAccessEntry.entry_sha256)
        .where(OwnerAccessEntry.id > after_id, OwnerAccessEntry.id <= through_id)
        .order_by(OwnerAccessEntry.id)))
    detail = {"first_id": after_id + 1, "last_id": through_id, "count": len(hashes),
              "digest_sha256": batch_digest(hashes)}
    entry = audit.append(session, actor=SEALER_ACTOR, action=SEALED_ACTION,
                         object_type="owner_access_log",
                         object_id=f"{after_id + 1}-{through_id}", detail=detail, now=now)
    return Seal(entry.id, after_id + 1, through_id, len(hashes))


def seal_pending(sessions: sessionmaker[Session], *, now: datetime | None = None,
                 polite_s: float = 0.05) -> Seal | None:
    """Barrier, then seal everything committed so far (None: nothing new). When the last
    seal, read without the chain's lock, already reaches the barrier's id, the chain's
    lock is not taken at all (seals only advance, so a stale read errs on the safe side:
    :func:`seal_through` decides under the lock)."""
    through_id = barrier_max_id(sessions, polite_s=polite_s)
    if through_id == 0:
        return None
    with transaction(sessions) as session:
        if through_id <= last_sealed_id(session):
            return None
        return seal_through(session, through_id, now=now)


@dataclass(frozen=True)
class AccessLogCheck:
    problems: list[ChainProblem]
    entries: int  # access rows in the table
    seals: int  # owner.access_sealed entries in the chain
    unsealed: int  # rows after the last seal (not yet covered; not a problem)


def _rows(session: Session) -> Iterator[Any]:
    return iter(session.execute(
        select(OwnerAccessEntry.id, OwnerAccessEntry.time_utc, OwnerAccessEntry.actor,
               OwnerAccessEntry.object_id, OwnerAccessEntry.detail,
               OwnerAccessEntry.entry_sha256)
        .order_by(OwnerAccessEntry.id).execution_options(yield_per=1000)))


def _row_problem(row: Any) -> ChainProblem | None:
    if entry_hash(row.time_utc, row.actor, row.object_id, row.detail) == row.entry_sha256:
        return None
    return ChainProblem(row.id, "entry_sha256 does not match its content (altered entry)",
                        table="owner_access_log")


def verify_access_log(session: Session) -> AccessLogCheck:
    """Every access row's own hash, and every seal's count and digest against the rows now
    in its id range (an altered, removed or inserted row is reported: at the row when its
    own hash fails, at the seal's chain entry when the batch no longer matches). The
    chain's own integrity (the seals included) is :func:`audit.verify_chain`'s part."""
    problems: list[ChainProblem] = []
    # The seals are read first: on PostgreSQL (READ COMMITTED) the rows' statement then
    # has a later snapshot, holding every row any seal it saw covers.
    sealed = session.execute(
        select(AuditEntry.id, AuditEntry.detail).where(AuditEntry.action == SEALED_ACTION)
        .order_by(AuditEntry.id).execution_options(yield_per=1000))
    rows = _rows(session)
    row = next(rows, None)
    entries = seals = 0
    expected_first = 1
    for seal_id, detail in sealed:
        seals += 1
        first, last = int(detail["first_id"]), int(detail["last_id"])
        if first != expected_first:
            problems.append(ChainProblem(seal_id, f"seal of owner_access_log ids {first}.."
                                         f"{last} does not start where the previous seal "
                                         f"ended ({expected_first})"))
        hashes: list[str] = []
        while row is not None and row.id <= last:
            entries += 1
            if (bad := _row_problem(row)) is not None:
                problems.append(bad)
            if row.id >= first:
                hashes.append(row.entry_sha256)
            else:
                problems.append(ChainProblem(row.id, "row in no seal's id range",
                                             table="owner_access_log"))
            row = next(rows, None)
        if len(hashes) != detail["count"] or batch_digest(hashes) != detail["digest_sha256"]:
            problems.append(ChainProblem(
                seal_id, f"owner_access_log ids {first}..{last}: {len(hashes)} rows now, "
                f"{detail['count']} sealed, digest "
                f"{'matches' if batch_digest(hashes) == detail['digest_sha256'] else 'differs'}"
                " (rows removed, inserted or altered after sealing)"))
        expected_first = max(expected_first, last + 1)
    unsealed = 0
    while row is not None:
        entries += 1
        unsealed += 1
        if (bad := _row_problem(row)) is not None:
            problems.append(bad)
        row = next(rows, None)
    return AccessLogCheck(problems, entries, seals, unsealed)


@dataclass(frozen=True)
class AuditCheck:
    """The audit chain and the owner access log, checked together."""

    problems: list[ChainProblem]
    access: AccessLogCheck


def verify_all(session: Session) -> AuditCheck:
    """:func:`audit.verify_chain` plus :func:`verify_access_log` (what ``zhichao audit
    verify`` and ``GET /api/v1/audit/verify`` answer)."""
    access = verify_access_log(session)
    return AuditCheck(audit.verify_chain(session) + access.problems, access)


class AccessSealer(Periodic):
    """Seals the owner access log every ``interval_s`` seconds in the background (each
    replica may run one: concurrent sealers are safe, see the module docstring)."""

    name_zh = "车主查询记录封存"

    def __init__(self, sessions: sessionmaker[Session], *, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ConfigError(f"owner access seal interval {interval_s} s: must be positive",
                              "车主查询记录封存间隔须为正数")
        super().__init__(interval_s)
        self.sessions = sessions
        self.seals = 0  # seals written since start (for tests and health)
        self.sealed_entries = 0

    def seal_once(self) -> Seal | None:
        seal = seal_pending(self.sessions)
        if seal is not None:
            self.seals += 1
            self.sealed_entries += seal.count
        return seal

    def round(self) -> str | None:
        self.seal_once()  # a seal a second: not worth a log line each
        return None
