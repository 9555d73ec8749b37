"""The center's ingest logic, free of HTTP: verify, store, record, sign a receipt.

:class:`CenterStore` owns a directory and the sync tables::

    STORE/packages/ab/<manifest_sha256>.zip   accepted packages (content-addressed), or
                                              an S3 bucket (``files``, objectstore.py)
    STORE/quarantine/<content_sha256>.<code>  refused uploads, kept for investigation
    STORE/tmp/                                uploads being received (fsynced before use)

Order of an ingest: the upload is spooled to ``tmp/``; routed by its manifest
(station, log index, checkpoint size); verified offline with
:func:`zhichao.evidence.verify.verify_package` against the station key *registered at the
center* (never the one in the package); its checkpoint is checked for consistency with
the last checkpoint of that station the center accepted (same size → same root; otherwise
an RFC 6962 consistency proof the station sends); then, holding the station's row
``FOR UPDATE`` (one ingest per station at a time across every replica on PostgreSQL; a
process lock on SQLite), the file is kept (fsynced and renamed into ``packages/``, or put
into the bucket), the row and its signed receipt committed, and only then is the accept
hook called. A race with another replica that ends in a unique violation is answered as a
duplicate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from zhichao.common import fsync_dir
from zhichao.evidence import strict_json
from zhichao.evidence.errors import EvidenceError
from zhichao.evidence.manifest import CHECKPOINT_NAME, MANIFEST_NAME
from zhichao.evidence.merkle import verify_consistency
from zhichao.evidence.reader import PackageContents, PackageRefusedError, read_package
from zhichao.evidence.signing import Checkpoint, load_public_key_bytes, verify_checkpoint
from zhichao.evidence.verify import station_log_origin, verify_package
from zhichao.service.center.delivery import HookDelivery
from zhichao.service.center.models import (
    SyncBase,
    SyncPackage,
    SyncPassage,
    SyncQuarantine,
    SyncStation,
)
from zhichao.service.center.outcomes import (
    Accepted,
    AcceptHook,
    Outcome,
    ProofClaim,
    Refusal,
    package_head,
    package_manifest,
    reader_refusal,
)
from zhichao.service.center.tables import (
    check_schema,
    create_tables,
    make_engine,
    register_station,
    trusted_key,
    utc_text,
)
from zhichao.service.objectstore import FolderPackages, PackageFiles
from zhichao.sync.errors import OutboxError
from zhichao.sync.wire import (
    REFUSALS,
    PackageHead,
    check_passage_record,
    passage_bytes,
    refusal_body,
    sha256_hex,
    sign_receipt,
    verify_passage,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_PACKAGE_BYTES = 64 * 1024 * 1024
"""Upload size limit (a guess: a package with a few photos and a short video is a few MB)."""
CONTENT_FACTOR = 2
"""The strict reader refuses an upload whose contents add up to more than this many times
the upload limit (a package is zipped stored, so its contents are smaller than the zip;
a deflate bomb is refused before it is inflated)."""
MAX_PASSAGES_PER_REQUEST = 1000

_BatchResult = tuple[list[dict[str, Any]], list[Accepted], dict[str, tuple[bytes, str]]]
"""(one result per item, newly accepted, forged records by hash)."""


def _named_key_sha256(contents: PackageContents) -> str | None:
    """The key fingerprint a package's manifest names (a claim, checked by the verifier;
    it only picks which of the station's trusted keys to verify with)."""
    try:
        manifest = strict_json.loads(contents.read(MANIFEST_NAME) or b"", MANIFEST_NAME)
        station = strict_json.member(manifest, "station", MANIFEST_NAME)
        return strict_json.string(station, "key_sha256", f"{MANIFEST_NAME}.station")
    except EvidenceError:
        return None


class CenterStore(HookDelivery):
    """Ingest of packages and passages into ``store_dir`` and the sync tables.

    ``schema`` puts the tables in that PostgreSQL schema (created if missing); leave it
    ``None`` on SQLite. ``hook`` is called once per newly accepted item, after its row is
    committed; if it raises, the item stays marked undelivered and :meth:`redeliver`
    retries it (so a hook must be idempotent, keyed by ``item_sha256``). A hook object with
    a ``deliver_many(items)`` method gets the items of one request (a passage batch, a
    redelivery) in one call, all or nothing; if that raises, each item is offered alone.
    """

    def __init__(self, engine: Engine, store_dir: Path, center_key: Ed25519PrivateKey, *,
                 schema: str | None = None, hook: AcceptHook | None = None,
                 max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES, fsync: bool = True,
                 files: PackageFiles | None = None) -> None:
        check_schema(schema)
        if schema is not None:
            engine = engine.execution_options(schema_translate_map={None: schema})
        self.engine = engine
        self.schema = schema
        self.store_dir = Path(store_dir)
        self.center_key = center_key
        self.hook = hook
        self.max_package_bytes = max_package_bytes
        self.fsync = fsync
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.files: PackageFiles = files or FolderPackages(self.store_dir)
        self._lock = threading.Lock()
        for sub in ("quarantine", "tmp"):
            (self.store_dir / sub).mkdir(parents=True, exist_ok=True)
        self._drop_dead_spools()

    def _serial(self) -> AbstractContextManager[Any]:
        """In-process serialisation, for SQLite only (one writer; the embedded center is one
        process). On PostgreSQL, replicas serialise per station on the database: each ingest
        transaction first takes the station's row ``FOR UPDATE``."""
        return self._lock if self.engine.dialect.name == "sqlite" else nullcontext()

    def _drop_dead_spools(self) -> None:
        """Remove uploads half-received by a center process that has died (their sender
        still holds them and re-sends; nothing was recorded for them)."""
        for path in (self.store_dir / "tmp").glob("up-*"):
            try:
                pid = int(path.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if pid == os.getpid():
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                path.unlink(missing_ok=True)
            except PermissionError:
                continue

    # ---------------------------------------------------------------- set-up
    def create_tables(self) -> None:
        create_tables(self.engine, self.schema)

    def register_station(self, station_id: str, public_key_pem: bytes, *,
                         key_name: str | None = None, replace_key: bool = False,
                         previous_key_valid_below: int | None = None) -> None:
        register_station(self.engine, station_id, public_key_pem, key_name=key_name,
                         replace_key=replace_key,
                         previous_key_valid_below=previous_key_valid_below)

    # ---------------------------------------------------------------- queries
    def station_view(self, station_id: str) -> dict[str, Any] | None:
        with self._sessions() as session:
            row = session.get(SyncStation, station_id)
            if row is None:
                return None
            count = session.scalar(select(func.count()).select_from(SyncPackage)
                                   .where(SyncPackage.station_id == station_id))
            passages = session.scalar(select(func.count()).select_from(SyncPassage)
                                      .where(SyncPassage.station_id == station_id))
            return {
                "station_id": row.station_id, "key_name": row.key_name,
                "key_sha256": row.key_sha256, "log_origin": row.log_origin,
                "accepted_size": row.accepted_size,
                "accepted_root": row.accepted_root.hex() if row.accepted_root else None,
                "accepted_checkpoint": row.accepted_note.decode() if row.accepted_note else None,
                "packages": count, "passages": passages,
                "fork_alarm_utc": utc_text(row.fork_alarm_utc) if row.fork_alarm_utc else None,
            }

    def counts(self) -> dict[str, int]:
        """Rows per table, and ``hook_pending``: accepted items the hook has not taken yet
        (0 without a hook; a number that stays up needs a look at the center's log)."""
        with self._sessions() as session:
            def n(model: type[SyncBase]) -> int:
                return int(session.scalar(select(func.count()).select_from(model)) or 0)
            pending = sum(int(session.scalar(select(func.count()).select_from(model).where(
                model.hook_delivered.is_(False))) or 0) for model in (SyncPackage, SyncPassage))
            return {"packages": n(SyncPackage), "passages": n(SyncPassage),
                    "quarantined": n(SyncQuarantine), "stations": n(SyncStation),
                    "hook_pending": pending if self.hook is not None else 0}

    def package_rows(self) -> list[tuple[str, str, int]]:
        """(station_id, manifest_sha256, log_index) of every accepted package."""
        with self._sessions() as session:
            rows = session.execute(select(SyncPackage.station_id, SyncPackage.manifest_sha256,
                                          SyncPackage.log_index)
                                   .order_by(SyncPackage.station_id, SyncPackage.log_index))
            return [(r[0], r[1], r[2]) for r in rows]

    def quarantine_rows(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            rows = session.scalars(select(SyncQuarantine).order_by(SyncQuarantine.id)).all()
            return [{"id": r.id, "station_id": r.station_id, "kind": r.kind, "code": r.code,
                     "claimed_sha256": r.claimed_sha256, "content_sha256": r.content_sha256,
                     "message_zh": r.message_zh, "detail": r.detail,
                     "stored_path": r.stored_path} for r in rows]

    # ---------------------------------------------------------------- spooling
    def spool(self, chunks: Iterable[bytes]) -> tuple[Path, str] | Outcome:
        """Write an upload to ``tmp/``; (path, SHA-256) or a ``too_large`` refusal. The file
        is fsynced just before it is renamed into ``packages/`` or ``quarantine/``."""
        digest = hashlib.sha256()
        fd_path = self.store_dir / "tmp" / f"up-{os.getpid()}-{threading.get_ident()}-" \
            f"{os.urandom(6).hex()}"
        total = 0
        with fd_path.open("wb") as handle:
            for chunk in chunks:
                total += len(chunk)
                if total > self.max_package_bytes:
                    handle.close()
                    fd_path.unlink(missing_ok=True)
                    return self._outcome(Refusal(
                        "package.too_large", f"超过 {self.max_package_bytes} 字节 / over "
                        f"{self.max_package_bytes} bytes", quarantine=False))
                digest.update(chunk)
                handle.write(chunk)
        return fd_path, digest.hexdigest()  # fsynced only once it is to be kept

    # ---------------------------------------------------------------- packages
    def ingest_package(self, claimed_sha256: str, spooled: Path, content_sha256: str,
                       proof: ProofClaim | None) -> Outcome:
        """Ingest one spooled upload (the file is moved into the store or quarantine)."""
        station_id: str | None = None
        try:
            contents = self._read(spooled)
            head = self._head(spooled, contents)
            station_id = head.station_id
            if head.manifest_sha256 != claimed_sha256:
                raise Refusal("package.hash_mismatch",
                              f"{head.manifest_sha256} ≠ {claimed_sha256}")
            with self._sessions() as session:
                station = session.get(SyncStation, head.station_id)
                existing = session.scalar(select(SyncPackage).where(
                    SyncPackage.manifest_sha256 == claimed_sha256))
            if station is None:
                raise Refusal("station.unknown", head.station_id)
            if existing is not None and existing.content_sha256 == content_sha256:
                spooled.unlink(missing_ok=True)
                return self._receipt_outcome(200, existing.receipt, existing.receipt_signature,
                                             duplicate=True)
            with self._sessions() as session:  # a replaced key for what it sealed
                pem, key_name = trusted_key(session, station.station_id,
                                            _named_key_sha256(contents), head.log_index,
                                            head.checkpoint_size) or (
                    station.public_key_pem.encode(), station.key_name)
            key = load_public_key_bytes(pem, "registered key")
            report = verify_package(spooled, key=key, contents=contents)
            if existing is not None:
                if report.ok:  # same evidence, other zip bytes: same receipt
                    spooled.unlink(missing_ok=True)
                    return self._receipt_outcome(200, existing.receipt,
                                                 existing.receipt_signature, duplicate=True)
                raise Refusal("package.conflict", "; ".join(sorted(report.codes())),
                              failed_checks=sorted(report.codes()))
            if not report.ok:
                failed = report.failures()
                codes = sorted({c.code for c in failed})
                if any(c.code == "key.mismatch" for c in failed):
                    raise Refusal("station.key_mismatch", failed[0].message_zh,
                                  failed_checks=codes)
                if codes == ["log.origin"]:
                    raise Refusal("log.origin", failed[0].message_zh, failed_checks=codes)
                raise Refusal("package.invalid", "；".join(c.message_zh for c in failed[:5]),
                              failed_checks=codes)
            try:  # verified with the manifest's key name; the registered one may differ
                checkpoint = verify_checkpoint(contents.read(CHECKPOINT_NAME) or b"",
                                               key_name, key)
            except EvidenceError as exc:
                raise Refusal("checkpoint.invalid", str(exc)) from None
            self._check_origin(station, checkpoint)
            outcome, accepted = self._commit_package(head, checkpoint, spooled, contents,
                                                     content_sha256, proof)
        except Refusal as refusal:
            return self._refuse_upload(refusal, spooled, content_sha256, claimed_sha256,
                                       station_id, "package")
        except BaseException:  # database down, disk full…: nothing recorded, sender retries
            spooled.unlink(missing_ok=True)
            raise
        if accepted is not None:
            self._deliver([accepted])
        return outcome

    @staticmethod
    def _check_origin(station: SyncStation, cp: Checkpoint) -> None:
        """The checkpoint is of the station's log (the rule ``zhichao verify`` applies)."""
        expected = station_log_origin(station.station_id)
        if cp.origin != expected or station.log_origin != expected:
            raise Refusal("log.origin", f"{cp.origin} ≠ {expected}")

    def _read(self, spooled: Path) -> PackageContents:
        """The upload through the strict reader; any refusal (and, as a backstop, any
        error nothing foresaw in the bytes) is a refusal of the upload, never a 5xx."""
        try:
            return read_package(spooled,
                                max_content_bytes=CONTENT_FACTOR * self.max_package_bytes)
        except PackageRefusedError as exc:
            raise reader_refusal(exc) from None
        except (ValueError, ArithmeticError, LookupError, RecursionError) as exc:
            log.exception("reading upload %s", spooled.name)
            raise Refusal("package.unreadable", f"{type(exc).__name__}: {str(exc)[:200]}",
                          failed_checks=["package.malformed"]) from None

    @staticmethod
    def _head(spooled: Path, contents: PackageContents) -> PackageHead:
        """Route the package; a package too broken to route is refused with the codes
        ``zhichao verify`` gives it."""
        try:
            head = package_head(contents)
        except Refusal as refusal:
            codes = sorted(verify_package(spooled, contents=contents).codes())
            raise Refusal("package.unreadable", refusal.detail,
                          failed_checks=codes) from None
        if not head.package_id.startswith(f"{head.station_id}-"):
            # ids are station-time-lane-hash: another station's id registered first would
            # make the genuine package fail at the service for ever
            raise Refusal("package.id_station", f"{head.package_id} ∉ {head.station_id}")
        return head

    def _commit_package(self, head: PackageHead, cp: Checkpoint, spooled: Path,
                        contents: PackageContents, content_sha256: str,
                        proof: ProofClaim | None) -> tuple[Outcome, Accepted | None]:
        try:
            return self._commit_package_once(head, cp, spooled, contents, content_sha256,
                                             proof)
        except IntegrityError:  # a replica committed the same package meanwhile
            with self._sessions() as session:
                existing = session.scalar(select(SyncPackage).where(
                    SyncPackage.manifest_sha256 == head.manifest_sha256))
            if existing is None:
                raise
            spooled.unlink(missing_ok=True)
            return self._receipt_outcome(200, existing.receipt, existing.receipt_signature,
                                         duplicate=True), None

    def _commit_package_once(self, head: PackageHead, cp: Checkpoint, spooled: Path,
                             contents: PackageContents, content_sha256: str,
                             proof: ProofClaim | None) -> tuple[Outcome, Accepted | None]:
        with self._serial(), self._sessions.begin() as session:
            # The station's row, FOR UPDATE: one ingest per station at a time, across every
            # replica (its accepted checkpoint is read and advanced below).
            station = session.get(SyncStation, head.station_id, with_for_update=True)
            assert station is not None
            existing = session.scalar(select(SyncPackage).where(
                SyncPackage.manifest_sha256 == head.manifest_sha256))
            if existing is not None:  # a concurrent duplicate won the race
                spooled.unlink(missing_ok=True)
                return self._receipt_outcome(200, existing.receipt, existing.receipt_signature,
                                             duplicate=True), None
            self._check_consistency(station, cp, proof)
            taken = session.scalar(select(SyncPackage.manifest_sha256).where(
                SyncPackage.station_id == head.station_id,
                SyncPackage.log_index == head.log_index))
            if taken is not None:
                raise Refusal("log.index_taken", f"第 {head.log_index} 条 / entry "
                              f"{head.log_index} is {taken}")
            if cp.size > station.accepted_size:
                station.accepted_size = cp.size
                station.accepted_root = cp.root
                station.accepted_note = contents.read(CHECKPOINT_NAME)
            sha = head.manifest_sha256
            size_bytes = spooled.stat().st_size
            # Kept before the row commits: a crash in between leaves an unreferenced file or
            # object (harmless; the retry keeps the same one), never a row without bytes.
            location = self.files.keep(spooled, manifest_sha256=sha,
                                       content_sha256=content_sha256, fsync=self.fsync)
            now = datetime.now(UTC)
            receipt, signature = sign_receipt({
                "kind": "package", "station_id": head.station_id, "item_sha256": sha,
                "package_id": head.package_id, "content_sha256": content_sha256,
                "log_index": head.log_index, "checkpoint_size": cp.size,
                "received_utc": utc_text(now)}, self.center_key)
            session.add(SyncPackage(
                manifest_sha256=sha, station_id=head.station_id, package_id=head.package_id,
                content_sha256=content_sha256, size_bytes=size_bytes,
                log_index=head.log_index, checkpoint_size=cp.size,
                stored_path=location, received_utc=now,
                receipt=receipt, receipt_signature=signature, hook_delivered=False))
        accepted = Accepted("package", head.station_id, sha, json.loads(receipt),
                            self.files.local_copy(location),
                            manifest=package_manifest(contents), location=location)
        return self._receipt_outcome(201, receipt, signature, duplicate=False), accepted

    @staticmethod
    def _check_consistency(station: SyncStation, cp: Checkpoint, proof: ProofClaim | None
                           ) -> None:
        accepted = station.accepted_size
        if accepted == 0 or station.accepted_root is None:
            return  # the first checkpoint of a station is trusted on first use
        if cp.size == accepted:
            if cp.root != station.accepted_root:
                raise Refusal("log.fork", f"树大小 {accepted} 有两个不同的根 / two roots for "
                              f"size {accepted}")
            return
        first, second = sorted((cp.size, accepted))
        if proof is None or (proof.first, proof.second) != (first, second):
            raise Refusal("log.proof_needed", f"{first} → {second}", proof_from=first,
                          proof_to=second, accepted_size=accepted)
        if cp.size < accepted:
            ok = verify_consistency(first, second, cp.root, station.accepted_root, proof.hashes)
        else:
            ok = verify_consistency(first, second, station.accepted_root, cp.root, proof.hashes)
        if not ok:
            raise Refusal("log.fork", f"一致性证明 {first} → {second} 不成立 / consistency "
                          f"proof {first} -> {second} fails")

    # ---------------------------------------------------------------- checkpoints
    def ingest_checkpoint(self, station_id: str, note: bytes, proof: ProofClaim | None
                          ) -> Outcome:
        """Accept a station's signed checkpoint if it extends (or equals) the accepted one."""
        with self._sessions() as session:
            station = session.get(SyncStation, station_id)
        if station is None:
            return self._outcome(Refusal("station.unknown", station_id, quarantine=False))
        sha = sha256_hex(note)
        try:
            key = load_public_key_bytes(station.public_key_pem.encode(), "registered key")
            try:
                cp = verify_checkpoint(note, station.key_name, key)
            except EvidenceError as exc:
                raise Refusal("checkpoint.invalid", str(exc)) from None
            self._check_origin(station, cp)
            with self._serial(), self._sessions.begin() as session:
                row = session.get(SyncStation, station_id, with_for_update=True)
                assert row is not None
                self._check_consistency(row, cp, proof)
                if cp.size > row.accepted_size:
                    row.accepted_size, row.accepted_root, row.accepted_note = (
                        cp.size, cp.root, note)
                accepted = row.accepted_size
        except Refusal as refusal:
            if not refusal.quarantine:
                return self._outcome(refusal)
            if refusal.code == "log.fork":
                self._raise_fork_alarm(station_id)
            return Outcome(REFUSALS[refusal.code][0],
                           self._quarantine_bytes(note, sha, None, station_id, "checkpoint",
                                                  refusal))
        return Outcome(200, {"status": "accepted", "checkpoint_size": cp.size,
                             "accepted_size": accepted})

    # ---------------------------------------------------------------- passages
    def ingest_passages(self, station_id: str, items: list[Any]) -> Outcome:
        """Ingest a batch of signed passage records; one result (receipt or refusal) each."""
        with self._sessions() as session:
            station = session.get(SyncStation, station_id)
        if station is None:
            return self._outcome(Refusal("station.unknown", station_id, quarantine=False))
        if len(items) > MAX_PASSAGES_PER_REQUEST:
            return self._outcome(Refusal("request.malformed", f"more than "
                                         f"{MAX_PASSAGES_PER_REQUEST} items"))
        key = load_public_key_bytes(station.public_key_pem.encode(), "registered key")
        try:
            results, accepted, forged = self._passage_transaction(station_id, key, items)
        except DataError:  # one record the database refuses must not fail the others
            log.warning("station %s: the database refused a passage batch; ingesting its "
                        "%d items one by one", station_id, len(items), exc_info=True)
            results, accepted, forged = self._passages_one_by_one(station_id, key, items)
        for sha, (data, where) in forged.items():  # quarantined after the batch committed
            body = self._quarantine_bytes(data, sha, sha, station_id, "passage",
                                          Refusal("passage.signature", where))
            results = [body if r.get("_forged") == sha else r for r in results]
        self._deliver(accepted)
        return Outcome(200, {"results": results})

    def _passage_transaction(self, station_id: str, key: Ed25519PublicKey, items: list[Any],
                             first_index: int = 0) -> _BatchResult:
        try:
            return self._passage_batch(station_id, key, items, first_index)
        except IntegrityError:  # another replica took some of these meanwhile: duplicates
            return self._passage_batch(station_id, key, items, first_index)

    def _passages_one_by_one(self, station_id: str, key: Ed25519PublicKey, items: list[Any]
                             ) -> _BatchResult:
        """Each item in a transaction of its own; one the database refuses (a value its
        column cannot hold) is refused as ``passage.malformed``, the others go on."""
        results: list[dict[str, Any]] = []
        accepted: list[Accepted] = []
        forged: dict[str, tuple[bytes, str]] = {}
        for i, item in enumerate(items):
            try:
                one, new, bad = self._passage_transaction(station_id, key, [item], i)
            except DataError as exc:
                log.error("station %s: the database refused passage items[%d]: %s",
                          station_id, i, exc.orig)
                one, new, bad = [refusal_body(
                    "passage.malformed", f"items[{i}]: the database cannot store it "
                    f"({type(exc.orig).__name__})")], [], {}
            results += one
            accepted += new
            forged.update(bad)
        return results, accepted, forged

    def _passage_batch(self, station_id: str, key: Ed25519PublicKey, items: list[Any],
                       first_index: int = 0) -> _BatchResult:
        """One transaction for a batch: (results, newly accepted, forged by hash);
        ``first_index``: the index of ``items[0]`` in the request (for messages)."""
        results: list[dict[str, Any]] = []
        accepted: list[Accepted] = []
        forged: dict[str, tuple[bytes, str]] = {}
        with self._serial(), self._sessions.begin() as session, session.no_autoflush:
            # One batch per station at a time across replicas, so the duplicate look-up
            # below sees every record another replica committed for this station.
            session.get(SyncStation, station_id, with_for_update=True)
            seen: dict[str, dict[str, Any]] = {}
            shas = []
            for item in items:
                try:
                    shas.append(sha256_hex(base64.b64decode(str(item["record_b64"]))))
                except (KeyError, TypeError, ValueError, binascii.Error):
                    continue
            for row in session.scalars(select(SyncPassage).where(
                    SyncPassage.record_sha256.in_(shas))):  # duplicates, in one query
                seen[row.record_sha256] = self._receipt_outcome(
                    200, row.receipt, row.receipt_signature, duplicate=True).body
            for i, item in enumerate(items):
                result = self._one_passage(session, station_id, key, first_index + i, item,
                                           seen, accepted, forged)
                results.append(result)
        return results, accepted, forged

    def _one_passage(self, session: Session, station_id: str, key: Ed25519PublicKey, i: int,
                     item: Any, seen: dict[str, dict[str, Any]], accepted: list[Accepted],
                     forged: dict[str, tuple[bytes, str]]) -> dict[str, Any]:
        where = f"items[{i}]"
        try:
            data = base64.b64decode(str(item["record_b64"]), validate=True)
            signature = str(item["signature"])
            record = strict_json.loads(data, f"{where}.record_b64")
            if passage_bytes(record, where) != data:
                raise ValueError("record bytes are not RFC 8785 canonical")
        except (KeyError, TypeError, ValueError, binascii.Error, OutboxError,
                EvidenceError) as exc:
            return refusal_body("passage.malformed", f"{where}: {exc}")
        sha = sha256_hex(data)
        if sha in seen:
            return seen[sha]
        try:  # what the tables and the accept hook need, before any receipt
            check_passage_record(record, where)
        except OutboxError as exc:
            return refusal_body("passage.malformed", str(exc))
        if not verify_passage(data, signature, key):
            forged.setdefault(sha, (data, where))
            return {"_forged": sha}
        now = datetime.now(UTC)
        receipt, rsig = sign_receipt({
            "kind": "passage", "station_id": station_id, "item_sha256": sha,
            "time_utc": record["time_utc"], "received_utc": utc_text(now)}, self.center_key)
        session.add(SyncPassage(record_sha256=sha, station_id=station_id, record=data,
                                station_signature=signature, time_utc=record["time_utc"],
                                received_utc=now, receipt=receipt, receipt_signature=rsig,
                                hook_delivered=False))
        result = self._receipt_outcome(201, receipt, rsig, duplicate=False).body
        accepted.append(Accepted("passage", station_id, sha, json.loads(receipt),
                                 record=record))
        seen[sha] = result
        return result

    def _fsync_file(self, path: Path) -> None:
        if self.fsync:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # ---------------------------------------------------------------- refusals
    @staticmethod
    def _receipt_outcome(status: int, receipt: bytes, signature: str, *, duplicate: bool
                         ) -> Outcome:
        return Outcome(status, {"status": "duplicate" if duplicate else "accepted",
                                "receipt": json.loads(receipt),
                                "receipt_b64": base64.b64encode(receipt).decode(),
                                "signature": signature})

    @staticmethod
    def _outcome(refusal: Refusal) -> Outcome:
        return Outcome(REFUSALS[refusal.code][0], refusal.body())

    def _refuse_upload(self, refusal: Refusal, spooled: Path, content_sha256: str,
                       claimed: str | None, station_id: str | None, kind: str) -> Outcome:
        if not refusal.quarantine:
            spooled.unlink(missing_ok=True)
            return self._outcome(refusal)
        dest = self.store_dir / "quarantine" / f"{content_sha256}.{refusal.code}"
        self._fsync_file(spooled)
        os.replace(spooled, dest)
        if self.fsync:
            fsync_dir(dest.parent)
        if refusal.code in ("log.fork", "log.index_taken") and station_id is not None:
            self._raise_fork_alarm(station_id)
        return self._record_quarantine(refusal, dest, content_sha256, claimed, station_id, kind)

    def _quarantine_bytes(self, data: bytes, content_sha256: str, claimed: str | None,
                          station_id: str | None, kind: str, refusal: Refusal
                          ) -> dict[str, Any]:
        dest = self.store_dir / "quarantine" / f"{content_sha256}.{refusal.code}"
        tmp = dest.with_name(dest.name + ".tmp")
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, dest)
        return self._record_quarantine(refusal, dest, content_sha256, claimed, station_id,
                                       kind).body

    def _record_quarantine(self, refusal: Refusal, dest: Path, content_sha256: str,
                           claimed: str | None, station_id: str | None, kind: str) -> Outcome:
        body = refusal.body()
        try:
            with self._sessions.begin() as session:
                row = SyncQuarantine(
                    station_id=station_id, claimed_sha256=claimed,
                    content_sha256=content_sha256, kind=kind, code=refusal.code,
                    message_zh=body["message_zh"], detail=json.dumps(body, ensure_ascii=False),
                    stored_path=dest.relative_to(self.store_dir).as_posix(),
                    received_utc=datetime.now(UTC))
                session.add(row)
                session.flush()
                body["quarantine_id"] = row.id
        except IntegrityError:  # the same bytes were refused for the same reason before
            with self._sessions() as session:
                body["quarantine_id"] = session.scalar(select(SyncQuarantine.id).where(
                    SyncQuarantine.content_sha256 == content_sha256,
                    SyncQuarantine.code == refusal.code))
        return Outcome(REFUSALS[refusal.code][0], body)

    def _raise_fork_alarm(self, station_id: str) -> None:
        with self._sessions.begin() as session:
            row = session.get(SyncStation, station_id)
            if row is not None and row.fork_alarm_utc is None:
                row.fork_alarm_utc = datetime.now(UTC)
        log.error("station %s: log fork detected; upload quarantined", station_id)


__all__ = ["AcceptHook", "Accepted", "CenterStore", "Outcome", "ProofClaim", "create_tables",
           "make_engine", "register_station", "utc_text"]
