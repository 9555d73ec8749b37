"""The station's reference clock.

A real station's reference is its system clock (UTC), which the host disciplines (NTP,
or GNSS through an NTP server); the station does not take that on trust: it checks the
clock against its configured time sources (:mod:`zhichao.station.clockcheck`), and a
package claims a verified clock only when a good check covers its passage. The simulated
lane may run faster than real time; then the reference is a :class:`SimClock` that both
the simulated devices and the station derive from the same (epoch, wall-clock start,
speed) triple, published by the simulator in ``devices.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path


class Clock:
    """UTC reference time; :meth:`at_wall` converts a wall-clock (``time.time()``) stamp.
    What a package says about it comes from the checks of :mod:`.clockcheck`."""

    def now(self) -> datetime:
        return self.at_wall(time.time())

    @property
    def ready(self) -> bool:
        """Whether the reference is known (a simulated lane's is published later)."""
        return True

    def at_wall(self, wall_s: float) -> datetime:
        return datetime.fromtimestamp(wall_s, UTC)

    def wall_of(self, ref: datetime) -> float:
        """The wall-clock second (``time.time()``) at which the reference shows ``ref``."""
        return ref.timestamp()


@dataclass(frozen=True)
class SimClock(Clock):
    """Simulated UTC: ``epoch_utc + (wall - wall0_s) × speed``."""

    epoch_utc: datetime
    wall0_s: float
    speed: float

    def at_wall(self, wall_s: float) -> datetime:
        return self.epoch_utc + timedelta(seconds=(wall_s - self.wall0_s) * self.speed)

    def wall_of(self, ref: datetime) -> float:
        return self.wall_at((ref - self.epoch_utc).total_seconds())

    def wall_at(self, sim_s_from_epoch: float) -> float:
        """Wall-clock second at which ``sim_s_from_epoch`` of simulated time is reached."""
        return self.wall0_s + sim_s_from_epoch / self.speed

    def to_json(self) -> dict[str, object]:
        return {"epoch_utc": self.epoch_utc.isoformat().replace("+00:00", "Z"),
                "wall0_s": self.wall0_s, "speed": self.speed}

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> SimClock:
        epoch = datetime.fromisoformat(str(raw["epoch_utc"]).replace("Z", "+00:00"))
        return cls(epoch.astimezone(UTC), float(raw["wall0_s"]),  # type: ignore[arg-type]
                   float(raw["speed"]))  # type: ignore[arg-type]


class PublishedSimClock(Clock):
    """The simulator's clock, read from its ``devices.json`` once it is published there
    (the simulator publishes it when the station connects, before the first frame)."""

    def __init__(self, devices_file: Path) -> None:
        self.devices_file = devices_file
        self._clock: SimClock | None = None

    def _load(self) -> SimClock | None:
        if self._clock is None:
            try:
                raw = json.loads(self.devices_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            if raw.get("clock"):
                self._clock = SimClock.from_json(raw["clock"])
        return self._clock

    @property
    def ready(self) -> bool:
        return self._load() is not None

    def at_wall(self, wall_s: float) -> datetime:
        clock = self._load()
        return super().at_wall(wall_s) if clock is None else clock.at_wall(wall_s)

    def wall_of(self, ref: datetime) -> float:
        clock = self._load()
        return super().wall_of(ref) if clock is None else clock.wall_of(ref)
