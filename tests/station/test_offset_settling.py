"""A link made before the clock offsets are settled is never trusted (docs/station.md,
*Linking*): the start-up mis-link a starved machine produced, replayed on the linker's
own clock, and the rule that keeps its plate from being auto-accepted."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from zhichao.station import link_stage
from zhichao.station.alarms import STAGE_ALARMS, StageHealth
from zhichao.station.clock import Clock
from zhichao.station.config import parse_config
from zhichao.station.link_stage import LinkStage, unsettled_plate
from zhichao.station.linking import SETTLE_S, CameraSpool, FrameLinker, OffsetEstimator, utc_name
from zhichao.station.ops import StationMetrics
from zhichao.station.passage import Pending
from zhichao.station.plates import PlateRead
from zhichao.station.store import StationStore
from zhichao.vision.policy import REVIEW_TEXT_ZH, ReviewCode
from zhichao.weighing.vehicle import WeighedVehicle


def weighed_vehicle(time_utc: str = "2026-12-07T14:02:55Z", *, speed_kmh: float = 72.0,
                    verdict: str = "overloaded") -> WeighedVehicle:
    """A weighed two-axle truck as the core emits it (only what linking reads matters)."""
    return WeighedVehicle(
        time_utc=time_utc, site_id="S", lane_id="1", speed_kmh=speed_kmh,
        acceleration_ms2=0.0, axle_count=2, axle_loads_kg=[8000.0, 12000.0],
        wheel_loads_kg=[[4000.0, 4000.0], [6000.0, 6000.0]], axle_spacings_m=[4.0],
        axle_groups=[[1], [2]], gross_weight_kg=20000.0, vehicle_class="truck_2_axle",
        vehicle_class_zh="二轴货车", limit_kg=18000, limit_basis="test",
        limit_candidates_kg=[18000], allowance_kg=500, allowance_basis="test",
        excess_kg=2000, excess_after_allowance_kg=1500, uncertainty_kg=200.0,
        coverage_factor=2.0, verdict=verdict, overloaded=verdict == "overloaded", flags=[],
        row_gross_weights_kg=[20000.0], rows_used=[0], pavement_temperature_c=None,
        calibration_profile=None, recording=None, first_sample=0, last_sample=100)


def _feed(est: OffsetEstimator, values: list[tuple[float, float]]) -> list[bool]:
    """Add (at, value) observations; ``settled`` after each."""
    out = []
    for at, value in values:
        est.add(value, at_s=at)
        out.append(est.settled)
    return out


def test_an_estimate_settles_only_after_it_held_and_was_reached() -> None:
    rng = np.random.default_rng(5)
    # 50 blocks a second for 3 s (longer than the hold), each later than the last: a
    # starved sender that cannot keep up, 7 s (reference) behind at first; no block after
    # the first reaches the estimate, so it never settles on it
    behind = [(i * 0.02, -7.0 - 0.01 * i) for i in range(150)]
    # then it catches up and sends on time, with a little jitter
    prompt = [(3.0 + i * 0.02, -float(rng.uniform(0, 0.03))) for i in range(300)]
    est = OffsetEstimator(tolerance_s=0.15)
    assert not any(_feed(est, behind))
    settled = _feed(est, prompt)
    first = settled.index(True)
    assert prompt[first][0] - 3.0 == pytest.approx(SETTLE_S, abs=0.03)
    assert all(settled[first:])
    assert est.offset_s is not None and abs(est.offset_s) < 0.03


def test_it_takes_three_observations_over_the_hold() -> None:
    """A camera that writes one frame per vehicle: two frames 2.5 s apart are not enough,
    the third is."""
    est = OffsetEstimator(tolerance_s=0.15)
    assert _feed(est, [(0.0, 0.1), (2.5, 0.1), (3.0, 0.1)]) == [False, False, True]


def test_a_move_unsettles_and_a_steady_lag_is_the_known_limit() -> None:
    steady = OffsetEstimator(tolerance_s=0.15)
    assert _feed(steady, [(i * 0.02, 0.0) for i in range(150)])[-1]
    # the estimate rises by more than the tolerance (a device clock step, a backlog that
    # ended): unsettled again for SETTLE_S
    after = _feed(steady, [(3.0 + i * 0.02, 0.4) for i in range(150)])
    assert not any(after[:round(SETTLE_S / 0.02) - 1]) and after[-1]
    # a rise within the tolerance, in steps, does not unsettle — until it adds up to more
    small = _feed(steady, [(6.0 + i * 0.5, 0.4 + 0.05 * (i + 1)) for i in range(4)])
    assert small[:2] == [True, True] and not small[3]
    # the window's maximum expires: the estimate falls by more than the tolerance, and
    # that is a move too
    short = OffsetEstimator(window_s=5.0, tolerance_s=0.15)
    falls = _feed(short, [(0.0, 1.0), *[(0.5 + i * 0.25, 0.0) for i in range(40)]])
    assert not any(falls[:-1][:round((5.0 + SETTLE_S) / 0.25)])
    assert falls[-1] and short.offset_s == 0.0
    # the known limit (docs/station.md, Not done): the same lag, block after block, for
    # longer than the hold cannot be told from a clock offset; it settles on it
    lag = OffsetEstimator(tolerance_s=0.15)
    assert _feed(lag, [(i * 0.02, -7.0) for i in range(150)])[-1]


def test_record_offsets_settle_without_being_reached() -> None:
    """A WIM controller's vehicle records each arrive with a delay of their own: every
    record counts, none need reach the estimate."""
    delays = [0.3, 1.4, 0.9, 2.0, 0.7, 1.1, 0.5]
    reach = OffsetEstimator(tolerance_s=0.15)
    records = OffsetEstimator(tolerance_s=0.15, require_reach=False)
    obs = [(i * 0.5, -d) for i, d in enumerate(delays)]
    assert not _feed(reach, obs)[-1]
    assert _feed(records, obs)[-1]


def test_a_stored_offset_is_only_a_stand_in() -> None:
    """An earlier run's offset (``wim_offset_s``) is the offset until the first block; it
    never settles anything and never outlives a real observation, even a lower one."""
    est = OffsetEstimator(tolerance_s=0.15, require_reach=False)
    est.restore(2.0)
    assert est.offset_s == 2.0 and not est.settled and not est.observed
    assert _feed(est, [(0.0, -0.5), (1.0, -0.5)]) == [False, False]
    assert est.offset_s == -0.5  # the device's clock was set while the station was down
    assert _feed(est, [(2.0, -0.5)]) == [True]


def _frame(spool: Path, cam: str, shot: datetime, seq: int, written: datetime) -> None:
    path = spool / f"{cam}-{utc_name(shot)}-{seq:06d}.jpg"
    path.write_bytes(b"jpeg")
    os.utime(path, (written.timestamp(), written.timestamp()))


def test_the_start_up_mis_link_is_never_trusted(tmp_path: Path) -> None:
    """What a CI-like run saw on 2026-12-07: every early WIM block arrived 7 s late, so the
    offset estimate was 7 s off and vehicle 2 was linked to vehicle 4's frame. The linker
    still picks that frame (it cannot know better yet), but the link is unsettled, also
    after 3 s of blocks that fall further behind; once the blocks come on time and the
    estimate has held, vehicle 2's own frame is linked and the link is settled."""
    t0 = datetime(2026, 12, 7, 14, 2, 48, tzinfo=UTC)
    spool = tmp_path / "front"
    spool.mkdir()
    cam = CameraSpool("CAM-F", "front", spool, 12.0)
    linker = FrameLinker([cam], Clock(), window_s=0.6)
    speed_kmh = 72.0  # 12 m in 0.6 s
    rows = [t0 + timedelta(seconds=3.5 * i) for i in range(8)]  # vehicle i at row 1
    for i, t in enumerate(rows):  # each camera frame written at its capture
        shot = t + timedelta(seconds=0.6)
        _frame(spool, "CAM-F", shot, i, shot)
    linker.scan(at_s=0.0)
    wall = 0.0
    for i in range(150):  # 3 s: WIM blocks 7 s late and falling behind; camera on time
        wall = i * 0.02
        linker.wim_offset.add(-7.0 - 0.01 * i, at_s=wall)
        cam.offset.add(0.0, at_s=wall)
    assert linker.unsettled(["wim", "CAM-F"]) == ["wim"] and linker.unsettled() == ["wim"]
    preds = [linker.predict(f"v{i}", t, speed_kmh, 0.0) for i, t in enumerate(rows)]
    frame, status = linker.link(preds[2], preds[1] + preds[3])["CAM-F"]
    assert status == "linked" and frame is not None
    assert frame.path.name.endswith("-000004.jpg")  # vehicle 4's frame: the hazard
    frame.claimed_by = None  # as if vehicle 2 were linked again later
    for i in range(1, 151):  # blocks on time for 3 s
        linker.wim_offset.add(0.0, at_s=wall + 0.02 * i)
        cam.offset.add(0.0, at_s=wall + 0.02 * i)
    assert linker.unsettled() == []
    preds = [linker.predict(f"v{i}", t, speed_kmh, 0.0) for i, t in enumerate(rows)]
    frame, status = linker.link(preds[2], preds[1] + preds[3])["CAM-F"]
    assert frame is not None and frame.path.name.endswith("-000002.jpg")


def test_an_unsettled_link_sends_its_plate_to_review() -> None:
    read = PlateRead("豫R28518", "yellow", 0.99, True, ())
    assert unsettled_plate(read, ()) is read
    back = unsettled_plate(read, ("wim",))
    assert not back.accepted and back.plate == "豫R28518"
    assert back.review_codes == (ReviewCode.LINK_UNSETTLED.value,)
    assert unsettled_plate(back, ("wim",)).review_codes == back.review_codes  # once
    # the reviewer reads why (zh-CN), and the package keeps it unaccepted
    assert "时钟偏差" in REVIEW_TEXT_ZH[ReviewCode.LINK_UNSETTLED]
    result = back.for_evidence()
    assert result is not None and not result.accepted
    assert result.review_reasons == ("frame_link_unsettled",)


def _stage(tmp_path: Path) -> tuple[LinkStage, FrameLinker, StationStore]:
    cfg = parse_config({"station": {"data_dir": str(tmp_path / "st")},
                        "vision": {"read": "none"}}, tmp_path)
    store = StationStore(tmp_path / "station.db")
    spool = tmp_path / "front"
    spool.mkdir()
    linker = FrameLinker([CameraSpool("CAM-F", "front", spool, 12.0)], Clock(), 0.6)
    return LinkStage(cfg, linker, StageHealth(store), StationMetrics()), linker, store


def _codes(store: StationStore) -> set[str]:
    return {a["code"] for a in store.active_alarms()}


def test_offsets_unsettled_for_long_open_an_alarm(tmp_path: Path) -> None:
    """Links keep being made with an offset that has not settled for UNSETTLED_ALARM_S
    since it last moved (a lane that cannot keep up): the alarm opens (health degraded);
    once it settles the next link closes it. A camera with too few frames to settle is
    not overdue, however long ago its first frame."""
    stage, linker, store = _stage(tmp_path)
    code = STAGE_ALARMS["linking"].code
    now = time.monotonic()
    ago = now - link_stage.UNSETTLED_ALARM_S - 1
    linker.cameras["CAM-F"].offset.add(0.0, at_s=ago)  # one frame, long ago
    linker.cameras["CAM-F"].offset.add(0.0, at_s=now)  # and one now: two, not overdue
    p = Pending(weighed_vehicle(), "k1", {}, [])
    linker.wim_offset.add(-7.0, at_s=now - 5)  # moved 5 s ago, falling behind since
    for i in range(1, 5):
        linker.wim_offset.add(-7.0 - 0.5 * i, at_s=now - 5 + i)
    stage._link(p, [])
    assert p.unsettled == ("wim",) and p.state == "ready"
    assert code not in _codes(store)  # unsettled for 5 s only
    # the same since 31 s ago: overdue
    linker.wim_offset = OffsetEstimator(tolerance_s=0.15)
    for i in range(32):
        linker.wim_offset.add(-7.0 - 0.5 * i, at_s=ago + i)
    stage._link(Pending(weighed_vehicle(), "k2", {}, []), [])
    alarm = next(a for a in store.active_alarms() if a["code"] == code)
    assert "时钟偏差" in alarm["message_zh"]
    assert "k2: offsets of wim not settled" in alarm["detail"]
    for i in range(150):  # on time for 3 s
        linker.wim_offset.add(0.0, at_s=now + 0.02 * i)
    p = Pending(weighed_vehicle(), "k3", {}, [])
    stage._link(p, [])
    assert p.unsettled == ()
    assert code not in _codes(store)
    stage.close()
    store.close()
