"""Plate reading off the pipeline thread: a worker process per ``vision.workers``.

Each worker loads the shipped detector and recognisers once (:class:`PlateReader`, one
inference thread per model, on the runtime ``[vision] inference_backend`` /
``inference_precision`` names) and decides a vehicle's plate from all its linked
plate-bearing frames (front and rear: the reads of every frame vote) with
:func:`zhichao.vision.vehicle.decide_vehicle`, under a
:class:`~zhichao.vision.policy.PlatePolicy` whose only setting from the station is each
camera's lane region (``camera[i].lane_region``); every other value is the vision stage's
default. The pipeline submits and goes on weighing;
results are collected when ready, so weighing never waits for vision.

Workers never outlive the station: each one watches its parent (on Linux the kernel sends it
SIGKILL when the station dies, ``PR_SET_PDEATHSIG``; everywhere a thread polls
``os.getppid()`` every :data:`PARENT_POLL_S` and exits when the station is gone, which also
covers a station that died before the worker got to ``prctl``). The multiprocessing
resource tracker the pool starts holds a pipe that only the station and its workers write
to, so it exits by itself once they are all gone. :meth:`PlateWorkers.close` waits a
bounded time for the workers to finish and kills any that do not.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import cv2
import numpy as np

from zhichao.evidence.errors import InputError
from zhichao.evidence.inputs import PlateResult
from zhichao.station.config_sections import CameraSection

LOG = logging.getLogger("zhichao.station")

_READER: Any = None
_POLICY: Any = None
_PROVENANCE: dict[str, Any] | None = None  # what decides this worker's plates

#: camera id → its lane region (left, top, right, bottom), fractions of the frame
LaneRegions = dict[str, tuple[float, float, float, float]]

#: how often a worker checks that the station (its parent) is still there
PARENT_POLL_S = 0.5
#: how long :meth:`PlateWorkers.close` lets the workers finish before it kills them
CLOSE_TIMEOUT_S = 5.0
#: a worker's exit status when it left because the station died
PARENT_GONE_EXIT = 70
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class PlateJob:
    passage_key: str
    # every plate-bearing frame (front and rear): (path, camera id, captured_at ISO UTC)
    frames: tuple[tuple[str, str, str], ...]
    axle_count: int | None


@dataclass(frozen=True)
class PlateRead:
    """A plate decision (``plate`` None: nothing read, or ``error``: reading failed); what
    a worker answers for a :class:`PlateJob`."""

    plate: str | None
    colour: str | None
    confidence: float | None
    accepted: bool
    review_codes: tuple[str, ...] = ()
    latency_s: float | None = None
    error: str | None = None
    worker_pid: int | None = None
    reader: dict[str, Any] | None = None  # zhichao.vision.vehicle.read_provenance
    reads: tuple[dict[str, Any], ...] = ()  # zhichao.vision.vehicle.decision_reads
    alternatives: tuple[dict[str, Any], ...] = ()

    @classmethod
    def failed(cls, exc: BaseException) -> PlateRead:
        """Reading failed: the passage goes to review without a plate."""
        return cls(None, None, None, False, ("vision_error",), error=repr(exc))

    def record(self) -> dict[str, Any] | None:
        """What the station keeps beside the text (``passages.plate_record``): the reader's
        provenance, every read of the plate and the other strings seen."""
        if self.reader is None and not self.reads and not self.alternatives:
            return None
        return {"reader": self.reader, "reads": list(self.reads),
                "alternatives": list(self.alternatives)}

    def for_evidence(self) -> PlateResult | None:
        """The plate as the package records it; without a decided plate, still its reads
        and the reader that made them (the reviewer needs them most then); None when
        nothing at all was read."""
        if not self.plate and self.record() is None:
            return None
        result = PlateResult(self.plate or None, self.colour, self.confidence,
                             self.accepted and bool(self.plate), self.review_codes,
                             self.reader, self.reads, self.alternatives)
        try:  # checked now, as sealing (and a restart's recovery) will check it
            return PlateResult.from_json(result.to_json())
        except InputError as exc:  # never expected: the vision stage bounds every field
            LOG.error("plate reads left out of the evidence: they do not pass its checks",
                      extra={"fields": {"error": str(exc)}})
            return PlateResult(result.text, result.colour, result.confidence,
                               result.accepted, result.review_reasons)


def _set_parent_death_signal() -> None:
    """Linux: have the kernel SIGKILL this process when its parent goes away. (The
    "parent" is the thread that spawned it, which is why :class:`PlateWorkers` spawns its
    workers from a thread of its own that lives as long as the pool.)"""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL),
                   ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    except (OSError, AttributeError):  # no prctl: the polling thread alone
        pass


def _poll_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(PARENT_GONE_EXIT)
        time.sleep(PARENT_POLL_S)


def _watch_parent(parent_pid: int) -> None:
    """Exit (at once, ``os._exit``) when the process ``parent_pid`` is gone."""
    _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the station died before prctl took effect
        os._exit(PARENT_GONE_EXIT)
    threading.Thread(target=_poll_parent, args=(parent_pid,), name="plate-parent-watch",
                     daemon=True).start()


def lane_regions(cameras: Sequence[CameraSection]) -> LaneRegions:
    """The cameras' lane regions. A camera without one sees plates anywhere in its frame,
    and its plates are never auto-accepted (``lane_region_unset``); an installer who has
    checked that no other lane's vehicle shows in its frame sets ``[0, 0, 1, 1]``."""
    return {c.camera_id: (c.lane_region[0], c.lane_region[1], c.lane_region[2],
                          c.lane_region[3])
            for c in cameras if c.lane_region}


def _init_worker(parent_pid: int, regions: LaneRegions,
                 runtime: tuple[str, str] | None = None) -> None:
    """A worker's start: watch the station, load the reader (its models on ``runtime``,
    backend and precision; None: the vision stage's default) and the policy once."""
    global _READER, _POLICY, _PROVENANCE
    _watch_parent(parent_pid)
    from zhichao.vision.policy import LaneRegion, PlatePolicy
    from zhichao.vision.reader import PlateReader, VisionConfig
    from zhichao.vision.vehicle import read_provenance

    _POLICY = PlatePolicy(lane_regions={camera: LaneRegion(*region)
                                        for camera, region in regions.items()})
    config = VisionConfig(intra_op_threads=1)
    if runtime is not None:
        config = replace(config, inference_backend=runtime[0], inference_precision=runtime[1])
    _READER = PlateReader(config)
    _READER.warm_up()
    _PROVENANCE = read_provenance(_READER, _POLICY)


def read_plate(job: PlateJob) -> PlateRead:
    """Runs in a worker: the plate decision."""
    from zhichao.vision.policy import ReviewCode
    from zhichao.vision.vehicle import (
        VehicleFrame,
        WeighedVehicleFacts,
        decide_vehicle,
        decision_reads,
    )

    t0 = time.perf_counter()
    frames = []
    unreadable = []
    for path, camera, captured in job.frames:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:  # decided without it, which it could have vetoed: never accepted
            unreadable.append(path)
            continue
        frames.append(VehicleFrame(np.asarray(image, dtype=np.uint8), camera,
                                   datetime.fromisoformat(captured)))
    d = decide_vehicle(frames, _READER, WeighedVehicleFacts(axle_count=job.axle_count),
                       _POLICY)
    detail = decision_reads(d)
    codes = tuple(d.review_codes)
    if unreadable:
        LOG.warning("plate: %d frame(s) could not be decoded, to review: %s",
                    len(unreadable), ", ".join(unreadable))
        codes = (*codes, ReviewCode.FRAME_UNREADABLE.value)
    # a camera with no lane region cannot tell this lane's plate from another vehicle's
    unset = sorted({camera for _path, camera, _t in job.frames} - set(_POLICY.lane_regions))
    if unset:
        codes = (*codes, ReviewCode.LANE_REGION_UNSET.value)
    return PlateRead(d.plate, d.colour.value, round(float(d.confidence), 4),
                     bool(d.accepted) and not unreadable and not unset, codes,
                     time.perf_counter() - t0,
                     worker_pid=os.getpid(), reader=_PROVENANCE, reads=tuple(detail["reads"]),
                     alternatives=tuple(detail["alternatives"]))


def _worker_pid() -> int:
    return os.getpid()


def worker_runtime() -> str | None:
    """What runs this worker's plate models, e.g. ``openvino 2026.4.1 bf16`` (for tests and
    diagnosis)."""
    runtime: str | None = _READER.model_ids()["runtime"]
    return runtime


def _worker_lane_regions() -> LaneRegions:
    """The lane regions this worker's policy decides under (for tests and diagnosis)."""
    return {camera: (r.left, r.top, r.right, r.bottom)
            for camera, r in _POLICY.lane_regions.items()}


class PlateWorkers:
    """A pool of ``workers`` plate-reading processes (spawned, never forked), deciding under
    the lane ``regions`` (camera id → region; plain tuples, as they cross to the workers).

    All workers are started at once, from a thread of the pool's own that lives until
    :meth:`close` (Linux ties a worker's parent-death signal to the spawning thread, so a
    worker must not be spawned by a caller's thread that may end first).
    """

    def __init__(self, workers: int, regions: LaneRegions | None = None,
                 runtime: tuple[str, str] | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.workers = workers
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                        initializer=_init_worker,
                                        initargs=(os.getpid(), dict(regions or {}), runtime))
        self.in_flight: dict[str, Future[PlateRead]] = {}
        self._closed = threading.Event()
        spawned = threading.Event()
        self._spawner = threading.Thread(target=self._spawn_and_hold, args=(spawned,),
                                         name="plate-workers", daemon=True)
        self._spawner.start()
        spawned.wait()

    def _spawn_and_hold(self, spawned: threading.Event) -> None:
        """Start every worker (the executor starts one per ``submit`` while none is idle:
        none is until its first job is done, which takes longer than these submits), then
        stay alive until :meth:`close`."""
        try:
            for _ in range(self.workers):
                self.pool.submit(_worker_pid)
        except Exception:  # a broken pool shows on the caller's next submit
            pass
        finally:
            spawned.set()
        self._closed.wait()

    def submit(self, job: PlateJob) -> None:
        """Queue ``job``; raises where the pool is broken (a worker died) or closed."""
        self.in_flight[job.passage_key] = self.pool.submit(read_plate, job)

    def done(self) -> list[tuple[str, PlateRead | BaseException]]:
        """The finished jobs since the last call: (passage key, result or exception)."""
        out: list[tuple[str, PlateRead | BaseException]] = []
        for key, fut in list(self.in_flight.items()):
            if fut.done():
                del self.in_flight[key]
                exc = fut.exception()
                out.append((key, exc if exc is not None else fut.result()))
        return out

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Cancel the queued jobs and stop the workers: each finishes its current job and
        exits; any still running after ``timeout_s`` is killed. Returns once every worker
        is exiting (its sentinel pipe closed), at most a second after the kill."""
        # the executor's processes (pid → Process; a private attribute of every CPython
        # since 3.2, and None after shutdown, hence taken first)
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        by_sentinel: dict[int, Any] = {}
        for p in processes:
            try:
                by_sentinel[p.sentinel] = p
            except ValueError:  # already closed
                continue
        left = _wait_sentinels(set(by_sentinel), timeout_s)
        for s in left:
            try:
                by_sentinel[s].kill()
            except (OSError, ValueError):
                continue
        _wait_sentinels(left, 1.0)
        # only now: the spawning thread's end sends the workers their death signal
        self._closed.set()


def _wait_sentinels(sentinels: set[int], timeout_s: float) -> set[int]:
    """Wait until the processes of ``sentinels`` have exited; the sentinels still open."""
    left = set(sentinels)
    deadline = time.monotonic() + timeout_s
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for ready in multiprocessing.connection.wait(list(left), remaining):
            left.discard(ready)
    return left
