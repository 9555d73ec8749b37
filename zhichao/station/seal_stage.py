"""The sealing step: cases committed ``pending_seal`` → sealed packages, off the pipeline.

The pipeline puts each new case's :class:`~zhichao.station.sealing.CaseMaterial` on
:attr:`SealStage.jobs`; the sealer thread (:meth:`SealStage.loop`) seals it and answers
with a :class:`~zhichao.station.messages.SealOutcome`; the pipeline thread (the store's
only writer) records the outcomes (:meth:`SealStage.collect`): the case marked sealed and
its package (packed for upload by the sealer thread) queued in the outbox in one
transaction, or the error, or the disk refusing
(``sealing_stopped``, retried every 2 s). :meth:`SealStage.recover` runs at start-up
(packages completed by a kill, cases still pending).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from zhichao.evidence.errors import EvidenceError
from zhichao.station.alarms import StageHealth
from zhichao.station.errors import SealingStoppedError
from zhichao.station.messages import SealOutcome
from zhichao.station.ops import StationMetrics
from zhichao.station.sealing import CaseMaterial, Sealer, material_from_json
from zhichao.station.store import StationStore
from zhichao.station.sync_outbox import PackedPackage, pack

LOG = logging.getLogger("zhichao.station")
STOPPED_RETRY_S = 2.0
ERROR_RETRY_S = 5.0


class SealStage:
    def __init__(self, sealer: Sealer, store: StationStore, stages: StageHealth,
                 metrics: StationMetrics) -> None:
        self.sealer = sealer
        self.store = store
        self.stages = stages
        self.metrics = metrics
        self.jobs: queue.Queue[CaseMaterial | None] = queue.Queue()
        self.outcomes: queue.Queue[SealOutcome] = queue.Queue()
        self.stopped: str | None = None  # why sealing stopped (the disk refuses), or None
        self.recovery: dict[str, Any] = {}

    # ------------------------------------------------------------------ start-up
    def recover(self) -> None:
        """Complete what a kill interrupted; queue every case still pending."""
        info = self.sealer.recover(self.store.sealed_cases(), self.store.pending_cases())
        for key, facts in info["complete"].items():
            out = self.sealer.package_dir(key)
            sha = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
            with self.store.transaction() as con:
                self.store.mark_sealed(con, key, package_id=facts["package_id"],
                                       package_dir=str(out), manifest_sha256=sha,
                                       log_index=facts["log_index"],
                                       eligibility=facts["eligibility"],
                                       reasons=facts["reasons"])
                self.store.enqueue_package(con, pack(out))
        for key, folder in self.store.sealed_not_queued():
            LOG.warning("sealed package not in the outbox; queued now", extra={"fields": {
                "passage": key, "package": folder}})
            self.store.enqueue_package_dir(Path(folder))
        self.recovery = {k: v for k, v in info.items() if k != "complete"}
        self.recovery["completed_on_start"] = len(info["complete"])
        for key in self.store.pending_cases():
            material = self.store.case_material(key)
            if material is None:
                continue
            try:
                self.jobs.put(material_from_json(material))
            except (EvidenceError, KeyError, TypeError, ValueError) as exc:
                # recorded on the case and as a failed sealing step; the station starts
                LOG.error("a pending case's material cannot be read; not sealed",
                          extra={"fields": {"passage": key, "error": repr(exc)}})
                self.outcomes.put(SealOutcome("error", key,
                                              detail=f"case material unreadable: {exc!r}"))

    # ------------------------------------------------------------------ the sealer thread
    def loop(self, stop: threading.Event) -> None:
        retry: CaseMaterial | None = None
        while not stop.is_set():
            m = retry
            if m is None:
                try:
                    m = self.jobs.get(timeout=0.2)
                except queue.Empty:
                    continue
            if m is None:
                return
            t0 = time.perf_counter()
            try:
                res = self.sealer.seal(m)
            except SealingStoppedError as exc:
                self.outcomes.put(SealOutcome("stopped", m.passage_key, detail=str(exc)))
                retry = m
                stop.wait(STOPPED_RETRY_S)
                continue
            except Exception as exc:  # recorded on the case; retried after a pause
                LOG.exception("sealing failed")
                self.outcomes.put(SealOutcome("error", m.passage_key, detail=repr(exc)))
                retry = m
                stop.wait(ERROR_RETRY_S)
                continue
            retry = None
            elapsed_s = time.perf_counter() - t0
            try:
                packed: PackedPackage | None = pack(res.directory)
            except Exception:  # sealed all the same; queued at the next start
                LOG.exception("packing a sealed package for upload failed")
                packed = None
            self.outcomes.put(SealOutcome("sealed", m.passage_key, res, elapsed_s=elapsed_s,
                                          packed=packed))

    # ------------------------------------------------------------------ the pipeline's side
    def collect(self) -> None:
        """Record every outcome received so far (pipeline thread)."""
        while True:
            try:
                out = self.outcomes.get_nowait()
            except queue.Empty:
                return
            if out.kind == "sealed":
                self._sealed(out)
            elif out.kind == "stopped":
                self._stopped(out)
            else:
                self.metrics.errors.labels("sealing").inc()
                with self.store.transaction() as con:
                    self.store.mark_seal_error(con, out.passage_key, out.detail)
                self.stages.failed("sealing", f"{out.passage_key}: {out.detail}")

    def _sealed(self, out: SealOutcome) -> None:
        res = out.result
        assert res is not None
        self.metrics.stage_latency.labels("sealing").observe(out.elapsed_s)
        with self.store.transaction() as con:
            self.store.mark_sealed(
                con, out.passage_key, package_id=res.package_id,
                package_dir=str(res.directory), manifest_sha256=res.manifest_sha256,
                log_index=res.log_index, eligibility=str(res.eligibility.status),
                reasons=[r.code for r in res.eligibility.reasons])
            if out.packed is not None:
                self.store.enqueue_package(con, out.packed)
        self.metrics.packages.inc()
        self.stages.succeeded("sealing")
        if self.stopped is not None:
            self.stopped = None
            self.store.clear_alarm("sealing_stopped")

    def _stopped(self, out: SealOutcome) -> None:
        if self.stopped is None:
            LOG.error("sealing stopped", extra={"fields": {"why": out.detail}})
            self.store.raise_alarm("sealing_stopped",
                                   "证据存储不可写（磁盘已满或只读），已停止封存，请立即处理",
                                   out.detail)
            self.metrics.errors.labels("sealing_stopped").inc()
        self.stopped = out.detail

    def drain(self, timeout_s: float) -> None:
        """Wait until every pending case is sealed, sealing stops, or ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.collect()
            if not self.store.pending_cases() or self.stopped is not None:
                return
            time.sleep(0.05)
