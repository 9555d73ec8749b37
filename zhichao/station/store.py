"""The station's durable store: SQLite in WAL mode, one writer (the pipeline thread).

Every weighed vehicle is a row of ``passages`` (idempotency key ``<site>-<lane>-<first
sample>``; a re-weighed vehicle within ``DUPLICATE_WINDOW_S`` of a stored one on the lane
is the same vehicle and is not stored again). An overload gets a ``cases`` row in the same
transaction (``pending_seal`` → ``sealed``); the outbox gets what the center must receive;
``meta`` holds the durable stream position. A transaction is all or nothing, so a kill
leaves no half-written row.

Every SQL statement against ``station.db`` is in this module (the pipeline, the
forwarder, ``zhichao status`` and the crash check call its methods). The service database
is fed through the sync wire only (:mod:`zhichao.station.local_service`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zhichao.common import format_utc
from zhichao.station.errors import StoreError
from zhichao.station.sync_outbox import SCHEMA as OUTBOX_SCHEMA
from zhichao.station.sync_outbox import (
    PackedPackage,
    insert_package,
    insert_packed,
    insert_passage,
)

# 2: passages.device_reasons; 3: the sync outbox in station.db; 4: retention (passages
# purge_started_utc / purged_utc, retention_runs); 5: passages.plate_record;
# 6: cases.unusable_files
SCHEMA_VERSION = 6
LEGACY_OUTBOX = "outbox_v2"  # version 2's outbox (forwarded to a file of its own)
LEGACY_SYNC_OUTBOX = "sync-outbox.sqlite"
DUPLICATE_WINDOW_S = 0.3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    passage_key TEXT NOT NULL UNIQUE,
    site_id TEXT NOT NULL,
    lane_id TEXT NOT NULL,
    time_utc TEXT NOT NULL,
    first_sample INTEGER NOT NULL,
    last_sample INTEGER NOT NULL,
    axle_count INTEGER NOT NULL,
    gross_weight_kg REAL,
    vehicle_class TEXT,
    limit_kg REAL,
    verdict TEXT NOT NULL,
    overloaded INTEGER NOT NULL,
    flags TEXT NOT NULL,
    record TEXT NOT NULL,
    frame_status TEXT NOT NULL,
    frames TEXT NOT NULL,
    plate TEXT,
    plate_colour TEXT,
    plate_confidence REAL,
    plate_accepted INTEGER,
    plate_review TEXT,
    plate_record TEXT,
    review_required INTEGER NOT NULL DEFAULT 0,
    created_utc TEXT NOT NULL,
    device_reasons TEXT NOT NULL DEFAULT '[]',
    purge_started_utc TEXT,
    purged_utc TEXT
);
CREATE INDEX IF NOT EXISTS passages_lane_sample ON passages (lane_id, first_sample);
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY,
    passage_key TEXT NOT NULL UNIQUE REFERENCES passages (passage_key),
    status TEXT NOT NULL,
    package_id TEXT,
    package_dir TEXT,
    manifest_sha256 TEXT,
    log_index INTEGER,
    eligibility TEXT,
    eligibility_reasons TEXT,
    review_state TEXT NOT NULL DEFAULT 'queued',
    error TEXT,
    material TEXT,
    created_utc TEXT NOT NULL,
    sealed_utc TEXT,
    unusable_files TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY,
    time_utc TEXT NOT NULL,
    code TEXT NOT NULL,
    message_zh TEXT NOT NULL,
    detail TEXT NOT NULL,
    active INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY,
    first_index INTEGER NOT NULL,
    n_samples INTEGER NOT NULL,
    reason TEXT NOT NULL,
    time_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plate_readers (
    sha256 TEXT PRIMARY KEY,
    reader TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS retention_runs (
    id INTEGER PRIMARY KEY,
    time_utc TEXT NOT NULL,
    cutoff_utc TEXT NOT NULL,
    passage_days INTEGER NOT NULL,
    passages_purged INTEGER NOT NULL,
    frames_removed INTEGER NOT NULL,
    unlinked_frames_deleted INTEGER NOT NULL,
    held_undelivered INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    source_zh TEXT NOT NULL
);
"""
# after the columns of version 4 exist (an older database gets them by ALTER first)
_INDEXES = """
CREATE INDEX IF NOT EXISTS passages_unpurged ON passages (time_utc) WHERE purged_utc IS NULL;
CREATE INDEX IF NOT EXISTS outbox_label ON outbox (label);
"""
#: what a purge removes from a passage's stored record, should a record ever carry it
PLATE_KEYS = ("plate", "plate_colour", "plate_text")
_UNDELIVERED = ("EXISTS (SELECT 1 FROM outbox o WHERE o.kind = 'passage' AND "
                "o.label = p.time_utc AND o.state != 'done')")


#: free bytes below which a failed open is put down to a full disk (SQLite needs a few
#: pages for its WAL and shared-memory files)
FULL_BELOW_BYTES = 1 << 20


def _full_disk_note(path: Path, exc: BaseException) -> str:
    """For an open that failed on a (nearly) full filesystem: that, the free bytes and
    what to do; else ''."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return ""
    free = st.f_bavail * st.f_frsize
    full = isinstance(exc, sqlite3.OperationalError) and (
        "disk is full" in str(exc) or "disk I/O error" in str(exc))
    if not full or free >= FULL_BELOW_BYTES:
        return ""
    return (f" — the disk is full: {free} bytes free on the filesystem of {path.parent}. "
            f"SQLite needs room for station.db-wal and station.db-shm, and the disk reserve "
            f"(station.disk_reserve_mb) is already spent. Free space on that filesystem "
            f"(move away files that are not the station's, or enlarge it) and start again")


def database_is_new(path: Path) -> bool:
    """Whether ``path`` holds no station database yet (missing, empty, or without the
    schema); read without creating anything. Raises :class:`StoreError` for a file that
    is not a usable SQLite database."""
    try:
        if not path.exists() or path.stat().st_size == 0:
            return True
        con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10.0)
        try:
            row = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                              "name = 'meta'").fetchone()
        finally:
            con.close()
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the station database: {exc}") from exc
    except sqlite3.Error as exc:
        raise database_error(path, exc) from exc
    return row is None


def database_error(path: Path, exc: BaseException) -> StoreError:
    """A clear :class:`StoreError` for a SQLite error of ``station.db`` at start-up: a
    damaged file (restore it from a backup) or a database that cannot be used now."""
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return StoreError(
            f"{path}: the station database is damaged ({exc}); the station does not start "
            f"on it. Restore station.db from a backup (stop the station, copy the backup "
            f"over it, remove station.db-wal and station.db-shm beside it), or move the data "
            f"folder aside to start a new station")
    return StoreError(f"{path}: cannot open the station database: {exc}"
                      f"{_full_disk_note(path, exc)}")


def utc_text(t: datetime | None = None) -> str:
    """The store's timestamps: UTC to the millisecond."""
    return format_utc(t, timespec="milliseconds")


@dataclass(frozen=True)
class PassageRow:
    passage_key: str
    site_id: str
    lane_id: str
    time_utc: str
    first_sample: int
    last_sample: int
    axle_count: int
    gross_weight_kg: float | None
    vehicle_class: str | None
    limit_kg: float | None
    verdict: str
    overloaded: bool
    flags: list[str]
    record: dict[str, Any]
    frame_status: str
    frames: list[dict[str, Any]]
    plate: str | None
    plate_colour: str | None
    plate_confidence: float | None
    plate_accepted: bool | None
    plate_review: list[str]
    review_required: bool = False  # undecidable or uncertain verdict: a human decides
    device_reasons: list[dict[str, str]] = field(default_factory=list)  # device unusable
    # what decided the plate and every read of it (PlateResult.record); purged with the plate
    plate_record: dict[str, Any] | None = None


class StationStore:
    """Writer side (one per station process) and reads for status and tests."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        try:
            if readonly:
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0,
                                          check_same_thread=False)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, timeout=10.0, isolation_level=None,
                                          check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self._create()
                if self.get_meta("schema_version") != str(SCHEMA_VERSION):
                    # written only when it changes: a start on a full disk writes nothing
                    self.db.execute("INSERT INTO meta VALUES ('schema_version', ?) ON "
                                    "CONFLICT(key) DO UPDATE SET value = excluded.value",
                                    (str(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            raise database_error(path, exc) from exc
        self.db.row_factory = sqlite3.Row

    def _create(self) -> None:
        self.db.executescript(_SCHEMA)
        cols = {str(r[1]) for r in self.db.execute("PRAGMA table_info(passages)")}
        if "device_reasons" not in cols:  # a version-1 database
            self.db.execute("ALTER TABLE passages ADD COLUMN device_reasons TEXT "
                            "NOT NULL DEFAULT '[]'")
        # purge_* (versions 1 to 3), plate_record (versions 1 to 4)
        for col in ("purge_started_utc", "purged_utc", "plate_record"):
            if col not in cols:
                self.db.execute(f"ALTER TABLE passages ADD COLUMN {col} TEXT")
        case_cols = {str(r[1]) for r in self.db.execute("PRAGMA table_info(cases)")}
        if "unusable_files" not in case_cols:  # versions 1 to 5
            self.db.execute("ALTER TABLE cases ADD COLUMN unusable_files TEXT "
                            "NOT NULL DEFAULT '[]'")
        outbox = {str(r[1]) for r in self.db.execute("PRAGMA table_info(outbox)")}
        if "sent_utc" in outbox:  # version 2: rows forwarded to a sync outbox file
            self.db.execute(f"ALTER TABLE outbox RENAME TO {LEGACY_OUTBOX}")
        self.db.executescript(OUTBOX_SCHEMA)
        self.db.executescript(_INDEXES)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes of one step commit together (or not at all: a failed COMMIT, the
        disk full, is rolled back too, so the next step can begin)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, con: sqlite3.Connection, key: str, value: str) -> None:
        con.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                    "excluded.value", (key, value))

    # ------------------------------------------------------------------ passages
    def find_duplicate(self, lane_id: str, first_sample: int, window_samples: int
                       ) -> str | None:
        row = self.db.execute(
            "SELECT passage_key FROM passages WHERE lane_id = ? AND first_sample BETWEEN ? "
            "AND ? LIMIT 1", (lane_id, first_sample - window_samples,
                              first_sample + window_samples)).fetchone()
        return None if row is None else str(row[0])

    def _stored_plate_record(self, con: sqlite3.Connection, record: dict[str, Any] | None
                             ) -> str | None:
        """``passages.plate_record`` as stored: the reader's record (the same for every
        passage a worker decides) kept once in ``plate_readers`` under its SHA-256, the
        passage naming it (``reader_sha256``)."""
        if record is None:
            return None
        stored = {k: v for k, v in record.items() if k != "reader"}
        reader = record.get("reader")
        if reader is not None:
            text = json.dumps(reader, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            digest = hashlib.sha256(text.encode()).hexdigest()
            con.execute("INSERT OR IGNORE INTO plate_readers (sha256, reader) VALUES (?, ?)",
                        (digest, text))
            stored["reader_sha256"] = digest
        return json.dumps(stored, ensure_ascii=False)

    def plate_record(self, passage: Any) -> dict[str, Any] | None:
        """A passage row's plate record with its reader's record put back (``reader``: None
        when the passage names none or it is missing)."""
        raw = passage["plate_record"]
        if not raw:
            return None
        record: dict[str, Any] = json.loads(raw)
        digest = record.pop("reader_sha256", None)
        if digest is not None:
            row = self.db.execute("SELECT reader FROM plate_readers WHERE sha256 = ?",
                                  (digest,)).fetchone()
            record["reader"] = None if row is None else json.loads(row[0])
        record.setdefault("reader", None)
        return record

    def insert_passage(self, con: sqlite3.Connection, p: PassageRow) -> None:
        con.execute(
            "INSERT INTO passages (passage_key, site_id, lane_id, time_utc, first_sample, "
            "last_sample, axle_count, gross_weight_kg, vehicle_class, limit_kg, verdict, "
            "overloaded, flags, record, frame_status, frames, plate, plate_colour, "
            "plate_confidence, plate_accepted, plate_review, review_required, created_utc, "
            "device_reasons, plate_record) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (p.passage_key, p.site_id, p.lane_id, p.time_utc, p.first_sample, p.last_sample,
             p.axle_count, p.gross_weight_kg, p.vehicle_class, p.limit_kg, p.verdict,
             int(p.overloaded), json.dumps(p.flags), json.dumps(p.record, ensure_ascii=False),
             p.frame_status, json.dumps(p.frames), p.plate, p.plate_colour, p.plate_confidence,
             None if p.plate_accepted is None else int(p.plate_accepted),
             json.dumps(p.plate_review), int(p.review_required), utc_text(),
             json.dumps(p.device_reasons, ensure_ascii=False),
             self._stored_plate_record(con, p.plate_record)))

    def insert_case(self, con: sqlite3.Connection, passage_key: str,
                    material: dict[str, Any] | None = None) -> None:
        """A case waiting to be sealed, with what its package needs (``material``)."""
        con.execute("INSERT INTO cases (passage_key, status, created_utc, material) VALUES "
                    "(?, 'pending_seal', ?, ?)",
                    (passage_key, utc_text(), None if material is None
                     else json.dumps(material, ensure_ascii=False)))

    def sealed_cases(self) -> set[str]:
        return {str(r[0]) for r in self.db.execute(
            "SELECT passage_key FROM cases WHERE status = 'sealed'")}

    def case_material(self, passage_key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT material FROM cases WHERE passage_key = ?",
                              (passage_key,)).fetchone()
        if row is None or not row[0]:
            return None
        material: dict[str, Any] = json.loads(row[0])
        return material

    def recent_frames(self, n: int) -> list[dict[str, Any]]:
        """The frame lists of the newest ``n`` passages (for start-up reconciliation)."""
        out: list[dict[str, Any]] = []
        for row in self.db.execute("SELECT frames FROM passages ORDER BY id DESC LIMIT ?",
                                   (n,)):
            out.extend(json.loads(row[0]))
        return out

    def cases_overview(self) -> list[sqlite3.Row]:
        return list(self.db.execute("SELECT passage_key, status, package_dir FROM cases"))

    def all_passages(self) -> list[sqlite3.Row]:
        return list(self.db.execute("SELECT * FROM passages ORDER BY first_sample"))

    def pooling_rows(self, lane_id: str, after_id: int, limit: int) -> list[dict[str, Any]]:
        """The lane's passages stored after row ``after_id`` (the newest ``limit`` of them, in
        storage order), each with only what pooling σ(v) reads: row id, time, gross, speed,
        axle count, row grosses and flags. SQLite's ``json_extract`` takes the two fields
        that live only in the record, so a pool does not parse whole records."""
        rows = self.db.execute(
            "SELECT id, time_utc, gross_weight_kg, axle_count, flags, "
            "json_extract(record, '$.speed_kmh'), "
            "json_extract(record, '$.row_gross_weights_kg') "
            "FROM passages WHERE lane_id = ? AND id > ? ORDER BY id DESC LIMIT ?",
            (lane_id, after_id, limit)).fetchall()
        return [{"id": int(row_id), "time_utc": str(t), "gross_weight_kg": gross,
                 "axle_count": axles, "flags": json.loads(flags), "speed_kmh": speed,
                 "row_gross_weights_kg": json.loads(row_gross) if row_gross else []}
                for row_id, t, gross, axles, flags, speed, row_gross in reversed(rows)]

    def gaps(self) -> list[tuple[int, int]]:
        return [(int(r[0]), int(r[1])) for r in self.db.execute(
            "SELECT first_index, n_samples FROM gaps")]

    def mark_sealed(self, con: sqlite3.Connection, passage_key: str, *, package_id: str,
                    package_dir: str, manifest_sha256: str, log_index: int, eligibility: str,
                    reasons: list[str], unusable: list[dict[str, str]] | None = None) -> None:
        """``unusable``: originals sealed as missing (gone, empty or cut short; see
        :class:`zhichao.station.sealing.UnusableFile`); None keeps what is recorded."""
        con.execute(
            "UPDATE cases SET status = 'sealed', package_id = ?, package_dir = ?, "
            "manifest_sha256 = ?, log_index = ?, eligibility = ?, eligibility_reasons = ?, "
            "error = NULL, sealed_utc = ?, unusable_files = COALESCE(?, unusable_files) "
            "WHERE passage_key = ?",
            (package_id, package_dir, manifest_sha256, log_index, eligibility,
             json.dumps(reasons), utc_text(),
             None if unusable is None else json.dumps(unusable, ensure_ascii=False),
             passage_key))

    def unusable_files(self, passage_key: str) -> list[dict[str, str]]:
        """The case's originals that were sealed as missing (:meth:`mark_sealed`)."""
        row = self.db.execute("SELECT unusable_files FROM cases WHERE passage_key = ?",
                              (passage_key,)).fetchone()
        out: list[dict[str, str]] = [] if row is None else json.loads(row[0] or "[]")
        return out

    def mark_seal_error(self, con: sqlite3.Connection, passage_key: str, error: str) -> None:
        con.execute("UPDATE cases SET error = ? WHERE passage_key = ?", (error, passage_key))

    def pending_cases(self) -> list[str]:
        return [str(r[0]) for r in self.db.execute(
            "SELECT passage_key FROM cases WHERE status = 'pending_seal' ORDER BY id")]

    def passage(self, key: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM passages WHERE passage_key = ?", (key,)).fetchone()
        return row

    # ------------------------------------------------------------------ outbox, alarms
    def enqueue_passage(self, con: sqlite3.Connection, record: dict[str, Any],
                        station_id: str, key: Ed25519PrivateKey) -> None:
        """The passage's signed record into the outbox, in the passage's transaction."""
        insert_passage(con, record, station_id, key)

    def enqueue_package(self, con: sqlite3.Connection, packed: PackedPackage) -> None:
        """A sealed package into the outbox, in the transaction that marks it sealed."""
        insert_packed(con, packed)

    def sealed_not_queued(self) -> list[tuple[str, str]]:
        """(passage key, package folder) of sealed cases whose package is not in the
        outbox (a package the sealer could not pack; version-2 data)."""
        return [(str(r[0]), str(r[1])) for r in self.db.execute(
            "SELECT passage_key, package_dir FROM cases WHERE status = 'sealed' AND "
            "package_dir IS NOT NULL AND manifest_sha256 NOT IN (SELECT item_sha256 FROM "
            "outbox)")]

    def enqueue_package_dir(self, directory: Path) -> None:
        """Pack and queue a sealed package folder (start-up reconciliation)."""
        with self.transaction() as con:
            insert_package(con, directory)

    def raise_alarm(self, code: str, message_zh: str, detail: str) -> None:
        with self.transaction() as con:
            self.raise_alarm_in(con, code, message_zh, detail)

    def raise_alarm_in(self, con: sqlite3.Connection, code: str, message_zh: str,
                       detail: str) -> None:
        """Inside a transaction (e.g. with the passage that raised it); one active alarm
        per code."""
        active = con.execute("SELECT id FROM alarms WHERE code = ? AND active = 1",
                             (code,)).fetchone()
        if active is None:
            con.execute("INSERT INTO alarms (time_utc, code, message_zh, detail, active) "
                        "VALUES (?, ?, ?, ?, 1)", (utc_text(), code, message_zh, detail))

    def clear_alarm(self, code: str) -> None:
        with self.transaction() as con:
            self.clear_alarm_in(con, code)

    def clear_alarm_in(self, con: sqlite3.Connection, code: str) -> None:
        con.execute("UPDATE alarms SET active = 0 WHERE code = ? AND active = 1", (code,))

    def record_gap(self, con: sqlite3.Connection, first_index: int, n: int, reason: str,
                   *, supersedes: bool = False) -> None:
        """A gap of ``n`` before ``first_index``. ``supersedes``: it counts from the same
        point as an earlier gap of the same reason there, and so includes it (a station
        killed again before it journalled the record after that gap): that one is replaced,
        never counted twice."""
        if supersedes:
            con.execute("DELETE FROM gaps WHERE first_index = ? AND reason = ?",
                        (first_index, reason))
        con.execute("INSERT INTO gaps (first_index, n_samples, reason, time_utc) VALUES "
                    "(?, ?, ?, ?)", (first_index, n, reason, utc_text()))

    def record_gap_once(self, con: sqlite3.Connection, first_index: int, n: int,
                        reason: str) -> bool:
        """:meth:`record_gap` unless the same gap (start, length, reason) is recorded
        already (a damage found again by the next start); True if it was new."""
        if con.execute("SELECT 1 FROM gaps WHERE first_index = ? AND n_samples = ? AND "
                       "reason = ?", (first_index, n, reason)).fetchone() is not None:
            return False
        self.record_gap(con, first_index, n, reason)
        return True

    # ------------------------------------------------------------------ retention
    def _has_table(self, con: sqlite3.Connection, name: str) -> bool:
        return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (name,)).fetchone() is not None

    def _expiry_where(self, con: sqlite3.Connection) -> str:
        """Passages past the cut-off (``:cutoff``) that retention may concern: not purged,
        not a case's, not named by a static re-weighing (linked or sealed: 复检 evidence)."""
        where = ("p.time_utc < :cutoff AND p.purged_utc IS NULL AND NOT EXISTS "
                 "(SELECT 1 FROM cases c WHERE c.passage_key = p.passage_key)")
        if self._has_table(con, "static_readings"):  # the static scale's table, if any
            where += (" AND NOT EXISTS (SELECT 1 FROM static_readings s "
                      "WHERE s.passage_key = p.passage_key)")
        return where

    def start_purge(self, con: sqlite3.Connection, cutoff_utc: str, limit: int,
                    now_utc: str) -> int:
        """Mark up to ``limit`` expired passages whose record the outbox has delivered (or
        never held) as being purged (``purge_started_utc``): from now on no re-weighing can
        be linked to them. In the caller's transaction; how many were marked."""
        cur = con.execute(
            f"UPDATE passages SET purge_started_utc = :now WHERE id IN (SELECT p.id FROM "
            f"passages p WHERE {self._expiry_where(con)} AND p.purge_started_utc IS NULL "
            f"AND NOT {_UNDELIVERED} ORDER BY p.time_utc LIMIT :limit)",
            {"cutoff": cutoff_utc, "now": now_utc, "limit": limit})
        return int(cur.rowcount)

    def purging(self, limit: int) -> list[dict[str, Any]]:
        """Passages marked for purging and not purged yet (this run's, or a killed run's)."""
        return [dict(r) for r in self.db.execute(
            "SELECT passage_key, time_utc, record, frames FROM passages WHERE "
            "purge_started_utc IS NOT NULL AND purged_utc IS NULL ORDER BY id LIMIT ?",
            (limit,))]

    def expiry_counts(self, cutoff_utc: str) -> tuple[int, int]:
        """(expired passages retention may purge now, expired ones held: the outbox has not
        delivered their record)."""
        where = self._expiry_where(self.db)
        due, held = self.db.execute(
            f"SELECT COALESCE(SUM(NOT {_UNDELIVERED}), 0), COALESCE(SUM({_UNDELIVERED}), 0) "
            f"FROM passages p WHERE {where}", {"cutoff": cutoff_utc}).fetchone()
        return int(due), int(held)

    def mark_purged(self, con: sqlite3.Connection, passage_key: str, record: dict[str, Any],
                    now_utc: str) -> bool:
        """The passage's frames are gone: remove its plate (and any plate in its record, and
        its plate reads), drop its frame list, keep the rest (weights, class, verdict,
        time). Newly purged?"""
        cur = con.execute(
            "UPDATE passages SET plate = NULL, plate_colour = NULL, plate_record = NULL, "
            "frames = '[]', "
            "record = ?, purged_utc = ? WHERE passage_key = ? AND "
            "purge_started_utc IS NOT NULL AND purged_utc IS NULL",
            (json.dumps(record, ensure_ascii=False), now_utc, passage_key))
        return cur.rowcount == 1

    def insert_retention_run(self, con: sqlite3.Connection, run: dict[str, Any]) -> None:
        """The audit record of one retention run that removed something."""
        con.execute(
            "INSERT INTO retention_runs (time_utc, cutoff_utc, passage_days, passages_purged, "
            "frames_removed, unlinked_frames_deleted, held_undelivered, trigger, source_zh) "
            "VALUES (:time_utc, :cutoff_utc, :passage_days, :passages_purged, "
            ":frames_removed, :unlinked_frames_deleted, :held_undelivered, :trigger, "
            ":source_zh)", run)

    def retention_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest audit records of retention, newest first."""
        try:
            return [dict(r) for r in self.db.execute(
                "SELECT * FROM retention_runs ORDER BY id DESC LIMIT ?", (limit,))]
        except sqlite3.OperationalError:  # a database of an earlier version, read-only
            return []

    # ------------------------------------------------------------------ version 2's outbox
    def adopt_legacy_outbox(self, station_id: str, key: Ed25519PrivateKey, *,
                            service_link_covered: bool) -> int:
        """Version 2 had two outboxes in a row (``outbox`` here, forwarded to
        ``sync-outbox.sqlite``) and copied passages into its own service database
        directly. Once, on the first start of this version: the file's items (with their
        state and receipts) are taken over, then the rows never forwarded are queued —
        except, with ``service_link_covered`` (no center configured: they went to the
        station's own service), those the direct copy had registered. How many items were
        added; the file is renamed ``*.imported``."""
        added = 0
        legacy_file = self.path.parent / LEGACY_SYNC_OUTBOX
        if legacy_file.exists():
            added += self._import_sync_file(legacy_file)
            legacy_file.rename(legacy_file.with_name(legacy_file.name + ".imported"))
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (LEGACY_OUTBOX,)).fetchone():
            return added
        last_p = int(self.get_meta("service_passage_id") or 0) if service_link_covered else 0
        last_c = int(self.get_meta("service_case_id") or 0) if service_link_covered else 0
        with self.transaction() as con:
            rows = con.execute(
                f"SELECT o.kind, o.payload, c.package_dir FROM {LEGACY_OUTBOX} o "
                "LEFT JOIN passages p ON p.passage_key = o.ref AND o.kind = 'passage' "
                "LEFT JOIN cases c ON c.passage_key = o.ref AND o.kind = 'package' "
                "WHERE o.sent_utc IS NULL AND NOT (o.kind = 'passage' AND p.id <= ?) "
                "AND NOT (o.kind = 'package' AND c.id <= ?) ORDER BY o.id",
                (last_p, last_c)).fetchall()
            for kind, payload, package_dir in rows:
                if kind == "passage":
                    added += insert_passage(con, json.loads(payload)["record"], station_id,
                                            key)[1]
                elif package_dir:
                    added += insert_package(con, Path(package_dir))[1]
            con.execute(f"DROP TABLE {LEGACY_OUTBOX}")
            con.execute("DELETE FROM meta WHERE key IN ('service_passage_id', "
                        "'service_case_id')")
        return added

    def _import_sync_file(self, path: Path) -> int:
        cols = ("item_sha256, kind, station_id, label, log_size, payload, signature, "
                "enqueued_utc, state, attempts, next_attempt_s, last_error, receipt_b64, "
                "receipt_sig, refusal_code, refusal_zh, finished_utc")
        self.db.execute("ATTACH DATABASE ? AS legacy", (str(path),))
        try:
            with self.transaction() as con:
                n = con.execute(f"INSERT OR IGNORE INTO main.outbox ({cols}) SELECT {cols} "
                                "FROM legacy.outbox ORDER BY seq").rowcount
        finally:
            self.db.execute("DETACH DATABASE legacy")
        return int(n)

    # ------------------------------------------------------------------ reads
    def counts(self) -> dict[str, int]:
        q = {
            "passages": "SELECT COUNT(*) FROM passages",
            "overloaded": "SELECT COUNT(*) FROM passages WHERE overloaded = 1",
            "no_frame": "SELECT COUNT(*) FROM passages WHERE frame_status = 'no_frame'",
            "review_required": "SELECT COUNT(*) FROM passages WHERE review_required = 1",
            "device_unusable": "SELECT COUNT(*) FROM passages WHERE device_reasons != '[]'",
            "calibration_drift": "SELECT COUNT(*) FROM passages WHERE flags LIKE "
                                 "'%\"calibration_drift\"%'",
            "cases": "SELECT COUNT(*) FROM cases",
            "sealed": "SELECT COUNT(*) FROM cases WHERE status = 'sealed'",
            "pending_seal": "SELECT COUNT(*) FROM cases WHERE status = 'pending_seal'",
            "outbox_pending": "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
            "alarms_active": "SELECT COUNT(*) FROM alarms WHERE active = 1",
            "gaps": "SELECT COUNT(*) FROM gaps",
            "purged": "SELECT COUNT(*) FROM passages WHERE purged_utc IS NOT NULL",
        }
        out: dict[str, int] = {}
        for k, sql in q.items():
            try:
                out[k] = int(self.db.execute(sql).fetchone()[0])
            except sqlite3.OperationalError:  # a version-1 database read before upgrade
                out[k] = 0
        return out

    def active_alarms(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(
            "SELECT time_utc, code, message_zh, detail FROM alarms WHERE active = 1")]

    def recent_passages(self, n: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(
            "SELECT passage_key, time_utc, axle_count, gross_weight_kg, limit_kg, verdict, "
            "overloaded, plate, frame_status FROM passages ORDER BY id DESC LIMIT ?", (n,))]
