"""Crash acceptance: a station's stored passages against an uninterrupted weighing.

The simulated lane is deterministic per seed, so the very stream a station received can be
regenerated and weighed in one uninterrupted pass (:func:`reference_vehicles`).
:func:`compare` then counts, for every vehicle outside a recorded gap, whether the station
lost it, stored it twice, or weighed it differently (any weighed quantity, to the
kilogram), and :func:`check_cases` whether every case was sealed once into a package that
verifies. Used by the crash test and ``benchmarks/station_crash.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.evidence.signing import load_private_key
from zhichao.evidence.verify import verify_package
from zhichao.station.config import StationConfig
from zhichao.station.passage import lane_meta
from zhichao.station.simlane import SimulatedLane
from zhichao.station.store import StationStore
from zhichao.weighing.stream import LaneProcessor
from zhichao.weighing.vehicle import WeighedVehicle

# what "weighed the same" means: every quantity the weighing core measured or decided
COMPARED = ("axle_count", "gross_weight_kg", "axle_loads_kg", "axle_spacings_m",
            "speed_kmh", "vehicle_class", "limit_kg", "verdict")


def reference_vehicles(cfg: StationConfig, n_vehicles: int, work: Path) -> list[WeighedVehicle]:
    """The same simulated stream, regenerated and weighed in one uninterrupted pass: what a
    station that never crashed would have weighed."""
    lane = SimulatedLane(cfg, work)
    try:
        proc = LaneProcessor(lane_meta(cfg, lane.epoch))
        out: list[WeighedVehicle] = []
        index, k = 0, 0
        tail: npt.NDArray[np.float64] | None = None
        while lane.vehicles_out < n_vehicles:
            n = min(cfg.simulation.batch_vehicles, n_vehicles - lane.vehicles_out)
            samples, _ = lane._batch(k, index, n, tail)
            k += 1
            for i in range(0, samples.shape[0], 4000):
                out.extend(proc.feed(samples[i:i + 4000]))
            tail = np.median(samples[-500:], axis=0).astype(np.float64)
            index += samples.shape[0]
        assert tail is not None
        quiet = (tail[None, :] + np.zeros((50_000, len(tail)))).astype(np.float32)
        out.extend(proc.feed(quiet))
        return out
    finally:
        lane.close()


@dataclass
class CrashReport:
    passages: int = 0
    reference: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)  # first samples
    differ: list[str] = field(default_factory=list)
    duplicated: list[tuple[int, int]] = field(default_factory=list)
    phantom: list[int] = field(default_factory=list)
    near_gap: int = 0
    cases: int = 0
    cases_unsealed: list[str] = field(default_factory=list)
    packages_failing: list[str] = field(default_factory=list)
    packages_on_disk: int = 0
    leftovers: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.differ or self.duplicated or self.phantom
                    or self.cases_unsealed or self.packages_failing or self.leftovers
                    or self.packages_on_disk != self.cases)

    def as_dict(self) -> dict[str, Any]:
        return {"passages": self.passages, "reference": self.reference,
                "gaps": len(self.gaps), "lost": len(self.lost), "differ": len(self.differ),
                "duplicated": len(self.duplicated), "phantom": len(self.phantom),
                "near_gap_excused": self.near_gap, "cases": self.cases,
                "cases_unsealed": len(self.cases_unsealed),
                "packages_failing": len(self.packages_failing),
                "packages_on_disk": self.packages_on_disk, "leftovers": len(self.leftovers)}


def _read(db: Path) -> StationStore:
    return StationStore(db, readonly=True)


def compare(data_dir: Path, ref: list[WeighedVehicle], fs: float,
            margin_s: float = 1.0) -> CrashReport:
    """Compare the station's passages with ``ref``. Only vehicles within ``margin_s`` of a
    recorded gap are excused (a gap is samples the station never received: lost in the
    kernel's buffers when it died, or before its first block)."""
    store = _read(data_dir / "station.db")
    try:
        rows = [dict(r) for r in store.all_passages()]
        gaps = store.gaps()
        first_index = int(store.get_meta("stream_first_index") or 0)
    finally:
        store.close()
    if first_index > 0:
        gaps = [(0, first_index), *gaps]
    margin = int(margin_s * fs)

    def near_gap(a: int, b: int) -> bool:
        return any(g0 - margin <= b and a <= g0 + max(n, 1) + margin for g0, n in gaps)

    rep = CrashReport(passages=len(rows), reference=len(ref), gaps=gaps)
    ref_firsts = {v.first_sample for v in ref}
    firsts = [r["first_sample"] for r in rows]
    rep.duplicated = [(a["first_sample"], b["first_sample"])
                      for a, b in zip(rows, rows[1:], strict=False)
                      if b["first_sample"] - a["first_sample"] <= 0.3 * fs
                      and not {a["first_sample"], b["first_sample"]} <= ref_firsts
                      and not near_gap(a["first_sample"], b["last_sample"])]
    rep.duplicated += [(f, f) for f, n in Counter(firsts).items() if n > 1]
    by_first = {r["first_sample"]: r for r in rows}
    for v in ref:
        if near_gap(v.first_sample, v.last_sample):
            rep.near_gap += 1
            continue
        got = by_first.get(v.first_sample)
        if got is None:
            rep.lost.append(v.first_sample)
            continue
        want = v.to_dict()
        have = json.loads(got["record"])
        diff = [k for k in COMPARED if have.get(k) != want.get(k)]
        if diff:
            rep.differ.append(f"first_sample {v.first_sample}: " + ", ".join(
                f"{k} station {have.get(k)!r} uninterrupted {want.get(k)!r}" for k in diff))
    excused = [(v.first_sample, v.last_sample) for v in ref
               if near_gap(v.first_sample, v.last_sample)]
    rep.phantom = [r["first_sample"] for r in rows if r["first_sample"] not in ref_firsts
                   and not near_gap(r["first_sample"], r["last_sample"])
                   and not any(a <= r["last_sample"] and r["first_sample"] <= b
                               for a, b in excused)]
    check_cases(data_dir, rep)
    return rep


def check_cases(data_dir: Path, rep: CrashReport) -> None:
    """Every case sealed once, every package verifies, no half-written file left."""
    store = _read(data_dir / "station.db")
    try:
        cases = store.cases_overview()
    finally:
        store.close()
    rep.cases = len(cases)
    pub = load_private_key(data_dir / "station-key.pem").public_key()
    for key, status, pkg in cases:
        if status != "sealed":
            rep.cases_unsealed.append(str(key))
        elif not verify_package(Path(pkg), key=pub,
                                log_dir=data_dir / "evidence" / "log").ok:
            rep.packages_failing.append(str(key))
    packages = data_dir / "evidence" / "packages"
    rep.packages_on_disk = sum(1 for p in packages.iterdir() if p.is_dir()) \
        if packages.is_dir() else 0
    rep.leftovers = [str(p) for p in data_dir.rglob("*")
                     if p.name.endswith((".partial", ".tmp"))]
