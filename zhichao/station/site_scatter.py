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

import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

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
    HistoryPassage,
    pooled_bands,
    pooling_passage,
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
        # the window's passages (row id, time, the passage fit for pooling or None), in
        # storage order, kept between pools: each pool reads only the rows stored since
        self._rows: list[tuple[int, str, HistoryPassage | None]] = []
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
        window = self._window()
        history = [p for _, _, p in window if p is not None]
        bands = pooled_bands(history)
        self.pooled_passages = len(history)
        if not bands:
            return self.current
        w = self.cfg.wim
        first = min(t for _, t, _ in window)
        last = max(t for _, t, _ in window)
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

    def _window(self) -> list[tuple[int, str, HistoryPassage | None]]:
        """The lane's newest ``pool_max_passages`` passages of the last ``pool_window_days``
        before its newest one: the rows kept from the last pool, the rows stored since."""
        w = self.cfg.wim
        after = self._rows[-1][0] if self._rows else 0
        for r in self.store.pooling_rows(self.cfg.lane.lane_id, after, w.pool_max_passages):
            self._rows.append((r["id"], r["time_utc"], pooling_passage(
                r["gross_weight_kg"], r["speed_kmh"], int(r["axle_count"] or 0),
                r["row_gross_weights_kg"], r["flags"])))
        if not self._rows:
            return []
        newest = max(t for _, t, _ in self._rows)
        since = format_utc(datetime.fromisoformat(newest.replace("Z", "+00:00"))
                           - timedelta(days=w.pool_window_days))
        self._rows = [r for r in self._rows[-w.pool_max_passages:] if r[1] >= since]
        return self._rows
