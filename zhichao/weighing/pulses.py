"""Stages 1 and 3: per-channel offset tracking, noise estimation and axle-pulse detection.

Each channel is converted to force [N] with its sensitivity. While a channel is idle its
offset follows an exponential moving average and its noise variance another; both freeze
while a pulse is in progress, so a wheel never drags the offset. A pulse starts when the
force above the offset exceeds ``start_sigma`` noise sigmas (and ``start_floor_n``), is
confirmed above ``confirm_sigma`` (and ``confirm_floor_n``), and ends after the force stays
below the start level for ``end_hold_s``. For every pulse we keep its start, end, peak,
area (∑ force, [N·samples]) and area centroid (a sample index).

The kernel keeps its whole state in arrays, so a stream can be fed in chunks of any size and
gives exactly the same pulses as the whole recording at once.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.weighing._numba import kernel
from zhichao.weighing.config import DetectionConfig
from zhichao.weighing.errors import WeighingInputError

IDLE, CANDIDATE, ACTIVE = 0, 1, 2

# state_f columns
_BASE, _VAR, _AREA, _MOMENT, _PEAK, _PREV = range(6)
# state_i columns
_MODE, _START, _PEAKI, _BELOW, _FLAT, _SAT, _NIDLE = range(7)
_N_STATE_F, _N_STATE_I = 6, 7
# out_f columns
OUT_AREA, OUT_CENTROID, OUT_PEAK = range(3)
# out_i columns
OUT_CHANNEL, OUT_START, OUT_END, OUT_PEAKI, OUT_FLAGS = range(5)
FLAG_SATURATED = 1
FLAG_OVERLONG = 2
# params
_P_ALPHA_BASE, _P_ALPHA_VAR, _P_KS2, _P_FS, _P_KC2, _P_FC, _P_HOLD, _P_MAXLEN, _P_FLAT = range(9)


@dataclass(frozen=True)
class DetectorParams:
    """Detection parameters in samples, derived from a :class:`DetectionConfig`."""

    values: npt.NDArray[np.float64]

    @classmethod
    def from_config(cls, cfg: DetectionConfig, sample_rate_hz: float) -> DetectorParams:
        p = np.zeros(9)
        p[_P_ALPHA_BASE] = 1.0 - math.exp(-1.0 / (cfg.offset_time_constant_s * sample_rate_hz))
        p[_P_ALPHA_VAR] = 1.0 - math.exp(-1.0 / (cfg.noise_time_constant_s * sample_rate_hz))
        p[_P_KS2] = cfg.start_sigma**2
        p[_P_FS] = cfg.start_floor_n
        p[_P_KC2] = cfg.confirm_sigma**2
        p[_P_FC] = cfg.confirm_floor_n
        p[_P_HOLD] = max(1, round(cfg.end_hold_s * sample_rate_hz))
        p[_P_MAXLEN] = max(2, round(cfg.max_pulse_s * sample_rate_hz))
        p[_P_FLAT] = max(2, cfg.flat_top_samples)
        return cls(p)


@dataclass
class DetectorState:
    """Per-channel state carried from chunk to chunk."""

    state_f: npt.NDArray[np.float64]
    state_i: npt.NDArray[np.int64]

    @classmethod
    def new(cls, n_channels: int) -> DetectorState:
        sf = np.zeros((n_channels, _N_STATE_F))
        sf[:, _BASE] = np.nan
        si = np.zeros((n_channels, _N_STATE_I), dtype=np.int64)
        return cls(sf, si)

    def open_pulse_starts(self, horizon: int) -> npt.NDArray[np.int64]:
        """Per channel: start index of the pulse in progress, or ``horizon`` if idle."""
        starts = np.where(self.state_i[:, _MODE] != IDLE, self.state_i[:, _START], horizon)
        return np.asarray(starts, dtype=np.int64)

    def offsets_n(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.state_f[:, _BASE].copy())

    def noise_n(self) -> npt.NDArray[np.float64]:
        return np.asarray(np.sqrt(np.maximum(self.state_f[:, _VAR], 0.0)))


SNAPSHOT_FORMAT = "zhichao.detector-state/1"


@dataclass(frozen=True)
class DetectorSnapshot:
    """The whole state of a :class:`PulseDetector` before sample ``next_index``.

    A detector restored from it and fed the samples from ``next_index`` on gives bit for bit
    the pulses the original detector gave (a fresh detector only converges to them: its
    offset and noise averages start from the first sample). ``fingerprint`` identifies the
    sensitivities and detection parameters the state belongs to; a snapshot is refused by a
    detector with other ones.
    """

    next_index: int
    state_f: npt.NDArray[np.float64]
    state_i: npt.NDArray[np.int64]
    fingerprint: str

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form; the arrays travel as exact little-endian bytes (NaN included)."""
        return {
            "format": SNAPSHOT_FORMAT, "next_index": int(self.next_index),
            "shape_f": list(self.state_f.shape), "shape_i": list(self.state_i.shape),
            "state_f": base64.b64encode(self.state_f.astype("<f8").tobytes()).decode("ascii"),
            "state_i": base64.b64encode(self.state_i.astype("<i8").tobytes()).decode("ascii"),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, raw: Any) -> DetectorSnapshot:
        """Parse :meth:`to_json`'s form; anything malformed raises :class:`WeighingInputError`."""
        if not isinstance(raw, dict) or raw.get("format") != SNAPSHOT_FORMAT:
            raise WeighingInputError(f"detector snapshot: expected format {SNAPSHOT_FORMAT}")
        try:
            nf, ni = (tuple(int(x) for x in raw[k]) for k in ("shape_f", "shape_i"))
            sf = np.frombuffer(base64.b64decode(raw["state_f"], validate=True), dtype="<f8")
            si = np.frombuffer(base64.b64decode(raw["state_i"], validate=True), dtype="<i8")
            state_f = sf.astype(np.float64).reshape(nf)
            state_i = si.astype(np.int64).reshape(ni)
            next_index = int(raw["next_index"])
            fingerprint = str(raw["fingerprint"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WeighingInputError(f"detector snapshot: malformed ({exc})") from exc
        if (len(nf) != 2 or nf[1] != _N_STATE_F or len(ni) != 2 or ni[1] != _N_STATE_I
                or nf[0] != ni[0] or next_index < 0):
            raise WeighingInputError(f"detector snapshot: bad shapes {nf}, {ni} or index")
        return cls(next_index, state_f, state_i, fingerprint)


@dataclass(frozen=True)
class Pulses:
    """Detected pulses, one row each (structure of arrays)."""

    channel: npt.NDArray[np.int64]
    start: npt.NDArray[np.int64]  # global sample index of the first sample
    end: npt.NDArray[np.int64]  # global sample index of the last sample above the start level
    peak_index: npt.NDArray[np.int64]
    flags: npt.NDArray[np.int64]
    area_n_samples: npt.NDArray[np.float64]  # ∑ (force − offset) over the pulse [N·samples]
    centroid: npt.NDArray[np.float64]  # area-weighted mean sample index
    peak_n: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.channel)

    @classmethod
    def concat(cls, parts: list[Pulses]) -> Pulses:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    @classmethod
    def empty(cls) -> Pulses:
        i = np.zeros(0, dtype=np.int64)
        f = np.zeros(0)
        return cls(i, i, i, i, i, f, f, f)


_FIELDS = ("channel", "start", "end", "peak_index", "flags", "area_n_samples", "centroid",
           "peak_n")


@kernel
def _pulse_kernel(samples: npt.NDArray[np.float32], first_index: int, row0: int,
                  scale: npt.NDArray[np.float64], full_scale: npt.NDArray[np.float64],
                  p: npt.NDArray[np.float64], state_f: npt.NDArray[np.float64],
                  state_i: npt.NDArray[np.int64], out_f: npt.NDArray[np.float64],
                  out_i: npt.NDArray[np.int64],
                  offsets_out: npt.NDArray[np.float64]) -> tuple[int, int]:
    """Process rows ``row0..`` of ``samples``; stop early when ``out`` is nearly full.

    Returns (number of pulses written, next row to process).
    """
    n, c_count = samples.shape
    cap = out_f.shape[0]
    alpha_b = p[_P_ALPHA_BASE]
    alpha_v = p[_P_ALPHA_VAR]
    ks2 = p[_P_KS2]
    fs_ = p[_P_FS]
    kc2 = p[_P_KC2]
    fc = p[_P_FC]
    hold = np.int64(p[_P_HOLD])
    maxlen = np.int64(p[_P_MAXLEN])
    flat_n = np.int64(p[_P_FLAT])
    record_offsets = offsets_out.shape[0] > 0
    n_out = 0
    i = row0
    while i < n:
        if n_out > cap - c_count:
            break
        gi = first_index + i
        for c in range(c_count):
            raw = samples[i, c]
            f = raw * scale[c]
            base = state_f[c, _BASE]
            if math.isnan(base):
                state_f[c, _BASE] = f
                state_f[c, _VAR] = 0.0
                base = f
            d = f - base
            d2 = d * d
            var = state_f[c, _VAR]
            above = d > fs_ and d2 > ks2 * var
            mode = state_i[c, _MODE]
            if mode == IDLE:
                if above:
                    state_i[c, _MODE] = CANDIDATE
                    state_i[c, _START] = gi
                    state_f[c, _AREA] = d
                    state_f[c, _MOMENT] = 0.0
                    state_f[c, _PEAK] = d
                    state_i[c, _PEAKI] = gi
                    state_i[c, _BELOW] = 0
                    state_i[c, _FLAT] = 0
                    state_i[c, _SAT] = 1 if abs(raw) >= full_scale[c] else 0
                    if d > fc and d2 > kc2 * var:
                        state_i[c, _MODE] = ACTIVE
                else:
                    k = state_i[c, _NIDLE] + 1
                    state_i[c, _NIDLE] = k
                    # running mean while warming up, then an exponential moving average
                    a_b = 1.0 / k if 1.0 / k > alpha_b else alpha_b
                    a_v = 1.0 / k if 1.0 / k > alpha_v else alpha_v
                    state_f[c, _BASE] = base + a_b * d
                    state_f[c, _VAR] = var + a_v * (d2 - var)
            else:
                start = state_i[c, _START]
                state_f[c, _AREA] += d
                state_f[c, _MOMENT] += (gi - start) * d
                if d > state_f[c, _PEAK]:
                    state_f[c, _PEAK] = d
                    state_i[c, _PEAKI] = gi
                if abs(raw) >= full_scale[c]:
                    state_i[c, _SAT] = 1
                if above and raw == state_f[c, _PREV]:
                    state_i[c, _FLAT] += 1
                    if state_i[c, _FLAT] + 1 >= flat_n:
                        state_i[c, _SAT] = 1
                else:
                    state_i[c, _FLAT] = 0
                if mode == CANDIDATE and d > fc and d2 > kc2 * var:
                    state_i[c, _MODE] = ACTIVE
                    mode = ACTIVE
                if above:
                    state_i[c, _BELOW] = 0
                else:
                    state_i[c, _BELOW] += 1
                ended = state_i[c, _BELOW] >= hold
                overlong = (gi - start + 1) >= maxlen
                if ended or overlong:
                    if mode == ACTIVE:
                        area = state_f[c, _AREA]
                        out_i[n_out, OUT_CHANNEL] = c
                        out_i[n_out, OUT_START] = start
                        out_i[n_out, OUT_END] = gi - state_i[c, _BELOW]
                        out_i[n_out, OUT_PEAKI] = state_i[c, _PEAKI]
                        flags = state_i[c, _SAT] * 1
                        if overlong and not ended:
                            flags += 2
                        out_i[n_out, OUT_FLAGS] = flags
                        out_f[n_out, OUT_AREA] = area
                        if area > 0:
                            out_f[n_out, OUT_CENTROID] = start + state_f[c, _MOMENT] / area
                        else:
                            out_f[n_out, OUT_CENTROID] = start
                        out_f[n_out, OUT_PEAK] = state_f[c, _PEAK]
                        n_out += 1
                    state_i[c, _MODE] = IDLE
                    if overlong and not ended:
                        # something stands on the strip: restart the offset from here
                        state_f[c, _BASE] = f
            state_f[c, _PREV] = raw
            if record_offsets:
                offsets_out[i, c] = state_f[c, _BASE]
        i += 1
    return n_out, i


class PulseDetector:
    """Streaming pulse detector over all channels of a lane.

    Parameters
    ----------
    sensitivity_per_n : per-channel sensitivity [output units / N] (sign included).
    sample_rate_hz : sample rate [Hz].
    config : detection parameters.
    full_scale : per-channel saturation level [output units]; ``inf`` where unknown.
    capacity : pulses buffered per kernel call (memory bound; any chunk size works).
    """

    def __init__(self, sensitivity_per_n: npt.ArrayLike, sample_rate_hz: float,
                 config: DetectionConfig | None = None,
                 full_scale: npt.ArrayLike | None = None, capacity: int = 4096) -> None:
        sens = np.asarray(sensitivity_per_n, dtype=np.float64)
        if sens.ndim != 1 or len(sens) == 0:
            raise WeighingInputError("sensitivity_per_n must be a non-empty 1-D array")
        if not np.all(np.isfinite(sens)) or np.any(sens == 0):
            raise WeighingInputError("every sensitivity must be finite and non-zero")
        if not sample_rate_hz > 0:
            raise WeighingInputError(f"sample_rate_hz must be > 0, got {sample_rate_hz}")
        self.n_channels = len(sens)
        self.scale = 1.0 / sens
        fsc = np.full(self.n_channels, np.inf) if full_scale is None else np.asarray(
            full_scale, dtype=np.float64)
        if fsc.shape != (self.n_channels,):
            raise WeighingInputError("full_scale needs one value per channel")
        self.full_scale = np.where(np.isfinite(fsc), fsc * 0.9999, np.inf)
        self.sample_rate_hz = sample_rate_hz
        self.config = config or DetectionConfig()
        self.params = DetectorParams.from_config(self.config, sample_rate_hz)
        self._fingerprint: str | None = None
        self.state = DetectorState.new(self.n_channels)
        self.next_index = 0  # global index of the next sample expected
        cap = max(capacity, 2 * self.n_channels + 2)
        self._out_f = np.zeros((cap, 3))
        self._out_i = np.zeros((cap, 5), dtype=np.int64)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the scale, full scale and detection parameters (exact bytes);
        computed once (they do not change), since a snapshot may be taken every block."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for a in (self.scale, self.full_scale, self.params.values):
                h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def snapshot(self) -> DetectorSnapshot:
        """The detector's whole state now (before sample :attr:`next_index`)."""
        return DetectorSnapshot(self.next_index, self.state.state_f.copy(),
                                self.state.state_i.copy(), self.fingerprint)

    def restore(self, snap: DetectorSnapshot) -> None:
        """Continue from ``snap`` (taken from a detector with the same sensitivities and
        parameters); the next sample fed is sample ``snap.next_index``."""
        if snap.state_f.shape != (self.n_channels, _N_STATE_F) or snap.state_i.shape != (
                self.n_channels, _N_STATE_I):
            raise WeighingInputError(
                f"detector snapshot has {snap.state_f.shape[0]} channels, this detector "
                f"{self.n_channels}")
        if snap.fingerprint != self.fingerprint:
            raise WeighingInputError(
                "detector snapshot was taken with other sensitivities or detection parameters")
        self.state = DetectorState(snap.state_f.copy(), snap.state_i.copy())
        self.next_index = int(snap.next_index)

    def feed(self, samples: npt.NDArray[np.float32], record_offsets: bool = False
             ) -> tuple[Pulses, npt.NDArray[np.float64] | None]:
        """Detect pulses that end within this chunk. Returns (pulses, offsets [N] or None)."""
        chunk = _as_chunk(samples, self.n_channels)
        offsets = np.zeros((chunk.shape[0], self.n_channels)) if record_offsets else np.zeros(
            (0, 0))
        parts: list[Pulses] = []
        row = 0
        while row < chunk.shape[0] or row == 0:
            n_out, row = _pulse_kernel(chunk, self.next_index, row, self.scale, self.full_scale,
                                       self.params.values, self.state.state_f,
                                       self.state.state_i, self._out_f, self._out_i, offsets)
            if n_out:
                parts.append(_pulses_from(self._out_f[:n_out], self._out_i[:n_out]))
            if row >= chunk.shape[0]:
                break
        self.next_index += chunk.shape[0]
        return Pulses.concat(parts), (offsets if record_offsets else None)


def _pulses_from(out_f: npt.NDArray[np.float64], out_i: npt.NDArray[np.int64]) -> Pulses:
    return Pulses(
        channel=out_i[:, OUT_CHANNEL].copy(), start=out_i[:, OUT_START].copy(),
        end=out_i[:, OUT_END].copy(), peak_index=out_i[:, OUT_PEAKI].copy(),
        flags=out_i[:, OUT_FLAGS].copy(), area_n_samples=out_f[:, OUT_AREA].copy(),
        centroid=out_f[:, OUT_CENTROID].copy(), peak_n=out_f[:, OUT_PEAK].copy())


def _as_chunk(samples: npt.NDArray[np.float32], n_channels: int) -> npt.NDArray[np.float32]:
    a = np.asarray(samples)
    if a.ndim != 2 or a.shape[1] != n_channels:
        raise WeighingInputError(
            f"samples must be [n_samples, {n_channels}], got shape {a.shape}")
    if a.dtype != np.float32:
        if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
            raise WeighingInputError(f"samples must be numeric, got dtype {a.dtype}")
        a = a.astype(np.float32)
    a = np.ascontiguousarray(a)
    if a.size and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise WeighingInputError(f"samples contain NaN/inf (chunk row {bad[0]}, channel {bad[1]})")
    return a


def detect_pulses(samples: npt.NDArray[np.float32], sensitivity_per_n: npt.ArrayLike,
                  sample_rate_hz: float, config: DetectionConfig | None = None,
                  full_scale: npt.ArrayLike | None = None) -> Pulses:
    """Detect the axle pulses of a whole ``[n_samples, n_channels]`` array."""
    det = PulseDetector(sensitivity_per_n, sample_rate_hz, config, full_scale)
    pulses, _ = det.feed(samples)
    return pulses


def track_offsets(samples: npt.NDArray[np.float32], sensitivity_per_n: npt.ArrayLike,
                  sample_rate_hz: float, config: DetectionConfig | None = None
                  ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Stage 1 alone: the tracked offset of every sample [N] and the final noise sigma [N]."""
    det = PulseDetector(sensitivity_per_n, sample_rate_hz, config)
    _, offsets = det.feed(samples, record_offsets=True)
    assert offsets is not None
    return offsets, det.state.noise_n()
