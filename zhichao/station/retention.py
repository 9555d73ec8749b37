"""Retention of personal data at the station (个人信息保护法 Art. 19: 保存期限应当为实现处理目的
所必要的最短时间).

Every weighed vehicle is a ``passages`` row of ``station.db`` with its plate, and its camera
frames lie under ``<data>/frames/<day>/<passage>/``; frames no vehicle claimed lie in
``<data>/frames/unlinked/``. ``retention.passage_days`` after its passage time (UTC;
default 30 days, UNCONFIRMED: no legal period was found) a passage that is **no case** loses
its personal data:

* its frame files are deleted (and its passage folder, once empty);
* its plate and plate colour are set to null, any plate in its stored record is removed and
  its frame list is emptied; weights, axles, class, limit, verdict, flags and time stay
  (statistics, the site's σ(v) and drift need them); ``purged_utc`` says when.

Never touched: a case's passage (any ``cases`` row: pending or sealed), its frames, its clips,
its sealed package and the evidence log; a passage named by a static re-weighing
(``static_readings``: linked or sealed, 复检 evidence). **Held** (counted, purged on a later
run): a passage whose record the outbox has not delivered (an item with its time label
still ``pending`` or ``refused``). Unlinked frames older than the period are deleted.

Crash safety, in three steps per batch: (1) one transaction marks the batch
``purge_started_utc`` — from then on no static re-weighing can be linked to those passages
(:meth:`zhichao.station.static_scale.ReadingStore.link` refuses them); (2) the files are
deleted and checked gone; (3) one transaction marks each passage purged (plate removed) and
writes the run's audit record (``retention_runs``). A kill after (1) or (2) leaves passages
marked "purging", never "purged" with files left; the next run finishes them first.

A run that removed anything writes one ``retention_runs`` row (what, how many, the cut-off,
the period and its source) — the durable audit record (``zhichao status`` shows the newest).
The running station runs retention on its pipeline thread (the store's one writer) at start
and every ``retention.check_interval_s``, "now" being its reference clock, in batches of
:data:`BATCH_PASSAGES`; two failed runs in a row open the ``retention_failed`` alarm
(:mod:`zhichao.station.alarms`), closed by the next good run. It deletes only while that
clock is verified (the station's latest time-source check is good) and no jump of it was
seen; otherwise it waits and says why (:class:`RetentionStage`). ``zhichao retention
station`` runs it once from the command line (wall clock, UTC; it warns when the station's
last clock check is not good).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from zhichao.common import format_utc, utc_now
from zhichao.station.alarms import StageHealth
from zhichao.station.clock import Clock, PublishedSimClock, SimClock
from zhichao.station.clockcheck import ClockMonitor
from zhichao.station.config import StationConfig
from zhichao.station.errors import RetentionError, StationError
from zhichao.station.linking import parse_frame_name
from zhichao.station.store import PLATE_KEYS, StationStore, utc_text

LOG = logging.getLogger("zhichao.station")
SOURCE_ZH = ("《个人信息保护法》第十九条：保存期限应当为实现处理目的所必要的最短时间"
             "（具体天数未见法定依据：默认 30 天，未确认）")
BATCH_PASSAGES = 100  # passages per batch: one pipeline step (see benchmarks/station_retention.py)
BATCH_UNLINKED = 500  # unlinked frames deleted per batch
RETRY_AFTER_FAILURE_S = 600.0  # a failed run is tried again this soon (or at the interval)
BACKLOG_PAUSE_S = 5.0  # after a full batch the next one comes this soon (weighing first)
UNLINKED_DIR = "unlinked"
JUMP_TOLERANCE_S = 3600.0  # the reference clock may run this far ahead of the monotonic one


@dataclass(frozen=True)
class RetentionRun:
    """What one run (one batch) did, or with ``dry_run`` would do."""

    cutoff_utc: str
    passage_days: int
    passages_purged: int  # dry run: passages that would be purged now
    frames_removed: int  # frame files of the purged passages (all checked gone)
    unlinked_frames_deleted: int  # dry run: unlinked frames older than the cut-off
    held_undelivered: int  # expired, but the outbox has not delivered the record
    more: bool = False  # the batch was full: run again for the rest
    dry_run: bool = False

    @property
    def removed_anything(self) -> bool:
        return bool(self.passages_purged or self.unlinked_frames_deleted)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cutoff_of(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


def scrub_record(record: dict[str, Any]) -> dict[str, Any]:
    """The stored record without plate fields (none today: the plate lives in its columns)."""
    return {k: v for k, v in record.items() if k not in PLATE_KEYS}


class Retention:
    """Runs retention on one station data folder through ``store`` (its caller's writer)."""

    def __init__(self, cfg: StationConfig, store: StationStore, *,
                 days: int | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.days = cfg.retention.passage_days if days is None else days
        if self.days < 1:
            raise RetentionError("retention: the period must be at least 1 day")
        self.frames_dir = cfg.data_dir / "frames"
        self.clips_dir = cfg.data_dir / "clips"
        self.spools = [cfg.camera_spool(c) for c in cfg.cameras]

    # ------------------------------------------------------------------ one run
    def run(self, now: datetime | None = None, *, trigger: str = "station",
            dry_run: bool = False) -> RetentionRun:
        """One batch: purge up to :data:`BATCH_PASSAGES` expired passages and up to
        :data:`BATCH_UNLINKED` unlinked frames; the audit record if anything was removed.
        Raises :class:`RetentionError` (nothing is marked purged that still has files)."""
        now = now or utc_now()
        cutoff = cutoff_of(now, self.days)
        cut = format_utc(cutoff)  # the format of passages.time_utc: compared as text
        try:
            if dry_run:
                return self._dry_run(cut, cutoff)
            room = BATCH_PASSAGES - len(self.store.purging(BATCH_PASSAGES))  # a killed run's
            if room > 0:
                with self.store.transaction() as con:
                    self.store.start_purge(con, cut, room, utc_text(now))
            rows = self.store.purging(BATCH_PASSAGES)
            listed = [self._delete_files(r) for r in rows]
            self._remove_empty_days(rows)
            unlinked, unlinked_more = self._delete_unlinked(cutoff)
            _, held = self.store.expiry_counts(cut)
            purged = frames = 0
            with self.store.transaction() as con:
                for r, n in zip(rows, listed, strict=True):
                    if self.store.mark_purged(con, r["passage_key"],
                                              scrub_record(_json(r["record"])), utc_text(now)):
                        purged, frames = purged + 1, frames + n
                result = RetentionRun(cut, self.days, purged, frames, unlinked, held,
                                      more=len(rows) >= BATCH_PASSAGES or unlinked_more)
                if result.removed_anything:
                    self.store.insert_retention_run(con, {
                        "time_utc": utc_text(now), "cutoff_utc": cut,
                        "passage_days": self.days, "passages_purged": purged,
                        "frames_removed": frames, "unlinked_frames_deleted": unlinked,
                        "held_undelivered": held, "trigger": trigger,
                        "source_zh": SOURCE_ZH})
        except (OSError, sqlite3.Error, ValueError) as exc:
            raise RetentionError(f"retention: {exc}") from exc
        if result.removed_anything or held:
            LOG.info("retention", extra={"fields": result.to_json()})
        return result

    def run_all(self, now: datetime | None = None, *, trigger: str = "cli") -> RetentionRun:
        """Batches until nothing expired is left (the command line); the totals."""
        now = now or utc_now()
        total = self.run(now, trigger=trigger)
        while total.more:
            r = self.run(now, trigger=trigger)
            total = RetentionRun(
                total.cutoff_utc, self.days, total.passages_purged + r.passages_purged,
                total.frames_removed + r.frames_removed,
                total.unlinked_frames_deleted + r.unlinked_frames_deleted,
                r.held_undelivered, more=r.more and r.removed_anything)
        return total

    def _dry_run(self, cut: str, cutoff: datetime) -> RetentionRun:
        due, held = self.store.expiry_counts(cut)
        old = sum(1 for _ in self._unlinked_older(cutoff, limit=None))
        return RetentionRun(cut, self.days, due, 0, old, held, dry_run=True)

    # ------------------------------------------------------------------ files
    def _frame_paths(self, row: dict[str, Any]) -> set[Path]:
        """Every place the passage's frames may lie: as stored, under this data folder
        (a moved folder), and a spool copy never moved; only inside the frames folder or a
        camera spool."""
        key = str(row["passage_key"])
        day = str(row["time_utc"])[:10].replace("-", "")
        out: set[Path] = set()
        for f in _json_list(row["frames"]):
            if f.get("path"):
                stored = Path(str(f["path"]))
                out.add(self.frames_dir / day / key / stored.name)
                if key in stored.parts and _inside(stored, self.frames_dir):
                    out.add(stored)
            if f.get("spool_path"):
                spool = Path(str(f["spool_path"]))
                if any(_inside(spool, d) for d in self.spools):
                    out.add(spool)
        return {p for p in out if p.name}

    def _delete_files(self, row: dict[str, Any]) -> int:
        """Delete the passage's frames (and any clip left of it: a passage that is no case
        has none); raise if one is still there. How many frames it listed."""
        key = str(row["passage_key"])
        paths = self._frame_paths(row)
        if self.clips_dir.is_dir():
            paths.update(self.clips_dir.glob(f"{_glob_escape(key)}-*"))
        for path in paths:
            path.unlink(missing_ok=True)
            if path.exists():
                raise RetentionError(f"retention: {path} is still there after deletion")
        day = str(row["time_utc"])[:10].replace("-", "")
        with contextlib.suppress(OSError):  # not empty (a file not listed), or gone: fine
            (self.frames_dir / day / key).rmdir()
        return len(_json_list(row["frames"]))

    def _remove_empty_days(self, rows: list[dict[str, Any]]) -> None:
        """The day folders of a batch that are empty now (once per day, not per passage:
        a failed ``rmdir`` of a full folder is not free)."""
        for day in {str(r["time_utc"])[:10].replace("-", "") for r in rows}:
            folder = self.frames_dir / day
            with contextlib.suppress(OSError):
                if not any(folder.iterdir()):
                    folder.rmdir()

    def _unlinked_older(self, cutoff: datetime, limit: int | None) -> list[Path]:
        folder = self.frames_dir / UNLINKED_DIR
        if not folder.is_dir():
            return []
        out: list[Path] = []
        limit_s = cutoff.timestamp()
        with os.scandir(folder) as entries:
            for e in entries:
                if not e.is_file(follow_symlinks=False):
                    continue
                try:
                    mtime = e.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue
                parsed = parse_frame_name(e.name)
                # both its camera time and its arrival must be past the cut-off
                newest = max(mtime, parsed[1].timestamp()) if parsed else mtime
                if newest < limit_s:
                    out.append(Path(e.path))
                    if limit is not None and len(out) >= limit:
                        break
        return out

    def _delete_unlinked(self, cutoff: datetime) -> tuple[int, bool]:
        old = self._unlinked_older(cutoff, BATCH_UNLINKED)
        n = 0
        for path in old:
            try:
                path.unlink()
                n += 1
            except FileNotFoundError:
                continue
        return n, len(old) >= BATCH_UNLINKED


class RetentionStage:
    """Retention in the running station: called from the pipeline thread (the store's
    writer) about once a second; runs at start, then every ``check_interval_s`` (a full
    batch: the next after :data:`BACKLOG_PAUSE_S`; a failure: again within
    :data:`RETRY_AFTER_FAILURE_S`). "Now" is
    the station's reference clock (on a simulated lane the simulator's, whose passages may
    lie in the past); no run before that clock is known.

    Deletion depends on "now", so it runs only while that clock is verified (``clock_check``,
    the station's :class:`ClockMonitor`: its latest check, made by this process, is good;
    on a simulated lane the check is the simulator's clock). While it is not, and after a
    jump of the reference clock (it advanced more than the monotonic clock since the last
    run + :data:`JUMP_TOLERANCE_S`: held until a good check after the jump), the stage
    waits: it deletes nothing, :meth:`status` says why, and waiting is no failure of the
    stage (the ``clock_unverified`` alarm already is open). ``clock_check=None`` (a
    caller that checked the clock itself, tests): no verification gate, the jump guard
    still holds (until a restart)."""

    def __init__(self, cfg: StationConfig, store: StationStore, stages: StageHealth,
                 clock: Clock | None = None, clock_check: ClockMonitor | None = None) -> None:
        self.retention = Retention(cfg, store)
        self.interval_s = cfg.retention.check_interval_s
        self.stages = stages
        self.clock = clock or Clock()
        self.clock_check = clock_check
        self.next_s = 0.0  # monotonic time of the next run: at start
        self.last: RetentionRun | None = None
        self.waiting: tuple[str, str] | None = None  # (reason, reason_zh) while it waits
        self._last_run: tuple[float, datetime] | None = None  # (monotonic s, reference)
        self._jump_ref: datetime | None = None  # reference time a jump was seen at

    def _wait_reason(self, now_s: float, ref: datetime) -> tuple[str, str] | None:
        """Why no run may delete now, or None."""
        if self._last_run is not None and not isinstance(self.clock,
                                                         SimClock | PublishedSimClock):
            mono_s, last_ref = self._last_run
            ahead_s = (ref - last_ref).total_seconds() - (now_s - mono_s)
            if ahead_s > JUMP_TOLERANCE_S and self._jump_ref is None:
                self._jump_ref = ref
                LOG.error("retention: reference clock jumped", extra={"fields": {
                    "ahead_s": round(ahead_s), "last_run_ref_utc": utc_text(last_ref),
                    "now_ref_utc": utc_text(ref)}})
        if self._jump_ref is not None:
            last = None if self.clock_check is None else self.clock_check.last()
            if last is not None and last.good and last.checked_utc >= self._jump_ref:
                self._jump_ref = None  # the new time was verified after the jump
            else:
                return ("clock_jump: " + utc_text(self._jump_ref),
                        "参考时钟跳变（较单调时钟超前逾 1 小时），个人信息清理暂停，"
                        "待跳变后授时核验通过")
        if self.clock_check is not None:
            reason, reason_zh = self.clock_check.verified_now()
            if reason is not None:
                return f"clock_unverified: {reason}", f"时钟未核验，个人信息清理暂停（{reason_zh}）"
        return None

    def step(self, now_s: float | None = None) -> RetentionRun | None:
        """Run if due and the clock is verified. Never raises: a failure counts against the
        ``retention`` alarm; waiting for the clock does not."""
        now_s = time.monotonic() if now_s is None else now_s
        if now_s < self.next_s or not self.clock.ready:
            return None
        ref = self.clock.now()
        waiting = self._wait_reason(now_s, ref)
        if waiting != self.waiting:
            if waiting is not None:
                # before this run's first clock check, waiting is how every start begins
                # (the check follows within moments), not a fault: said, not warned
                starting = waiting[0] == "clock_unverified: no_check"
                LOG.log(logging.INFO if starting else logging.WARNING, "retention waits",
                        extra={"fields": {"reason": waiting[0]}})
            elif self.waiting is not None:
                LOG.info("retention resumes", extra={"fields": {"was": self.waiting[0]}})
            self.waiting = waiting
        if waiting is not None:
            return None  # tried again at the next step (cheap): no run, no failure
        self._last_run = (now_s, ref)
        try:
            run = self.retention.run(ref)
        except RetentionError as exc:
            LOG.error("retention failed", extra={"fields": {"error": str(exc)}})
            try:
                self.stages.failed("retention", str(exc))
            except (StationError, sqlite3.Error):
                LOG.exception("retention alarm could not be raised")
            self.next_s = now_s + min(self.interval_s, RETRY_AFTER_FAILURE_S)
            return None
        self.stages.succeeded("retention")
        self.last = run
        self.next_s = now_s + (BACKLOG_PAUSE_S if run.more else self.interval_s)
        return run

    def status(self) -> dict[str, Any] | None:
        """The last run (health ``retention``), and why the stage waits, if it does."""
        out: dict[str, Any] = {} if self.last is None else self.last.to_json()
        if self.waiting is not None:
            out["waiting"], out["waiting_zh"] = self.waiting
        return out or None


def _json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("a passage record is not a JSON object")
    return value


def _json_list(text: str) -> list[dict[str, Any]]:
    value = json.loads(text or "[]")
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` names something inside ``folder`` (lexically: ``..`` resolved, links
    not followed — deleting a link deletes the link)."""
    a, b = os.path.abspath(path), os.path.abspath(folder)
    return a != b and os.path.commonpath((a, b)) == b


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
