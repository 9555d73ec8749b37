"""The intake step for a vendor WIM controller: records → journal → zhichao's weighing.

A record source (``wim.url`` a ``zwr+…`` URL or a Modbus record ring, see
``docs/devices.md``) reports finished vehicles. :class:`RecordIntake` gives each record the
station receives an **ordinal** (0, 1, 2 … over the station's life), appends it to the
:class:`RecordJournal` before it is weighed, re-weighs it with
:func:`zhichao.weighing.reported.weigh_reported` (the station's calibration profile,
weighing configuration and lane; classification, limits, overload, then drift,
eligibility and sealing as for any vehicle) and hands the vehicle to the pipeline with
``first_sample = last_sample =`` its ordinal: the ordinal orders and identifies record
passages exactly as the sample index does for a sample stream, so the commit's durable
``committed_first_sample`` and the passage key work unchanged.

Crash safety (a SIGKILL at any moment):

* a record is in the journal (``write()`` reaches the page cache at once; fsync at most
  every ``fsync_interval_s``) before it is weighed; a restart replays every journalled
  record after the last committed ordinal, so none received is lost;
* a controller that delivers records again after a restart (the Modbus record ring hands
  out what it still holds) is recognised by its boot id, counter and device time against
  the newest journalled record, and such records are dropped, so none is duplicated;
* records the controller sent while no station listened (a line controller pushes them
  into the void) are a recorded gap (``gaps``, exact when its counter continued, unknown
  after its reboot).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from zhichao.common import format_utc, fsync_dir
from zhichao.devices.data import WimRecord
from zhichao.devices.reasons import EVENT_CLOCK_JUMP
from zhichao.station.clock import Clock
from zhichao.station.config import StationConfig
from zhichao.station.errors import JournalError
from zhichao.station.linking import FrameLinker
from zhichao.station.ops import StationMetrics
from zhichao.station.store import StationStore
from zhichao.weighing.calibration_profile import CalibrationProfile
from zhichao.weighing.config import WeighingConfig
from zhichao.weighing.reported import weigh_reported
from zhichao.weighing.vehicle import WeighedVehicle

LOG = logging.getLogger("zhichao.station")
_DATETIMES = ("device_time_utc", "station_time_utc")
_TUPLES = ("axle_loads_kg", "axle_spacings_m", "row_gross_weights_kg", "events")

#: a weighed record and what the package says about the device that weighed it
OnRecordVehicle = Callable[[WeighedVehicle, dict[str, Any]], None]


def record_to_json(r: WimRecord) -> dict[str, Any]:
    raw = asdict(r)
    for key in _DATETIMES:
        raw[key] = None if raw[key] is None else raw[key].isoformat()
    return raw


def record_from_json(raw: dict[str, Any]) -> WimRecord:
    data = dict(raw)
    for key in _DATETIMES:
        data[key] = None if data[key] is None else datetime.fromisoformat(data[key])
    for key in _TUPLES:
        data[key] = tuple(data[key])
    data["wheel_loads_kg"] = tuple((float(a), float(b)) for a, b in data["wheel_loads_kg"])
    return WimRecord(**data)


class RecordJournal:
    """Every record the station received, one JSON line each (``{"n": ordinal, "record":
    …}``), in segments ``rec-<first ordinal>.jsonl``. A torn last line (a kill mid-write)
    is cut off on open; segments wholly committed are deleted (:meth:`prune`), never the
    newest (it holds the newest record, against which re-delivered ones are recognised)."""

    def __init__(self, directory: Path, *, segment_records: int = 1000,
                 fsync_interval_s: float = 0.5) -> None:
        self.dir = directory
        self.segment_records = segment_records
        self.fsync_interval_s = fsync_interval_s
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"{self.dir}: cannot create the record journal: {exc}") from exc
        self._fd: int | None = None
        self._seg_count = 0
        self._last_sync = time.monotonic()
        self.last: tuple[int, WimRecord] | None = None  # the last journalled record (ordinal)
        # the newest journalled record by the controller's counter: a late record (below
        # the newest counter, journalled after it) does not move it
        self.newest: WimRecord | None = None
        # (boot, seq) → device time of the newest RECENT_RECORDS journalled records: a resend
        # is told from a late arrival by them (:func:`redelivered`)
        self.recent: OrderedDict[tuple[int, int], datetime] = OrderedDict()
        for path in self._segments():
            self._recover(path)

    def _segments(self) -> list[Path]:
        return sorted(self.dir.glob("rec-*.jsonl"), key=lambda p: int(p.stem[4:]))

    def _recover(self, path: Path) -> None:
        """Cut a torn tail; remember the newest record."""
        good = 0
        with open(path, "rb") as f:
            data = f.read()
        for line in data.splitlines(keepends=True):
            try:
                entry = json.loads(line)
                last = (int(entry["n"]), record_from_json(entry["record"]))
            except (ValueError, KeyError, TypeError):
                break
            if not line.endswith(b"\n"):
                break
            good += len(line)
            self.last = last
            self._remember(last[1])
        if good < len(data):
            with open(path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
            LOG.warning("record journal: torn tail cut", extra={"fields": {
                "segment": path.name, "bytes": len(data) - good}})

    @property
    def end_ordinal(self) -> int:
        """The next ordinal to give."""
        return 0 if self.last is None else self.last[0] + 1

    def append(self, n: int, r: WimRecord) -> None:
        line = json.dumps({"n": n, "record": record_to_json(r)}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8") + b"\n"
        try:
            if self._fd is None or self._seg_count >= self.segment_records:
                self._open_segment(n)
            assert self._fd is not None
            start = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                view = memoryview(line)
                while view:  # a short write (a full disk) is finished or undone
                    view = view[os.write(self._fd, view):]
            except OSError:
                with contextlib.suppress(OSError):  # never leave a torn line behind
                    os.ftruncate(self._fd, start)
                raise
            self._seg_count += 1
            if time.monotonic() - self._last_sync >= self.fsync_interval_s:
                os.fsync(self._fd)
                self._last_sync = time.monotonic()
        except OSError as exc:
            raise JournalError(f"{self.dir}: cannot append record {n}: {exc}") from exc
        self.last = (n, r)
        self._remember(r)

    def _open_segment(self, n: int) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
        path = self.dir / f"rec-{n}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._seg_count = 0
        fsync_dir(self.dir)

    def _remember(self, r: WimRecord) -> None:
        if self.newest is None or not late_record(self.newest, r):
            self.newest = r
        self.recent[(r.boot_id, r.seq)] = r.device_time_utc
        self.recent.move_to_end((r.boot_id, r.seq))
        while len(self.recent) > RECENT_RECORDS:
            self.recent.popitem(last=False)

    def replay(self, after: int) -> Iterator[tuple[int, WimRecord]]:
        """The journalled records with an ordinal above ``after``, in order."""
        for path in self._segments():
            with open(path, "rb") as f:
                for line in f:
                    entry = json.loads(line)
                    if int(entry["n"]) > after:
                        yield int(entry["n"]), record_from_json(entry["record"])

    def prune(self, committed: int) -> None:
        """Delete segments whose records are all committed (the newest is kept)."""
        segs = self._segments()
        for path, nxt in zip(segs, segs[1:], strict=False):
            if int(nxt.stem[4:]) - 1 <= committed:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


RECENT_RECORDS = 1024
"""Journalled records remembered by (boot, counter) to tell a resend from a late one."""
LATE_WINDOW = RECENT_RECORDS // 2
"""A record this many counters or fewer below the newest that was never journalled is a
late one (kept); further back it is taken for a resend (dropped)."""


def late_record(newest: WimRecord, r: WimRecord) -> bool:
    """``r`` comes from before ``newest`` in the controller's own order: the same boot, a
    lower counter and a device time not after it."""
    return (r.boot_id == newest.boot_id and r.seq < newest.seq
            and r.device_time_utc <= newest.device_time_utc)


def redelivered(last: WimRecord | None, r: WimRecord,
                recent: Mapping[tuple[int, int], datetime] | None = None) -> bool:
    """``r`` is a record the station already has: one of the ``recent`` journalled records
    again (same boot, counter and device time), or the same controller boot, a counter
    not above the newest journalled record's and a device time not after it (a controller
    that restarted without a boot counter sends new vehicles: later times, kept). A
    record of the newest boot below the newest counter that ``recent`` does not hold while
    it reaches back past that counter is a **late arrival** (a controller that delivered
    it after a later one; the driver reports the gap it had opened filled): kept, never
    dropped as a resend."""
    if recent is not None and recent.get((r.boot_id, r.seq)) == r.device_time_utc:
        return True
    if not (last is not None and r.boot_id == last.boot_id and r.seq <= last.seq
            and r.device_time_utc <= last.device_time_utc):
        return False
    # within the newest LATE_WINDOW counters, which ``recent`` (twice as many arrivals)
    # holds whenever they were journalled: never journalled, so late, not resent (a window
    # by arrival order took an old resend for a late record and weighed it twice)
    return not (recent is not None and (r.boot_id, r.seq) not in recent
                and last.seq - r.seq < LATE_WINDOW)


def missed_since(last: WimRecord | None, r: WimRecord) -> int:
    """Records the controller sent that never reached the station since the newest
    journalled one: exact when its counter continued, -1 (unknown) after a reboot."""
    if last is None:
        return 0
    if r.boot_id != last.boot_id or r.seq <= last.seq:
        return -1
    return r.seq - last.seq - 1


class RecordIntake:
    """Records on the station's ordinal timeline, journalled, re-weighed by zhichao."""

    def __init__(self, cfg: StationConfig, store: StationStore, journal: RecordJournal,
                 linker: FrameLinker, clock: Clock, profile: CalibrationProfile | None,
                 weighing: WeighingConfig, metrics: StationMetrics,
                 on_vehicle: OnRecordVehicle, scheme: str) -> None:
        self.cfg = cfg
        self.store = store
        self.journal = journal
        self.linker = linker
        self.clock = clock
        self.profile = profile
        self.weighing = weighing
        self.metrics = metrics
        self.on_vehicle = on_vehicle
        self.scheme = scheme
        self.redelivered = 0
        self.replayed = 0
        self._station_gap_checked = False
        self.last_receipt_utc: datetime | None = None
        # records received but not journalled (the journal's disk was full): taken again,
        # in order, before the next one; the gap a record reports is recorded once
        self._unjournalled: list[WimRecord] = []
        self._gap_recorded: tuple[int, int] | None = None

    @property
    def stream_index(self) -> int:
        return self.journal.end_ordinal

    def stream_time(self) -> datetime:
        """The reference clock now, in the controller's clock (what the link step waits
        on, as a sample stream's time)."""
        return self.clock.now() + timedelta(seconds=self.linker.wim_offset.offset_s or 0.0)

    def replay(self, committed: int) -> None:
        """Weigh again every journalled record not yet committed (start-up)."""
        for n, r in self.journal.replay(committed):
            self.weigh(n, r)
            self.replayed += 1
        LOG.info("record journal replayed", extra={"fields": {
            "after_ordinal": committed, "records": self.replayed}})

    def on_record(self, r: WimRecord) -> None:
        """Journal and weigh ``r``, after any record a full disk left unjournalled; a
        journal that cannot be written keeps them all in order and raises (the station's
        loop opens the disk alarm and calls again with the next record)."""
        waiting, self._unjournalled = [*self._unjournalled, r], []
        for i, rec in enumerate(waiting):
            try:
                self._take(rec)
            except JournalError:
                self._unjournalled = waiting[i:]
                raise

    def _take(self, r: WimRecord) -> None:
        last = self.journal.newest  # by counter: a late record journalled last is not it
        if redelivered(last, r, self.journal.recent):
            self.redelivered += 1
            return
        if last is not None and r.boot_id == last.boot_id and r.seq < last.seq:
            LOG.info("a late record kept", extra={"fields": {
                "boot_id": r.boot_id, "seq": r.seq, "newest_seq": last.seq}})
        if not self._station_gap_checked:  # the first record of this run
            self._station_gap_checked = True
            missed = missed_since(last, r)
            if missed:
                with self.store.transaction() as con:
                    # counted from the newest journalled record: a gap recorded there by a
                    # run killed before it journalled anything more is part of this one
                    self.store.record_gap(con, self.journal.end_ordinal, missed,
                                          "station_restart", supersedes=True)
                self.metrics.errors.labels("wim_gap").inc()
        if r.gap_before_records and self._gap_recorded != (r.boot_id, r.seq):
            self._gap_recorded = (r.boot_id, r.seq)
            with self.store.transaction() as con:
                self.store.record_gap(con, self.journal.end_ordinal, r.gap_before_records,
                                      r.reason or "sequence_gap")
            self.metrics.errors.labels("wim_gap").inc()
        n = self.journal.end_ordinal
        self.journal.append(n, r)
        if r.station_time_utc is not None:
            self.last_receipt_utc = r.station_time_utc
            arrival = self.clock.at_wall(r.station_time_utc.timestamp())
            if EVENT_CLOCK_JUMP in r.events:  # its offsets so far no longer apply
                self.linker.wim_offset.reset()
            self.linker.wim_offset.add((r.device_time_utc - arrival).total_seconds())
        self.weigh(n, r)

    def weigh(self, n: int, r: WimRecord) -> None:
        t0 = time.perf_counter()
        v = weigh_reported(r, site_id=self.cfg.site.site_id, lane_id=self.cfg.lane.lane_id,
                           config=self.weighing, profile=self.profile,
                           recording=r.source or None)
        self.metrics.stage_latency.labels("weighing").observe(time.perf_counter() - t0)
        v = replace(v, first_sample=n, last_sample=n)
        self.on_vehicle(v, wim_source(r, n, self.scheme))


def wim_source(r: WimRecord, n: int, scheme: str) -> dict[str, Any]:
    """What the package says about the device that weighed a record passage (the vehicle
    record's ``wim_source``; a sample-stream passage has none: zhichao weighed it)."""
    return {"wim_source": {
        "kind": "records", "scheme": scheme,
        "description_zh": "称重控制器上报的车辆记录（轴重、轴距、车速），由本系统重新计算",
        "boot_id": r.boot_id, "seq": r.seq,
        "device_time_utc": format_utc(r.device_time_utc),
        "station_ordinal": n,
        "note": "first_sample and last_sample are the station's record ordinal"}}
