"""One passage through the station: the lane's geometry for the weighing core, the rules
that say which vehicle is read, opens a case or needs a human, and the passage waiting in
the pipeline between weighing and commit (:class:`Pending`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from zhichao.devices.recording import ChannelSpec, RecordingMeta
from zhichao.station.config import StationConfig
from zhichao.station.linking import Frame, Prediction
from zhichao.station.plates import PlateRead
from zhichao.weighing.vehicle import WeighedVehicle


def lane_meta(cfg: StationConfig, start_utc: datetime) -> RecordingMeta:
    """The lane geometry of station.toml as the weighing core's metadata."""
    s = cfg.wim.sensor
    channels = []
    for r, x in enumerate(s.rows_x_m):
        for side in ("L", "R"):
            channels.append(ChannelSpec(name=f"r{r + 1}{side}", kind="strip", row=r + 1,
                                        side=side, x_m=float(x), width_m=s.strip_width_m,
                                        sensitivity_per_n=s.sensitivity_per_n,
                                        full_scale=s.full_scale))
    return RecordingMeta(sample_rate_hz=s.sample_rate_hz, start_utc=start_utc,
                         site_id=cfg.site.site_id, lane_id=cfg.lane.lane_id,
                         pavement_temperature_c=s.pavement_temperature_c,
                         channels=tuple(channels), extra={"station": cfg.station.station_id})


def clean_json(value: Any) -> Any:
    """NaN/inf → None (RFC 8785 and SQLite JSON have no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def is_plate_candidate(v: WeighedVehicle, cfg: StationConfig) -> bool:
    """Whether the plate is read: all vehicles, or (``candidates``) those whose weight
    could matter: overloaded or uncertain verdicts, and any vehicle whose gross weight is at
    least ``vision.candidate_margin`` × its limit."""
    mode = cfg.vision.read
    if mode == "all":
        return True
    if mode == "none":
        return False
    if v.overloaded or v.verdict in ("overloaded", "uncertain"):
        return True
    if v.gross_weight_kg is None or v.limit_kg is None:
        return v.axle_count >= 2 and v.verdict == "undecidable"
    return v.gross_weight_kg >= cfg.vision.candidate_margin * v.limit_kg


def needs_human(v: WeighedVehicle) -> bool:
    """An undecidable or uncertain verdict that might be an overload: the passage is marked
    for a human (it is not a case: no limit was decided, or the excess is within the
    uncertainty)."""
    if v.verdict not in ("undecidable", "uncertain") or v.gross_weight_kg is None:
        return False
    limits: list[int] = list(v.limit_candidates_kg)
    if not limits and v.limit_kg is not None:
        limits = [v.limit_kg]
    return not limits or v.gross_weight_kg > min(limits)


def opens_case(v: WeighedVehicle) -> bool:
    """Only a measured overload (beyond the allowance and the uncertainty) is sealed and
    queued for review. An ``uncertain`` verdict is kept as a passage with its verdict (a
    reviewer can see it) but never becomes a case: the law is never applied more strictly
    than the measurement allows."""
    return v.overloaded and v.verdict == "overloaded"


@dataclass
class Pending:
    """A weighed vehicle waiting for its frames and its plate (mutable: the link step
    fills it in; the commit step turns it into a stored passage)."""

    vehicle: WeighedVehicle
    key: str
    record: dict[str, Any]
    predictions: list[Prediction]
    state: str = "waiting_frames"  # → reading → ready
    frames: dict[str, tuple[Frame | None, str]] = field(default_factory=dict)
    plate: PlateRead | None = None
    # keys added to the stored record (a record passage's ``wim_source``)
    extra: dict[str, Any] = field(default_factory=dict)
    clips: tuple[Any, ...] = ()  # the ClipRequests asked for it (zhichao.station.clips)
    # the devices whose clock offsets were not settled when it was linked (linking.py):
    # its plate is never auto-accepted then
    unsettled: tuple[str, ...] = ()
    # the WIM offset estimator's generation when it was weighed (a reset since — the
    # device's clock stepped — leaves its time on the old clock: never trusted)
    wim_generation: int = 0
    t_emitted: float = field(default_factory=time.perf_counter)
    # the drift monitor's answer (vehicle, new alarms, state changed), once it saw the
    # vehicle: a commit tried again (the disk was full) never shows it the vehicle twice
    observed: tuple[WeighedVehicle, list[Any], bool] | None = None
