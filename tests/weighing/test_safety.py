"""The legal safety property on 10 000 simulated trucks.

No normally driven truck whose true gross weight is within its limit may be reported
``overloaded``. The trucks are loaded between 85 % and 100 % of their limit, where a
dynamic-load error is most likely to push a legal truck over.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions, simulate
from zhichao.devices.sim.lane import read_truth
from zhichao.weighing.evaluation import match_vehicles
from zhichao.weighing.stream import weigh_recording

N_TRUCKS = 10_000
WORKERS = 2


def _batch(args: tuple[Path, int, int]) -> tuple[int, int, int, list[str]]:
    out, seed, n = args
    opts = SimOptions(trucks_only=True, abnormal_fraction=0.0, load_profile="near_limit")
    legal = weighed = 0
    false_overloads: list[str] = []
    for p in simulate(n, seed, out / f"s{seed}", opts, vehicles_per_recording=100):
        rec = read_recording(p)
        for m in match_vehicles(read_truth(p)["vehicles"], weigh_recording(rec)):
            t = m.truth
            if t["gross_weight_kg"] <= t["limit_kg"]:
                legal += 1
                if m.weighed is not None:
                    weighed += 1
                    if m.weighed.overloaded:
                        false_overloads.append(f"{p.name} #{t['index']} {t['config']}")
            # the seeds and files are kept only as long as needed
        p.unlink()
    return legal, weighed, len(false_overloads), false_overloads


@pytest.mark.slow
def test_no_legal_truck_is_reported_overloaded(tmp_path: Path) -> None:
    per = N_TRUCKS // (WORKERS * 5)
    jobs = [(tmp_path, 1000 + k, per) for k in range(WORKERS * 5)]
    with ProcessPoolExecutor(WORKERS) as pool:
        results = list(pool.map(_batch, jobs))
    legal = sum(r[0] for r in results)
    weighed = sum(r[1] for r in results)
    false = [x for r in results for x in r[3]]
    assert legal >= N_TRUCKS
    assert weighed >= 0.995 * legal
    assert false == []
