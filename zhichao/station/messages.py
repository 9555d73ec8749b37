"""The messages that travel between the station's pipeline steps (frozen dataclasses).

* :class:`~zhichao.station.plates.PlateRead` — a plate worker's answer for one passage
  (or why there is none; defined with the workers, which return it across processes);
* :class:`FrameFile` — one linked camera frame: where the camera left it and where the
  passage keeps it;
* :class:`PassageCommit` — what the commit step wrote for one vehicle (the passage row and,
  for an overload, the :class:`~zhichao.station.sealing.CaseMaterial` to seal);
* :class:`SealOutcome` — the sealer thread's answer for one case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from zhichao.common import format_utc
from zhichao.evidence.inputs import ImageRef
from zhichao.evidence.package import SealResult
from zhichao.station.plates import PlateRead
from zhichao.station.sealing import CaseMaterial, UnusableFile
from zhichao.station.store import PassageRow
from zhichao.station.sync_outbox import PackedPackage


@dataclass(frozen=True)
class FrameFile:
    """One linked frame: the camera's own time, the capture time in the station's
    reference clock, the spool file and the passage's copy."""

    camera_id: str
    role: str
    camera_time: datetime
    capture_time: datetime
    spool_path: Path
    path: Path

    def to_json(self) -> dict[str, str]:
        return {"camera_id": self.camera_id, "role": self.role,
                "camera_time_utc": format_utc(self.camera_time),
                "capture_utc": format_utc(self.capture_time),
                "spool_path": str(self.spool_path), "path": str(self.path)}

    def image(self) -> ImageRef:
        return ImageRef(path=str(self.path), role=self.role, capture_utc=self.capture_time,
                        camera_id=self.camera_id)


@dataclass(frozen=True)
class PassageCommit:
    """What the commit step stored for one vehicle."""

    row: PassageRow
    material: CaseMaterial | None
    frames: tuple[FrameFile, ...]


@dataclass(frozen=True)
class SealOutcome:
    """The sealer's answer: ``sealed`` (with its result), ``adopted`` (its package was
    already complete: ``facts``), ``stopped`` (the disk refuses; retried), ``error``
    (recorded on the case; retried) or ``set_aside`` (failed too often: the next cases go
    first, it is retried later)."""

    kind: Literal["sealed", "adopted", "stopped", "error", "set_aside"]
    passage_key: str
    result: SealResult | None = None
    detail: str = ""
    elapsed_s: float = 0.0
    packed: PackedPackage | None = None  # the sealed package packed for upload
    facts: dict[str, Any] | None = None  # ``adopted``: the package's manifest facts
    unusable: tuple[UnusableFile, ...] = ()  # ``sealed``/``adopted``: originals sealed as missing


__all__ = ["FrameFile", "PassageCommit", "PlateRead", "SealOutcome"]
