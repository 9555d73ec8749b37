"""The station's durable outbox: one SQLite table ``outbox`` (WAL, ``synchronous=FULL``).

A running station keeps it in ``station.db``, where the pipeline inserts each passage's
item in the passage's own transaction and each package's in the seal's
(:func:`insert_passage`, :func:`insert_packed` on the store's connection): one outbox,
nothing to forward. :class:`Outbox` opens the table in any SQLite file (``station.db``
for the station's uploader, a file of its own for ``zhichao sync enqueue|push``).

Every item is keyed by its content hash (``item_sha256``: the manifest SHA-256 of a
package, the SHA-256 of a passage record's canonical JSON) and enqueued in one
transaction, so enqueueing the same thing twice (e.g. after a crash between sealing and
enqueueing) stores it once. An item moves ``pending`` → ``done`` (with the center's
signed receipt) or → ``refused`` (with the center's code and zh-CN reason) in one
transaction each; a crash at any moment leaves it pending, and re-sending it is harmless
because the center answers a duplicate with the same receipt. SQLite in WAL mode with
``synchronous=FULL`` fsyncs the WAL on every commit, so a committed state survives a
power cut. The payload of a done item is dropped (the sealed package stays in the
station's package folder); the receipt is kept.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zhichao.common import format_utc
from zhichao.evidence.manifest import MANIFEST_NAME
from zhichao.sync.errors import OutboxError
from zhichao.sync.wire import (
    pack_package,
    read_package_head,
    sha256_hex,
    sign_passage,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    item_sha256      TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL CHECK (kind IN ('package', 'passage')),
    station_id       TEXT NOT NULL,
    label            TEXT NOT NULL,
    log_size         INTEGER,
    payload          BLOB,
    signature        TEXT,
    enqueued_utc     TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'done', 'refused')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_s   REAL NOT NULL DEFAULT 0,
    last_error       TEXT,
    receipt_b64      TEXT,
    receipt_sig      TEXT,
    refusal_code     TEXT,
    refusal_zh       TEXT,
    finished_utc     TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_s, seq);
"""


def _now_text() -> str:
    return format_utc()


@dataclass(frozen=True)
class Item:
    seq: int
    item_sha256: str
    kind: str
    station_id: str
    label: str
    log_size: int | None
    payload: bytes
    signature: str | None
    attempts: int


@dataclass(frozen=True)
class Backlog:
    """Refused and long-failing items of the outbox (:meth:`Outbox.backlog`)."""

    refused_by_code: dict[str, int]
    stalled: int  # pending items tried at least the given number of times
    oldest_pending_utc: str | None

    @property
    def refused(self) -> int:
        return sum(self.refused_by_code.values())


@dataclass(frozen=True)
class PackedPackage:
    """A sealed package packed for upload (:func:`pack`), ready to insert."""

    manifest_sha256: str
    station_id: str
    package_id: str
    checkpoint_size: int | None
    data: bytes


def pack(directory: Path) -> PackedPackage:
    """Pack a sealed package folder (raises :class:`OutboxError` if it is not one)."""
    data = pack_package(directory)
    head = read_package_head(data, str(directory))
    return PackedPackage(head.manifest_sha256, head.station_id, head.package_id,
                         head.checkpoint_size, data)


def _insert(con: sqlite3.Connection, row: dict[str, Any]) -> bool:
    cur = con.execute(
        "INSERT OR IGNORE INTO outbox (item_sha256, kind, station_id, label, log_size, "
        "payload, signature, enqueued_utc) VALUES (:item_sha256, :kind, :station_id, "
        ":label, :log_size, :payload, :signature, :enqueued_utc)", row)
    return cur.rowcount == 1


def has_item(con: sqlite3.Connection, item_sha256: str) -> bool:
    return con.execute("SELECT 1 FROM outbox WHERE item_sha256 = ?", (item_sha256,)
                       ).fetchone() is not None


def insert_packed(con: sqlite3.Connection, packed: PackedPackage) -> bool:
    """Insert a packed package on ``con`` (in the caller's transaction); newly added?"""
    return _insert(con, {"item_sha256": packed.manifest_sha256, "kind": "package",
                         "station_id": packed.station_id, "label": packed.package_id,
                         "log_size": packed.checkpoint_size, "payload": packed.data,
                         "signature": None, "enqueued_utc": _now_text()})


def insert_package(con: sqlite3.Connection, directory: Path) -> tuple[str, bool]:
    """Pack (unless already queued or sent) and insert a sealed package folder on
    ``con``; (manifest_sha256, newly added?)."""
    manifest = Path(directory) / MANIFEST_NAME
    if manifest.is_file():
        known = sha256_hex(manifest.read_bytes())
        if has_item(con, known):
            return known, False  # already queued or sent: no need to pack it again
    packed = pack(directory)
    return packed.manifest_sha256, insert_packed(con, packed)


def insert_passage(con: sqlite3.Connection, record: Any, station_id: str,
                   key: Ed25519PrivateKey) -> tuple[str, bool]:
    """Sign and insert one passage record on ``con`` (in the caller's transaction);
    (record SHA-256, newly added?)."""
    data, signature = sign_passage(record, key)
    sha = sha256_hex(data)
    added = _insert(con, {"item_sha256": sha, "kind": "passage", "station_id": station_id,
                          "label": str(record["time_utc"]), "log_size": None,
                          "payload": data, "signature": signature,
                          "enqueued_utc": _now_text()})
    return sha, added


class Outbox:
    """The outbox file at ``path`` (created if missing). Safe to share between the process
    that seals (enqueues) and the uploader process; use one uploader at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"{self.path}: cannot open the outbox ({exc})") from None
        if str(mode).lower() != "wal":
            raise OutboxError(f"{self.path}: SQLite refused WAL mode (got {mode})")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---------------------------------------------------------------- enqueue
    def enqueue_package(self, directory: Path) -> tuple[str, bool]:
        """Enqueue a sealed package folder; (manifest_sha256, newly added?).

        Raises
        ------
        OutboxError
            If the folder is not a sealed package.
        """
        return insert_package(self._db, directory)

    def enqueue_tree(self, packages_dir: Path) -> tuple[int, int]:
        """Enqueue every sealed package folder directly under ``packages_dir`` (those being
        written, ``*.partial``, are skipped); (added, already present). Run at station
        start-up, it closes the window between sealing a package and enqueueing it."""
        added = present = 0
        for folder in sorted(Path(packages_dir).iterdir()):
            if folder.is_dir() and not folder.name.endswith(".partial") and (
                    folder / MANIFEST_NAME).is_file():
                _, new = self.enqueue_package(folder)
                added, present = added + new, present + (not new)
        return added, present

    def enqueue_passage(self, record: Any, station_id: str, key: Ed25519PrivateKey
                        ) -> tuple[str, bool]:
        """Sign and enqueue one passage record; (record SHA-256, newly added?)."""
        return insert_passage(self._db, record, station_id, key)

    # ---------------------------------------------------------------- the uploader's side
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several state changes in one transaction (one fsync instead of many)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def due(self, kind: str, limit: int, now_s: float | None = None,
            max_delay_s: float | None = None) -> list[Item]:
        """Pending items of ``kind`` whose retry time has come, oldest first.

        ``max_delay_s`` (the longest back-off): an item whose retry time lies further
        ahead than that was put off by a clock that has since been set back (retry
        times are wall-clock instants), and is due now.
        """
        now = time.time() if now_s is None else now_s
        late = float("inf") if max_delay_s is None else now + max_delay_s
        rows = self._db.execute(
            "SELECT seq, item_sha256, kind, station_id, label, log_size, payload, signature, "
            "attempts FROM outbox WHERE state = 'pending' AND kind = ? "
            "AND (next_attempt_s <= ? OR next_attempt_s > ?) ORDER BY seq LIMIT ?",
            (kind, now, late, limit)).fetchall()
        return [Item(*row) for row in rows]

    def next_due_s(self, now_s: float | None = None, max_delay_s: float | None = None
                   ) -> float | None:
        """The earliest retry time of a pending item (one put off by more than
        ``max_delay_s`` by a clock set back counts as due ``now_s``)."""
        row = self._db.execute("SELECT MIN(next_attempt_s) FROM outbox WHERE state = 'pending'"
                               ).fetchone()
        if row[0] is None:
            return None
        now = time.time() if now_s is None else now_s
        if max_delay_s is not None and float(row[0]) > now + max_delay_s:
            return now
        return float(row[0])

    def backlog(self, stalled_attempts: int) -> Backlog:
        """What the station's health needs of the outbox: refusals by code, pending items
        tried at least ``stalled_attempts`` times, the oldest pending item's enqueue time."""
        refused = {str(code): int(n) for code, n in self._db.execute(
            "SELECT refusal_code, COUNT(*) FROM outbox WHERE state = 'refused' "
            "GROUP BY refusal_code ORDER BY refusal_code")}
        stalled, oldest = self._db.execute(
            "SELECT SUM(attempts >= ?), MIN(enqueued_utc) FROM outbox WHERE state = 'pending'",
            (stalled_attempts,)).fetchone()
        return Backlog(refused, int(stalled or 0), oldest)

    def mark_done(self, item_sha256: str, receipt_b64: str, receipt_sig: str) -> None:
        self._db.execute(
            "UPDATE outbox SET state = 'done', payload = NULL, receipt_b64 = ?, receipt_sig = ?, "
            "finished_utc = ?, last_error = NULL WHERE item_sha256 = ? AND state = 'pending'",
            (receipt_b64, receipt_sig, _now_text(), item_sha256))

    def mark_refused(self, item_sha256: str, code: str, message_zh: str) -> None:
        """A permanent refusal: kept (with its payload) for a human, never retried."""
        self._db.execute(
            "UPDATE outbox SET state = 'refused', refusal_code = ?, refusal_zh = ?, "
            "finished_utc = ? WHERE item_sha256 = ? AND state = 'pending'",
            (code, message_zh, _now_text(), item_sha256))

    def mark_failed(self, item_sha256: str, error: str, retry_at_s: float) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_s = ? "
            "WHERE item_sha256 = ? AND state = 'pending'", (error[:2000], retry_at_s,
                                                            item_sha256))

    def retry_refused(self, item_sha256: str) -> bool:
        """Put a refused item back in the queue (after a human fixed the cause)."""
        cur = self._db.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_s = 0, "
            "refusal_code = NULL, refusal_zh = NULL, finished_utc = NULL "
            "WHERE item_sha256 = ? AND state = 'refused'", (item_sha256,))
        return cur.rowcount == 1

    # ---------------------------------------------------------------- status
    def depth(self) -> int:
        """Items still to upload (pending)."""
        return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'"
                                    ).fetchone()[0])

    def status(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {}
        for kind, state, n in self._db.execute(
                "SELECT kind, state, COUNT(*) FROM outbox GROUP BY kind, state"):
            counts.setdefault(kind, {})[state] = n
        oldest = self._db.execute(
            "SELECT MIN(enqueued_utc) FROM outbox WHERE state = 'pending'").fetchone()[0]
        last_error = self._db.execute(
            "SELECT last_error FROM outbox WHERE state = 'pending' AND last_error IS NOT NULL "
            "ORDER BY seq LIMIT 1").fetchone()
        refused = [{"item_sha256": r[0], "kind": r[1], "label": r[2], "code": r[3],
                    "message_zh": r[4]} for r in self._db.execute(
            "SELECT item_sha256, kind, label, refusal_code, refusal_zh FROM outbox "
            "WHERE state = 'refused' ORDER BY seq")]
        return {"path": str(self.path), "depth": self.depth(), "counts": counts,
                "oldest_pending_utc": oldest,
                "last_error": last_error[0] if last_error else None, "refused": refused}

    def receipt(self, item_sha256: str) -> tuple[str, str] | None:
        row = self._db.execute("SELECT receipt_b64, receipt_sig FROM outbox WHERE "
                               "item_sha256 = ? AND state = 'done'", (item_sha256,)).fetchone()
        return None if row is None else (row[0], row[1])

    def items(self) -> list[dict[str, Any]]:
        """Every item without its payload (for audits and tests)."""
        cols = ("seq", "item_sha256", "kind", "station_id", "label", "state", "attempts",
                "receipt_b64", "receipt_sig", "refusal_code")
        rows = self._db.execute(f"SELECT {', '.join(cols)} FROM outbox ORDER BY seq")
        return [dict(zip(cols, r, strict=True)) for r in rows]


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)


def last_done_utc(path: Path) -> str | None:
    """The newest receipt's time in the outbox file at ``path`` (read-only), or None."""
    if not path.exists():
        return None
    con = _read_only(path)
    try:
        row = con.execute("SELECT MAX(finished_utc) FROM outbox WHERE state = 'done'"
                          ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return None if row is None or row[0] is None else str(row[0])


def state_counts(path: Path) -> tuple[dict[str, int], str | None]:
    """Items per state in the outbox file at ``path`` (read-only) and the oldest pending
    item's last error."""
    counts = {"pending": 0, "done": 0, "refused": 0}
    last_error: str | None = None
    if not path.exists():
        return counts, None
    con = _read_only(path)
    try:
        for state, n in con.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"):
            counts[str(state)] = int(n)
        err = con.execute("SELECT last_error FROM outbox WHERE state = 'pending' AND "
                          "last_error IS NOT NULL ORDER BY seq LIMIT 1").fetchone()
        last_error = None if err is None else str(err[0])
    except sqlite3.Error:
        pass
    finally:
        con.close()
    return counts, last_error
