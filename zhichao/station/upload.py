"""Uploading to the enforcement center: the station's outbox → the sync stage → the center.

The pipeline commits one ``outbox`` row (in ``station.db``) per passage and per sealed
package, in the same transaction as the passage or the seal. When ``station.center_url``
is set, one thread (``station-uploader``) does two things in turn, never touching the
pipeline's thread:

* the **forwarder** moves unforwarded station rows into the sync stage's
  :class:`zhichao.station.sync_outbox.Outbox` (``<data>/sync-outbox.sqlite``): a passage
  as its ``zhichao.vehicle/1`` record signed with the station key, a package as its sealed
  folder. The sync outbox is keyed by content hash (``INSERT OR IGNORE``), so the order
  "enqueue, commit; then mark the station row forwarded, commit" duplicates nothing when
  the station is killed between the two commits: the row is forwarded again and ignored.
* the sync stage's :class:`zhichao.station.uploader.Uploader` pushes the sync outbox
  to the center (oldest first, receipts checked with the center's public key from
  ``station.center_key_file``, exponential back-off while the center is down).

The destination (:class:`UploadTarget`) is ``station.center_url`` with the center's key
from ``station.center_key_file``, or, without a center, the station's own service on
loopback (:mod:`zhichao.station.local_service`): the one way a passage reaches a service
database. The center being down only grows the sync outbox; weighing and sealing never
wait on it. :func:`upload_status` reads both files read-only (for ``zhichao status``).
All SQL of ``station.db`` is in :mod:`zhichao.station.store`, that of the sync outbox in
:mod:`zhichao.station.sync_outbox`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from zhichao.station.alarms import StageHealth
from zhichao.station.config import StationConfig
from zhichao.station.store import StationStore
from zhichao.station.sync_outbox import last_done_utc, state_counts

LOG = logging.getLogger("zhichao.station.upload")
SYNC_OUTBOX_NAME = "sync-outbox.sqlite"
FORWARD_BATCH = 500


def sync_outbox_path(data_dir: Path) -> Path:
    return data_dir / SYNC_OUTBOX_NAME


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
    """The forwarder and the uploader, run by :meth:`run` in a thread of their own."""

    def __init__(self, cfg: StationConfig, station_key: Ed25519PrivateKey, log_dir: Path,
                 target: UploadTarget) -> None:
        self.cfg = cfg
        self.target = target
        self.station_id = cfg.station.station_id
        self.key = station_key
        self.log_dir = log_dir
        self.center_key = target.center_key
        self.db_path = cfg.data_dir / "station.db"
        self.outbox_path = sync_outbox_path(cfg.data_dir)
        self.forwarded = 0
        self.forward_errors = 0
        self.unforwarded = 0  # station rows not yet in the sync outbox (last count)
        self.sync_pending = 0  # sync outbox items not yet acknowledged by the center
        self.last_upload_utc: str | None = None
        self.last_error: str | None = None
        self.center_failures = 0
        self.refreshed_at = 0.0  # time.monotonic() of the last count

    # ------------------------------------------------------------------ forwarding
    def forward(self, store: StationStore, outbox: Any) -> int:
        """Move unforwarded station outbox rows into the sync outbox; how many moved."""
        rows = store.unforwarded(FORWARD_BATCH)
        done: list[int] = []
        with outbox.batch():  # one fsync for the whole batch
            for row in rows:
                try:
                    if row["kind"] == "passage":
                        record = json.loads(row["payload"])["record"]
                        outbox.enqueue_passage(record, self.station_id, self.key)
                    elif row["kind"] == "package":
                        if not row["package_dir"]:
                            raise ValueError(f"case {row['ref']} has no package folder")
                        outbox.enqueue_package(Path(row["package_dir"]))
                    else:
                        raise ValueError(f"unknown outbox kind {row['kind']!r}")
                except Exception as exc:  # kept unforwarded, retried next round
                    self.forward_errors += 1
                    self.last_error = f"outbox row {row['id']} ({row['kind']} {row['ref']}): " \
                                      f"{exc}"
                    LOG.error("forwarding to the sync outbox failed", extra={"fields": {
                        "row": row["id"], "kind": row["kind"], "ref": row["ref"],
                        "error": repr(exc)}})
                    continue
                done.append(int(row["id"]))
        if done:  # only after the sync outbox committed
            store.mark_forwarded(done)
        self.forwarded += len(done)
        return len(done)

    def _refresh(self, store: StationStore, outbox: Any) -> None:
        t = time.monotonic()
        self.unforwarded = store.count_unforwarded()
        self.sync_pending = outbox.depth()
        last = last_done_utc(outbox.path)
        if last is not None:
            self.last_upload_utc = last
        self.refreshed_at = t

    # ------------------------------------------------------------------ the thread
    def run(self, stop: threading.Event) -> None:
        """Forward and upload until ``stop`` is set (the station's uploader thread)."""
        from zhichao.common import Backoff
        from zhichao.station.sync_outbox import Outbox
        from zhichao.station.uploader import Uploader

        store = StationStore(self.db_path)
        outbox = Outbox(self.outbox_path)
        st = self.cfg.station
        uploader = Uploader(outbox, self.target.center_url, self.center_key, log_dir=self.log_dir,
                            backoff=Backoff(initial_s=0.5, max_s=st.upload_max_delay_s),
                            timeout_s=st.upload_timeout_s)
        stages = StageHealth(store)  # this thread's stage: forwarding and uploading
        try:
            while not stop.is_set():
                before = uploader.summary.as_dict()
                forward_errors = self.forward_errors
                try:
                    self.forward(store, outbox)
                    self._refresh(store, outbox)
                    uploader.run(max_runtime_s=1.0, poll_s=0.2, stop=stop)
                    self.center_failures = uploader.summary.center_failures
                    self._refresh(store, outbox)
                except Exception as exc:  # the pipeline goes on; retried after a pause
                    self.last_error = repr(exc)
                    LOG.exception("uploader round failed (retried)")
                    stages.failed("upload", repr(exc))
                    stop.wait(2.0)
                    continue
                self._judge_round(stages, before, uploader.summary.as_dict(),
                                  self.forward_errors - forward_errors)
        finally:
            uploader.close()
            outbox.close()
            store.close()

    def _judge_round(self, stages: StageHealth, before: dict[str, Any],
                     after: dict[str, Any], forward_errors: int) -> None:
        """A round that failed and delivered nothing counts towards the upload alarm; one
        that delivered (or had nothing to deliver) closes it."""
        delivered = sum(after[k] - before[k] for k in ("accepted", "duplicates", "refused"))
        failed = forward_errors + sum(after[k] - before[k]
                                      for k in ("failures", "center_failures"))
        if failed and not delivered:
            stages.failed("upload", self.last_error or "center unreachable or failing")
        elif delivered or self.pending() == 0:
            stages.succeeded("upload")

    def pending(self) -> int:
        return self.unforwarded + self.sync_pending

    def status(self) -> dict[str, Any]:
        return {"center_url": self.cfg.station.center_url or None,
                "local_service": self.target.local, "pending": self.pending(),
                "unforwarded": self.unforwarded, "sync_pending": self.sync_pending,
                "last_upload_utc": self.last_upload_utc, "forwarded": self.forwarded,
                "center_failures": self.center_failures, "last_error": self.last_error}

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until a count taken after this call finds nothing left to upload."""
        start = time.monotonic()
        while time.monotonic() < start + timeout_s:
            if self.refreshed_at > start and self.pending() == 0:
                return True
            time.sleep(0.1)
        return False


def upload_status(cfg: StationConfig, data_dir: Path) -> dict[str, Any]:
    """The upload backlog from the files (read-only): station rows not yet forwarded,
    sync outbox items pending / done / refused, the last receipt's time."""
    out: dict[str, Any] = {"center_url": cfg.station.center_url or None}
    db = data_dir / "station.db"
    if db.exists():
        store = StationStore(db, readonly=True)
        try:
            out["unforwarded"] = store.count_unforwarded()
        finally:
            store.close()
    path = sync_outbox_path(data_dir)
    counts, out["last_error"] = state_counts(path)
    out.update({"sync_" + k: v for k, v in counts.items()})
    out["pending"] = int(out.get("unforwarded", 0)) + counts["pending"]
    out["last_upload_utc"] = last_done_utc(path)
    return out
