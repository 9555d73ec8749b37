"""Accuracy against the simulator's ground truth, and the flags of abnormal driving.

Figures for 2 rows and a rough road are measured by ``benchmarks/weighing_accuracy.py``.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from zhichao.devices.recording import Recording
from zhichao.devices.sim import SimOptions
from zhichao.devices.sim.lane import simulated_recordings
from zhichao.weighing.evaluation import Match, backward_row_crossings, flag_hit, match_vehicles
from zhichao.weighing.stream import weigh_recording

pytestmark = pytest.mark.slow  # minutes of simulated traffic or processes

ABNORMAL_OPTS = SimOptions(abnormal_fraction=0.6)


def _lane(args: tuple[int, int, SimOptions]) -> list[Match]:
    """Vehicles simulated and weighed in memory (the recording format is tested on its
    own)."""
    n, seed, opts = args
    matches: list[Match] = []
    for samples, meta, truth in simulated_recordings(n, seed, opts, vehicles_per_recording=20):
        matches += match_vehicles(truth["vehicles"], weigh_recording(Recording(samples, meta)))
    return matches


@pytest.fixture(scope="module")
def lanes() -> dict[str, list[Match]]:
    """400 normal and 400 abnormal vehicles, the two lanes simulated and weighed side by
    side (one process each: the suite runs serially on 2 cores)."""
    jobs = {"normal": (400, 2024, SimOptions(abnormal_fraction=0.0)),
            "abnormal": (400, 77, ABNORMAL_OPTS)}
    with ProcessPoolExecutor(2) as pool:
        return dict(zip(jobs, pool.map(_lane, jobs.values()), strict=True))


@pytest.fixture(scope="module")
def normal(lanes: dict[str, list[Match]]) -> list[Match]:
    return lanes["normal"]


@pytest.fixture(scope="module")
def abnormal(lanes: dict[str, list[Match]]) -> list[Match]:
    return lanes["abnormal"]


def test_axle_count(normal: list[Match]) -> None:
    ok = [m.weighed is not None and m.weighed.axle_count == m.truth["axle_count"]
          for m in normal]
    assert np.mean(ok) >= 0.995


def test_speed_within_1_kmh(normal: list[Match]) -> None:
    err = [abs(m.weighed.speed_kmh - m.truth["speed_kmh"]) for m in normal
           if m.weighed is not None and m.weighed.speed_kmh is not None]
    assert len(err) >= 0.995 * len(normal)
    assert np.mean(np.array(err) <= 1.0) >= 0.995


def test_gross_weight_within_3_percent(normal: list[Match]) -> None:
    errors = [m.gross_error for m in normal if m.truth["is_truck"]]
    assert None not in errors
    assert np.mean(np.abs(np.array(errors, dtype=float)) <= 0.03) >= 0.95


def test_classes_are_right_or_openly_undecided(normal: list[Match]) -> None:
    for m in normal:
        assert m.weighed is not None
        w, t = m.weighed, m.truth
        if w.limit_kg is None:
            assert "class_undecidable" in w.flags
            assert t["limit_kg"] in w.limit_candidates_kg
        else:
            # never stricter than the law: a fact the WIM cannot see (air suspension, drive
            # axles) takes the most lenient lawful limit, and the stricter one is named
            assert w.limit_kg >= t["limit_kg"], (t["config"], w.axle_spacings_m)
            if w.limit_kg != t["limit_kg"]:
                assert t["limit_kg"] in w.limit_candidates_kg, (t["config"], w.limit_kg)


@pytest.mark.parametrize("kind", ["acceleration", "braking", "speed_out_of_range",
                                  "close_following"])
def test_abnormal_driving_is_flagged(abnormal: list[Match], kind: str) -> None:
    sel = [m for m in abnormal if m.truth["abnormal"] == [kind]]
    assert len(sel) >= 10
    assert np.mean([flag_hit(m) for m in sel]) >= 0.85


def test_large_lateral_offsets_are_flagged(abnormal: list[Match]) -> None:
    """Half a tyre or more off its half-strip (off the edge or over the seam) is flagged.

    Smaller offsets can hide in an ordinary left/right load split; off the edge they make
    the vehicle read light, never heavy (see docs/weighing.md)."""
    sel = [m for m in abnormal if m.truth["abnormal"] == ["lateral_offset"]
           and max(m.truth["lateral"].values()) >= 0.5]
    assert len(sel) >= 10
    assert np.mean([flag_hit(m) for m in sel]) >= 0.95


def test_normal_traffic_is_not_flagged_off_sensor(normal: list[Match]) -> None:
    """An ordinary left/right load split (a few per cent) is not taken for a wheel off."""
    assert not [m.truth["config"] for m in normal if m.weighed is not None
                and {"wheel_off_sensor", "straddling"} & set(m.weighed.flags)]


def test_reversing_is_flagged(abnormal: list[Match]) -> None:
    """Every vehicle that backed an axle over a row carries ``reversing``."""
    sel = [m for m in abnormal if m.truth["abnormal"] == ["reversing"]
           and backward_row_crossings(m.truth, ABNORMAL_OPTS) > 0]
    assert len(sel) >= 10
    assert np.mean([flag_hit(m) for m in sel]) >= 0.95


def test_normal_traffic_is_not_flagged_reversing(normal: list[Match]) -> None:
    assert not [m.truth["config"] for m in normal
                if m.weighed is not None and "reversing" in m.weighed.flags]


def test_abnormal_vehicles_never_look_normal_when_their_weight_is_off(
        abnormal: list[Match]) -> None:
    """An abnormal passage whose gross weight is off by more than 10 % carries a flag."""
    for m in abnormal:
        if m.truth["abnormal"] and m.weighed is not None and m.gross_error is not None \
                and abs(m.gross_error) > 0.10 and m.weighed.verdict == "overloaded":
            assert m.weighed.flags, (m.truth["config"], m.truth["abnormal"])
