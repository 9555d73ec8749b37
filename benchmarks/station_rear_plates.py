"""What reading the rear frame does to the simulated lane's plate decisions.

Run from the repository root:

    python3 benchmarks/station_rear_plates.py --vehicles 60            # trucks
    python3 benchmarks/station_rear_plates.py --vehicles 60 --cars
    python3 benchmarks/station_rear_plates.py --plate-model CANDIDATE.onnx \
        --policy '{"min_char_confidence": 0.9}'     # a candidate plate model at its thresholds
    python3 benchmarks/station_rear_plates.py --backend onnxruntime --precision f32

For N seeded simulated vehicles (trucks: yellow plates, the rear one double-row; cars: blue
single-row front and rear) it renders the front and rear frames as the simulated lane does
(``zhichao.station.scene``, JPEG quality 92), reads each once with the shipped reader and
decides the plate as the station's workers do (default policy, the simulated cameras' lane
regions, axle count 4 for a truck and 2 for a car) from the front alone, the rear alone and
both. It prints, for each: decided text exact, accepted, accepted but wrong, and the review
codes; and for the rear reads how often each recogniser read the plate exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from zhichao.station.config import SIM_FRONT_REGION, SIM_REAR_REGION
from zhichao.station.scene import front_scene, plate_colour_for, random_plate, rear_scene
from zhichao.vision.policy import LaneRegion, PlatePolicy
from zhichao.vision.reader import PlateReader, VisionConfig
from zhichao.vision.runtime import add_inference_arguments
from zhichao.vision.vehicle import VehicleFrame, WeighedVehicleFacts, decide_from_reads

FRONT, REAR = "CAM-FRONT-1", "CAM-REAR-1"
POLICY = PlatePolicy(lane_regions={FRONT: LaneRegion(*SIM_FRONT_REGION),
                                   REAR: LaneRegion(*SIM_REAR_REGION)})


def _as_camera_sends(image: np.ndarray) -> np.ndarray:
    ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return np.asarray(cv2.imdecode(jpg, cv2.IMREAD_COLOR), dtype=np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=60)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--cars", action="store_true", help="cars (blue single-row) not trucks")
    ap.add_argument("--plate-model", type=Path, help="this ONNX file instead of the shipped one")
    ap.add_argument("--policy", default="{}", help="PlatePolicy fields to change, as JSON")
    add_inference_arguments(ap)
    args = ap.parse_args()
    is_truck = not args.cars
    policy = replace(POLICY, **json.loads(args.policy))
    config = VisionConfig(inference_backend=args.backend, inference_precision=args.precision)
    if args.plate_model is not None:
        digest = hashlib.sha256(args.plate_model.read_bytes()).hexdigest()
        config = replace(config, plate_model_path=str(args.plate_model),
                         plate_model_sha256=digest)
    reader = PlateReader(config)
    reader.warm_up()
    facts = WeighedVehicleFacts(axle_count=4 if is_truck else 2)
    captured = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    tally: dict[str, Counter[str]] = {k: Counter() for k in ("front", "rear", "front+rear")}
    rear_reads: Counter[str] = Counter()
    for n in range(args.vehicles):
        text = random_plate(np.random.default_rng([args.seed, n]))
        colour = plate_colour_for(is_truck)
        front = _as_camera_sends(front_scene(text, colour, np.random.default_rng(
            [args.seed, n, 0]), is_truck=is_truck))
        rear = _as_camera_sends(rear_scene(text, colour, np.random.default_rng(
            [args.seed, n, 2]), is_truck=is_truck))
        front_read = (VehicleFrame(front, FRONT, captured), reader.read_image(front))
        rear_read = (VehicleFrame(rear, REAR, captured), reader.read_image(rear))
        rear_reads["PP-OCRv4 exact"] += any(r.text == text for r in rear_read[1])
        rear_reads["plate model exact"] += any(
            r.second is not None and r.second.text == text for r in rear_read[1])
        rear_reads["double-row layout"] += any(r.layout == "double" for r in rear_read[1])
        for name, frames in (("front", [front_read]), ("rear", [rear_read]),
                             ("front+rear", [front_read, rear_read])):
            d = decide_from_reads(frames, facts, policy)
            t = tally[name]
            t["exact"] += d.plate == text
            t["accepted"] += d.accepted
            t["accepted wrong"] += d.accepted and d.plate != text
            for reason in d.review_reasons:
                t[f"code {reason.code.value}"] += 1
    kind = "trucks (rear: yellow double-row)" if is_truck else "cars (blue single-row)"
    print(f"{args.vehicles} seeded simulated {kind}, seed {args.seed}")
    print("rear reads: " + ", ".join(f"{k} {v}" for k, v in rear_reads.items()))
    for name, t in tally.items():
        codes = ", ".join(f"{k[5:]} {v}" for k, v in sorted(t.items()) if k.startswith("code "))
        print(f"{name:>10}: exact {t['exact']}, accepted {t['accepted']}, accepted wrong "
              f"{t['accepted wrong']}; review codes: {codes or 'none'}")


if __name__ == "__main__":
    main()
