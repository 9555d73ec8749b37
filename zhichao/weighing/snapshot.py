"""The state of a quiescent lane processor, and its JSON form (``zhichao.lane-state/1``).

A stream can be resumed after the processor is lost (a station killed and restarted) from a
:class:`LaneSnapshot` taken at a *quiescent* point
(:meth:`zhichao.weighing.stream.LaneProcessor.is_quiescent`): then every vehicle from that
point on is weighed bit for bit as by the uninterrupted processor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zhichao.weighing.errors import WeighingInputError
from zhichao.weighing.pulses import DetectorSnapshot

LANE_SNAPSHOT_FORMAT = "zhichao.lane-state/1"


@dataclass(frozen=True)
class LastVehicleSummary:
    """The previous vehicle as far as later vehicles need it (see :class:`LaneSnapshot`)."""

    ref: float  # sample index at which its last axle crossed row 1
    v: float  # that axle's speed [m/sample]; 0 when unknown
    last_sample: int


@dataclass(frozen=True)
class LaneSnapshot:
    """The state of a quiescent :class:`LaneProcessor` before sample ``next_index``.

    Quiescent means no vehicle is in progress (:meth:`LaneProcessor.is_quiescent`), so
    beyond the pulse detector's state only two things still reach the future: the previous
    vehicle (its gap to the next one: ``close_following``; the reversing link) and the
    recent data gaps (``data_gap`` within 1 s). A processor restored from it and fed the
    same blocks from ``next_index`` on weighs every later vehicle bit for bit as the
    uninterrupted one. ``fingerprint`` covers the detector's settings and the lane geometry;
    a processor with other ones refuses the snapshot.
    """

    detector: DetectorSnapshot
    last_vehicle: LastVehicleSummary | None
    gaps: tuple[tuple[int, int], ...]  # lost samples [first, end) that can flag a later vehicle
    fingerprint: str

    @property
    def next_index(self) -> int:
        return self.detector.next_index

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form; floats travel as exact hexadecimal strings (``float.hex``)."""
        last = self.last_vehicle
        return {
            "format": LANE_SNAPSHOT_FORMAT,
            "next_index": int(self.next_index),
            "detector": self.detector.to_json(),
            "last_vehicle": None if last is None else {
                "ref": float(last.ref).hex(), "v": float(last.v).hex(),
                "last_sample": int(last.last_sample)},
            "gaps": [[int(g0), int(g1)] for g0, g1 in self.gaps],
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, raw: Any) -> LaneSnapshot:
        """Parse :meth:`to_json`'s form; anything malformed raises :class:`WeighingInputError`."""
        what = "lane snapshot"
        if not isinstance(raw, dict) or raw.get("format") != LANE_SNAPSHOT_FORMAT:
            raise WeighingInputError(f"{what}: expected format {LANE_SNAPSHOT_FORMAT}")
        _exact_keys(raw, {"format", "next_index", "detector", "last_vehicle", "gaps",
                          "fingerprint"}, what)
        detector = DetectorSnapshot.from_json(raw["detector"])
        next_index = _json_int(raw["next_index"], f"{what}: next_index")
        if next_index != detector.next_index:
            raise WeighingInputError(
                f"{what}: next_index {next_index} but the detector state is at "
                f"{detector.next_index}")
        fingerprint = raw["fingerprint"]
        if not isinstance(fingerprint, str) or not fingerprint:
            raise WeighingInputError(f"{what}: fingerprint must be a non-empty string")
        last: LastVehicleSummary | None = None
        lv = raw["last_vehicle"]
        if lv is not None:
            if not isinstance(lv, dict):
                raise WeighingInputError(f"{what}: last_vehicle must be an object or null")
            _exact_keys(lv, {"ref", "v", "last_sample"}, f"{what}: last_vehicle")
            last = LastVehicleSummary(
                ref=_json_hex_float(lv["ref"], f"{what}: last_vehicle.ref"),
                v=_json_hex_float(lv["v"], f"{what}: last_vehicle.v"),
                last_sample=_json_int(lv["last_sample"], f"{what}: last_vehicle.last_sample"))
            if last.last_sample >= next_index:
                raise WeighingInputError(
                    f"{what}: last vehicle ends at {last.last_sample}, not before {next_index}")
        gaps_raw = raw["gaps"]
        if not isinstance(gaps_raw, list):
            raise WeighingInputError(f"{what}: gaps must be a list")
        gaps: list[tuple[int, int]] = []
        for g in gaps_raw:
            if not isinstance(g, list) or len(g) != 2:
                raise WeighingInputError(f"{what}: a gap must be [first, end]")
            g0, g1 = (_json_int(x, f"{what}: gap") for x in g)
            if not g0 < g1 <= next_index:
                raise WeighingInputError(f"{what}: bad gap [{g0}, {g1}) before {next_index}")
            gaps.append((g0, g1))
        return cls(detector, last, tuple(gaps), fingerprint)


def _exact_keys(raw: dict[str, Any], keys: set[str], what: str) -> None:
    if set(raw) != keys:
        missing, extra = sorted(keys - set(raw)), sorted(set(raw) - keys)
        raise WeighingInputError(f"{what}: missing keys {missing}, unknown keys {extra}")


def _json_int(x: Any, what: str) -> int:
    if type(x) is not int or x < 0:
        raise WeighingInputError(f"{what} must be an integer >= 0, got {x!r}")
    return x


def _json_hex_float(x: Any, what: str) -> float:
    if not isinstance(x, str):
        raise WeighingInputError(f"{what} must be a float.hex() string, got {x!r}")
    try:
        return float.fromhex(x)
    except ValueError as exc:
        raise WeighingInputError(f"{what}: not a float.hex() string: {x!r}") from exc
