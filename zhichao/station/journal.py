"""The raw sample journal: every block the station received, appended before it is weighed.

A station killed at any moment restarts by replaying the journal from its durable position
(a stream index before every vehicle not yet committed) and then continues with the live
stream, so no vehicle whose samples reached the station is lost.

Layout: ``journal/seg-<seq>-<first index>.zsj`` segments of records::

    magic "ZSJ1" | first_index u64 | n_samples u32 | n_channels u16 | reserved u16
    | gap_before i64 | crc32 u32 (of header fields and payload) | float32 payload

``write()`` reaches the page cache at once (a killed process loses nothing it wrote);
``fsync`` runs at most every ``fsync_interval_s`` (power loss loses at most that much).
Segments older than the durable position are deleted (:meth:`prune`).

A record that fails its check (magic, length or CRC) is handled in one of two ways:

* **a torn tail**: bad bytes at the end of the newest segment with no valid record after
  them (a kill mid-write, the normal case) are cut off on open (:attr:`torn_records`);
* **damage**: bad bytes followed by a valid record (or at the end of an older segment).
  The reader resynchronises on the next valid record (magic and CRC), so only the bad
  bytes are skipped and every valid record after them is kept; nothing is cut from the
  file. Each damaged stretch is logged (a warning with the segment and byte range) and
  listed in :attr:`SampleJournal.damage` with the samples it held, which the station
  records as a gap (``journal_corrupt``) with an alarm; replay feeds the weighing core a
  gap there, as for any missing stretch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from zhichao.common import fsync_dir
from zhichao.station.errors import JournalError

LOG = logging.getLogger("zhichao.station")
_MAGIC = b"ZSJ1"
_HEAD = struct.Struct("<4sQIHHqI")
_SEGMENT_NAME = re.compile(r"seg-\d+-\d+\.zsj")


@dataclass(frozen=True)
class JournalBlock:
    first_index: int
    samples: npt.NDArray[np.float32]
    gap_before_samples: int

    @property
    def end_index(self) -> int:
        return self.first_index + int(self.samples.shape[0])


@dataclass(frozen=True)
class JournalDamage:
    """Bytes ``[byte_start, byte_end)`` of ``segment`` hold no valid record and a valid
    record (or the next segment) follows: the samples ``[first_index, end_index)`` are
    lost from the journal."""

    segment: Path
    byte_start: int
    byte_end: int
    first_index: int
    end_index: int

    @property
    def n_samples(self) -> int:
        return max(0, self.end_index - self.first_index)

    def describe(self) -> str:
        return (f"{self.segment.name} bytes {self.byte_start}-{self.byte_end}: samples "
                f"{self.first_index}-{self.end_index} ({self.n_samples}) lost")


@dataclass(frozen=True)
class _Record:
    offset: int
    size: int
    first_index: int
    end_index: int


@dataclass(frozen=True)
class _SegmentScan:
    records: list[_Record]
    bad: list[tuple[int, int]]  # byte ranges with a valid record after them
    tail: int | None  # where a bad tail (no valid record after it) begins
    size: int

    @property
    def end_index(self) -> int | None:
        return self.records[-1].end_index if self.records else None


def _crc(first: int, n: int, ch: int, gap: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QIHq", first, n, ch, gap)))


def _record_at(data: bytes, pos: int) -> _Record | None:
    """The valid record at ``pos`` (magic, whole, CRC), or None."""
    if pos + _HEAD.size > len(data):
        return None
    magic, first, n, ch, _, gap, crc = _HEAD.unpack_from(data, pos)
    size = _HEAD.size + 4 * n * ch
    if magic != _MAGIC or pos + size > len(data):
        return None
    if _crc(first, n, ch, gap, data[pos + _HEAD.size:pos + size]) != crc:
        return None
    return _Record(pos, size, first, first + n)


def _next_record(data: bytes, start: int) -> _Record | None:
    """The first valid record at or after ``start`` (resynchronising on the magic)."""
    at = data.find(_MAGIC, start)
    while at >= 0:
        rec = _record_at(data, at)
        if rec is not None:
            return rec
        at = data.find(_MAGIC, at + 1)
    return None


def _scan_bytes(data: bytes) -> _SegmentScan:
    records: list[_Record] = []
    bad: list[tuple[int, int]] = []
    tail: int | None = None
    pos = 0
    while pos < len(data):
        rec = _record_at(data, pos)
        if rec is None:
            rec = _next_record(data, pos + 1)
            if rec is None:
                tail = pos
                break
            bad.append((pos, rec.offset))
        records.append(rec)
        pos = rec.offset + rec.size
    return _SegmentScan(records, bad, tail, len(data))


def _segment_first(path: Path) -> int:
    """The first stream index a segment's name gives (``seg-<seq>-<first>.zsj``)."""
    return int(path.name.split("-")[2].split(".")[0])


class SampleJournal:
    def __init__(self, directory: Path, *, segment_samples: int = 300_000,
                 fsync_interval_s: float = 0.5) -> None:
        self.dir = directory
        self.segment_samples = segment_samples
        self.fsync_interval_s = fsync_interval_s
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"{self.dir}: cannot create the journal folder: {exc}") from exc
        self._fd: int | None = None
        self._seg_first = 0
        self._seg_samples = 0
        self._seg_bytes = 0
        self._last_sync = time.monotonic()
        self.end_index: int | None = None
        self.torn_records = 0  # torn last records cut off on open (a kill mid-write)
        self.damage: list[JournalDamage] = []  # damaged stretches found on open
        self._recover()

    def _segments(self) -> list[Path]:
        """The segments, oldest first (a file whose name is not a segment's is ignored)."""
        return sorted(p for p in self.dir.glob("seg-*.zsj") if _SEGMENT_NAME.fullmatch(p.name))

    def _scan(self, path: Path) -> _SegmentScan:
        with open(path, "rb") as f:
            return _scan_bytes(f.read())

    def _recover(self) -> None:
        """Scan every segment: damaged stretches are listed (:attr:`damage`) and logged,
        a torn tail of the newest segment is cut off (the segment deleted when it holds no
        valid record at all)."""
        segs = self._segments()
        scans = [self._scan(p) for p in segs]
        for i, (path, scan) in enumerate(zip(segs, scans, strict=True)):
            newest = i == len(segs) - 1
            stretches = list(scan.bad)
            if scan.tail is not None and not newest:
                stretches.append((scan.tail, scan.size))  # an older segment: damage too
            for start, stop in stretches:
                before = [r for r in scan.records if r.offset < start]
                first = before[-1].end_index if before else _segment_first(path)
                after = [r for r in scan.records if r.offset >= stop]
                if after:
                    end = after[0].first_index
                else:  # the rest of the segment: up to the next segment's first record
                    nxt = scans[i + 1].records if i + 1 < len(scans) else []
                    end = nxt[0].first_index if nxt else _segment_first(segs[i + 1])
                d = JournalDamage(path, start, stop, first, max(first, end))
                self.damage.append(d)
                LOG.warning("journal damaged: bad bytes skipped, the valid records after "
                            "them kept", extra={"fields": {
                                "segment": str(path), "byte_start": start,
                                "byte_end": stop, "first_index": d.first_index,
                                "end_index": d.end_index, "samples_lost": d.n_samples}})
        if not segs:
            return
        last, scan = segs[-1], scans[-1]
        if scan.tail is not None:  # a record torn by a kill mid-write
            self.torn_records += 1
            LOG.info("journal: a torn last record cut off", extra={"fields": {
                "segment": str(last), "byte_start": scan.tail, "bytes": scan.size - scan.tail}})
            if not scan.records:  # nothing valid in it: the whole file is the torn record
                last.unlink()
            else:
                with open(last, "r+b") as f:
                    f.truncate(scan.tail)
                    f.flush()
                    os.fsync(f.fileno())
        self.end_index = next((s.end_index for s in reversed(scans)
                               if s.end_index is not None), None)

    def append(self, first_index: int, samples: npt.NDArray[np.float32],
               gap_before_samples: int) -> None:
        data = np.ascontiguousarray(samples, dtype="<f4")
        n, ch = data.shape
        if self._fd is None or self._seg_samples >= self.segment_samples:
            try:
                self._rotate(first_index)
            except OSError as exc:
                self._fd = None
                raise JournalError(f"{self.dir}: cannot start a journal segment: {exc}"
                                   ) from exc
        assert self._fd is not None
        payload = data.tobytes()
        head = _HEAD.pack(_MAGIC, first_index, n, ch, 0, gap_before_samples,
                          _crc(first_index, n, ch, gap_before_samples, payload))
        try:
            written = os.write(self._fd, head + payload)
            if written != len(head) + len(payload):
                raise OSError(f"short write ({written} of {len(head) + len(payload)} bytes)")
        except OSError as exc:
            # cut a partial record off and start a new segment next time, so the records
            # after this one are not hidden behind a torn one (replay sees a gap here)
            self._abandon_segment()
            raise JournalError(f"{self.dir}: cannot append to the journal: {exc}") from exc
        self._seg_samples += n
        self._seg_bytes += len(head) + len(payload)
        self.end_index = first_index + n
        if time.monotonic() - self._last_sync >= self.fsync_interval_s:
            self.sync()

    def _abandon_segment(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # if not, the next open cuts it (length/CRC)
            os.ftruncate(fd, self._seg_bytes)
        with contextlib.suppress(OSError):
            os.close(fd)

    def _rotate(self, first_index: int) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
        segs = self._segments()
        seq = int(segs[-1].name.split("-")[1]) + 1 if segs else 1
        path = self.dir / f"seg-{seq:08d}-{first_index:016d}.zsj"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._seg_first = first_index
        self._seg_samples = 0
        self._seg_bytes = 0
        fsync_dir(self.dir)

    def sync(self) -> None:
        self._last_sync = time.monotonic()
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise JournalError(f"{self.dir}: cannot sync the journal: {exc}") from exc

    def replay(self, from_index: int) -> Iterator[JournalBlock]:
        """Blocks from ``from_index`` on, in order; the first is cut to start there. Bad
        bytes are skipped (:attr:`damage`): the next block's first index jumps there."""
        for path in self._segments():
            with open(path, "rb") as f:
                data = f.read()
            for rec in _scan_bytes(data).records:
                if rec.end_index <= from_index:
                    continue
                _, first, n, ch, _, gap, _ = _HEAD.unpack_from(data, rec.offset)
                arr = np.frombuffer(data, dtype="<f4", count=n * ch,
                                    offset=rec.offset + _HEAD.size).reshape(n, ch)
                if first < from_index:
                    arr = arr[from_index - first:]
                    first, gap = from_index, 0
                yield JournalBlock(first, arr.astype(np.float32), gap)

    def prune(self, before_index: int) -> int:
        """Delete segments that end before ``before_index``; returns how many."""
        segs = self._segments()
        removed = 0
        for a, b in zip(segs, segs[1:], strict=False):
            if _segment_first(b) <= before_index:
                a.unlink()
                removed += 1
        return removed

    def close(self) -> None:
        """Sync and close the open segment (closed even when the sync fails: raised)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            raise JournalError(f"{self.dir}: cannot sync the journal: {exc}") from exc
        finally:
            os.close(fd)
