"""The lane's σ(v): the profile's, a scatter file's, and its own in-service passages pooled.

The overload verdict deducts the larger of the device class's MPE and ``k · σ(v)``
(:mod:`zhichao.weighing.overload`); where no history covers a speed, σ is the cautious
physics prior and most overloads go to a human instead of becoming cases. A station is the
site's history: each passage's rows weigh the same truck at different phases of its bounce,
so the lane pools its own stored passages (:func:`zhichao.weighing.scatter.pooling_records`)
every ``wim.pool_every_passages`` passages over the last ``wim.pool_window_days`` days, and
the weighing core decides the next vehicles with the new bands. Each pool is written to
``site-scatter.json`` in the data folder (``zhichao.scatter/1``) and named in every record's
``allowance_basis``, so a reviewer sees which history gave the deduction.

Only the pipeline thread calls :meth:`SiteScatter.note`; it reads the station's own database.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from zhichao.common import format_utc
from zhichao.station.alarms import StageHealth
from zhichao.station.config import StationConfig
from zhichao.station.errors import StationError
from zhichao.station.store import StationStore
from zhichao.weighing.calibration_profile import CalibrationProfile
from zhichao.weighing.config import WeighingConfig
from zhichao.weighing.errors import WeighingError
from zhichao.weighing.scatter import (
    CONFIDENCE,
    pooled_bands,
    pooling_records,
    scatter_document,
    site_config,
    write_scatter,
)

LOG = logging.getLogger("zhichao.station")
POOL_FILE = "site-scatter.json"


class SiteScatter:
    """The weighing configuration with the site's σ(v), pooled again as passages come."""

    def __init__(self, cfg: StationConfig, store: StationStore, base: WeighingConfig,
                 profile: CalibrationProfile | None) -> None:
        self.cfg = cfg
        self.store = store
        try:
            self.fixed = site_config(base, profile, cfg.path(cfg.wim.scatter_file)
                                     if cfg.wim.scatter_file else None)
        except WeighingError as exc:
            raise StationError(f"wim.scatter_file: {exc}") from None
        self.current = self.fixed
        self.pooled_passages = 0
        self.since_pool = 0
        self.listeners: list[Callable[[WeighingConfig], None]] = []

    @property
    def file(self) -> Path:
        return self.cfg.data_dir / POOL_FILE

    def note(self, stages: StageHealth, n: int = 1) -> None:
        """``n`` passages committed; pool again when enough have come since the last. A pool
        that fails (database, disk) keeps the σ(v) in use — the last pool, or the cautious
        prior — and counts against the ``scatter`` stage's alarm; weighing goes on."""
        self.since_pool += n
        if not (self.cfg.wim.pool_scatter
                and self.since_pool >= self.cfg.wim.pool_every_passages):
            return
        try:
            self.pool()
        except (OSError, sqlite3.Error, ValueError) as exc:
            stages.failed("scatter", f"{type(exc).__name__}: {exc}")
        else:
            stages.succeeded("scatter")

    def pool(self) -> WeighingConfig:
        """Pool the stored passages of the window now; tell the listeners."""
        self.since_pool = 0
        if not self.cfg.wim.pool_scatter:
            return self.current
        records = self._window()
        history = pooling_records(records)
        bands = pooled_bands(history)
        self.pooled_passages = len(history)
        if not bands:
            return self.current
        w = self.cfg.wim
        first = min(str(r["time_utc"]) for r in records)
        last = max(str(r["time_utc"]) for r in records)
        doc = scatter_document(
            bands, method="in_service_rows", site_id=self.cfg.site.site_id,
            lane_id=self.cfg.lane.lane_id, profile_id=None, confidence=CONFIDENCE,
            passages=len(history),
            extra={"window_days": w.pool_window_days, "first_passage_utc": first,
                   "last_passage_utc": last, "source": "station"})
        write_scatter(doc, self.file)
        source = (f"本车道在役过车离散（{len(history)}辆，{first[:10]}至{last[:10]}，"
                  f"{POOL_FILE}）")
        self.current = self.fixed.with_scatter(bands, source)
        LOG.info("site scatter pooled", extra={"fields": {
            "passages": len(history), "bands": len(bands), "file": str(self.file)}})
        for fn in self.listeners:
            fn(self.current)
        return self.current

    def _window(self) -> list[dict[str, Any]]:
        w = self.cfg.wim
        newest = self.store.db.execute("SELECT MAX(time_utc) FROM passages").fetchone()[0]
        if newest is None:
            return []
        since = format_utc(datetime.fromisoformat(str(newest).replace("Z", "+00:00"))
                           - timedelta(days=w.pool_window_days))
        rows = self.store.db.execute(
            "SELECT time_utc, record FROM passages WHERE time_utc >= ? AND lane_id = ? "
            "ORDER BY id DESC LIMIT ?",
            (since, self.cfg.lane.lane_id, w.pool_max_passages))
        out = []
        for t, record in rows:
            r = json.loads(record)
            r["time_utc"] = t
            out.append(r)
        return out
