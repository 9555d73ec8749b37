"""Abnormal-driving flags against simulator truth: how often they are raised when they should
be, and how often they are raised on normally driven traffic (false flags).

Run: ``python3 benchmarks/weighing_flags.py [--vehicles 400]``. For each abnormal behaviour
of the simulator it drives ``--vehicles`` vehicles that way (4 rows, smooth road) and prints
the share carrying a flag that answers it (``zhichao.weighing.evaluation.EXPECTED_FLAGS``).
Lateral offsets are split at half a tyre off its half-strip; reversing counts only vehicles
that really backed an axle over a row (``backward_row_crossings``; since the simulator's
trajectory fix every "reversing" vehicle does). Then, for normal traffic on three
layouts, it prints how many vehicles carry each abnormal-driving flag.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter

import numpy as np

from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions, simulate
from zhichao.devices.sim.lane import read_truth
from zhichao.weighing.evaluation import Match, backward_row_crossings, flag_hit, match_vehicles
from zhichao.weighing.stream import weigh_recording

# flags that answer abnormal driving (the others are data-quality or class flags)
DRIVING_FLAGS = ("acceleration", "speed_out_of_range", "irregular_motion", "reversing",
                 "wheel_off_sensor", "straddling", "close_following",
                 "possible_merged_vehicles")


def _matches(n: int, seed: int, opts: SimOptions) -> list[Match]:
    with tempfile.TemporaryDirectory() as tmp:
        ms: list[Match] = []
        for p in simulate(n, seed, tmp, opts, 20):
            ms += match_vehicles(read_truth(p)["vehicles"], weigh_recording(read_recording(p)))
    return ms


def _share(ms: list[Match]) -> str:
    if not ms:
        return "none"
    return f"{np.mean([flag_hit(m) for m in ms]):.1%} of {len(ms)}"


def abnormal(n: int) -> None:
    for i, kind in enumerate(("acceleration", "braking", "speed_out_of_range",
                              "lateral_offset", "reversing", "close_following")):
        opts = SimOptions(abnormal_fraction=1.0, abnormal_kinds=(kind,))
        ms = [m for m in _matches(n, 3100 + i, opts) if m.truth["abnormal"] == [kind]]
        if kind == "lateral_offset":
            big = [m for m in ms if max(m.truth["lateral"].values()) >= 0.5]
            small = [m for m in ms if max(m.truth["lateral"].values()) < 0.5]
            print(f"lateral_offset ≥ half a tyre off: {_share(big)}; "
                  f"less: {_share(small)}")
        elif kind == "reversing":
            back = [m for m in ms if backward_row_crossings(m.truth, opts) > 0]
            never = [m for m in ms if backward_row_crossings(m.truth, opts) == 0]
            never_flagged = sum(m.weighed is not None and "reversing" in m.weighed.flags
                                for m in never)
            print(f"reversing over the rows: {_share(back)}; labelled reversing but never "
                  f"backed over a row: {len(never)}, {never_flagged} flagged reversing")
        else:
            print(f"{kind}: {_share(ms)}")


def normal(n: int) -> None:
    for i, (rows, road) in enumerate(((4, "smooth"), (2, "smooth"), (4, "rough"))):
        opts = SimOptions(n_rows=rows, road=road, abnormal_fraction=0.0)
        weighed = [m.weighed for m in _matches(n, 3200 + i, opts) if m.weighed is not None]
        counts = Counter(f for w in weighed for f in w.flags if f in DRIVING_FLAGS)
        shown = ", ".join(f"{f} {counts.get(f, 0)}" for f in DRIVING_FLAGS)
        print(f"normal traffic, {rows} rows, {road} road, {len(weighed)} vehicles: {shown}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=400)
    n = ap.parse_args().vehicles
    abnormal(n)
    normal(n)


if __name__ == "__main__":
    main()
