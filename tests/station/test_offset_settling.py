"""A link made before the clock offsets are settled is never trusted (docs/station.md,
*Linking*): the start-up mis-link a starved machine produced, replayed on the linker's
own clock, and the rule that keeps its plate from being auto-accepted."""

from __future__ import annotations

import os
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
from zhichao.station.plates import PlateRead
from zhichao.station.store import StationStore
from zhichao.vision.policy import REVIEW_TEXT_ZH, ReviewCode


def _feed(est: OffsetEstimator, values: list[tuple[float, float]]) -> list[bool]:
    """Add (at, value) observations; ``settled`` after each."""
    out = []
    for at, value in values:
        est.add(value, at_s=at)
        out.append(est.settled)
    return out


def test_an_estimate_settles_only_after_it_held_and_was_reached() -> None:
    rng = np.random.default_rng(5)
    # 50 blocks a second: the first second every block is 7 s (reference) late, as on a
    # starved machine at the simulated lane's 40×; then on time, with a little jitter
    late = [(i * 0.02, -7.0 - float(rng.uniform(0, 0.05))) for i in range(50)]
    prompt = [(1.0 + i * 0.02, -float(rng.uniform(0, 0.03))) for i in range(300)]
    est = OffsetEstimator(tolerance_s=0.15)
    assert not any(_feed(est, late))  # never settled on the late blocks
    settled = _feed(est, prompt)
    first = settled.index(True)
    assert prompt[first][0] - 1.0 == pytest.approx(SETTLE_S, abs=0.03)
    assert all(settled[first:])
    assert est.offset_s is not None and abs(est.offset_s) < 0.03


def test_a_sender_that_falls_behind_never_settles_and_a_move_unsettles() -> None:
    est = OffsetEstimator(tolerance_s=0.15)
    # each block later than the last (a device or a station that cannot keep up): the
    # first, best one stays the estimate, and no later one reaches it
    assert not any(_feed(est, [(i * 0.02, -0.05 * i) for i in range(500)]))
    steady = OffsetEstimator(tolerance_s=0.15)
    assert _feed(steady, [(i * 0.02, 0.0) for i in range(150)])[-1]
    # the estimate rises by more than the tolerance (a device clock step, a backlog that
    # ended): unsettled again for SETTLE_S
    after = _feed(steady, [(3.0 + i * 0.02, 0.4) for i in range(150)])
    assert not any(after[:round(SETTLE_S / 0.02) - 1]) and after[-1]
    # a rise within the tolerance, in steps, does not unsettle — until it adds up to more
    small = _feed(steady, [(6.0 + i * 0.5, 0.4 + 0.05 * (i + 1)) for i in range(4)])
    assert small[:2] == [True, True] and not small[3]


def test_record_offsets_settle_without_being_reached() -> None:
    """A WIM controller's vehicle records each arrive with a delay of their own: every
    record counts, none need reach the estimate."""
    delays = [0.3, 1.4, 0.9, 2.0, 0.7, 1.1, 0.5]
    reach = OffsetEstimator(tolerance_s=0.15)
    records = OffsetEstimator(tolerance_s=0.15, require_reach=False)
    obs = [(i * 0.5, -d) for i, d in enumerate(delays)]
    assert not _feed(reach, obs)[-1]
    assert _feed(records, obs)[-1]


def _frame(spool: Path, cam: str, shot: datetime, seq: int, written: datetime) -> None:
    path = spool / f"{cam}-{utc_name(shot)}-{seq:06d}.jpg"
    path.write_bytes(b"jpeg")
    os.utime(path, (written.timestamp(), written.timestamp()))


def test_the_start_up_mis_link_is_never_trusted(tmp_path: Path) -> None:
    """What a CI-like run saw on 2026-12-07: every early WIM block arrived 7 s late, so the
    offset estimate was 7 s off and vehicle 2 was linked to vehicle 4's frame. The linker
    still picks that frame (it cannot know better yet), but the link is unsettled; once the
    blocks come on time and the estimate has held, vehicle 2's own frame is linked and
    the link is settled."""
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
    wall = 0.0
    linker.scan(at_s=wall)
    for i in range(20):  # camera files: one per vehicle, on time, over the first seconds
        cam.offset.add(0.0, at_s=wall + 0.2 * i)
    for i in range(25):  # the first half second: WIM blocks 7 s late
        linker.wim_offset.add(-7.0, at_s=wall + 0.02 * i)
    wall = 0.5
    preds = [linker.predict(f"v{i}", t, speed_kmh, 0.0) for i, t in enumerate(rows)]
    frame, status = linker.link(preds[2], preds[1] + preds[3])["CAM-F"]
    assert status == "linked" and frame is not None
    assert frame.path.name.endswith("-000004.jpg")  # vehicle 4's frame: the hazard
    assert not linker.settled(["CAM-F"]) and linker.unsettled() == ["wim"]
    frame.claimed_by = None  # as if vehicle 2 were linked again now
    for i in range(150):  # blocks on time for 3 s
        linker.wim_offset.add(0.0, at_s=wall + 0.02 * i)
        cam.offset.add(0.0, at_s=wall + 0.02 * i)
    assert linker.settled(["CAM-F"])
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


def test_offsets_unsettled_for_long_open_an_alarm(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Links keep being made with unsettled offsets (a lane that cannot keep up): after
    UNSETTLED_ALARM_S the alarm opens (health degraded); the first settled link closes it."""
    cfg = parse_config({"station": {"data_dir": str(tmp_path / "st")},
                        "vision": {"read": "none"}}, tmp_path)
    store = StationStore(tmp_path / "station.db")
    spool = tmp_path / "front"
    spool.mkdir()
    linker = FrameLinker([CameraSpool("CAM-F", "front", spool, 12.0)], Clock(), 0.6)
    stage = LinkStage(cfg, linker, StageHealth(store), StationMetrics())
    monkeypatch.setattr(link_stage, "UNSETTLED_ALARM_S", 0.0)
    code = STAGE_ALARMS["linking"].code
    from zhichao.station.passage import Pending
    from zhichao.weighing.vehicle import WeighedVehicle

    def pending(key: str) -> Pending:
        v = WeighedVehicle(
            "2026-12-07T14:02:55Z", "S", "1", 72.0, 0.0, 2, [3000.0, 5000.0],
            [[1500.0, 1500.0], [2500.0, 2500.0]], [4.0], [[0], [1]], 8000.0, None, None,
            None, "none", [], None, "none", None, None, None, None, "within_limit", False,
            [], [8000.0], [0], None, None, None, 0, 100)
        return Pending(v, key, {}, [])

    linker.wim_offset.add(-7.0, at_s=0.0)
    p = pending("k1")
    stage._link(p, [])
    assert p.unsettled == ("wim",) and p.state == "ready"
    alarm = next(a for a in store.active_alarms() if a["code"] == code)
    assert "时钟偏差" in alarm["message_zh"] and "k1" in alarm["detail"]
    for i in range(150):
        linker.wim_offset.add(-7.0, at_s=0.02 * (i + 1))
    p = pending("k2")
    stage._link(p, [])
    assert p.unsettled == ()
    assert code not in {a["code"] for a in store.active_alarms()}
    stage.close()
    store.close()
