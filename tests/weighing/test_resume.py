"""Resuming a lane from a stored :class:`LaneSnapshot` weighs bit for bit as uninterrupted.

A station that is killed replays its journal from a durable position with a processor
restored from the state stored there. Each stream below is weighed once in blocks (as the
station feeds them), with ``is_quiescent()`` and a snapshot recorded at every block boundary;
then fresh processors restored from the JSON round-tripped snapshots at many quiescent
boundaries weigh the rest of the stream in the same blocks, and every vehicle from the
boundary on must be the uninterrupted run's, record for record.

The simulator places vehicles a few seconds apart, and a processor holds a vehicle until no
close follower can come any more ((15 m + the array) / v · 1.5 after its last axle: 34 s at
3.6 km/h), so its recordings are hardly ever quiescent between vehicles. The streams here
join several recordings with stretches of idle lane between them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from zhichao.devices.recording import RecordingMeta
from zhichao.devices.sim import CATALOGUE, SimOptions, simulate_recording
from zhichao.devices.sim.lane import plan_traffic
from zhichao.devices.sim.traffic import SimVehicle, make_vehicle
from zhichao.weighing.errors import WeighingInputError
from zhichao.weighing.pulses import detect_pulses
from zhichao.weighing.stream import LaneProcessor, LaneSnapshot
from zhichao.weighing.vehicle import WeighedVehicle

NAME = "resume-test"
FS = 5000.0
# block sizes at 5 kHz, cycled: 10 ms … 200 ms
SIZES = (250, 50, 137, 500, 250, 1000)
OPTS = SimOptions(abnormal_fraction=0.0, sample_rate_hz=FS)
MAX_RESUMES = 40  # per stream: all quiescent boundaries when there are no more


@dataclass
class Boundary:
    """The uninterrupted processor after a block."""

    block: int  # blocks[: block + 1] were fed
    next_index: int
    quiescent: bool
    pulse_open: bool
    snapshot: dict[str, Any] | None  # LaneSnapshot.to_json() where quiescent


@dataclass
class Stream:
    name: str
    meta: RecordingMeta
    blocks: list[tuple[int, npt.NDArray[np.float32]]]  # (gap_before_samples, samples)
    vehicles: list[WeighedVehicle]  # the uninterrupted run
    boundaries: list[Boundary]


def _vehicle(rng: np.random.Generator, code: str, speed_kmh: float,
             abnormal: str | None = None) -> SimVehicle:
    return make_vehicle(rng, CATALOGUE[code], speed_kmh=speed_kmh, load_profile="mixed",
                        road="smooth", abnormal=abnormal)


def _join(rng: np.random.Generator, parts: list[tuple[list[SimVehicle], float]]
          ) -> tuple[npt.NDArray[np.float32], RecordingMeta]:
    """Simulate each group of vehicles as its own recording and join them, each followed by
    that many seconds of idle lane (noise around the level the group ended at). Every group
    is shifted to start at the level the stream is at, so the offsets run on without a step
    (each recording begins and ends with ≥ 0.5 s of idle lane)."""
    out: list[npt.NDArray[np.float32]] = []
    meta: RecordingMeta | None = None
    level: npt.NDArray[np.float64] | None = None
    for vehicles, quiet_s in parts:
        samples, m, _ = simulate_recording(rng, vehicles, OPTS)
        meta = meta or m
        s = samples.astype(np.float64)
        if level is not None:
            s += level - s[:1000].mean(axis=0)
        level = s[-1000:].mean(axis=0)
        idle = level + rng.normal(0.0, OPTS.noise_units, (round(quiet_s * FS), s.shape[1]))
        out += [s.astype(np.float32), idle.astype(np.float32)]
    assert meta is not None
    return np.concatenate(out), meta


def _blocks(samples: npt.NDArray[np.float32], cuts: dict[int, int] | None = None
            ) -> list[tuple[int, npt.NDArray[np.float32]]]:
    """Blocks of SIZES; ``cuts`` {index: n} drops n samples there, said by the next block's
    ``gap_before_samples`` (n < 0: |n| dropped, said as an unknown number, -1)."""
    cuts = dict(cuts or {})
    out: list[tuple[int, npt.NDArray[np.float32]]] = []
    i = k = gap = 0
    while i < len(samples):
        n = SIZES[k % len(SIZES)]
        k += 1
        at = [c for c in sorted(cuts) if i <= c < i + n]
        if at:
            lost = cuts.pop(at[0])
            if at[0] > i:
                out.append((gap, samples[i:at[0]]))
            i = at[0] + abs(lost)
            gap = lost if lost > 0 else -1
            continue
        out.append((gap, samples[i:i + n]))
        gap = 0
        i += n
    return out


def _feed(proc: LaneProcessor, blocks: list[tuple[int, npt.NDArray[np.float32]]]
          ) -> list[WeighedVehicle]:
    out: list[WeighedVehicle] = []
    for gap, chunk in blocks:
        out.extend(proc.feed(chunk, gap_before_samples=gap))
    out.extend(proc.finish())
    return out


def _pulse_open(proc: LaneProcessor) -> bool:
    now = proc.detector.next_index
    return bool(np.any(proc.detector.state.open_pulse_starts(now) < now))


def _stream(name: str, samples: npt.NDArray[np.float32], meta: RecordingMeta,
            cuts: dict[int, int] | None = None) -> Stream:
    blocks = _blocks(samples, cuts)
    proc = LaneProcessor(meta, recording=NAME)
    vehicles: list[WeighedVehicle] = []
    bounds: list[Boundary] = []
    for k, (gap, chunk) in enumerate(blocks):
        vehicles.extend(proc.feed(chunk, gap_before_samples=gap))
        quiet = proc.is_quiescent()
        if quiet:
            snap: dict[str, Any] | None = proc.lane_snapshot().to_json()
        else:
            snap = None
            with pytest.raises(WeighingInputError, match="not quiescent"):
                proc.lane_snapshot()
        bounds.append(Boundary(k, proc.detector.next_index, quiet, _pulse_open(proc), snap))
    vehicles.extend(proc.finish())
    assert not proc.is_quiescent()  # finished: nothing may follow
    return Stream(name, meta, blocks, vehicles, bounds)


def _normal() -> Stream:
    """Normal traffic: pairs a few seconds apart (never quiescent between them), idle
    stretches of 1 to 12 s between pairs."""
    rng = np.random.default_rng(101)
    parts = [(plan_traffic(rng, 2, OPTS), q) for q in (6.0, 1.0, 12.0, 3.0)]
    return _stream("normal", *_join(rng, parts))


def _slow() -> Stream:
    """Slow trucks (3.6 and 4.5 km/h: axles seconds apart, > 20 s on the array), one with a
    close follower, normal traffic right before and after them."""
    rng = np.random.default_rng(202)
    parts = [([_vehicle(rng, "car", 60.0)], 1.5),
             ([_vehicle(rng, "combination_5_axle", 3.6)], 36.0),
             ([_vehicle(rng, "truck_2_axle", 45.0)], 0.5),
             ([_vehicle(rng, "truck_3_axle", 4.5),
               _vehicle(rng, "car", 4.5, "close_following")], 29.0),
             ([_vehicle(rng, "van", 70.0)], 1.0)]
    return _stream("slow", *_join(rng, parts))


def _following() -> Stream:
    """Close-following groups (gap to the leader < 15 m), normal traffic between them."""
    rng = np.random.default_rng(307)
    first = [_vehicle(rng, "combination_6_axle", 30.0),
             _vehicle(rng, "car", 30.0, "close_following"),
             _vehicle(rng, "truck_2_axle", 30.0, "close_following")]
    second = [_vehicle(rng, "van", 50.0), _vehicle(rng, "truck_4_axle", 12.0),
              _vehicle(rng, "car", 12.0, "close_following")]
    parts = [(first, 4.0), ([_vehicle(rng, "car", 80.0)], 3.0), (second, 2.0)]
    return _stream("following", *_join(rng, parts))


def _reversing() -> Stream:
    """Vehicles that stop past the array and back up over it; and a car that, 8 s after it
    passed (the lane quiescent in between), backs one axle over the last row only: that
    lone hit is ``reversing`` only through the link to the previous passage (< 30 s), which
    a restart in between must restore from the previous-vehicle summary."""
    rng = np.random.default_rng(404)
    parts = [([_vehicle(rng, "car", 50.0)], 3.0),
             ([_vehicle(rng, "truck_2_axle", 8.0, "reversing")], 4.0),
             ([_vehicle(rng, "truck_3_axle", 40.0)], 3.0),
             ([_vehicle(rng, "van", 10.0, "reversing")], 2.0),
             ([_vehicle(rng, "car", 30.0)], 8.0)]
    samples, meta = _join(rng, parts)
    # the car's last pulses on the last row, once more, 6 s into the idle lane after it
    n_rows = len(meta.rows)
    last_row = [i for i, c in enumerate(meta.channels) if c.row == n_rows]
    pulses = detect_pulses(samples, [c.sensitivity_per_n for c in meta.channels], FS)
    mine = [k for k in range(len(pulses)) if pulses.channel[k] in last_row]
    lo = int(min(pulses.start[k] for k in mine[-2:])) - 100
    hi = int(max(pulses.end[k] for k in mine[-2:])) + 100
    shape = samples[lo:hi].astype(np.float64) - samples[lo - 300:lo].mean(axis=0)
    at = len(samples) - round(2.0 * FS)
    samples[at:at + hi - lo, last_row] += shape[:, last_row].astype(np.float32)
    return _stream("reversing", samples, meta)


def _gaps() -> Stream:
    """Lost samples: in the idle lane 0.4 s before a vehicle (within 1 s: its record is
    flagged ``data_gap``, though a quiescent boundary lies between them), inside a vehicle,
    and of an unknown length."""
    rng = np.random.default_rng(505)
    samples, meta = _join(rng, [(plan_traffic(rng, 1, OPTS), 4.0) for _ in range(5)])
    clean = _feed(LaneProcessor(meta, recording=NAME), _blocks(samples))
    assert len(clean) == 5
    a, b, c = clean[1], clean[2], clean[4]
    cuts = {a.first_sample - round(0.4 * FS): 200,
            (b.first_sample + b.last_sample) // 2: 300,
            c.first_sample - round(0.7 * FS): -150}
    return _stream("gaps", samples, meta, cuts)


BUILDERS = {"normal": _normal, "slow": _slow, "following": _following,
            "reversing": _reversing, "gaps": _gaps}


@pytest.fixture(scope="module")
def streams() -> dict[str, Stream]:
    return {name: build() for name, build in BUILDERS.items()}


def _records(vehicles: list[WeighedVehicle]) -> list[str]:
    """Exact, NaN-aware form of the records (NaN == NaN, float repr is exact)."""
    return [json.dumps(v.to_dict(), sort_keys=True) for v in vehicles]


def _after(s: Stream, b: Boundary) -> list[str]:
    return _records([v for v in s.vehicles if v.first_sample >= b.next_index])


def _resume(s: Stream, b: Boundary, snap: LaneSnapshot | None = None) -> list[WeighedVehicle]:
    """Restart after ``b`` from its snapshot (JSON round-tripped) and weigh the rest."""
    if snap is None:
        assert b.snapshot is not None
        snap = LaneSnapshot.from_json(json.loads(json.dumps(b.snapshot, allow_nan=False)))
    proc = LaneProcessor(s.meta, recording=NAME, start_index=b.next_index, lane_snapshot=snap)
    assert proc.is_quiescent()
    return _feed(proc, s.blocks[b.block + 1:])


def _picks(s: Stream) -> list[Boundary]:
    """Quiescent boundaries to restart from: all of them if few, else the first three, the
    last one before and the first one after every stretch with a vehicle in progress, and
    an even spread of the rest."""
    quiet = [b for b in s.boundaries if b.quiescent]
    if len(quiet) <= MAX_RESUMES:
        return quiet
    keep = {b.block for b in quiet[:3]}
    q = [b.quiescent for b in s.boundaries]
    for k in range(1, len(q)):
        if q[k] != q[k - 1]:
            keep.add(k if q[k] else k - 1)
    rest = [b for b in quiet if b.block not in keep]
    n_more = max(0, MAX_RESUMES - len(keep))
    if n_more and rest:
        keep.update(rest[i].block for i in np.linspace(0, len(rest) - 1, n_more).astype(int))
    return [s.boundaries[k] for k in sorted(keep)]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_resume_at_quiescent_boundaries_is_bit_for_bit(streams: dict[str, Stream],
                                                       name: str) -> None:
    s = streams[name]
    quiet = [b for b in s.boundaries if b.quiescent]
    assert quiet and quiet[0].block == 0, "the stream starts quiescent"
    picks = _picks(s)
    for b in picks:
        assert _records(_resume(s, b)) == _after(s, b), (name, b.block, b.next_index)
    # every vehicle was among the first weighed after some restart, and there were
    # restarts right before and right after vehicles in progress
    firsts = {min((v.first_sample for v in s.vehicles if v.first_sample >= b.next_index),
                  default=-1) for b in picks}
    assert len(firsts - {-1}) >= 3
    assert len(quiet) < len(s.boundaries)


def test_restarts_cover_the_state_a_quiescent_lane_carries(streams: dict[str, Stream]
                                                            ) -> None:
    """The previous-vehicle summary and the stored gaps do change later records: dropped from
    the snapshot, some restart weighs differently (so the tests above would notice them
    missing); and the stored gaps are only the recent ones."""
    differs: dict[str, int] = {}
    for name in ("reversing", "gaps"):
        s = streams[name]
        # the last quiescent boundary before each stretch with a vehicle in progress
        for b, after in zip(s.boundaries, s.boundaries[1:], strict=False):
            if not b.quiescent or after.quiescent:
                continue
            assert b.snapshot is not None
            snap = LaneSnapshot.from_json(b.snapshot)
            if snap.last_vehicle is None and not snap.gaps:
                continue
            bare = replace(snap, last_vehicle=None, gaps=())
            if _records(_resume(s, b, bare)) != _after(s, b):
                differs[name] = differs.get(name, 0) + 1
    assert differs.get("gaps", 0) >= 1, differs
    assert differs.get("reversing", 0) >= 1, differs
    for b in streams["gaps"].boundaries:
        if b.snapshot is not None:
            assert all(g1 >= b.next_index - 2 * FS for _, g1 in b.snapshot["gaps"])


def test_slow_truck_boundaries_with_no_open_pulse_are_not_quiescent(
        streams: dict[str, Stream]) -> None:
    """Between a slow truck's axles no pulse is open for seconds; the detector-only criterion
    took such a point for a durable position, and a restart there weighs the rest of the
    truck as other vehicles. ``lane_snapshot()`` refuses them."""
    s = streams["slow"]
    truck = next(v for v in s.vehicles if v.axle_count == 5 and v.speed_kmh is not None
                 and v.speed_kmh < 5)
    inside = [b for b in s.boundaries
              if truck.first_sample < b.next_index <= truck.last_sample]
    idle = [b for b in inside if not b.pulse_open]
    assert not any(b.quiescent for b in inside)
    assert len(idle) > 0.5 * len(inside), "axles seconds apart: mostly no pulse open"
    # replay to one of them; its lane state is refused, its detector state alone misweighs
    b = idle[len(idle) // 2]
    proc = LaneProcessor(s.meta, recording=NAME)
    for gap, chunk in s.blocks[:b.block + 1]:
        proc.feed(chunk, gap_before_samples=gap)
    assert not proc.is_quiescent() and not _pulse_open(proc)
    with pytest.raises(WeighingInputError, match="not quiescent"):
        proc.lane_snapshot()
    old = LaneProcessor(s.meta, recording=NAME, start_index=b.next_index,
                        detector_snapshot=proc.detector_snapshot())
    got = _feed(old, s.blocks[b.block + 1:])
    assert _records(got) != _records([v for v in s.vehicles if v.last_sample >= b.next_index])
    assert not any(v.axle_count == 5 and v.gross_weight_kg == truck.gross_weight_kg
                   for v in got)


def test_snapshot_of_other_settings_or_position_is_refused(streams: dict[str, Stream]
                                                           ) -> None:
    s = streams["normal"]
    b = next(b for b in s.boundaries if b.quiescent and b.block > 0)
    assert b.snapshot is not None
    snap = LaneSnapshot.from_json(b.snapshot)
    other_sens = replace(s.meta, channels=tuple(
        replace(c, sensitivity_per_n=c.sensitivity_per_n * 1.01) for c in s.meta.channels))
    with pytest.raises(WeighingInputError, match="other sensitivities"):
        LaneProcessor(other_sens, start_index=b.next_index, lane_snapshot=snap)
    other_rows = replace(s.meta, channels=tuple(
        replace(c, x_m=c.x_m * 1.1) for c in s.meta.channels))
    with pytest.raises(WeighingInputError, match="geometry"):
        LaneProcessor(other_rows, start_index=b.next_index, lane_snapshot=snap)
    with pytest.raises(WeighingInputError, match="starts at"):
        LaneProcessor(s.meta, start_index=b.next_index + 1, lane_snapshot=snap)
    with pytest.raises(WeighingInputError, match="not both"):
        LaneProcessor(s.meta, start_index=b.next_index, lane_snapshot=snap,
                      detector_snapshot=snap.detector)
    # the detector state alone still restores as before
    LaneProcessor(s.meta, start_index=b.next_index, detector_snapshot=snap.detector)


def _mutated(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(raw))
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def test_snapshot_json_is_exact_and_strict(streams: dict[str, Stream]) -> None:
    s = streams["gaps"]
    b = next(b for b in s.boundaries if b.snapshot is not None and b.snapshot["gaps"]
             and b.snapshot["last_vehicle"] is not None)
    raw = b.snapshot
    assert raw is not None and raw["format"] == "zhichao.lane-state/1"
    text = json.dumps(raw, allow_nan=False)
    snap = LaneSnapshot.from_json(json.loads(text))
    assert snap.to_json() == raw and snap.next_index == b.next_index == raw["next_index"]
    assert snap.last_vehicle is not None and float.hex(snap.last_vehicle.ref) == \
        raw["last_vehicle"]["ref"]
    bad: list[tuple[tuple[str, ...], Any]] = [
        (("format",), "zhichao.lane-state/2"),
        (("next_index",), b.next_index + 1),
        (("next_index",), float(b.next_index)),
        (("next_index",), True),
        (("fingerprint",), ""),
        (("fingerprint",), KeyError),
        (("extra",), 1),
        (("detector", "state_f"), "AAAA"),
        (("last_vehicle",), [1, 2, 3]),
        (("last_vehicle", "ref"), 1.5),
        (("last_vehicle", "v"), "0x1.8p"),
        (("last_vehicle", "last_sample"), b.next_index),
        (("last_vehicle", "extra"), 0),
        (("gaps",), [[5, 5]]),
        (("gaps",), [[0, b.next_index + 1]]),
        (("gaps",), [[1, 2, 3]]),
        (("gaps",), {"0": 1}),
    ]
    for path, value in bad:
        with pytest.raises(WeighingInputError):
            LaneSnapshot.from_json(_mutated(raw, path, value))
    junk: Any
    for junk in (None, [], "x", {"format": "zhichao.lane-state/1"}):
        with pytest.raises(WeighingInputError):
            LaneSnapshot.from_json(junk)


def test_a_device_restart_starts_the_detector_afresh() -> None:
    """An unknown gap (``gap_before_samples=-1``: the device restarted) may come with other
    sensor offsets; the detector then starts afresh, so the rest of the stream is weighed
    as a fresh processor weighs it (old offsets made pulses of the new ones: the same
    fragment came out a dozen times)."""
    rng = np.random.default_rng(101)
    samples, meta = _join(rng, [(plan_traffic(rng, 2, OPTS), q) for q in (6.0, 1.0, 12.0, 3.0)])
    half = samples.shape[0] // 2
    after = (samples[half:] + np.float32(900.0)).astype(np.float32)  # new offsets
    proc = LaneProcessor(meta)
    before = [v for i in range(0, half, 1000)
              for v in proc.feed(samples[i:min(i + 1000, half)])]
    got = proc.feed(after, gap_before_samples=-1) + proc.finish()
    fresh = LaneProcessor(meta, start_index=half)
    want = fresh.feed(after) + fresh.finish()
    keys = [(v.first_sample, v.last_sample) for v in got]
    assert len(keys) == len(set(keys))
    got = [v for v in got if v.first_sample >= half]  # not those cut by the restart
    assert [v.first_sample for v in got] == [v.first_sample for v in want]
    assert [v.gross_weight_kg for v in got] == [v.gross_weight_kg for v in want]
    assert before  # vehicles before the restart were weighed


def test_an_unknown_gap_moves_the_timeline_by_its_measured_span() -> None:
    """A device restart with its length measured by another clock
    (``unknown_gap_span_samples``): the rest is weighed as a fresh processor starting that
    far on weighs it — the same vehicles, at their real times, flagged where the gap
    touches them — and the span is refused without an unknown gap or below 0."""
    rng = np.random.default_rng(101)
    samples, meta = _join(rng, [(plan_traffic(rng, 2, OPTS), q) for q in (6.0, 1.0, 12.0, 3.0)])
    half = samples.shape[0] // 2
    away = 300 * int(meta.sample_rate_hz)  # five minutes
    after = (samples[half:] + np.float32(900.0)).astype(np.float32)
    proc = LaneProcessor(meta)
    for i in range(0, half, 1000):
        proc.feed(samples[i:min(i + 1000, half)])
    got = proc.feed(after, gap_before_samples=-1, unknown_gap_span_samples=away) + proc.finish()
    fresh = LaneProcessor(meta, start_index=half + away)
    want = fresh.feed(after) + fresh.finish()
    got = [v for v in got if v.first_sample >= half + away]
    assert got and [v.first_sample for v in got] == [v.first_sample for v in want]
    assert [v.time_utc for v in got] == [v.time_utc for v in want]
    assert [v.gross_weight_kg for v in got] == [v.gross_weight_kg for v in want]
    p = LaneProcessor(meta)
    for gap, span in ((0, 5), (10, 5), (-1, -1)):
        with pytest.raises(WeighingInputError):
            p.feed(samples[:100], gap_before_samples=gap, unknown_gap_span_samples=span)
