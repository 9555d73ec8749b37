"""Plate reading off the pipeline thread: a worker process per ``vision.workers``.

Each worker loads the shipped detector and recogniser once (:class:`PlateReader`, one ONNX
thread) and decides a vehicle's plate from its linked front frames with
:func:`zhichao.vision.vehicle.decide_vehicle`. The pipeline submits and goes on weighing;
results are collected when ready, so weighing never waits for vision.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cv2
import numpy as np

_READER: Any = None


@dataclass(frozen=True)
class PlateJob:
    passage_key: str
    frames: tuple[tuple[str, str, str], ...]  # (path, camera id, captured_at ISO UTC)
    axle_count: int | None


def _init_worker() -> None:
    global _READER
    from zhichao.vision.reader import PlateReader, VisionConfig

    _READER = PlateReader(VisionConfig(intra_op_threads=1))
    _READER.warm_up()


def read_plate(job: PlateJob) -> dict[str, Any]:
    """Runs in a worker: the plate decision as plain data."""
    from zhichao.vision.vehicle import VehicleFrame, WeighedVehicleFacts, decide_vehicle

    t0 = time.perf_counter()
    frames = []
    for path, camera, captured in job.frames:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            continue
        frames.append(VehicleFrame(np.asarray(image, dtype=np.uint8), camera,
                                   datetime.fromisoformat(captured)))
    d = decide_vehicle(frames, _READER, WeighedVehicleFacts(axle_count=job.axle_count))
    return {
        "passage_key": job.passage_key, "plate": d.plate, "colour": d.colour.value,
        "confidence": round(float(d.confidence), 4), "accepted": bool(d.accepted),
        "review_codes": list(d.review_codes),
        "review_zh": [r.message_zh for r in d.review_reasons],
        "agreeing_frames": d.agreeing_frames, "frames_read": len(frames),
        "latency_s": time.perf_counter() - t0, "worker_pid": os.getpid(),
    }


class PlateWorkers:
    def __init__(self, workers: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                        initializer=_init_worker)
        self.in_flight: dict[str, Future[dict[str, Any]]] = {}

    def submit(self, job: PlateJob) -> None:
        self.in_flight[job.passage_key] = self.pool.submit(read_plate, job)

    def done(self) -> list[tuple[str, dict[str, Any] | BaseException]]:
        out: list[tuple[str, dict[str, Any] | BaseException]] = []
        for key, fut in list(self.in_flight.items()):
            if fut.done():
                del self.in_flight[key]
                exc = fut.exception()
                out.append((key, exc if exc is not None else fut.result()))
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
