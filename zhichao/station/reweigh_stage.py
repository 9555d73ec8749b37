"""Static re-weighing at the station: store the scale's readings, seal linked ones.

:class:`ReweighStage` is driven by whichever process holds the station's evidence log: the
running station (its pipeline thread calls :meth:`ReweighStage.step` about once a second)
or, while no station runs, ``zhichao reweigh`` itself. An officer's link
(``zhichao reweigh link``) only marks a reading ``linked`` in ``station.db``; the holder of
the log then seals the supplementary package (:func:`zhichao.evidence.reweigh.seal_reweigh`:
the reading, its flags, the scale's certificate, the officer, the original it names, the
decision with the static weight, and the 复检记录 in HTML and PDF unless
``evidence.render_documents`` is off), fsyncs it and, in one transaction, marks the reading
``sealed`` and queues the package in the outbox (uploaded like any package). In a running
station (and ``zhichao reweigh listen``) the package is written by a sealing thread of its
own and recorded by the pipeline thread at its next step, so that rendering the 复检记录
(a few hundred ms) never holds up weighing. A case whose
own package is not sealed yet waits. A kill between sealing and that transaction leaves a
package folder that verifies: it is adopted on the next pass (one that does not is moved
to ``quarantine/`` and sealed again).
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zhichao.evidence.errors import EvidenceError
from zhichao.evidence.inputs import CaseInputs, DeviceStatus, ImageRef, PlateResult, VehicleRecord
from zhichao.evidence.reweigh import OriginalRef, seal_reweigh, vehicle_record_sha256
from zhichao.evidence.verify import verify_package
from zhichao.station.config import StationConfig
from zhichao.station.sealing import Sealer, fsync_tree, material_from_json
from zhichao.station.static_scale import (
    FAILURES_FOR_ALARM,
    ReadingStore,
    ScaleReader,
    SettledReading,
    certificate_of,
    reading_of,
)
from zhichao.station.store import StationStore
from zhichao.station.sync_outbox import insert_package

LOG = logging.getLogger("zhichao.station")
SEAL_JOIN_S = 30.0  # stop_reader waits this long for the supplement under way
ALARM_CODE = "static_scale_failed"
ALARM_ZH = "静态复检衡器连续无读数（连接中断或仪表故障），复检无法记录，请检查衡器和仪表"
SEAL_ALARM_CODE = "reweigh_sealing_failed"
SEAL_ALARM_ZH = "静态复检补充证据包封存失败，已关联的复检尚未形成证据，请检查（详见日志）"


@dataclass(frozen=True)
class _Job:
    """A linked reading to seal: its inputs read from the store, its folder."""

    reading_id: int
    passage_key: str
    inputs: CaseInputs
    original: OriginalRef
    out: Path


class ReweighStage:
    """Readings in, supplementary packages out (see the module docstring)."""

    def __init__(self, cfg: StationConfig, store: StationStore, sealer: Sealer) -> None:
        self.cfg = cfg
        self.store = store
        self.sealer = sealer
        self.cert = certificate_of(cfg)
        self.readings = ReadingStore(cfg.data_dir / "station.db")
        self.reader: ScaleReader | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0
        active = {a["code"] for a in store.active_alarms()}
        self.alarm_open = ALARM_CODE in active
        self.seal_alarm_open = SEAL_ALARM_CODE in active
        self.sealed = 0
        # the sealing thread (started with the reader, by a running station or `listen`)
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.outcomes: queue.Queue[tuple[_Job, Exception | None]] = queue.Queue()
        self._in_flight: set[int] = set()
        self._sealer_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the scale
    def start_reader(self) -> None:
        """Start reading the scale, and the sealing thread that :meth:`step` hands linked
        readings to."""
        self.reader = ScaleReader(self.cfg)
        self._thread = self.reader.start(self._stop)
        self._sealer_thread = threading.Thread(target=self._seal_loop, name="reweigh-sealer",
                                               daemon=True)
        self._sealer_thread.start()

    def stop_reader(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sealer_thread is not None:  # finish the job under way, record it
            self.jobs.put(None)
            self._sealer_thread.join(timeout=SEAL_JOIN_S)
            if self._sealer_thread.is_alive():  # Sealer.close() waits for its append
                LOG.warning("static re-weighing still sealing at stop: the evidence log "
                            "closes after it")
            try:
                self.record_outcomes()
            except Exception:  # a sealed folder not recorded is adopted at the next pass
                LOG.exception("static re-weighing outcomes not recorded at stop")
            self._sealer_thread = None

    def collect(self) -> int:
        """Store the settled readings the reader handed over; count its failures (an
        alarm after :data:`FAILURES_FOR_ALARM` in a row, closed at the next reading).
        How many readings were stored."""
        if self.reader is None:
            return 0
        stored = 0
        while True:
            try:
                item = self.reader.out.get_nowait()
            except queue.Empty:
                return stored
            if isinstance(item, SettledReading):
                rid = self.readings.add(item, self.reader.protocol)
                stored += 1
                LOG.info("static reading", extra={"fields": {
                    "id": rid, "weight_kg": item.reading.weight_text(),
                    "flags": list(item.flags), "stable_by": item.stable_by}})
            elif item is None:
                self.failures = 0
                if self.alarm_open:
                    self.store.clear_alarm(ALARM_CODE)
                    self.alarm_open = False
            else:
                self.failures += 1
                if self.failures >= FAILURES_FOR_ALARM and not self.alarm_open:
                    self.store.raise_alarm(ALARM_CODE, ALARM_ZH, item[:2000])
                    self.alarm_open = True
                    LOG.error("static scale alarm", extra={"fields": {"detail": item}})

    # ------------------------------------------------------------------ sealing
    def step(self) -> None:
        """One pass of the pipeline thread: store readings, seal what was linked — in the
        sealing thread when it runs (:meth:`start_reader`: rendering the 复检记录 takes a
        few hundred ms, which the pipeline thread must not wait for), else here. Never
        raises: a failure here must not stop weighing (it is logged and an alarm)."""
        try:
            self.collect()
            if self._sealer_thread is None:
                self.seal_pending()
            else:
                self.record_outcomes()
                self.submit_pending()
        except Exception as exc:
            LOG.exception("static re-weighing step failed")
            try:
                self._seal_failed(repr(exc))
            except Exception:  # the store itself fails: the pipeline's own steps report it
                LOG.exception("static re-weighing alarm could not be raised")

    def seal_pending(self) -> int:
        """Seal every linked reading whose original is ready, here and now (``zhichao
        reweigh link`` with no station running); how many were sealed."""
        done = 0
        for row in self.readings.linked():
            try:
                job = self._prepare(row)
                if job is None:
                    continue
                self._write(job)
                self._record(job)
                done += 1
            except (EvidenceError, OSError, ValueError, KeyError) as exc:
                self._failed(row["id"], exc)
        self._sealed(done)
        return done

    def submit_pending(self) -> int:
        """Hand every linked reading whose original is ready to the sealing thread (once
        until its outcome is recorded); how many were handed over."""
        handed = 0
        for row in self.readings.linked():
            if row["id"] in self._in_flight:
                continue
            try:
                job = self._prepare(row)
            except (EvidenceError, OSError, ValueError, KeyError) as exc:
                self._failed(row["id"], exc)
                continue
            if job is not None:
                self._in_flight.add(job.reading_id)
                self.jobs.put(job)
                handed += 1
        return handed

    def record_outcomes(self) -> int:
        """Record what the sealing thread sealed (the pipeline thread: the store's
        writer); how many were sealed."""
        done = 0
        while True:
            try:
                job, error = self.outcomes.get_nowait()
            except queue.Empty:
                break
            self._in_flight.discard(job.reading_id)
            if error is not None:
                self._failed(job.reading_id, error)
                continue
            try:
                self._record(job)
                done += 1
            except (EvidenceError, OSError, ValueError, KeyError) as exc:
                self._failed(job.reading_id, exc)
        self._sealed(done)
        return done

    def _seal_loop(self) -> None:
        """The sealing thread: write each job's supplement; never dies of one."""
        while True:
            job = self.jobs.get()
            if job is None:
                return
            error: Exception | None = None
            try:
                self._write(job)
            except Exception as exc:  # recorded by the pipeline thread: logged, an alarm
                error = exc
            self.outcomes.put((job, error))

    def _failed(self, reading_id: int, exc: BaseException) -> None:
        LOG.error("sealing a static re-weighing failed", exc_info=exc)
        self.readings.db.execute("UPDATE static_readings SET error = ? WHERE id = ?",
                                 (repr(exc)[:2000], reading_id))
        self._seal_failed(f"reading {reading_id}: {exc!r}")

    def _sealed(self, done: int) -> None:
        """Count ``done``; a seal closes the alarm unless another link is still failing."""
        self.sealed += done
        if done and self.seal_alarm_open and not self.readings.db.execute(
                "SELECT 1 FROM static_readings WHERE status = 'linked' AND error IS NOT NULL "
                "LIMIT 1").fetchone():
            self.store.clear_alarm(SEAL_ALARM_CODE)
            self.seal_alarm_open = False

    def _seal_failed(self, detail: str) -> None:
        if not self.seal_alarm_open:
            self.store.raise_alarm(SEAL_ALARM_CODE, SEAL_ALARM_ZH, detail[:2000])
            self.seal_alarm_open = True

    def _case_row(self, passage_key: str) -> dict[str, Any] | None:
        row = self.readings.db.execute(
            "SELECT status, package_id, manifest_sha256, material FROM cases "
            "WHERE passage_key = ?", (passage_key,)).fetchone()
        return None if row is None else dict(row)

    def case_inputs(self, passage: Any, case: dict[str, Any] | None, row: dict[str, Any]
                    ) -> CaseInputs:
        """The passage as the gate sees it, with the linked reading: from its case's
        material when it has one, else from the passage row (no clock record: a human
        must look, see docs/station.md)."""
        static = reading_of(row, self.cert)
        where = f"passage {passage['passage_key']}"
        if case is not None and case["material"]:
            m = material_from_json(json.loads(case["material"]))
            return CaseInputs(
                vehicle=VehicleRecord.from_json(m.record, where),
                device=DeviceStatus.from_json(m.device, where) if m.device is not None
                else self.sealer.device, site=self.sealer.site, plate=m.plate,
                images=m.images, clocks=m.clocks, station_id=self.cfg.station.station_id,
                static_reweigh=static)
        plate = None
        record = self.store.plate_record(passage)
        if passage["plate"] or record is not None:  # checked as any package input is
            plate = PlateResult.from_json({
                "text": passage["plate"], "colour": passage["plate_colour"],
                "confidence": passage["plate_confidence"],
                "accepted": bool(passage["plate_accepted"]) and bool(passage["plate"]),
                "review_reasons": json.loads(passage["plate_review"] or "[]"),
                **(record or {})}, f"{where}.plate")
        images = tuple(ImageRef.from_json({"path": f["path"], "role": f["role"],
                                           "capture_utc": f["capture_utc"],
                                           "camera_id": f["camera_id"]}, where)
                       for f in json.loads(passage["frames"]))
        return CaseInputs(vehicle=VehicleRecord.from_json(json.loads(passage["record"]), where),
                          device=self.sealer.device, site=self.sealer.site, plate=plate,
                          images=images, clocks=None, station_id=self.cfg.station.station_id,
                          static_reweigh=static)

    def _prepare(self, row: dict[str, Any]) -> _Job | None:
        """What sealing the linked ``row`` needs, from the store (the pipeline thread);
        None while its case's own package is not sealed."""
        passage = self.store.passage(row["passage_key"])
        if passage is None:
            raise ValueError(f"reading {row['id']}: passage {row['passage_key']} unknown")
        case = self._case_row(row["passage_key"])
        if case is not None and case["status"] != "sealed":
            return None  # its own package first
        inputs = self.case_inputs(passage, case, row)
        original = OriginalRef(row["passage_key"], vehicle_record_sha256(inputs.vehicle.raw),
                               None if case is None else case["package_id"],
                               None if case is None else case["manifest_sha256"])
        out = self.sealer.reweigh_dir / f"{row['passage_key']}-{row['id']}"
        return _Job(int(row["id"]), str(row["passage_key"]), inputs, original, out)

    def _write(self, job: _Job) -> None:
        """Seal the supplement and fsync it, or adopt the one a kill left (files and the
        log only: the sealing thread or the caller)."""
        out = job.out
        out.parent.mkdir(parents=True, exist_ok=True)
        if self._adopt(out):
            return
        shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
        # the 复检记录 (HTML, PDF) as a case's documents: unless evidence.render_documents
        # is off
        renderer = None if self.cfg.evidence.render_documents else _no_documents
        with self.sealer.log_lock:
            self.sealer.check_open()  # a thread outliving stop_reader: the next start seals it
            res = seal_reweigh(job.inputs, job.original, out, station=self.sealer.station,
                               log=self.sealer.log, renderer=renderer)
        fsync_tree(out)
        LOG.info("static re-weighing sealed", extra={"fields": {
            "passage": job.passage_key, "package": res.package_id,
            "status": res.decision["eligibility"]["status"]}})

    def _record(self, job: _Job) -> None:
        """Mark the reading sealed and queue its package, in one transaction (the store's
        writer)."""
        manifest = json.loads((job.out / "manifest.json").read_bytes())
        with self.store.transaction() as con:
            added = insert_package(con, job.out)
            con.execute("UPDATE static_readings SET status = 'sealed', package_id = ?, "
                        "package_dir = ?, manifest_sha256 = ?, error = NULL WHERE id = ?",
                        (manifest["package_id"], str(job.out), added[0], job.reading_id))

    def _adopt(self, out: Path) -> bool:
        """A package folder a kill left behind: kept if it verifies, else quarantined."""
        if not out.exists():
            return False
        if verify_package(out, key=self.sealer.key.public_key(),
                          log_dir=self.sealer.log.directory).ok:
            return True
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.sealer.quarantine.mkdir(parents=True, exist_ok=True)
        out.rename(self.sealer.quarantine / f"{out.name}-{stamp}")
        return False

    def close(self) -> None:
        self.stop_reader()
        self.readings.close()


def _no_documents(_doc: dict[str, Any], _read: Any) -> dict[str, bytes]:
    return {}
