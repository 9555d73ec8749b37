"""The station reads every plate-bearing frame of a vehicle and knows its lane (issue #20,
items 3 and 4): the plate workers decide under each camera's lane region, a rear frame (a
truck's yellow double-row plate, rendered by the simulated lane) is read and votes, and a
front and a rear that show different plates send the vehicle to review.

Real parts: the shipped detector and recognisers in a real (spawned) worker process, and
JPEG frames rendered by the simulated lane's scene code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from zhichao.evidence.errors import InputError
from zhichao.evidence.inputs import PlateResult
from zhichao.station.config import SIM_FRONT_REGION, SIM_REAR_REGION, load_config
from zhichao.station.link_stage import LinkStage, plate_job
from zhichao.station.linking import Frame
from zhichao.station.plates import (
    PlateJob,
    PlateRead,
    PlateWorkers,
    _worker_lane_regions,
    lane_regions,
    worker_runtime,
)
from zhichao.station.scene import front_scene, plate_colour_for, random_plate, rear_scene
from zhichao.vision.policy import LaneRegion, PlatePolicy
from zhichao.vision.reader import PlateReader
from zhichao.vision.runtime import (
    DETECTOR_CLP_DET,
    RECOGNISER_PLATE_CRNN,
    RECOGNISER_PPOCRV4_FUSED,
)

FRONT, REAR = "CAM-FRONT-1", "CAM-REAR-1"
WHOLE = "CAM-WHOLE"  # the whole frame, set so at installation
UNSET = "CAM-UNSET"  # no lane region configured
ELSEWHERE = "CAM-ELSEWHERE"  # a region in the frame's top-left corner, where no plate is drawn
REGIONS = {FRONT: SIM_FRONT_REGION, REAR: SIM_REAR_REGION, ELSEWHERE: (0.0, 0.0, 0.2, 0.2),
           WHOLE: (0.0, 0.0, 1.0, 1.0)}
CAPTURED = datetime(2026, 1, 5, 8, 0, tzinfo=UTC).isoformat()
# seeds (np.random.default_rng([SEED, n])) of simulated vehicles whose frames the shipped
# reader reads exactly: a car whose front plate is accepted, trucks whose rear is read
CAR_SEED, TRUCK_SEEDS = 1, (4, 5)


def _vehicle(seed: int, is_truck: bool) -> tuple[str, str]:
    rng = np.random.default_rng([seed, 0])
    return random_plate(rng), plate_colour_for(is_truck)


def _frame(folder: Path, name: str, image: np.ndarray) -> str:
    path = folder / f"{name}.jpg"
    ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])  # as the lane does
    assert ok
    path.write_bytes(jpg.tobytes())
    return str(path)


def _front(folder: Path, seed: int, is_truck: bool) -> str:
    text, colour = _vehicle(seed, is_truck)
    rng = np.random.default_rng([seed, 1])
    return _frame(folder, f"front-{seed}", front_scene(text, colour, rng, is_truck=is_truck))


def _rear(folder: Path, seed: int, is_truck: bool) -> str:
    text, colour = _vehicle(seed, is_truck)
    rng = np.random.default_rng([seed, 2])
    return _frame(folder, f"rear-{seed}", rear_scene(text, colour, rng, is_truck=is_truck))


@pytest.fixture(scope="module")
def workers() -> Iterator[PlateWorkers]:
    pool = PlateWorkers(1, REGIONS)
    yield pool
    pool.close()


def _decide(pool: PlateWorkers, frames: list[tuple[str, str]], axles: int) -> PlateRead:
    key = f"p{time.monotonic_ns()}"
    pool.submit(PlateJob(key, tuple((path, camera, CAPTURED) for path, camera in frames), axles))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for done_key, res in pool.done():
            assert done_key == key
            assert isinstance(res, PlateRead), res
            assert res.error is None, res.error
            return res
        time.sleep(0.05)
    raise AssertionError("the plate worker gave no answer in 120 s")


def test_every_front_and_rear_frame_goes_into_the_job(tmp_path: Path) -> None:
    t = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    front = Frame(FRONT, "front", t, tmp_path / "f.jpg")
    side = Frame("CAM-SIDE-1", "side", t, tmp_path / "s.jpg")
    rear = Frame(REAR, "rear", t, tmp_path / "r.jpg", ref_time=t)
    job = plate_job("k", {FRONT: (front, "linked"), "CAM-SIDE-1": (side, "linked"),
                          REAR: (rear, "linked")}, 5)
    assert job is not None and job.axle_count == 5
    assert [(camera, Path(path).name) for path, camera, _ in job.frames] == [
        (FRONT, "f.jpg"), (REAR, "r.jpg")]
    only_rear = plate_job("k", {FRONT: (None, "no_frame"), REAR: (rear, "linked")}, 5)
    assert only_rear is not None and [c for _, c, _ in only_rear.frames] == [REAR]
    # neither a front nor a rear frame: nothing to read
    assert plate_job("k", {FRONT: (None, "no_frame"), "CAM-SIDE-1": (side, "linked"),
                           REAR: (None, "no_frame")}, 5) is None


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_the_config_gives_the_workers_each_cameras_region(backend: str) -> None:
    """The station's link stage starts its workers, and restarts them, with the regions and
    the configured inference runtime (``[vision] inference_backend`` and
    ``inference_precision``: float32 here, which every CPU runs, unlike the default)."""
    cfg = load_config(None)  # the simulated lane of the README's command
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(
        cfg.vision, inference_backend=backend, inference_precision="f32"))
    expected = {FRONT: SIM_FRONT_REGION, REAR: SIM_REAR_REGION}
    assert lane_regions(cfg.cameras) == expected
    stage = LinkStage(cfg, None, None, None)  # type: ignore[arg-type]  # only its workers
    try:
        for _ in range(2):
            assert stage.plates is not None
            assert stage.plates.pool.submit(_worker_lane_regions).result(timeout=120) == expected
            runtime = stage.plates.pool.submit(worker_runtime).result(timeout=120)
            assert runtime is not None and runtime.startswith(backend + " ")
            assert runtime.endswith(" f32")
            stage._restart_plate_workers()
    finally:
        stage.close()


def test_a_plate_outside_the_lane_region_is_not_accepted(
        workers: PlateWorkers, tmp_path: Path) -> None:
    path = _front(tmp_path, CAR_SEED, is_truck=False)
    whole = _decide(workers, [(path, WHOLE)], 2)
    assert whole.accepted and whole.plate == _vehicle(CAR_SEED, False)[0]
    outside = _decide(workers, [(path, ELSEWHERE)], 2)
    assert not outside.accepted
    assert "plate_outside_lane" in outside.review_codes
    # the same frame with the simulated lane's front region around its plate: as before
    around = _decide(workers, [(path, FRONT)], 2)
    assert (around.plate, around.accepted, around.review_codes) == (
        whole.plate, whole.accepted, whole.review_codes)


def test_a_camera_without_a_lane_region_never_has_its_plate_accepted(
        workers: PlateWorkers, tmp_path: Path) -> None:
    """Nothing says which plate in an unset camera's frame is this lane's vehicle's (the
    issue's unseen scenes had another vehicle's plate accepted): read and filled in, to
    review with ``lane_region_unset``; with a frame of a set camera beside it, too."""
    path = _front(tmp_path, CAR_SEED, is_truck=False)
    whole = _decide(workers, [(path, WHOLE)], 2)
    assert whole.accepted
    unset = _decide(workers, [(path, UNSET)], 2)
    assert unset.plate == whole.plate and not unset.accepted
    assert unset.review_codes == (*whole.review_codes, "lane_region_unset")
    both = _decide(workers, [(path, FRONT), (_rear(tmp_path, CAR_SEED, False), UNSET)], 2)
    assert not both.accepted and both.review_codes[-1] == "lane_region_unset"


def test_a_read_records_what_decided_it(workers: PlateWorkers, tmp_path: Path) -> None:
    """The evidence of a plate names the model files (SHA-256), the runtime that computed
    them and the policy's thresholds and lane regions it was decided under, and keeps every
    read behind it."""
    res = _decide(workers, [(_front(tmp_path, CAR_SEED, is_truck=False), FRONT)], 2)
    reader = res.reader
    assert reader is not None
    assert reader["models_sha256"] == {"detector": DETECTOR_CLP_DET.sha256,
                                       "recogniser": RECOGNISER_PPOCRV4_FUSED.sha256,
                                       "plate_model": RECOGNISER_PLATE_CRNN.sha256}
    assert reader["runtime"] == workers.pool.submit(worker_runtime).result(timeout=120)
    assert reader["policy"]["lane_regions"][FRONT] == dict(zip(
        ("left", "top", "right", "bottom"), REGIONS[FRONT], strict=True))
    assert reader["policy"]["min_plate_width_px"] == PlatePolicy().min_plate_width_px
    # every read behind the plate: camera, time, box, both recognisers' texts and scores
    assert res.reads and all(r["camera"] == FRONT and r["captured_utc"] == "2026-01-05T08:00:00Z"
                             for r in res.reads)
    (read,) = res.reads
    assert read["text"] == res.plate and len(read["char_confidences"]) == len(res.plate or "")
    assert read["plate_model"]["text"] == res.plate and read["plate_model"]["province"]
    assert len(read["box_px"]) == 4 and read["box_px"][2] > read["box_px"][0]
    assert res.record() == {"reader": reader, "reads": list(res.reads),
                            "alternatives": list(res.alternatives)}
    evidence = res.for_evidence()
    assert evidence is not None and evidence.reader == reader and evidence.reads == res.reads
    # it survives the case material's JSON and is checked when read back
    assert PlateResult.from_json(json.loads(json.dumps(evidence.to_json()))) == evidence
    with pytest.raises(InputError, match=r"reads\[0\].box_px"):
        PlateResult.from_json({**evidence.to_json(), "reads": [{**read, "box_px": None}]})
    with pytest.raises(InputError, match="models_sha256.detector"):
        PlateResult.from_json({**evidence.to_json(), "reader": {
            **reader, "models_sha256": {**reader["models_sha256"], "detector": "x"}}})


@pytest.mark.parametrize("seed", TRUCK_SEEDS)
def test_a_rear_frame_alone_is_read(workers: PlateWorkers, tmp_path: Path, seed: int) -> None:
    res = _decide(workers, [(_rear(tmp_path, seed, is_truck=True), REAR)], 4)
    assert res.plate == _vehicle(seed, True)[0]
    assert res.colour == "yellow"


def test_front_and_rear_vote_together(workers: PlateWorkers, tmp_path: Path) -> None:
    seed = TRUCK_SEEDS[0]
    res = _decide(workers, [(_front(tmp_path, seed, True), FRONT),
                            (_rear(tmp_path, seed, True), REAR)], 4)
    assert res.plate == _vehicle(seed, True)[0]
    assert "camera_disagreement" not in res.review_codes
    # both frames were read: the rear alone reads the same plate (it votes, not a no-read)
    rear = _decide(workers, [(_rear(tmp_path, seed, True), REAR)], 4)
    assert rear.plate == res.plate


def test_front_and_rear_of_different_plates_go_to_review(
        workers: PlateWorkers, tmp_path: Path) -> None:
    front_seed, rear_seed = TRUCK_SEEDS
    res = _decide(workers, [(_front(tmp_path, front_seed, True), FRONT),
                            (_rear(tmp_path, rear_seed, True), REAR)], 4)
    assert not res.accepted
    assert "camera_disagreement" in res.review_codes


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    r = PlateReader()
    r.warm_up()
    return r


@pytest.mark.parametrize(("role", "is_truck"), [
    ("front", False), ("front", True), ("rear", False), ("rear", True)])
def test_the_simulated_plates_lie_in_the_simulated_regions(
        reader: PlateReader, role: str, is_truck: bool) -> None:
    """Where the reader finds the simulated lane's plates, over seeded vehicles: inside the
    default cameras' regions (the regions are derived from the scene's numbers)."""
    region = LaneRegion(*(SIM_FRONT_REGION if role == "front" else SIM_REAR_REGION))
    scene = front_scene if role == "front" else rear_scene
    found = 0
    for seed in range(12):
        text, colour = _vehicle(100 + seed, is_truck)
        image = scene(text, colour, np.random.default_rng([100 + seed, 9]), is_truck=is_truck)
        reads = reader.read_image(image)
        for read in reads:
            assert region.contains(read.box_px, image.shape), (role, seed, read.box_px)
        found += bool(reads)
    assert found >= 11


@pytest.mark.parametrize("settled", [False, True])
def test_a_plate_linked_before_the_offsets_settle_is_read_but_not_accepted(
        workers: PlateWorkers, tmp_path: Path, settled: bool) -> None:
    """The link step (docs/station.md, *Settled offsets*): the car's front plate, which
    the workers accept, is read all the same when its link was made with the WIM offset
    unsettled, but goes to review with ``frame_link_unsettled``; settled, it is accepted."""
    from tests.station.conftest import weighed_vehicle
    from zhichao.station.alarms import StageHealth
    from zhichao.station.clock import Clock
    from zhichao.station.linking import CameraSpool, FrameLinker, utc_name
    from zhichao.station.ops import StationMetrics
    from zhichao.station.passage import Pending
    from zhichao.station.store import StationStore

    cfg = load_config(None)
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, read="none"))
    spool = tmp_path / "front"
    spool.mkdir()
    linker = FrameLinker([CameraSpool(FRONT, "front", spool, 12.0)], Clock(), 0.6)
    store = StationStore(tmp_path / "station.db")
    stage = LinkStage(cfg, linker, StageHealth(store), StationMetrics())  # no pool of its own
    stage.cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision,
                                                                    read="candidates"))
    stage.plates = workers  # the module's real pool (not closed here)
    t_row1 = datetime(2026, 12, 7, 14, 2, 55, tzinfo=UTC)
    shot = t_row1 + timedelta(seconds=0.6)  # 12 m at 72 km/h
    image = spool / f"{FRONT}-{utc_name(shot)}-000001.jpg"
    Path(_front(tmp_path, CAR_SEED, is_truck=False)).rename(image)
    os.utime(image, (shot.timestamp(), shot.timestamp()))  # written at its capture
    now = time.monotonic()
    linker.scan(at_s=now - 3)
    for i in range(150):
        linker.cameras[FRONT].offset.add(0.0, at_s=now - 3 + 0.02 * i)
        if settled or i == 0:
            linker.wim_offset.add(0.0, at_s=now - 3 + 0.02 * i)
    assert linker.unsettled() == ([] if settled else ["wim"])
    v = weighed_vehicle(t_row1.isoformat().replace("+00:00", "Z"))
    stage.pending.append(Pending(v, "k", {}, stage._predict(v, "k")))
    stage.advance(t_row1, final=True)
    (p,) = stage.pending
    assert p.frames[FRONT][1] == "linked" and p.state == "reading"
    deadline = time.monotonic() + 120
    while p.state != "ready" and time.monotonic() < deadline:
        time.sleep(0.05)
        stage._collect_plates()
    assert p.plate is not None and p.plate.plate == _vehicle(CAR_SEED, False)[0]
    if settled:
        assert p.plate.accepted and p.unsettled == ()
    else:
        assert not p.plate.accepted and p.unsettled == ("wim",)
        assert p.plate.review_codes[-1] == "frame_link_unsettled"
    store.close()


def test_a_frame_that_cannot_be_decoded_sends_the_plate_to_review(
        workers: PlateWorkers, tmp_path: Path) -> None:
    """A corrupt rear frame could have vetoed the front's plate: decided without it, the
    plate is never accepted (``frame_unreadable``), and the readable front is still read."""
    front = _front(tmp_path, CAR_SEED, False)
    whole = _decide(workers, [(front, FRONT)], 2)
    assert whole.accepted
    broken = tmp_path / "rear-broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    res = _decide(workers, [(front, FRONT), (str(broken), REAR)], 2)
    assert res.plate == whole.plate and not res.accepted
    assert res.review_codes == (*whole.review_codes, "frame_unreadable")
