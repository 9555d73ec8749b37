"""The small utilities every stage shares, one of each: UTC time, durable atomic writes and
exponential back-off. This module imports nothing from zhichao, so any stage may use it.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path


# ---------------------------------------------------------------------------- UTC time
def utc_now() -> datetime:
    """Now, tz-aware UTC (storage and file formats are UTC; pages show 北京时间)."""
    return datetime.now(UTC)


BEIJING = timezone(timedelta(hours=8), "北京时间")
"""China Standard Time (UTC+8, no daylight saving): the time of dates in law and approvals."""


def beijing_date(t: datetime) -> date:
    """The calendar date in Beijing of an aware moment (a date in law, such as the day a
    device was approved, is a Beijing date; a UTC moment before 16:00 falls on the same
    date, one after it on the next)."""
    if t.tzinfo is None:
        raise ValueError("beijing_date needs an aware datetime")
    return t.astimezone(BEIJING).date()


def format_utc(t: datetime | None = None, *, timespec: str = "microseconds") -> str:
    """RFC 3339 UTC with ``Z`` (``timespec`` "microseconds" or "milliseconds"); ``None``
    is now. A naive datetime is refused: every timestamp in zhichao is tz-aware."""
    t = utc_now() if t is None else t
    if t.tzinfo is None:
        raise ValueError("naive datetime: every timestamp in zhichao is UTC and tz-aware")
    return t.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """Parse an RFC 3339 UTC timestamp ending in ``Z``."""
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError(f"not an RFC 3339 UTC time ending in 'Z': {text!r}")
    return datetime.fromisoformat(text[:-1] + "+00:00").astimezone(UTC)


# ---------------------------------------------------------------------------- files
def fsync_dir(path: Path) -> None:
    """fsync a folder (makes a rename or a new name in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, fsync: bool = True, mode: int = 0o644,
                 stamp_now: bool = False) -> None:
    """Write ``data`` to ``path`` so that a reader (or a restart after a kill) sees the old
    content or the new, never a mix: a temporary name in the same folder, fsync, rename,
    fsync of the folder. ``fsync=False`` skips both fsyncs (a kill is still safe; a power
    loss may lose the write) for data that is not evidence. ``stamp_now``: the file's
    modification time is set from ``time.time()`` just before the rename (the filesystem's
    own stamp comes from a coarser kernel clock, which can lag behind)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    if stamp_now:
        now_ns = time.time_ns()
        os.utime(tmp, ns=(now_ns, now_ns))
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)


# ---------------------------------------------------------------------------- retrying
@dataclass
class Backoff:
    """Exponential back-off [s]: ``initial_s`` after the first failure, ``factor`` times
    more after each further one, at most ``max_s``.

    :meth:`delay_s` with an ``rng`` draws the delay from the upper half of that ceiling
    (jitter: many clients recovering at once do not retry in step); :meth:`next_delay` /
    :meth:`reset` count the failures themselves (a reconnecting device driver).
    """

    initial_s: float = 0.05
    max_s: float = 5.0
    factor: float = 2.0
    _failures: int = field(default=0, init=False, repr=False)

    def delay_s(self, failures: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_s,
                      self.initial_s * self.factor ** min(max(failures - 1, 0), 40))
        return ceiling if rng is None else rng.uniform(ceiling / 2.0, ceiling)

    def next_delay(self) -> float:
        self._failures += 1
        return self.delay_s(self._failures)

    def reset(self) -> None:
        self._failures = 0
