"""Robustness acceptance: 1 000 simulated vehicles over a real TCP link with a mix of faults.

Every vehicle that passed while the link was up is weighed once, with exactly the result
of the clean recording; every vehicle the faults touched is flagged ``data_gap`` and kept;
none is duplicated. The lane runs at 1 kHz with two sensor rows and speeds of 20–60 km/h:
a tyre then stays on a 5 cm strip for ≥ 9 ms (≥ 9 samples), which the core weighs as it
does at 5 kHz, and the recording (2 900 s of traffic) stays small enough to stream in
seconds. The twin streams as fast as the link takes it (no real-time pacing).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from tests.devices.conftest import check_no_silent_loss
from zhichao.common import Backoff
from zhichao.devices.base import Timeouts
from zhichao.devices.faults import FaultInjector
from zhichao.devices.health import DeviceHealth
from zhichao.devices.recording import RecordingMeta
from zhichao.devices.records import StreamRecordSource, WimRecord
from zhichao.devices.samples import SampleBlock, StreamSampleSource
from zhichao.devices.sim.lane import SimOptions, plan_traffic, simulate_recording
from zhichao.devices.twins.records import RecordLineTwin, records_from_truth
from zhichao.devices.twins.samples import SampleStreamTwin
from zhichao.testing.device_faults import (
    FRAME_SAMPLES,
    N_VEHICLES,
    RATE_HZ,
    fault_schedule,
    feed,
    lost_ranges,
    same_result,
)
from zhichao.weighing.reported import weigh_reported
from zhichao.weighing.stream import LaneProcessor
from zhichao.weighing.vehicle import WeighedVehicle

pytestmark = [
    pytest.mark.slow,  # minutes of simulated traffic or processes
    # the whole-lane tests run on one worker, one after the other: side by side on a
    # 2-core machine one starved the other once (docs/station.md, known weaknesses)
    pytest.mark.xdist_group("whole_lane"),
]


@pytest.fixture(scope="module")
def simulated() -> tuple[np.ndarray, RecordingMeta, dict[str, Any]]:
    opts = SimOptions(n_rows=2, sample_rate_hz=RATE_HZ, speed_kmh=(20.0, 60.0),
                      abnormal_fraction=0.0)
    rng = np.random.default_rng(2026)
    vehicles = plan_traffic(rng, N_VEHICLES, opts)
    return simulate_recording(rng, vehicles, opts)


@pytest.fixture(scope="module")
def lane(simulated: tuple[np.ndarray, RecordingMeta, dict[str, Any]]
         ) -> tuple[np.ndarray, RecordingMeta, list[WeighedVehicle]]:
    samples, meta, _truth = simulated
    proc = LaneProcessor(meta)
    clean = proc.feed(samples) + proc.finish()
    assert len(clean) == N_VEHICLES  # the clean recording itself is weighed right
    return samples, meta, clean


@dataclass
class Streamed:
    blocks: list[SampleBlock]
    twin: SampleStreamTwin
    injector: FaultInjector
    health: DeviceHealth


@pytest.fixture(scope="module")
def streamed(lane: tuple[np.ndarray, RecordingMeta, list[WeighedVehicle]]) -> Streamed:
    samples, meta, _ = lane
    n_frames = -(-samples.shape[0] // FRAME_SAMPLES)
    injector = FaultInjector(schedule=fault_schedule(n_frames, seed=7), seed=8)
    twin = SampleStreamTwin(samples, RATE_HZ, meta.start_utc, speed=0,
                            samples_per_frame=FRAME_SAMPLES, injector=injector)
    source = StreamSampleSource.from_url(twin.url, timeouts=Timeouts(1.0),
                                         backoff=Backoff(0.01, 0.1), stall_timeout_s=1.0)
    blocks: list[SampleBlock] = []
    with source:
        source.open()
        with twin:
            while True:
                block = source.read_block(0.2 if not twin.done.is_set() else 0.5)
                if block is not None:
                    blocks.append(block)
                elif twin.done.is_set():
                    break
        health = source.health_snapshot()
    return Streamed(blocks, twin, injector, health)


def test_thousand_vehicles_every_intact_sample_once_every_gap_said(streamed: Streamed) -> None:
    assert streamed.injector.injected.total() >= 200
    check_no_silent_loss(streamed.blocks, streamed.twin, exact=True)
    assert len(lost_ranges(streamed.twin)) >= 100  # the faults really cost data
    c = streamed.health.counters
    assert c["reboots"] == 8 and c["clock_jumps"] >= 8
    assert c["crc_errors"] >= 30 and c["oversize_frames"] == 10 and c["bad_values"] == 12
    assert c["stalls"] >= 1 and c["reconnects"] >= 12
    reasons = Counter(b.reason for b in streamed.blocks)
    assert reasons["device_reboot"] == 8 and reasons["sequence_gap"] >= 50


def test_thousand_vehicles_weighed_once_as_clean_or_flagged(
        lane: tuple[np.ndarray, RecordingMeta, list[WeighedVehicle]],
        streamed: Streamed) -> None:
    _samples, meta, clean = lane
    faulty = feed(LaneProcessor(meta), streamed.blocks)
    lost = lost_ranges(streamed.twin)
    margin = int(RATE_HZ)  # the core flags a vehicle within 1 s of a gap

    def touched(v: WeighedVehicle) -> bool:
        return any(v.first_sample - margin <= b and v.last_sample + margin >= a
                   for a, b in lost)

    unaffected = [v for v in clean if not touched(v)]
    affected = [v for v in clean if touched(v)]
    assert len(unaffected) > 800 and len(affected) > 50
    used: set[int] = set()
    for v in unaffected:  # passed while the link was up: weighed once, as from clean
        near = [i for i, o in enumerate(faulty) if abs(o.first_sample - v.first_sample) < 50]
        assert len(near) == 1, f"vehicle at {v.time_utc}: {len(near)} records"
        problem = same_result(faulty[near[0]], v)
        assert not problem, f"vehicle at {v.time_utc}: {problem}"
        used.add(near[0])
    others = [o for i, o in enumerate(faulty) if i not in used]
    assert all("data_gap" in o.flags for o in others), [
        (o.time_utc, o.flags) for o in others if "data_gap" not in o.flags]
    # touched vehicles are kept, flagged — unless the link was down for all their axles
    kept = sum(1 for v in affected
               if any(abs(o.first_sample - v.first_sample) < 2 * margin for o in others))
    assert kept >= 0.5 * len(affected)


def test_thousand_controller_records_over_a_pty_with_faults(
        simulated: tuple[np.ndarray, RecordingMeta, dict[str, Any]]) -> None:
    """The same 1 000 vehicles reported by a controller as ZWR/1 lines over a real pty:
    every record that left intact is weighed once, exactly as without faults."""
    _, meta, truth = simulated
    clean = records_from_truth(truth, n_rows=2, seed=3)
    rates = {"corrupt": 0.02, "garbage": 0.02, "oversize": 0.01, "split": 0.03,
             "merge": 0.02, "drop": 0.02, "disconnect": 0.005, "reboot": 0.005,
             "clock_jump": 0.005, "bad_values": 0.01}
    injector = FaultInjector(rates=rates, seed=21,
                             params={"disconnect": 2, "reboot": 2, "clock_jump": 30.0})
    twin = RecordLineTwin(clean, link="pty", injector=injector)
    got: list[WimRecord] = []
    with StreamRecordSource.from_url(twin.url + "?baud_rate=115200",
                                     timeouts=Timeouts(1.0)) as source:
        source.open()
        with twin:
            while True:
                r = source.read_record(0.2 if not twin.done.is_set() else 0.5)
                if r is not None:
                    got.append(r)
                elif twin.done.is_set():
                    break
        c = source.health_snapshot().counters
    assert injector.injected.total() > 100
    index = {(s.boot_id, s.seq): s.index for s in twin.sent}
    delivered = [index[(r.boot_id, r.seq)] for r in got]
    assert len(delivered) == len(set(delivered)), "a record delivered twice"
    assert set(delivered) == twin.intact_indices()
    assert len(delivered) > 850
    missing = N_VEHICLES - len(delivered)
    said = sum(max(r.gap_before_records, 0) for r in got)
    reboots = sum(r.gap_before_records == -1 for r in got)
    assert said <= missing and (said == missing or reboots)  # every loss is reported
    for r, i in zip(got, delivered, strict=True):
        mine = weigh_reported(r, site_id=meta.site_id).to_dict()
        ref = weigh_reported(clean[i], site_id=meta.site_id).to_dict()
        for d in (mine, ref):
            for k in ("time_utc", "notes", "recording"):
                d.pop(k)
            d["flags"] = [f for f in d["flags"] if f != "clock_jump"]
            d.pop("flags_zh")
        assert mine == ref, i
    assert c["reboots"] == injector.injected["reboot"]
    assert c["clock_jumps"] >= 1 and c["bad_values"] >= 1
