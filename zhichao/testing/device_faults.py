"""The devices acceptance scenario, shared by its test and ``benchmarks/devices_faults.py``:
1 000 simulated vehicles streamed through a sample-stream twin with 224 injected faults of
every kind, and how a weighed vehicle is compared with the clean weighing."""

from __future__ import annotations

import random

import numpy as np

from zhichao.devices.faults import Fault
from zhichao.devices.samples import SampleBlock
from zhichao.devices.twins.samples import SampleStreamTwin
from zhichao.weighing.stream import LaneProcessor
from zhichao.weighing.vehicle import WeighedVehicle

N_VEHICLES = 1000
RATE_HZ = 1000.0
FRAME_SAMPLES = 100


def fault_schedule(n_frames: int, seed: int) -> dict[int, list[Fault]]:
    """224 faults of every kind, at most one per frame, spread over the stream."""
    rnd = random.Random(seed)
    kinds = {"corrupt": 40, "garbage": 30, "oversize": 10, "split": 40, "merge": 30,
             "drop": 30, "disconnect": 12, "reboot": 8, "clock_jump": 10, "bad_values": 12,
             "stall": 2}
    params = {"disconnect": 3, "reboot": 4, "corrupt": 3, "garbage": 40, "split": 4,
              "stall": 2.0}
    frames = rnd.sample(range(20, n_frames - 20, 3), sum(kinds.values()))
    out: dict[int, list[Fault]] = {}
    i = 0
    for kind, count in kinds.items():
        for _ in range(count):
            param = params.get(kind, 1.0)
            if kind == "clock_jump":
                param = rnd.choice([-3600.0, -5.0, 2.5, 40.0])
            out[frames[i]] = [Fault(kind, param)]
            i += 1
    return out


def feed(proc: LaneProcessor, blocks: list[SampleBlock]) -> list[WeighedVehicle]:
    """What the station does: feed blocks to the core, passing every gap on."""
    out: list[WeighedVehicle] = []
    prev_end = 0
    for b in blocks:
        gap = b.gap_before_samples
        if gap == -1:  # unknown: pass the driver's estimate so the timeline stays true
            gap = b.first_index - prev_end if b.first_index > prev_end else -1
        assert b.first_index - prev_end == max(gap, 0)
        out.extend(proc.feed(b.samples, gap_before_samples=gap))
        prev_end = b.end_index
    out.extend(proc.finish())
    return out


def lost_ranges(twin: SampleStreamTwin) -> list[tuple[int, int]]:
    mask = twin.intact_mask()
    edges = np.flatnonzero(np.diff(np.concatenate([[1], mask.astype(np.int8), [1]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


#: fields that must be identical; loads may differ by the offset tracker's memory (below)
EXACT = ("time_utc", "speed_kmh", "acceleration_ms2", "axle_count", "axle_spacings_m",
         "axle_groups", "vehicle_class", "limit_kg", "limit_candidates_kg", "verdict",
         "overloaded", "rows_used", "first_sample", "last_sample")
#: The core's offset and noise trackers (EMA, 0.5 s / 1 s) resume after a gap with their
#: state from before it, so loads of the next vehicles differ by what the offset drifted
#: during the gap, decaying with that time constant: well below 0.1 % here.
LOAD_TOLERANCE = 0.001


def same_result(got: WeighedVehicle, clean: WeighedVehicle) -> str:
    """"" when ``got`` is the clean result, else what differs."""
    a, b = got.to_dict(), clean.to_dict()
    for k in EXACT:
        if a[k] != b[k]:
            return f"{k}: {a[k]} != {b[k]}"
    # close_following depends on the neighbour, which may have been lost in a gap
    fa, fb = set(a["flags"]) - {"close_following"}, set(b["flags"]) - {"close_following"}
    if fa != fb:
        return f"flags {sorted(fa)} != {sorted(fb)}"
    for x, y in zip([a["gross_weight_kg"], *a["axle_loads_kg"]],
                    [b["gross_weight_kg"], *b["axle_loads_kg"]], strict=True):
        if abs(x - y) > LOAD_TOLERANCE * max(abs(y), 1000.0):
            return f"loads {a['axle_loads_kg']} != {b['axle_loads_kg']}"
    return ""
