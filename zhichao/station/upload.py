"""Uploading: the station's one outbox → the sync wire → a center.

The pipeline inserts each passage's signed ``zhichao.vehicle/1`` record into the outbox
(the ``outbox`` table of ``station.db``, :mod:`zhichao.station.sync_outbox`) in the
passage's own transaction, and each sealed package (packed by the sealer thread) in the
transaction that marks its case sealed: nothing is forwarded from one queue to another,
so a kill can neither lose an item nor queue one twice. One thread (``station-uploader``,
:class:`CenterLink`) runs the sync stage's :class:`~zhichao.station.uploader.Uploader` on
that table (oldest first, receipts checked with the center's public key, exponential
back-off while the center is down), never touching the pipeline's thread.

The destination (:class:`UploadTarget`) is ``station.center_url`` with the center's key
from ``station.center_key_file``, or, without a center, the station's own service on
loopback (:mod:`zhichao.station.local_service`): the one way a passage reaches a service
database. The center being down only grows the outbox; weighing and sealing never wait on
it. :func:`upload_status` reads it read-only (for ``zhichao status``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zhichao.common import parse_utc, utc_now
from zhichao.station.alarms import UPLOAD_REFUSED, UPLOAD_STALLED, StageHealth, hold_alarm
from zhichao.station.config import StationConfig
from zhichao.station.store import StationStore
from zhichao.station.sync_outbox import Backlog, last_done_utc, state_counts

LOG = logging.getLogger("zhichao.station.upload")
STATION_DB = "station.db"
STALLED_ATTEMPTS = 10
"""Attempts after which a pending item is failing for long (guess: with the default
back-off, about 5 minutes of failures of that item while others may go through)."""
STALLED_AGE_S = 3600.0
"""Age [s] of the oldest pending item after which uploads are failing for long (guess)."""


@dataclass(frozen=True)
class UploadTarget:
    """Where the station's outbox goes: a center's URL and the key its receipts carry."""

    center_url: str
    center_key: Ed25519PublicKey
    local: bool = False  # the station's own service on loopback (no center configured)


def configured_target(cfg: StationConfig) -> UploadTarget | None:
    """The enforcement center of ``station.toml``, or None where none is configured."""
    from zhichao.evidence.signing import load_public_key

    if not cfg.station.center_url:
        return None
    return UploadTarget(cfg.station.center_url,
                        load_public_key(cfg.path(cfg.station.center_key_file)))


class CenterLink:
    """The uploader, run by :meth:`run` in a thread of its own."""

    def __init__(self, cfg: StationConfig, log_dir: Path, target: UploadTarget) -> None:
        self.cfg = cfg
        self.target = target
        self.log_dir = log_dir
        self.db_path = cfg.data_dir / STATION_DB
        self.sync_pending = 0  # outbox items not yet acknowledged by the center
        self.last_upload_utc: str | None = None
        self.last_error: str | None = None
        self.center_failures = 0
        self.backlog = Backlog({}, 0, None)  # refused and long-failing items
        self.refreshed_at = 0.0  # time.monotonic() of the last count

    def _refresh(self, outbox: Any) -> None:
        t = time.monotonic()
        self.sync_pending = outbox.depth()
        last = last_done_utc(self.db_path)
        if last is not None:
            self.last_upload_utc = last
        self.refreshed_at = t

    def run(self, stop: threading.Event) -> None:
        """Upload until ``stop`` is set (the station's uploader thread)."""
        from zhichao.common import Backoff
        from zhichao.station.sync_outbox import Outbox
        from zhichao.station.uploader import Uploader

        store = StationStore(self.db_path)  # the schema is there before the outbox opens
        outbox = Outbox(self.db_path)
        st = self.cfg.station
        uploader = Uploader(outbox, self.target.center_url, self.target.center_key,
                            log_dir=self.log_dir,
                            backoff=Backoff(initial_s=0.5, max_s=st.upload_max_delay_s),
                            timeout_s=st.upload_timeout_s)
        stages = StageHealth(store)  # this thread's stage: uploading
        try:
            while not stop.is_set():
                before = uploader.summary.as_dict()
                try:
                    self._refresh(outbox)
                    uploader.run(max_runtime_s=1.0, poll_s=0.2, stop=stop)
                    self.center_failures = uploader.summary.center_failures
                    self._refresh(outbox)
                except Exception as exc:  # the pipeline goes on; retried after a pause
                    self.last_error = repr(exc)
                    LOG.exception("uploader round failed (retried)")
                    stages.failed("upload", repr(exc))
                    stop.wait(2.0)
                    continue
                self._judge_round(stages, before, uploader.summary.as_dict())
                self._judge_backlog(store, outbox)
        finally:
            uploader.close()
            outbox.close()
            store.close()

    def _judge_round(self, stages: StageHealth, before: dict[str, Any],
                     after: dict[str, Any]) -> None:
        """A round that failed and delivered nothing counts towards the upload alarm; one
        that delivered (or had nothing to deliver) closes it. A refusal is not a
        delivery: :meth:`_judge_backlog` raises its own alarm."""
        delivered = sum(after[k] - before[k] for k in ("accepted", "duplicates"))
        failed = sum(after[k] - before[k] for k in ("failures", "center_failures"))
        if failed and not delivered:
            stages.failed("upload", self.last_error or "center unreachable or failing")
        elif delivered or self.pending() == 0:
            stages.succeeded("upload")

    def _judge_backlog(self, store: StationStore, outbox: Any) -> None:
        """Alarms on the outbox itself: items the center refused (open while any is left:
        ``zhichao sync status`` lists them), and items failing for long (tried
        :data:`STALLED_ATTEMPTS` times, or the oldest pending item older than
        :data:`STALLED_AGE_S`), which rounds delivering other items do not close."""
        backlog: Backlog = outbox.backlog(STALLED_ATTEMPTS)
        self.backlog = backlog
        codes = "、".join(f"{code} {n} 条" for code, n in backlog.refused_by_code.items())
        hold_alarm(store, UPLOAD_REFUSED, backlog.refused > 0,
                   f"refused items by code: {backlog.refused_by_code}",
                   count=backlog.refused, codes=codes)
        age_s = 0.0
        if backlog.oldest_pending_utc is not None:
            try:
                age_s = (utc_now() - parse_utc(backlog.oldest_pending_utc)).total_seconds()
            except ValueError:
                age_s = 0.0
        why = []  # no counts in the text: it is replaced only when a condition changes
        if backlog.stalled:
            why.append(f"有记录已重试 {STALLED_ATTEMPTS} 次以上仍未送达")
        if age_s >= STALLED_AGE_S:
            why.append(f"最早的待上传记录已积压超过 {STALLED_AGE_S / 60:.0f} 分钟")
        hold_alarm(store, UPLOAD_STALLED, bool(why),
                   f"stalled={backlog.stalled} (attempts >= {STALLED_ATTEMPTS}), oldest "
                   f"pending {backlog.oldest_pending_utc}; last error: {self.last_error}",
                   why="；".join(why))

    def pending(self) -> int:
        return self.sync_pending

    def status(self) -> dict[str, Any]:
        return {"center_url": self.cfg.station.center_url or None,
                "local_service": self.target.local, "pending": self.pending(),
                "last_upload_utc": self.last_upload_utc,
                "center_failures": self.center_failures, "last_error": self.last_error,
                "refused": self.backlog.refused,
                "refused_by_code": dict(self.backlog.refused_by_code),
                "stalled": self.backlog.stalled}

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until a count taken after this call finds nothing left to upload."""
        start = time.monotonic()
        while time.monotonic() < start + timeout_s:
            if self.refreshed_at > start and self.pending() == 0:
                return True
            time.sleep(0.1)
        return False


def upload_status(cfg: StationConfig, data_dir: Path) -> dict[str, Any]:
    """The upload backlog from ``station.db`` (read-only): outbox items pending / done /
    refused, the oldest pending item's last error, the last receipt's time."""
    path = data_dir / STATION_DB
    counts, last_error = state_counts(path)
    out: dict[str, Any] = {"center_url": cfg.station.center_url or None,
                           "local_service": not cfg.station.center_url
                           and (data_dir / "service.db").exists(),
                           "last_error": last_error}
    out.update({"sync_" + k: v for k, v in counts.items()})
    out["pending"] = counts["pending"]
    out["refused"] = counts["refused"]
    out["last_upload_utc"] = last_done_utc(path)
    return out
