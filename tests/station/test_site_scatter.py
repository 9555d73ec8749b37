"""The lane pools its own in-service passages into σ(v) (the verdict issue, item 1: the
row scatter from the site's pooled history, not a Student t on one passage's rows)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions, simulate
from zhichao.station.alarms import StageHealth
from zhichao.station.config import StationConfig
from zhichao.station.device import weighing_config
from zhichao.station.site_scatter import POOL_FILE, SiteScatter
from zhichao.station.store import PassageRow, StationStore
from zhichao.weighing.overload import tolerance_for
from zhichao.weighing.scatter import HistoryPassage, pooling_records, read_scatter, scatter_at
from zhichao.weighing.stream import weigh_recording
from zhichao.weighing.vehicle import WeighedVehicle


def _vehicles(tmp: Path, n: int) -> list[WeighedVehicle]:
    opts = SimOptions(n_rows=4, trucks_only=True, abnormal_fraction=0.0, sensor_seed=5,
                      speed_kmh=(41.0, 49.0))
    out: list[WeighedVehicle] = []
    for p in simulate(n, 31, tmp, opts, 50):
        out.extend(weigh_recording(read_recording(p)))
    return out


def _store(store: StationStore, vs: list[WeighedVehicle], lane: str, time_utc: str | None = None
           ) -> None:
    with store.transaction() as con:
        for i, v in enumerate(vs):
            t = time_utc or v.time_utc
            store.insert_passage(con, PassageRow(
                f"S-{lane}-{i}-{t}", v.site_id, lane, t, v.first_sample + i, v.last_sample + i,
                v.axle_count, v.gross_weight_kg, v.vehicle_class, v.limit_kg, v.verdict,
                v.overloaded, v.flags, v.to_dict(), "linked", [], None, None, None, None, []))


def test_the_lane_pools_its_own_passages(tmp_path: Path) -> None:
    cfg = StationConfig(base_dir=str(tmp_path))
    cfg = replace(cfg, wim=replace(cfg.wim, pool_every_passages=50))
    cfg.data_dir.mkdir(parents=True)
    store = StationStore(cfg.data_dir / "station.db")
    scatter = SiteScatter(cfg, store, weighing_config(cfg), None)
    # nothing stored yet: no band, the prior, no file
    assert scatter.pool() is scatter.fixed and not (cfg.data_dir / POOL_FILE).exists()
    seen: list[object] = []
    scatter.listeners.append(seen.append)
    vs = _vehicles(tmp_path / "rec", 160)
    _store(store, vs, cfg.lane.lane_id)
    # another lane's passages and passages older than the window are not this pool's
    _store(store, vs[:40], "other-lane")
    _store(store, vs[:40], cfg.lane.lane_id, time_utc="2020-01-01T00:00:00Z")
    stages = StageHealth(store)
    for _ in range(49):
        scatter.note(stages)
    assert not seen
    scatter.note(stages)
    assert len(seen) == 1 and seen[0] is scatter.current
    doc, bands = read_scatter(cfg.data_dir / POOL_FILE)
    assert bands and doc["source"] == "station" and doc["lane_id"] == cfg.lane.lane_id
    fit = [v for v in vs if len(v.row_gross_weights_kg) >= 2 and v.axle_count >= 2]
    assert doc["passages"] == scatter.pooled_passages <= len(fit) <= 160
    assert doc["passages"] >= 0.9 * len(fit)
    assert doc["first_passage_utc"] >= min(v.time_utc for v in vs)
    # the next vehicles are decided with the pool, and their basis names it
    o = scatter.current.overload
    v = next(v for v in vs if v.axle_count >= 5 and v.gross_weight_kg)
    sigma = scatter_at(v.speed_kmh, o.scatter_bands, v.axle_count)
    assert sigma is not None and sigma < 0.05
    prior = tolerance_for(v.gross_weight_kg or 0, v.speed_kmh, scatter.fixed.overload, 4,
                          v.axle_count)
    pooled = tolerance_for(v.gross_weight_kg or 0, v.speed_kmh, o, 4, v.axle_count)
    assert pooled.tolerance_kg < prior.tolerance_kg
    assert "本车道在役过车离散" in o.scatter_source and POOL_FILE in o.scatter_source
    store.close()


def test_pooling_can_be_turned_off_and_a_scatter_file_is_used(tmp_path: Path) -> None:
    cfg = StationConfig(base_dir=str(tmp_path))
    cfg.data_dir.mkdir(parents=True)
    store = StationStore(cfg.data_dir / "station.db")
    vs = _vehicles(tmp_path / "rec", 100)
    _store(store, vs, cfg.lane.lane_id)
    off = replace(cfg, wim=replace(cfg.wim, pool_scatter=False))
    scatter = SiteScatter(off, store, weighing_config(off), None)
    assert scatter.pool() is scatter.fixed and not (cfg.data_dir / POOL_FILE).exists()
    # the site's file from `zhichao scatter` is used without pooling
    on = SiteScatter(cfg, store, weighing_config(cfg), None)
    on.pool()
    file_cfg = replace(off, wim=replace(off.wim, scatter_file=str(cfg.data_dir / POOL_FILE)))
    from_file = SiteScatter(file_cfg, store, weighing_config(file_cfg), None)
    assert from_file.current.overload.scatter_measured
    assert json.loads((cfg.data_dir / POOL_FILE).read_text("utf-8"))["format"] == \
        "zhichao.scatter/1"
    store.close()


def test_a_pool_that_fails_keeps_the_sigma_in_use_and_opens_an_alarm(tmp_path: Path) -> None:
    """Failures are loud, weighing goes on: a pool that cannot be written keeps the σ(v) in
    use and, the second time in a row, opens the stage's alarm (health degraded)."""
    cfg = StationConfig(base_dir=str(tmp_path))
    cfg = replace(cfg, wim=replace(cfg.wim, pool_every_passages=1))
    cfg.data_dir.mkdir(parents=True)
    store = StationStore(cfg.data_dir / "station.db")
    _store(store, _vehicles(tmp_path / "rec", 60), cfg.lane.lane_id)
    (cfg.data_dir / POOL_FILE).mkdir()  # the pool file cannot be written
    scatter = SiteScatter(cfg, store, weighing_config(cfg), None)
    stages = StageHealth(store)
    scatter.note(stages)
    assert scatter.current is scatter.fixed and not store.active_alarms()
    scatter.note(stages)
    assert [a["code"] for a in store.active_alarms()] == ["site_scatter_failed"]
    (cfg.data_dir / POOL_FILE).rmdir()
    scatter.note(stages)  # it works again: the alarm closes, the pool is in use
    assert not store.active_alarms() and scatter.current is not scatter.fixed
    store.close()


def test_the_pool_reads_what_pooling_reads_from_whole_records(tmp_path: Path) -> None:
    """The store pulls speed and row grosses with json_extract, and a pool reads only the
    rows stored since the last one: its bands equal those of the whole stored records of
    the lane's window (newest ``pool_max_passages``, within ``pool_window_days``)."""
    cfg = StationConfig(base_dir=str(tmp_path))
    cfg = replace(cfg, wim=replace(cfg.wim, pool_max_passages=50))
    cfg.data_dir.mkdir(parents=True)
    store = StationStore(cfg.data_dir / "station.db")
    lane = cfg.lane.lane_id
    vs = _vehicles(tmp_path / "rec", 60)
    _store(store, vs[:10], lane, time_utc="2020-01-01T00:00:00Z")  # out of the window
    _store(store, vs[:10], "other-lane")
    _store(store, vs[:30], lane)
    scatter = SiteScatter(cfg, store, weighing_config(cfg), None)

    def whole() -> list[HistoryPassage]:
        rows = [r for r in store.all_passages() if r["lane_id"] == lane
                and not r["time_utc"].startswith("2020")]
        rows.sort(key=lambda r: r["id"])
        return pooling_records(json.loads(r["record"]) for r in rows[-50:])

    assert [p for _, _, p in scatter._window() if p is not None] == whole()
    rows = store.pooling_rows(lane, 0, 1000)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert len(store.pooling_rows(lane, 0, 7)) == 7
    assert store.pooling_rows(lane, rows[-1]["id"], 1000) == []
    with store.transaction() as con:  # 30 more: 30 kept + 30 new, capped at the newest 50
        for i, v in enumerate(vs[30:]):
            store.insert_passage(con, PassageRow(
                f"late-{i}", v.site_id, lane, v.time_utc, 10**6 + i, 10**6 + i, v.axle_count,
                v.gross_weight_kg, v.vehicle_class, v.limit_kg, v.verdict, v.overloaded,
                v.flags, v.to_dict(), "linked", [], None, None, None, None, []))
    window = scatter._window()
    assert len(window) == 50 and [p for _, _, p in window if p is not None] == whole()
    assert scatter.pool() is scatter.current and scatter.pooled_passages == len(whole())
    store.close()
