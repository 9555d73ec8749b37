"""The lane processor: a stream of samples in, weighed vehicles out.

It reads like the measurement flowchart::

    samples ─► pulses (stages 1, 3) ─► row hits ─► axle tracks (stage 4)
            ─► vehicles (stage 2) ─► loads (5) ─► class (6) ─► overload (7) ─► flags (8)

Feed it chunks of any size; a vehicle split across chunks is weighed once, exactly as from the
whole recording, because every stage only acts on data that later samples cannot change.

A stream can be resumed from a :class:`~zhichao.weighing.snapshot.LaneSnapshot` taken at a
quiescent point (:meth:`LaneProcessor.is_quiescent`). The quality checks of one passage are
plain functions in :mod:`zhichao.weighing.passage`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from zhichao.common import format_utc
from zhichao.devices.recording import Recording, RecordingMeta
from zhichao.weighing import passage
from zhichao.weighing.assemble import Measured, assemble_vehicle
from zhichao.weighing.axles import (
    Kinematics,
    RowHit,
    Track,
    TrackBuilder,
    fit_kinematics,
    row_hits_from_pulses,
)
from zhichao.weighing.calibration_profile import (
    NOT_IN_FORCE_FLAG,
    OUTSIDE_RANGE_FLAG,
    CalibrationProfile,
    not_in_force_reason,
    outside_range_reasons,
)
from zhichao.weighing.config import OverloadConfig, WeighingConfig
from zhichao.weighing.errors import CalibrationProfileError, WeighingInputError
from zhichao.weighing.pulses import DetectorSnapshot, PulseDetector, Pulses
from zhichao.weighing.snapshot import (  # noqa: F401 - re-exported
    LANE_SNAPSHOT_FORMAT,
    LaneSnapshot,
    LastVehicleSummary,
)
from zhichao.weighing.vehicle import ABNORMAL_FLAGS, WeighedVehicle  # noqa: F401 - re-exported

G_MS2 = 9.80665


@dataclass
class _Pending:
    """Tracks of the vehicle being assembled."""

    tracks: list[Track]
    prev_gap_m: float | None  # gap to the previous vehicle's last axle


@dataclass(frozen=True)
class _LastVehicle:
    """What the next vehicle reads of the previous one (gap, reversing link)."""

    ref: float  # sample index at which its last axle crossed row 1
    v: float  # that axle's speed [m/sample]; 0 when unknown
    last_sample: int  # its last sample on a sensor
    # the emitted record, whose flags a close follower or a reversal updates in place;
    # None when restored from a snapshot (that record is already out of our hands)
    record: WeighedVehicle | None


class LaneProcessor:
    """Streaming weighing of one lane.

    Parameters
    ----------
    meta : the lane's recording metadata (geometry, sensitivities, temperature, identity).
    config : weighing configuration.
    profile : calibration profile to apply (identity when ``None``).
    recording : name of the recording the samples come from, copied into each record.
    start_index : global index of the first sample that will be fed (a stream resumed from a
        journal position does not start at 0); sample indices in the records count from it.
    detector_snapshot : the pulse detector's state at ``start_index``, taken from the
        processor that weighed the stream before (:meth:`detector_snapshot`). With it, every
        pulse from ``start_index`` on is bit for bit the uninterrupted stream's; without it the
        detector's offset and noise averages start afresh and only converge to them (within
        ≈ e^-t/τ after t seconds). The detector alone is not the whole state: a vehicle in
        progress at ``start_index`` is lost or misread (see ``lane_snapshot``).
    lane_snapshot : the whole processor's state at ``start_index``, taken at a quiescent
        point (:meth:`lane_snapshot`); every vehicle from ``start_index`` on is then weighed
        bit for bit as by the uninterrupted processor. Give it or ``detector_snapshot``, not
        both.
    """

    def __init__(self, meta: RecordingMeta, config: WeighingConfig | None = None,
                 profile: CalibrationProfile | None = None, recording: str | None = None,
                 *, start_index: int = 0, detector_snapshot: DetectorSnapshot | None = None,
                 lane_snapshot: LaneSnapshot | None = None) -> None:
        if start_index < 0:
            raise WeighingInputError(f"start_index must be >= 0, got {start_index}")
        if lane_snapshot is not None:
            if detector_snapshot is not None:
                raise WeighingInputError("give a lane snapshot or a detector snapshot, not both")
            detector_snapshot = lane_snapshot.detector
        if detector_snapshot is not None and detector_snapshot.next_index != start_index:
            raise WeighingInputError(
                f"detector snapshot is at sample {detector_snapshot.next_index}, the stream "
                f"starts at {start_index}")
        self.meta = meta
        self.cfg = config or WeighingConfig()
        self.profile = profile
        self.recording = recording
        self.fs = meta.sample_rate_hz
        rows = meta.rows
        # a row's position is the centre line of its strips
        self.row_x_m = [meta.row_x_m(r) for r in rows]
        self.n_rows = len(rows)
        chans = meta.channels
        self.channel_row = np.array([c.row - 1 for c in chans], dtype=np.int64)
        self.channel_side = np.array([0 if c.side == "L" else 1 for c in chans], dtype=np.int64)
        self.channel_names = [c.name for c in chans]
        self._channel_of = [[0, 0] for _ in range(self.n_rows)]
        for i, c in enumerate(chans):
            self._channel_of[c.row - 1][0 if c.side == "L" else 1] = i
        self.width_m = np.array([c.width_m for c in chans])
        sens = np.array([c.sensitivity_per_n for c in chans])
        nominal_sens = sens.copy()
        self.temperature_divisor = np.ones(len(chans))
        if profile is not None:
            self._check_profile(profile)
            for i, c in enumerate(chans):
                cal = profile.channels.get(c.name)
                if cal is not None:
                    sens[i] = cal.sensitivity_per_n
                self.temperature_divisor[i] = profile.temperature_divisor(
                    c.name, meta.pavement_temperature_c)
        # a passage outside the profile's validity is weighed uncorrected: pulse areas [N]
        # come from the profile's sensitivities, so × sens/nominal undoes them
        self.uncorrected_factor = sens / nominal_sens
        full_scale = [c.full_scale if c.full_scale is not None else math.inf for c in chans]
        self._detector_args = (sens, self.fs, self.cfg.detection, full_scale)
        self.detector = PulseDetector(*self._detector_args)
        self.detector.next_index = int(start_index)
        self._fingerprint: str | None = None
        if lane_snapshot is not None and lane_snapshot.fingerprint != self.lane_fingerprint:
            raise WeighingInputError(
                "lane snapshot was taken with other sensitivities, detection parameters or "
                "lane geometry")
        if detector_snapshot is not None:
            self.detector.restore(detector_snapshot)
        self.builder = TrackBuilder(self.row_x_m, self.fs, self.cfg.matching)
        self._pulses: Pulses = Pulses.empty()
        self._hits: list[RowHit] = []
        self._settled: list[Track] = []
        self._current: _Pending | None = None
        self._last_vehicle: _LastVehicle | None = None
        self._gaps: list[tuple[int, int]] = []
        self._done: list[WeighedVehicle] = []
        self._finished = False
        self._pulse_tol = max(1, round(0.002 * self.fs))
        if lane_snapshot is not None:
            last = lane_snapshot.last_vehicle
            if last is not None:
                self._last_vehicle = _LastVehicle(last.ref, last.v, last.last_sample, None)
            self._gaps = list(lane_snapshot.gaps)


    def use_overload(self, overload: OverloadConfig) -> None:
        """Decide the verdicts of vehicles finished from now on with ``overload`` (e.g. the
        site's σ(v) pooled again); detection, matching and loads are unchanged."""
        self.cfg = replace(self.cfg, overload=overload)

    def _check_profile(self, profile: CalibrationProfile) -> None:
        names = {c.name for c in self.meta.channels}
        unknown = set(profile.channels) - names
        if unknown:
            raise CalibrationProfileError(
                f"profile {profile.profile_id} names channels this lane does not have: "
                f"{sorted(unknown)}")
        for key, mine in (("site_id", self.meta.site_id), ("lane_id", self.meta.lane_id)):
            theirs = getattr(profile, key)
            if theirs is not None and theirs != mine:
                raise CalibrationProfileError(
                    f"profile {profile.profile_id} is for {key} {theirs!r}, lane is {mine!r}")

    # ------------------------------------------------------------------ streaming API
    def feed(self, samples: npt.NDArray[np.float32], gap_before_samples: int = 0, *,
             unknown_gap_span_samples: int = 0) -> list[WeighedVehicle]:
        """Process the next chunk; returns the vehicles completed by it.

        ``gap_before_samples`` > 0 says that many samples were lost before this chunk
        (−1: an unknown number, a device restart); vehicles spanning a gap are flagged
        ``data_gap``. ``unknown_gap_span_samples`` (with −1 only): how far the timeline
        moves across the unknown gap, as another clock measured the time it lasted (0:
        the chunk follows at once).
        """
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if unknown_gap_span_samples < 0 or (unknown_gap_span_samples
                                            and gap_before_samples != -1):
            raise WeighingInputError(
                f"unknown_gap_span_samples={unknown_gap_span_samples}: it must be ≥ 0, "
                "and given only with gap_before_samples=-1")
        if gap_before_samples:
            self._note_gap(gap_before_samples, unknown_gap_span_samples)
        pulses, _ = self.detector.feed(samples)
        self._pulses = Pulses.concat([self._pulses, pulses])
        self._advance(final=False)
        done, self._done = self._done, []
        return done

    def detector_snapshot(self) -> DetectorSnapshot:
        """The pulse detector's state before the next sample (see ``detector_snapshot=``)."""
        return self.detector.snapshot()

    def is_quiescent(self) -> bool:
        """Can a restart from here (before sample ``detector.next_index``) reproduce the
        uninterrupted weighing bit for bit?

        Only when no vehicle is in progress: no pulse open in the detector, no pulse, row hit,
        axle track or vehicle waiting in a later stage. A slow vehicle has long stretches
        between its axles with no pulse open, yet its axles so far are held in the tracks and
        the vehicle being assembled; a restart there would weigh the rest as another vehicle.
        Cheap (O(channels)): meant to be asked after every block.
        """
        now = self.detector.next_index
        return (not self._finished and len(self._pulses) == 0 and not self._hits
                and not self.builder.open and not self.builder.done and not self._settled
                and self._current is None and not self._done
                and not bool(np.any(self.detector.state.open_pulse_starts(now) < now)))

    def lane_snapshot(self) -> LaneSnapshot:
        """The processor's state before the next sample (see ``lane_snapshot=``); raises
        :class:`WeighingInputError` unless :meth:`is_quiescent`."""
        if not self.is_quiescent():
            raise WeighingInputError(
                f"the lane is not quiescent at sample {self.detector.next_index} (a vehicle "
                "is in progress, or the stream is finished): its state cannot be stored")
        last = self._last_vehicle
        # later vehicles start at or after next_index; a gap flags them within 1 s of it
        horizon = self.detector.next_index - 2 * self.fs
        return LaneSnapshot(
            detector=self.detector.snapshot(),
            last_vehicle=None if last is None else LastVehicleSummary(
                last.ref, last.v, last.last_sample),
            gaps=tuple((g0, g1) for g0, g1 in self._gaps if g1 >= horizon),
            fingerprint=self.lane_fingerprint)

    @property
    def lane_fingerprint(self) -> str:
        """SHA-256 over the detector's fingerprint, the sample rate and the lane geometry
        (row positions, channel rows and sides): what a lane snapshot's meaning rests on."""
        if self._fingerprint is None:
            h = hashlib.sha256(self.detector.fingerprint.encode("ascii"))
            h.update(np.array([self.fs, *self.row_x_m], dtype="<f8").tobytes())
            h.update(np.concatenate([self.channel_row, self.channel_side]).astype(
                "<i8").tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def finish(self) -> list[WeighedVehicle]:
        """End of stream: weigh everything still pending (flagged ``incomplete`` if cut)."""
        if not self._finished:
            self._finished = True
            self._advance(final=True)
        done, self._done = self._done, []
        return done

    def _note_gap(self, n: int, unknown_span: int = 0) -> None:
        start = self.detector.next_index
        size = n if n > 0 else unknown_span
        self._gaps.append((start, start + max(size, 1)))
        # a pulse in progress across a gap cannot be trusted: drop it; and an axle track
        # open across the gap must not take a later axle's hit (it would merge vehicles)
        self.detector.state.state_i[:, 0] = 0
        self.builder.close_all()
        self.detector.next_index += size
        if n < 0:  # an unknown stretch (a device restart): its offsets may have changed,
            # so the detector starts afresh (old offsets would make pulses of the new ones)
            fresh = PulseDetector(*self._detector_args)
            fresh.next_index = self.detector.next_index
            self.detector = fresh

    # ------------------------------------------------------------------ stages
    def _advance(self, final: bool) -> None:
        now = self.detector.next_index
        opens = self.detector.state.open_pulse_starts(now)
        row_horizon = np.full(self.n_rows, now, dtype=np.int64)
        if not final:
            for ch, start in enumerate(opens):
                r = self.channel_row[ch]
                row_horizon[r] = min(row_horizon[r], start)
        # row hits whose both sides can no longer change
        hits = row_hits_from_pulses(self._pulses, self.channel_row, self.channel_side,
                                    self._pulse_tol)
        ready: list[RowHit] = []
        unready_start = math.inf
        keep = np.zeros(len(self._pulses), dtype=bool)
        rows = self.channel_row[self._pulses.channel]
        for h in hits:
            if final or h.end + self._pulse_tol < row_horizon[h.row]:
                ready.append(h)
            else:
                unready_start = min(unready_start, h.start)
                # keep this hit's pulses until both of its sides are settled
                keep |= (rows == h.row) & (self._pulses.start >= h.start) & (
                    self._pulses.end <= h.end)
        self._pulses = _select(self._pulses, keep)
        self._hits.extend(ready)
        self._hits.sort(key=lambda h: h.t)
        safe = math.inf if final else float(min(int(row_horizon.min()), unready_start))
        n_take = 0
        for h in self._hits:
            if h.t < safe:
                self.builder.add(h)
                n_take += 1
            else:
                break
        self._hits = self._hits[n_take:]
        if final:
            self.builder.expire(math.inf)
        else:
            self.builder.expire(safe)
        self._settled.extend(self.builder.take_done())
        self._settled.sort(key=self._track_ref)
        self._segment(safe, final)

    def _track_speed(self, tr: Track) -> float | None:
        """Metres per sample, from the track's own hits."""
        if len(tr.hits) < 2:
            return None
        r0, r1 = min(tr.hits), max(tr.hits)
        dt = tr.hits[r1].t - tr.hits[r0].t
        if dt <= 0:
            return None
        return (self.row_x_m[r1] - self.row_x_m[r0]) / dt

    def _track_ref(self, tr: Track) -> float:
        """Sample index at which the axle crossed (or would have crossed) row 1."""
        r0 = tr.first_row
        if r0 == 0:
            return tr.hits[0].t
        v = self._track_speed(tr)
        if v is None or v <= 0:
            return tr.hits[r0].t
        return tr.hits[r0].t - self.row_x_m[r0] / v

    def _spacing_m(self, a: Track, b: Track) -> float:
        """Distance axle ``a`` has travelled past row 1 when axle ``b`` reaches it [m]."""
        v = self._track_speed(a)
        if v is None or v <= 0:
            v = self._track_speed(b)
        if v is None or v <= 0:
            return math.inf
        return v * (self._track_ref(b) - self._track_ref(a))

    def _segment(self, safe: float, final: bool) -> None:
        m = self.cfg.matching
        open_refs = [self._track_ref(t) for t in self.builder.open]
        earliest_open = min(open_refs) if open_refs and not final else math.inf
        while self._settled:
            tr = self._settled[0]
            if self._track_ref(tr) >= earliest_open:
                break  # an older axle is still crossing the rows
            self._settled.pop(0)
            if self._current is None:
                self._current = _Pending([tr], self._gap_to_last(tr))
                continue
            cur = self._current
            gap = self._spacing_m(cur.tracks[-1], tr)
            if gap > m.max_axle_spacing_m or len(cur.tracks) >= m.max_vehicle_axles:
                self._close(cur, next_gap_m=gap)
                self._current = _Pending([tr], gap)
            else:
                cur.tracks.append(tr)
        pending = self._current
        if pending is None:
            return
        if final:
            self._close(pending, next_gap_m=None)
            self._current = None
            return
        # close when no further axle can still belong (nor come within close-following reach)
        last = pending.tracks[-1]
        v = self._track_speed(last) or (m.min_speed_kmh / 3.6 / self.fs)
        reach_m = max(m.max_axle_spacing_m, self.cfg.quality.close_following_gap_m)
        wait = (reach_m + self.row_x_m[-1]) / max(v, 1e-9) * 1.5
        if safe > self._track_ref(last) + wait and earliest_open == math.inf:
            self._close(pending, next_gap_m=None)
            self._current = None

    def _gap_to_last(self, tr: Track) -> float | None:
        last = self._last_vehicle
        if last is None or last.v <= 0:
            return None
        return (self._track_ref(tr) - last.ref) * last.v

    # ------------------------------------------------------------------ one vehicle
    def _close(self, pending: _Pending, next_gap_m: float | None) -> None:
        record = self._weigh(pending, next_gap_m)
        last = pending.tracks[-1]
        v = self._track_speed(last) or 0.0
        self._last_vehicle = _LastVehicle(self._track_ref(last), v, record.last_sample, record)
        self._done.append(record)

    def _weigh(self, pending: _Pending, next_gap_m: float | None) -> WeighedVehicle:
        cfg = self.cfg
        q = cfg.quality
        tracks = sorted(pending.tracks, key=self._track_ref)
        flags: list[str] = []
        notes: list[str] = []
        all_hits = [h for tr in tracks for h in tr.hits.values()]
        first_sample = min(h.start for h in all_hits)
        last_sample = max(h.end for h in all_hits)
        kin = fit_kinematics(tracks, self.row_x_m, self.fs)
        n_axles = len(tracks)

        # stage 2/8: neighbours
        close = [g for g in (pending.prev_gap_m, next_gap_m) if g is not None]
        if close and min(close) < q.close_following_gap_m:
            flags.append("close_following")
            prev = self._last_vehicle.record if self._last_vehicle is not None else None
            if prev is not None and pending.prev_gap_m is not None and \
                    pending.prev_gap_m < q.close_following_gap_m:
                if "close_following" not in prev.flags:
                    prev.flags.append("close_following")
        for g0, g1 in self._gaps:
            if first_sample - self.fs <= g1 and last_sample + self.fs >= g0:
                flags.append("data_gap")
                break
        if self._finished and last_sample >= self.detector.next_index - 2 * self._pulse_tol:
            flags.append("incomplete")
        if any(tr.last_row != self.n_rows - 1 for tr in tracks) and self._finished and \
                tracks[-1].last_row != self.n_rows - 1:
            if "incomplete" not in flags:
                flags.append("incomplete")

        # direction of travel, before the kinematics: a fragment of a reversing vehicle (an
        # axle seen only on downstream rows) is often too small to fit
        per_row_counts = [sum(1 for tr in tracks if r in tr.hits) for r in range(self.n_rows)]
        if len(set(per_row_counts)) > 1:
            flags.append("axle_count_mismatch")
        if passage.backward_evidence(tracks, per_row_counts):
            flags.append("reversing")
        time_ref = tracks[0].hits[tracks[0].first_row].t
        if kin is None:
            flags.append("unweighable")
            self._link_reversing(flags, first_sample,
                                 passage.comes_from_downstream(tracks[0], self.n_rows))
            return self._record(time_ref, None, None, n_axles, [], [], [], None, flags, notes,
                                [], [], first_sample, last_sample, None)
        fs = self.fs
        time_ref = kin.t_row1(fs)
        speed_kmh = kin.speed_ms * 3.6
        speeds_kmh = [kin.speed_at(h.t, fs) * 3.6 for h in all_hits]
        if kin.speed_ms <= 0 or min(speeds_kmh) <= 0:
            flags.append("reversing")
        if min(abs(s) for s in speeds_kmh) < q.min_speed_kmh or \
                max(abs(s) for s in speeds_kmh) > q.max_speed_kmh:
            flags.append("speed_out_of_range")
        if abs(kin.acceleration_ms2) > q.max_abs_acceleration_ms2:
            flags.append("acceleration")
        if kin.residual_rms_m > q.max_fit_residual_m:
            flags.append("irregular_motion")
            if any(tr.first_row != 0 for tr in tracks) and "reversing" not in flags:
                flags.append("reversing")  # an axle from downstream, and no rigid forward fit
        self._link_reversing(flags, first_sample,
                             passage.comes_from_downstream(tracks[0], self.n_rows))
        if any(h.saturated for h in all_hits):
            flags.append("saturation")
        if any(h.overlong for h in all_hits):
            flags.append("stopped_on_sensor")

        # stage 5: wheel loads per (axle, row) by the area method, corrected by the profile
        # only where it is in force at the passage's time
        applied = self._profile_applies(time_ref, speed_kmh, flags, notes)
        wheel = np.full((n_axles, self.n_rows, 2), np.nan)
        for j, tr in enumerate(tracks):
            for r, h in tr.hits.items():
                v_hit = abs(kin.speed_at(h.t, fs))
                k_speed = applied.speed_factor(v_hit * 3.6) if applied else 1.0
                for side in (0, 1):
                    ch = self._channel_of[r][side]
                    load_n = v_hit * (h.area[side] / fs) / self.width_m[ch]
                    if applied is not None:
                        load_n = load_n / self.temperature_divisor[ch] * k_speed
                    else:
                        load_n = load_n * self.uncorrected_factor[ch]
                    wheel[j, r, side] = load_n / G_MS2
        rows_used, side_flags = passage.usable_rows(wheel, self.cfg.quality)
        flags.extend(side_flags)
        axle_row = wheel.sum(axis=2)  # [axle, row], NaN where the axle missed the row
        use = np.zeros(self.n_rows, dtype=bool)
        use[rows_used] = True
        axle_loads = [float(np.nanmean(axle_row[j, use])) if np.any(
            np.isfinite(axle_row[j, use])) else float("nan") for j in range(n_axles)]
        wheel_loads = []
        for j in range(n_axles):
            w = wheel[j][use]
            ok = np.isfinite(w).all(axis=1)
            wheel_loads.append([float(np.mean(w[ok, 0])), float(np.mean(w[ok, 1]))]
                               if ok.any() else [float("nan"), float("nan")])
        complete_rows = [r for r in rows_used if np.all(np.isfinite(axle_row[:, r]))]
        row_gross = [float(axle_row[:, r].sum()) for r in complete_rows]
        if any(not math.isfinite(a) for a in axle_loads):
            flags.append("unweighable")
            gross = None
        else:
            gross = float(sum(axle_loads))
        if row_gross and gross:
            dev = max(abs(g / gross - 1.0) for g in row_gross)
            if dev > q.max_row_deviation:
                flags.append("rows_disagree")
        if "straddling" not in flags and passage.wheel_off_sensor(tracks, use, self.cfg.quality):
            flags.append("wheel_off_sensor")
        spacings = [float(x) for x in np.diff(kin.axle_offsets_m)]
        for i, s in enumerate(spacings[:-1]):
            if s >= q.merge_gap_m and (q.trailer_group_spacing_m <= spacings[i + 1]
                                       < q.articulation_gap_min_m):
                flags.append("possible_merged_vehicles")
                break
        return self._record(time_ref, speed_kmh, kin.acceleration_ms2, n_axles, axle_loads,
                            wheel_loads, spacings, gross, flags, notes, row_gross,
                            complete_rows, first_sample, last_sample, kin,
                            profile_applied=applied is not None)

    def _profile_applies(self, t_row1: float, speed_kmh: float, flags: list[str],
                         notes: list[str]) -> CalibrationProfile | None:
        """The profile to apply to a passage at sample ``t_row1`` (None: weigh it
        uncorrected), flagging a profile not in force and a passage outside its range."""
        profile = self.profile
        if profile is None:
            return None
        why = not_in_force_reason(profile, self.meta.time_of_sample(t_row1))
        if why is not None:
            flags.append(NOT_IN_FORCE_FLAG)
            notes.append(why)
            return None
        # the stream's pavement temperature is a configured value, not a measurement: only
        # the speed is judged (a review found every passage flagged, or none, by the config)
        outside = outside_range_reasons(profile, speed_kmh, None)
        if outside:
            flags.append(OUTSIDE_RANGE_FLAG)
            notes.extend(outside)
        return profile

    def _link_reversing(self, flags: list[str], first_sample: int,
                        starts_downstream: bool) -> None:
        """A passage that begins with an axle coming onto the array from downstream, right
        after the previous passage, is that vehicle backing up: both records are flagged
        (the earlier one is updated in place, unless it was emitted before a restart)."""
        last = self._last_vehicle
        if last is None:
            return
        near = first_sample - last.last_sample < self.cfg.quality.reversing_link_s * self.fs
        if not (near and starts_downstream):
            return
        if "reversing" not in flags:
            flags.append("reversing")
        if last.record is not None and "reversing" not in last.record.flags:
            last.record.flags.append("reversing")

    def _record(self, t_row1: float, speed_kmh: float | None, accel: float | None,
                n_axles: int, axle_loads: list[float], wheel_loads: list[list[float]],
                spacings: list[float], gross: float | None, flags: list[str],
                notes: list[str], row_gross: list[float], rows_used: list[int],
                first_sample: int, last_sample: int, kin: Kinematics | None,
                profile_applied: bool = True) -> WeighedVehicle:
        return assemble_vehicle(Measured(
            time_utc=format_utc(self.meta.time_of_sample(t_row1)),
            site_id=self.meta.site_id,
            lane_id=self.meta.lane_id,
            speed_kmh=None if speed_kmh is None else round(speed_kmh, 2),
            acceleration_ms2=None if accel is None else round(accel, 3),
            axle_count=n_axles,
            axle_loads_kg=[_r(a, 0) for a in axle_loads],
            wheel_loads_kg=[[_r(w, 0) for w in pair] for pair in wheel_loads],
            axle_spacings_m=spacings,
            gross_weight_kg=gross,
            row_gross_weights_kg=row_gross,
            rows_used=[r + 1 for r in rows_used],
            flags=flags,
            notes=notes,
            pavement_temperature_c=self.meta.pavement_temperature_c,
            calibration_profile=(self.profile.profile_id if self.profile and profile_applied
                                 else None),
            recording=self.recording,
            first_sample=int(first_sample),
            last_sample=int(last_sample),
        ), self.cfg)


def _select(p: Pulses, mask: npt.NDArray[np.bool_]) -> Pulses:
    return Pulses(p.channel[mask], p.start[mask], p.end[mask], p.peak_index[mask],
                  p.flags[mask], p.area_n_samples[mask], p.centroid[mask], p.peak_n[mask])


def _r(x: float, nd: int) -> float:
    return round(x, nd) if math.isfinite(x) else float("nan")


def weigh_recording(recording: Recording, config: WeighingConfig | None = None,
                    profile: CalibrationProfile | None = None,
                    chunk_samples: int | None = None) -> list[WeighedVehicle]:
    """Weigh a whole recording (optionally fed in chunks, as a live stream would be)."""
    name = recording.path.name if recording.path is not None else None
    proc = LaneProcessor(recording.meta, config, profile, recording=name)
    out: list[WeighedVehicle] = []
    for chunk in _chunks(recording.samples, chunk_samples):
        out.extend(proc.feed(chunk))
    out.extend(proc.finish())
    return out


def _chunks(samples: npt.NDArray[np.float32], size: int | None) -> Iterator[
        npt.NDArray[np.float32]]:
    if size is None or size >= len(samples):
        yield samples
        return
    for i in range(0, len(samples), size):
        yield samples[i:i + size]


def iter_chunks(samples: npt.NDArray[np.float32], sizes: Iterable[int]) -> Iterator[
        npt.NDArray[np.float32]]:
    """Split samples at the given chunk sizes (cycled), for streaming tests."""
    sizes = list(sizes)
    i = k = 0
    while i < len(samples):
        n = sizes[k % len(sizes)]
        yield samples[i:i + n]
        i += n
        k += 1
