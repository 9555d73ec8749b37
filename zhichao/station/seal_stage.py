"""The sealing step: cases committed ``pending_seal`` → sealed packages, off the pipeline.

The pipeline puts each new case's :class:`~zhichao.station.sealing.CaseMaterial` on
:attr:`SealStage.jobs`; the sealer thread (:meth:`SealStage.loop`) seals it and answers
with a :class:`~zhichao.station.messages.SealOutcome`; the pipeline thread (the store's
only writer) records the outcomes (:meth:`SealStage.collect`): the case marked sealed and
its package (packed for upload by the sealer thread) queued in the outbox in one
transaction, or the error, or the disk refusing
(``sealing_stopped``, retried every 2 s). :meth:`SealStage.recover` runs at start-up
(packages completed by a kill, cases still pending).

A case that fails :data:`MAX_SEAL_ATTEMPTS` times in a row (material that cannot be sealed,
an I/O error after its package got its name) never blocks the cases after it: it is set
aside (still ``pending_seal``; the ``case_not_sealed`` alarm names it until it is sealed)
and retried every :data:`SET_ASIDE_RETRY_S`; a retry that finds its package complete
adopts it, as start-up recovery does.
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
from zhichao.station.sealing import CaseMaterial, Sealer, UnusableFile, material_from_json
from zhichao.station.store import StationStore
from zhichao.station.sync_outbox import PackedPackage, pack

LOG = logging.getLogger("zhichao.station")
STOPPED_RETRY_S = 2.0
ERROR_RETRY_S = 5.0
MAX_SEAL_ATTEMPTS = 3  # failures in a row before a case is set aside
SET_ASIDE_RETRY_S = 300.0  # a set-aside case is tried again this often [s]
ASIDE_ALARM = "case_not_sealed"
ASIDE_ALARM_ZH = ("案件反复封存失败，已暂缓并定期重试，其他案件照常封存；"
                  "请检查该案件（详见告警详情和日志）")


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
        self.aside: dict[str, str] = {}  # cases set aside (pipeline thread): key → error
        # open from an earlier run: its cases are tried again, and set aside again
        self.aside_alarm_open = any(r["code"] == ASIDE_ALARM for r in store.active_alarms())
        self.recovery: dict[str, Any] = {}

    # ------------------------------------------------------------------ start-up
    def recover(self) -> None:
        """Complete what a kill interrupted; queue every case still pending."""
        info = self.sealer.recover(self.store.sealed_cases(), self.store.pending_cases())
        for key, facts in info["complete"].items():
            self._mark_complete(key, facts, pack(self.sealer.package_dir(key)),
                                self._unusable_of_adopted(key))
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
        if self.aside_alarm_open and not self.store.pending_cases():
            # the set-aside cases were sealed (or adopted above) before the last kill
            self._aside_alarm()

    # ------------------------------------------------------------------ the sealer thread
    def loop(self, stop: threading.Event) -> None:
        retry: CaseMaterial | None = None
        failures: dict[str, int] = {}  # failures in a row, per case
        aside: list[tuple[float, CaseMaterial]] = []  # (when to retry [monotonic], case)
        while not stop.is_set():
            m = retry
            if m is None and aside and aside[0][0] <= time.monotonic():
                m = aside.pop(0)[1]
            if m is None:
                try:
                    m = self.jobs.get(timeout=0.2)
                except queue.Empty:
                    continue
            if m is None:
                return
            t0 = time.perf_counter()
            unusable: list[UnusableFile] = []
            try:
                res = self.sealer.seal(m, unusable)
            except SealingStoppedError as exc:
                self.outcomes.put(SealOutcome("stopped", m.passage_key, detail=str(exc)))
                retry = m
                stop.wait(STOPPED_RETRY_S)
                continue
            except Exception as exc:  # recorded on the case; retried, then set aside
                LOG.exception("sealing failed")
                retry = None
                if self._adopted(m):
                    failures.pop(m.passage_key, None)
                    continue
                n = failures.get(m.passage_key, 0) + 1
                failures[m.passage_key] = n
                self.outcomes.put(SealOutcome("error", m.passage_key, detail=repr(exc)))
                if n >= MAX_SEAL_ATTEMPTS:  # the next cases go first
                    LOG.error("case set aside after repeated sealing failures", extra={
                        "fields": {"passage": m.passage_key, "failures": n,
                                   "retry_in_s": SET_ASIDE_RETRY_S}})
                    aside.append((time.monotonic() + SET_ASIDE_RETRY_S, m))
                    self.outcomes.put(SealOutcome("set_aside", m.passage_key,
                                                  detail=repr(exc)))
                    continue
                retry = m
                stop.wait(ERROR_RETRY_S)
                continue
            retry = None
            failures.pop(m.passage_key, None)
            elapsed_s = time.perf_counter() - t0
            try:
                packed: PackedPackage | None = pack(res.directory)
            except Exception:  # sealed all the same; queued at the next start
                LOG.exception("packing a sealed package for upload failed")
                packed = None
            self.outcomes.put(SealOutcome("sealed", m.passage_key, res, elapsed_s=elapsed_s,
                                          packed=packed, unusable=tuple(unusable)))

    def _adopted(self, m: CaseMaterial) -> bool:
        """After a failure: the case's package complete under its final name (a failure
        after its rename) is adopted as start-up recovery does."""
        key = m.passage_key
        try:
            facts = self.sealer.take_over(key)
            packed = None if facts is None else pack(self.sealer.package_dir(key))
            unusable = () if facts is None else tuple(self.sealer.unusable_in_package(m))
        except Exception:  # not adoptable now: a failure like the one before
            LOG.exception("checking an existing package failed")
            return False
        if facts is None:
            return False
        LOG.warning("a failed case's package was complete; adopted", extra={"fields": {
            "passage": key}})
        self.outcomes.put(SealOutcome("adopted", key, facts=facts, packed=packed,
                                      unusable=unusable))
        return True

    def _unusable_of_adopted(self, key: str) -> list[UnusableFile] | None:
        """The originals an adopted package left out (:meth:`Sealer.unusable_in_package`);
        None (what is recorded stays) when the case's material cannot be read."""
        raw = self.store.case_material(key)
        if raw is None:
            return None
        try:
            return self.sealer.unusable_in_package(material_from_json(raw))
        except (EvidenceError, KeyError, TypeError, ValueError, OSError) as exc:
            LOG.error("an adopted package's unusable originals cannot be read",
                      extra={"fields": {"passage": key, "error": repr(exc)}})
            return None

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
            elif out.kind == "adopted":
                assert out.facts is not None
                self._mark_complete(out.passage_key, out.facts, out.packed,
                                    list(out.unusable))
                self.metrics.packages.inc()
                self._done(out.passage_key)
            elif out.kind == "stopped":
                self._stopped(out)
            elif out.kind == "set_aside":
                new = out.passage_key not in self.aside
                self.aside[out.passage_key] = out.detail
                if new or not self.aside_alarm_open:
                    self._aside_alarm()
            else:
                self.metrics.errors.labels("sealing").inc()
                with self.store.transaction() as con:
                    self.store.mark_seal_error(con, out.passage_key, out.detail)
                self.stages.failed("sealing", f"{out.passage_key}: {out.detail}")

    def _mark_complete(self, key: str, facts: dict[str, Any], packed: PackedPackage | None,
                       unusable: list[UnusableFile] | None) -> None:
        """A case whose package was found complete (start-up, or a retry): sealed, with
        the originals it left out as unusable (None keeps what is recorded)."""
        out = self.sealer.package_dir(key)
        sha = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
        with self.store.transaction() as con:
            self.store.mark_sealed(con, key, package_id=facts["package_id"],
                                   package_dir=str(out), manifest_sha256=sha,
                                   log_index=facts["log_index"],
                                   eligibility=facts["eligibility"],
                                   reasons=facts["reasons"],
                                   unusable=None if unusable is None
                                   else [u.to_json() for u in unusable])
            if packed is not None:
                self.store.enqueue_package(con, packed)
        for u in unusable or ():
            self.metrics.errors.labels(f"unusable_{u.kind}").inc()

    def _aside_alarm(self) -> None:
        """The ``case_not_sealed`` alarm names the cases set aside; closed once none is."""
        with self.store.transaction() as con:
            self.store.clear_alarm_in(con, ASIDE_ALARM)  # the detail names those aside now
            if self.aside:
                detail = "; ".join(f"{k}: {e}" for k, e in sorted(self.aside.items()))
                self.store.raise_alarm_in(con, ASIDE_ALARM, ASIDE_ALARM_ZH, detail[:2000])
        if self.aside:
            LOG.error("cases set aside, not sealed", extra={"fields": {
                "passages": sorted(self.aside)}})
        self.aside_alarm_open = bool(self.aside)

    def _done(self, key: str) -> None:
        if self.aside.pop(key, None) is not None or (self.aside_alarm_open
                                                     and not self.aside):
            self._aside_alarm()

    def _sealed(self, out: SealOutcome) -> None:
        res = out.result
        assert res is not None
        self.metrics.stage_latency.labels("sealing").observe(out.elapsed_s)
        with self.store.transaction() as con:
            self.store.mark_sealed(
                con, out.passage_key, package_id=res.package_id,
                package_dir=str(res.directory), manifest_sha256=res.manifest_sha256,
                log_index=res.log_index, eligibility=str(res.eligibility.status),
                reasons=[r.code for r in res.eligibility.reasons],
                unusable=[u.to_json() for u in out.unusable])
            if out.packed is not None:
                self.store.enqueue_package(con, out.packed)
        self.metrics.packages.inc()
        for u in out.unusable:
            self.metrics.errors.labels(f"unusable_{u.kind}").inc()
        self.stages.succeeded("sealing")
        self._done(out.passage_key)
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
            if set(self.store.pending_cases()) <= set(self.aside) or self.stopped is not None:
                return
            time.sleep(0.05)
