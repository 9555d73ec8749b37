"""A full disk stops the station's writing and says so; it never ends the station.

* **The reserve** (:class:`DiskReserve`): ``<data>/disk-reserve.bin``, a preallocated file
  of ``station.disk_reserve_mb`` (64) MiB, made at start-up once the data folder has room
  for it and ``evidence.min_free_mb`` besides. Start-up deletes it, before the database is
  opened, when the data folder has less than ``evidence.min_free_mb`` free, so that on a
  completely full disk the database can open (its WAL and shared-memory files, the
  schema version) and the ``disk_full`` alarm can be stored; the running station deletes
  it when the alarm itself cannot be stored. It is made again once there is room.
* **The guard** (:class:`DiskGuard`, the pipeline thread's): the data folder's free space
  is checked every :data:`CHECK_S` (and at start) against ``evidence.min_free_mb``; below
  it, or after a write of the pipeline failed for want of space (:func:`is_disk_full`:
  ``ENOSPC``/``EDQUOT``, SQLite's ``SQLITE_FULL`` or an I/O error of the database), the
  station *stops committing*: weighed vehicles wait in memory, in order (the journal keeps
  their samples while it can; the durable position does not move, so a restart weighs them
  again from it), the ``disk_full`` stage alarm is open (``/health`` degraded) and the
  commit is tried again every :data:`CHECK_S` once there is room. The alarm closes after a
  whole check interval with room and no failed write.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from pathlib import Path

from zhichao.common import fsync_dir
from zhichao.station.alarms import StageHealth

LOG = logging.getLogger("zhichao.station")
RESERVE_NAME = "disk-reserve.bin"
CHECK_S = 2.0  # the data folder's free space is looked at this often [s]
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
STAGE = "disk"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the disk has no room: an
    ``OSError`` ENOSPC/EDQUOT, or SQLite's ``SQLITE_FULL`` or an I/O error (how SQLite
    reports a WAL or shared-memory file it could not grow)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            return True
        if isinstance(e, sqlite3.OperationalError):
            code = getattr(e, "sqlite_errorcode", None)
            if code is not None and (code & 0xFF) in (sqlite3.SQLITE_FULL,
                                                      sqlite3.SQLITE_IOERR):
                return True
            text = str(e)
            if "database or disk is full" in text or "disk I/O error" in text:
                return True
        e = e.__cause__ or e.__context__
    return False


def free_mb(path: Path) -> float:
    """Free space for an unprivileged writer on ``path``'s filesystem [MB]."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 1e6


class DiskReserve:
    """The preallocated file that start-up gives up so a full disk still lets the
    station open its database and store the alarm."""

    def __init__(self, data_dir: Path, size_mb: float) -> None:
        self.path = data_dir / RESERVE_NAME
        self.size_bytes = int(size_mb * 1024 * 1024)

    @property
    def present(self) -> bool:
        return self.path.exists()

    def release(self) -> bool:
        """Delete the reserve; True if there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        LOG.error("disk reserve released: the data folder is (nearly) full", extra={
            "fields": {"reserve": str(self.path), "bytes": self.size_bytes}})
        return True

    def restore(self, min_free_mb: float) -> bool:
        """Make the reserve if it is missing and the folder has room for it and
        ``min_free_mb`` besides; True if it was made."""
        if self.size_bytes <= 0 or self.present:
            return False
        try:
            if free_mb(self.path.parent) < self.size_bytes / 1e6 + min_free_mb:
                return False
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                try:  # real blocks, not a sparse file: deleting it frees them
                    os.posix_fallocate(fd, 0, self.size_bytes)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    _write_zeros(fd, self.size_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:  # no room after all: tried again later
            self.path.with_name(f".{self.path.name}.tmp").unlink(missing_ok=True)
            LOG.warning("disk reserve not made", extra={"fields": {"error": repr(exc)}})
            return False
        LOG.info("disk reserve made", extra={"fields": {
            "reserve": str(self.path), "bytes": self.size_bytes}})
        return True


def _write_zeros(fd: int, n: int) -> None:
    chunk = bytes(1 << 20)
    left = n
    while left > 0:
        left -= os.write(fd, chunk[:min(left, len(chunk))])


def prepare_data_dir(data_dir: Path, reserve: DiskReserve, min_free_mb: float) -> str | None:
    """Before the database opens: with less than ``min_free_mb`` free the reserve is
    released (so the database can open and the alarm be stored); else it is made if
    missing. Why the disk is short (English, for the alarm), or None."""
    data_dir.mkdir(parents=True, exist_ok=True)
    free = free_mb(data_dir)
    if free >= min_free_mb:
        reserve.restore(min_free_mb)
        return None
    released = reserve.release()
    return (f"{data_dir}: {free:.1f} MB free < evidence.min_free_mb {min_free_mb:g} MB at "
            f"start-up" + ("; the disk reserve was released" if released else ""))


class DiskGuard:
    """The pipeline thread's view of the data folder's space: whether commits wait
    (:attr:`stopped`) and the ``disk_full`` alarm."""

    def __init__(self, data_dir: Path, min_free_mb: float, reserve: DiskReserve,
                 stages: StageHealth) -> None:
        self.data_dir = data_dir
        self.min_free_mb = min_free_mb
        self.reserve = reserve
        self.stages = stages
        self.stopped: str | None = None  # why commits wait (English), or None
        self.failures = 0  # writes refused for want of space, this run
        self._next_check = 0.0

    def low(self) -> str | None:
        """Why the data folder is short of space now, or None."""
        try:
            free = free_mb(self.data_dir)
        except OSError as exc:
            return f"{self.data_dir}: {exc}"
        if free < self.min_free_mb:
            return (f"{self.data_dir}: {free:.1f} MB free < evidence.min_free_mb "
                    f"{self.min_free_mb:g} MB")
        return None

    def full(self, detail: str) -> None:
        """A write of the pipeline failed for want of space (or the folder is short):
        commits wait, the alarm opens (the reserve given up if the alarm cannot be
        stored otherwise)."""
        self.failures += 1
        if self.stopped is None:
            LOG.error("disk full: the station stops committing until there is room",
                      extra={"fields": {"detail": detail}})
        self.stopped = detail
        self._next_check = time.monotonic() + CHECK_S
        try:
            self.stages.failed(STAGE, detail)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            if not self.reserve.release():
                LOG.critical("disk full: the disk_full alarm cannot be stored", extra={
                    "fields": {"detail": detail, "error": repr(exc)}})
                return
            try:
                self.stages.failed(STAGE, detail)
            except Exception as again:
                if not is_disk_full(again):
                    raise
                LOG.critical("disk full: the disk_full alarm cannot be stored", extra={
                    "fields": {"detail": detail, "error": repr(again)}})

    def poll(self, *, force: bool = False) -> None:
        """Every :data:`CHECK_S`: below the threshold, stop; with room, let the commits be
        tried again; after a whole interval with room and no failure, close the alarm and
        make the reserve again."""
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        self._next_check = now + CHECK_S
        why = self.low()
        if why is not None:
            self.full(why)
            return
        if self.stopped is not None:  # room again: the next commit tries
            LOG.info("disk has room again: commits are tried again", extra={"fields": {
                "was": self.stopped}})
            self.stopped = None
            return
        self.stages.succeeded(STAGE)
        self.reserve.restore(self.min_free_mb)
