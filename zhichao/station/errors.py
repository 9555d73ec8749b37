"""Exceptions of the station runtime.

Tree::

    ZhichaoError
    └── StationError             root of the station stage
        ├── StationConfigError   station.toml is unusable (names the key and the problem)
        ├── StoreError           the station database is unusable or inconsistent
        ├── JournalError         the raw sample journal is unusable
        ├── SealingStoppedError  evidence cannot be written safely (disk full, read-only)
        ├── TimeSourceError      a time source gave no usable answer (clock check)
        └── RetentionError       a retention run could not finish (files, database)
"""

from __future__ import annotations

from zhichao.errors import ZhichaoError


class StationError(ZhichaoError):
    """Root of every exception the station runtime raises on purpose."""


class StationConfigError(StationError):
    """A station.toml key is missing, mistyped or out of range (the message names it)."""


class StoreError(StationError):
    """The station store (SQLite) cannot be opened or is inconsistent."""


class JournalError(StationError):
    """The raw sample journal cannot be written or read back."""


class SealingStoppedError(StationError):
    """Sealing is stopped: the evidence folder is full, read-only or missing."""


class TimeSourceError(StationError):
    """A time source (an NTP server) gave no usable answer (the message says why)."""


class RetentionError(StationError):
    """A retention run could not finish: a file that cannot be deleted, the database
    (nothing is marked purged that still has files; the next run finishes it)."""
