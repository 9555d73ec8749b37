"""The legal safety property on 10 000 simulated trucks.

No normally driven truck whose true gross weight is within its limit may be reported
``overloaded``. The trucks are loaded between 85 % and 100 % of their limit, where a
dynamic-load error is most likely to push a legal truck over.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import pytest

from zhichao.devices.recording import Recording
from zhichao.devices.sim import SimOptions
from zhichao.devices.sim.lane import simulated_recordings
from zhichao.weighing.evaluation import match_vehicles
from zhichao.weighing.stream import weigh_recording

N_TRUCKS = 10_000
WORKERS = 2


def _batch(args: tuple[int, int]) -> tuple[int, int, int, list[str]]:
    """Trucks simulated and weighed in memory (what the files would hold: the recording
    format is tested on its own)."""
    seed, n = args
    opts = SimOptions(trucks_only=True, abnormal_fraction=0.0, load_profile="near_limit")
    legal = weighed = 0
    false_overloads: list[str] = []
    for k, (samples, meta, truth) in enumerate(
            simulated_recordings(n, seed, opts, vehicles_per_recording=100)):
        for m in match_vehicles(truth["vehicles"], weigh_recording(Recording(samples, meta))):
            t = m.truth
            if t["gross_weight_kg"] <= t["limit_kg"]:
                legal += 1
                if m.weighed is not None:
                    weighed += 1
                    if m.weighed.overloaded:
                        false_overloads.append(f"seed {seed} recording {k + 1} "
                                               f"#{t['index']} {t['config']}")
    return legal, weighed, len(false_overloads), false_overloads


@pytest.mark.slow
def test_no_legal_truck_is_reported_overloaded() -> None:
    per = N_TRUCKS // (WORKERS * 5)
    jobs = [(1000 + k, per) for k in range(WORKERS * 5)]
    with ProcessPoolExecutor(WORKERS) as pool:
        results = list(pool.map(_batch, jobs))
    legal = sum(r[0] for r in results)
    weighed = sum(r[1] for r in results)
    false = [x for r in results for x in r[3]]
    assert legal >= N_TRUCKS
    assert weighed >= 0.995 * legal
    assert false == []
