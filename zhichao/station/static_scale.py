"""The station's static weighbridge (复检): its configuration, its readings, its reader.

``[static_scale]`` in station.toml names a weighing indicator by URL (any the devices
stage's registry opens: ``xk3190+serial://``, ``toledo+tcp://``, ``modbus+tcp://…?map=…``)
and the scale's verification certificate (:func:`certificate_of`).

:class:`ScaleReader` runs on a thread of its own: it reads the indicator and, each time the
display settles (:class:`Settler`: the indicator's own stable bit, or — XK3190 frames have
none — ``stable_readings`` equal readings over ``stable_min_s``), hands one reading with its
status flags and raw bytes to the pipeline thread, which stores it (:class:`ReadingStore`,
table ``static_readings`` of ``station.db``). A settled display flagged ``overload`` or
``unstable`` or ``net`` is stored too, with its flags, so the officer sees it — and cannot
link it (:func:`zhichao.evidence.static_reading.reading_problem`). A scale that keeps
failing (no link, no frames) opens the ``static_scale_failed`` alarm.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from zhichao.devices.data import WeightReading
from zhichao.evidence._util import parse_time
from zhichao.evidence.static_reading import STATIC_CLASSES, ScaleCertificate, StaticReading
from zhichao.station.config import StationConfig, _fail, _need, parse_utc_key
from zhichao.station.store import utc_text

LOG = logging.getLogger("zhichao.station")
EMPTY_SCALE_DIVISIONS = 20  # below 20 e the scale is empty: the next settle is a new weighing
FAILURES_FOR_ALARM = 5  # consecutive read periods without a reading (each ≈ 1 s)

SCHEMA = """
CREATE TABLE IF NOT EXISTS static_readings (
    id INTEGER PRIMARY KEY,
    reading_utc TEXT NOT NULL,
    weight_kg TEXT NOT NULL,
    flags TEXT NOT NULL,
    stable_by TEXT NOT NULL,
    raw_hex TEXT NOT NULL,
    indicator TEXT NOT NULL,
    passage_key TEXT,
    officer TEXT,
    linked_utc TEXT,
    status TEXT NOT NULL DEFAULT 'free',
    package_id TEXT,
    package_dir TEXT,
    manifest_sha256 TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS static_readings_status ON static_readings (status);
"""


# ---------------------------------------------------------------------------- configuration
def check_config(cfg: StationConfig) -> None:
    """``[static_scale]``: the URL opens an indicator, the certificate is complete."""
    s = cfg.static_scale
    _need(bool(s.url), "static_scale.url", "is required once [static_scale] is given")
    from zhichao.devices.errors import DeviceError
    from zhichao.devices.registry import open_device

    try:
        open_device("indicator", s.url).close()
    except DeviceError as exc:
        raise _fail("static_scale.url", f"{exc} (a weighing-indicator URL: docs/devices.md)"
                    ) from None
    for key in ("scale_id", "certificate_number", "certificate_issuer",
                "certificate_valid_until"):
        _need(bool(getattr(s, key).strip()), f"static_scale.{key}",
              "is required (the scale's verification certificate)")
    _need(s.accuracy_class in STATIC_CLASSES, "static_scale.accuracy_class",
          f"must be one of {sorted(STATIC_CLASSES)} (JJG 539 / OIML R76)")
    _need(s.division_kg > 0, "static_scale.division_kg", "must be > 0")
    _need(s.max_capacity_kg > s.division_kg, "static_scale.max_capacity_kg",
          "must be larger than division_kg")
    n = s.max_capacity_kg / s.division_kg
    top = STATIC_CLASSES[s.accuracy_class].bands_e[-1]
    _need(n <= top, "static_scale.max_capacity_kg",
          f"{n:g} divisions is beyond class {s.accuracy_class} ({top} e at most)")
    until = parse_utc_key("static_scale.certificate_valid_until", s.certificate_valid_until)
    if s.certificate_valid_from:
        since = parse_utc_key("static_scale.certificate_valid_from", s.certificate_valid_from)
        _need(since < until, "static_scale.certificate_valid_from",
              "must be before certificate_valid_until")
    _need(2 <= s.stable_readings <= 100, "static_scale.stable_readings", "must be 2 … 100")
    _need(0 <= s.stable_min_s <= 30, "static_scale.stable_min_s", "must be within 0 … 30 s")
    _need(60 <= s.max_delay_s <= 86400, "static_scale.max_delay_s",
          "must be within 60 … 86400 s")


def certificate_of(cfg: StationConfig) -> ScaleCertificate:
    s = cfg.static_scale
    return ScaleCertificate(
        scale_id=s.scale_id, certificate_number=s.certificate_number,
        issuer_zh=s.certificate_issuer, accuracy_class=s.accuracy_class,
        division_kg=Decimal(str(s.division_kg)), max_capacity_kg=Decimal(str(s.max_capacity_kg)),
        valid_until=parse_time(s.certificate_valid_until, "static_scale.certificate_valid_until"),
        valid_from=parse_time(s.certificate_valid_from, "static_scale.certificate_valid_from")
        if s.certificate_valid_from else None,
        unconfirmed_zh=tuple(s.unconfirmed))


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0]


# ---------------------------------------------------------------------------- readings
@dataclass(frozen=True)
class SettledReading:
    """One settled display, as the reader hands it over."""

    reading: WeightReading
    flags: tuple[str, ...]
    stable_by: str  # device | detector | "" (settled, but the device said in motion)


class Settler:
    """Turns the indicator's stream into settled displays: one per settle.

    A display is settled after ``n`` equal readings (weight and flags) spanning at least
    ``min_s``; it is ``stable_by="device"`` when the indicator's stable bit is set, and
    ``"detector"`` when the protocol has no stable bit (XK3190). A settle with the same
    weight and flags as the last one is not reported again until the scale was empty or
    showed another weight.
    """

    def __init__(self, n: int, min_s: float, division_kg: float) -> None:
        self.n = n
        self.min_s = min_s
        self.empty_kg = EMPTY_SCALE_DIVISIONS * division_kg
        self._run: list[WeightReading] = []
        self._last: tuple[float, tuple[str, ...]] | None = None

    def update(self, r: WeightReading) -> SettledReading | None:
        key = (r.weight_kg, r.flags)
        if self._run and (self._run[-1].weight_kg, self._run[-1].flags) != key:
            self._run = []
        self._run.append(r)
        if abs(r.weight_kg) < self.empty_kg and not r.overload:
            self._last = None  # the scale is empty: the next settle is a new weighing
            return None
        span = (r.station_time_utc - self._run[0].station_time_utc).total_seconds()
        if len(self._run) < self.n or span < self.min_s or key == self._last:
            return None
        self._last = key
        first = self._run[0]
        if r.stable is True:
            stable_by = "device"
        elif r.stable is None:
            stable_by = "detector"
        else:
            stable_by = ""
        flags = tuple(f for f in r.flags if f != "stability_unknown")
        return SettledReading(first, flags, stable_by)


class ReadingStore:
    """The ``static_readings`` table of ``station.db`` (its own connection)."""

    def __init__(self, db_path: Path, *, readonly: bool = False) -> None:
        if readonly:
            self.db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10.0)
        else:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(db_path, timeout=10.0, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def add(self, s: SettledReading, indicator: str) -> int:
        r = s.reading
        cur = self.db.execute(
            "INSERT INTO static_readings (reading_utc, weight_kg, flags, stable_by, raw_hex, "
            "indicator) VALUES (?, ?, ?, ?, ?, ?)",
            (utc_text(r.station_time_utc), r.weight_text(), json.dumps(list(s.flags)),
             s.stable_by, r.raw.hex(), indicator))
        return int(cur.lastrowid or 0)

    def get(self, reading_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM static_readings WHERE id = ?",
                              (reading_id,)).fetchone()
        return None if row is None else dict(row)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM static_readings ORDER BY id DESC LIMIT ?", (limit,))]

    def between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM static_readings WHERE reading_utc >= ? AND reading_utc <= ? "
            "ORDER BY reading_utc", (utc_text(start), utc_text(end)))]

    def link(self, reading_id: int, passage_key: str, officer: str) -> bool:
        """Mark a free reading linked (the sealer takes it); False if it was taken, or the
        passage's personal data is being removed (retention, :mod:`zhichao.station.retention`:
        checked in the same statement, so a purge and a link never cross)."""
        cur = self.db.execute(
            "UPDATE static_readings SET passage_key = ?, officer = ?, linked_utc = ?, "
            "status = 'linked' WHERE id = ? AND status = 'free' AND NOT EXISTS (SELECT 1 "
            "FROM passages WHERE passage_key = ? AND purge_started_utc IS NOT NULL)",
            (passage_key, officer, utc_text(), reading_id, passage_key))
        return cur.rowcount == 1

    def linked(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM static_readings WHERE status = 'linked' ORDER BY id")]

    def passage_reweighs(self, passage_key: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM static_readings WHERE passage_key = ? ORDER BY id",
            (passage_key,))]


def reading_of(row: dict[str, Any], cert: ScaleCertificate) -> StaticReading:
    """A stored reading (with its link) as the evidence stage's :class:`StaticReading`."""
    return StaticReading(
        reading_id=f"{cert.scale_id}-{row['id']}", weight_kg=Decimal(row["weight_kg"]),
        reading_utc=parse_time(row["reading_utc"], "static_readings.reading_utc"),
        flags=tuple(json.loads(row["flags"])), stable_by=row["stable_by"],
        raw_hex=row["raw_hex"], indicator=row["indicator"], certificate=cert,
        officer=row["officer"] or "",
        linked_utc=None if not row["linked_utc"]
        else parse_time(row["linked_utc"], "static_readings.linked_utc"))


# ---------------------------------------------------------------------------- the reader
class ScaleReader:
    """Reads the indicator on a thread of its own; settled displays and failures go to
    :attr:`out` for the thread that owns the store (:meth:`drain`)."""

    def __init__(self, cfg: StationConfig) -> None:
        s = cfg.static_scale
        self.url = s.url
        self.protocol = protocol_of(s.url)
        self.settler = Settler(s.stable_readings, s.stable_min_s, s.division_kg)
        self.out: queue.Queue[SettledReading | str | None] = queue.Queue()
        self.device: Any = None

    def run(self, stop: threading.Event) -> None:
        from zhichao.devices.registry import open_device

        try:
            self.device = open_device("indicator", self.url)
            while not stop.is_set():
                r = self.device.read(1.0)
                if r is None:
                    self.out.put(f"{self.url}: no reading within 1 s "
                                 f"(connected: {self.device.connected}; "
                                 f"{self.device.health_snapshot().describe()})")
                    continue
                self.out.put(None)  # a reading: the scale works
                settled = self.settler.update(r)
                if settled is not None:
                    self.out.put(settled)
        except Exception as exc:  # reported as a failure; the thread ends
            LOG.exception("static scale reader failed")
            self.out.put(f"{self.url}: reader failed: {exc!r}")
        finally:
            if self.device is not None:
                self.device.close()

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="static-scale",
                                  daemon=True)
        thread.start()
        return thread
