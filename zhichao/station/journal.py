"""The raw sample journal: every block the station received, appended before it is weighed.

A station killed at any moment restarts by replaying the journal from its durable position
(a stream index before every vehicle not yet committed) and then continues with the live
stream, so no vehicle whose samples reached the station is lost.

Layout: ``journal/seg-<seq>-<first index>.zsj`` segments of records::

    magic "ZSJ1" | first_index u64 | n_samples u32 | n_channels u16 | reserved u16
    | gap_before i64 | crc32 u32 (of header fields and payload) | float32 payload

``write()`` reaches the page cache at once (a killed process loses nothing it wrote);
``fsync`` runs at most every ``fsync_interval_s`` (power loss loses at most that much).
A torn last record (crash mid-write) is detected by length or CRC and cut off on open.
Segments older than the durable position are deleted (:meth:`prune`).
"""

from __future__ import annotations

import contextlib
import os
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

_MAGIC = b"ZSJ1"
_HEAD = struct.Struct("<4sQIHHqI")


@dataclass(frozen=True)
class JournalBlock:
    first_index: int
    samples: npt.NDArray[np.float32]
    gap_before_samples: int

    @property
    def end_index(self) -> int:
        return self.first_index + int(self.samples.shape[0])


def _crc(first: int, n: int, ch: int, gap: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QIHq", first, n, ch, gap)))


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
        self.torn_records = 0
        self._recover()

    def _segments(self) -> list[Path]:
        return sorted(self.dir.glob("seg-*.zsj"))

    def _scan(self, path: Path) -> tuple[int, int | None]:
        """(bytes of whole, valid records; end index of the last one)."""
        good, end = 0, None
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + _HEAD.size <= len(data):
            magic, first, n, ch, _, gap, crc = _HEAD.unpack_from(data, pos)
            size = _HEAD.size + 4 * n * ch
            if magic != _MAGIC or pos + size > len(data):
                break
            payload = data[pos + _HEAD.size:pos + size]
            if _crc(first, n, ch, gap, payload) != crc:
                break
            pos += size
            good, end = pos, first + n
        if good < len(data):
            self.torn_records += 1
        return good, end

    def _recover(self) -> None:
        segs = self._segments()
        if not segs:
            return
        last = segs[-1]
        good, end = self._scan(last)
        if good == 0:
            last.unlink()
            if len(segs) > 1:
                _, end = self._scan(segs[-2])
            self.end_index = end
            return
        with open(last, "r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
        self.end_index = end

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
        """Blocks from ``from_index`` on, in order; the first is cut to start there."""
        for path in self._segments():
            good, _ = self._scan(path)
            with open(path, "rb") as f:
                data = f.read(good)
            pos = 0
            while pos < len(data):
                _, first, n, ch, _, gap, _ = _HEAD.unpack_from(data, pos)
                size = _HEAD.size + 4 * n * ch
                end = first + n
                if end > from_index:
                    arr = np.frombuffer(data, dtype="<f4", count=n * ch,
                                        offset=pos + _HEAD.size).reshape(n, ch)
                    if first < from_index:
                        arr = arr[from_index - first:]
                        first, gap = from_index, 0
                    yield JournalBlock(first, arr.astype(np.float32), gap)
                pos += size

    def prune(self, before_index: int) -> int:
        """Delete segments that end before ``before_index``; returns how many."""
        segs = self._segments()
        removed = 0
        for a, b in zip(segs, segs[1:], strict=False):
            nxt = int(b.name.split("-")[2].split(".")[0])
            if nxt <= before_index:
                a.unlink()
                removed += 1
        return removed

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None
