"""Per-vehicle plate decision from several frames (front and rear cameras).

Flow: read every frame → group reads of the same physical plate (same camera and
overlapping boxes in consecutive frames, or the same-length text differing in at
most two positions) → set trailer plates (…挂) aside, since they identify the
semi-trailer, not the tractor → choose the best-supported tractor group → vote
per character, weighted by each read's per-character probability → apply the
:class:`~zhichao.vision.policy.PlatePolicy`.

The voted confidence of a position is the sum of the agreeing reads'
probabilities divided by the number of valid reads in the group, so a read that
disagrees lowers it; the plate's confidence is the lowest position's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from zhichao.vision.errors import FrameError
from zhichao.vision.grammar import is_trailer_plate, plate_kind
from zhichao.vision.image import ImageBGR
from zhichao.vision.plate_image import Layout, PlateColour
from zhichao.vision.policy import (
    PlatePolicy,
    ReviewCode,
    ReviewReason,
    colour_kind_consistent,
    vehicle_conflict,
)
from zhichao.vision.reader import PlateRead, PlateReader


@dataclass(frozen=True, slots=True)
class VehicleFrame:
    """One camera frame of the vehicle. ``captured_at`` must be timezone-aware UTC."""

    image: ImageBGR
    camera: str
    captured_at: datetime


@dataclass(frozen=True, slots=True)
class WeighedVehicleFacts:
    """What the weighing stage knows about the vehicle (all optional)."""

    axle_count: int | None = None


@dataclass(frozen=True, slots=True)
class PlateSource:
    """One read that contributed to a decision, with where it came from."""

    frame_index: int
    camera: str
    captured_at: datetime
    box_px: tuple[float, float, float, float]
    text: str | None
    raw_text: str
    confidence: float
    colour: PlateColour
    layout: Layout
    crops: tuple[ImageBGR, ...] = field(repr=False, compare=False)
    """The rectified line images read (one row, or top and bottom of a double-row plate)."""


@dataclass(frozen=True, slots=True)
class PlateAlternative:
    """Another plate string seen for this vehicle and how much support it had."""

    text: str
    support: float


@dataclass(frozen=True, slots=True)
class VehiclePlateDecision:
    """The plate decision for one vehicle.

    ``plate`` is None when nothing valid was read. ``accepted`` is True only when no
    review reason applies; it still means pre-filled for 审核确认, never an automatic
    penalty.
    """

    plate: str | None
    kind: str | None
    colour: PlateColour
    layout: Layout | None
    confidence: float
    accepted: bool
    review_reasons: tuple[ReviewReason, ...]
    sources: tuple[PlateSource, ...]
    alternatives: tuple[PlateAlternative, ...]
    trailer_plate: str | None
    """The semi-trailer's own …挂 plate, when one was read (never the tractor's identity)."""
    agreeing_frames: int

    @property
    def review_codes(self) -> tuple[str, ...]:
        return tuple(r.code.value for r in self.review_reasons)


def assess_read(read: PlateRead | None, policy: PlatePolicy) -> tuple[ReviewReason, ...]:
    """Review reasons for a single read on its own (an empty tuple means auto-accept)."""
    if read is None:
        return (ReviewReason.of(ReviewCode.NO_PLATE),)
    reasons: list[ReviewReason] = []
    if read.text is None:
        reasons.append(ReviewReason.of(ReviewCode.GRAMMAR_INVALID, f"raw read {read.raw_text!r}"))
    elif read.confidence < policy.min_confidence:
        reasons.append(
            ReviewReason.of(ReviewCode.LOW_CONFIDENCE, f"confidence {read.confidence:.3f}")
        )
    elif read.confidence < policy.confident_alone and not read.confirmed_by_second_view:
        reasons.append(
            ReviewReason.of(
                ReviewCode.UNCONFIRMED,
                f"confidence {read.confidence:.3f}; second view {read.second_view_text!r}",
            )
        )
    width_px = _plate_width_px(read)
    if width_px < policy.min_plate_width_px:
        reasons.append(ReviewReason.of(ReviewCode.LOW_RESOLUTION, f"plate {width_px:.0f} px wide"))
    if policy.require_known_colour and read.colour is PlateColour.UNKNOWN:
        reasons.append(ReviewReason.of(ReviewCode.COLOUR_UNKNOWN))
    if read.text is not None and not colour_kind_consistent(read.colour, read.kind):
        reasons.append(
            ReviewReason.of(ReviewCode.COLOUR_KIND_MISMATCH, f"{read.colour.value} {read.kind}")
        )
    return tuple(reasons)


def _plate_width_px(read: PlateRead) -> float:
    c = np.array(read.detection.corners_px, dtype=np.float64)
    return float((np.linalg.norm(c[1] - c[0]) + np.linalg.norm(c[2] - c[3])) / 2)


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _similar(a: str | None, b: str | None) -> bool:
    if a is None or b is None or len(a) != len(b):
        return False
    return sum(x != y for x, y in zip(a, b, strict=True)) <= 2


@dataclass(slots=True)
class _Entry:
    source: PlateSource
    read: PlateRead


def _group(entries: list[_Entry], link_window: timedelta) -> list[list[_Entry]]:
    """Union-find grouping of reads that show the same physical plate."""
    parent = list(range(len(entries)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(entries):
        for j in range(i + 1, len(entries)):
            b = entries[j]
            tracked = (
                a.source.camera == b.source.camera
                and a.source.frame_index != b.source.frame_index
                and abs(a.source.captured_at - b.source.captured_at) <= link_window
                and _iou(a.source.box_px, b.source.box_px) >= 0.2
            )
            if tracked or _similar(a.read.text, b.read.text):
                parent[find(i)] = find(j)
    groups: dict[int, list[_Entry]] = defaultdict(list)
    for i, entry in enumerate(entries):
        groups[find(i)].append(entry)
    return list(groups.values())


def _vote(group: list[_Entry]) -> tuple[str | None, float, int]:
    """(voted text, voted confidence, number of reads agreeing with it) for one group."""
    valid = [e for e in group if e.read.text is not None]
    if not valid:
        return None, 0.0, 0
    lengths: dict[int, float] = defaultdict(float)
    for e in valid:
        lengths[len(e.read.text or "")] += sum(e.read.char_confidences)
    length = max(lengths, key=lambda n: lengths[n])
    weights: list[dict[str, float]] = [defaultdict(float) for _ in range(length)]
    for e in valid:
        text = e.read.text or ""
        if len(text) != length:
            continue
        for pos, (ch, p) in enumerate(zip(text, e.read.char_confidences, strict=True)):
            weights[pos][ch] += p
    voted = "".join(max(w, key=lambda c: w[c]) for w in weights)
    confidence = min(max(w.values()) for w in weights) / len(valid)
    agreeing = sum(1 for e in valid if e.read.text == voted)
    return voted, confidence, agreeing


def decide_from_reads(
    frame_reads: Sequence[tuple[VehicleFrame, list[PlateRead]]],
    facts: WeighedVehicleFacts | None = None,
    policy: PlatePolicy | None = None,
    link_window: timedelta = timedelta(seconds=10),
) -> VehiclePlateDecision:
    """Decide from reads already made (see :func:`decide_vehicle`)."""
    policy = policy or PlatePolicy()
    facts = facts or WeighedVehicleFacts()
    entries: list[_Entry] = []
    for index, (frame, reads) in enumerate(frame_reads):
        for read in reads:
            source = PlateSource(
                frame_index=index,
                camera=frame.camera,
                captured_at=frame.captured_at,
                box_px=read.box_px,
                text=read.text,
                raw_text=read.raw_text,
                confidence=read.confidence,
                colour=read.colour,
                layout=read.layout,
                crops=read.line_images,
            )
            entries.append(_Entry(source, read))
    all_sources = tuple(e.source for e in entries)
    if not entries:
        return VehiclePlateDecision(
            None,
            None,
            PlateColour.UNKNOWN,
            None,
            0.0,
            False,
            (ReviewReason.of(ReviewCode.NO_PLATE),),
            (),
            (),
            None,
            0,
        )
    groups = _group(entries, link_window)
    trailer_groups = [g for g in groups if any(is_trailer_plate(e.read.text or "") for e in g)]
    tractor_groups = [g for g in groups if g not in trailer_groups]
    trailer_plate = None
    if trailer_groups:
        best_trailer = max(trailer_groups, key=lambda g: sum(e.read.confidence for e in g))
        trailer_plate = _vote(best_trailer)[0]
    reasons: list[ReviewReason] = []
    alternatives: dict[str, float] = defaultdict(float)
    for e in entries:
        if e.read.text is not None and not is_trailer_plate(e.read.text):
            alternatives[e.read.text] += e.read.confidence
        for alt in e.read.alternatives:
            if not is_trailer_plate(alt.text):
                alternatives[alt.text] += 0.0
    if not tractor_groups:
        reasons.append(ReviewReason.of(ReviewCode.TRAILER_PLATE_ONLY))
        return VehiclePlateDecision(
            None,
            None,
            PlateColour.UNKNOWN,
            None,
            0.0,
            False,
            tuple(reasons),
            all_sources,
            tuple(
                PlateAlternative(t, s)
                for t, s in sorted(alternatives.items(), key=lambda kv: -kv[1])
            ),
            trailer_plate,
            0,
        )

    def support(group: list[_Entry]) -> float:
        return sum(e.read.confidence * e.read.detection.score for e in group) + 1e-3 * len(group)

    tractor_groups.sort(key=support, reverse=True)
    main = tractor_groups[0]
    voted, confidence, _ = _vote(main)
    valid = [e for e in main if e.read.text is not None]
    best = max(main, key=lambda e: (e.read.text is not None, e.read.confidence))
    if voted is None:
        raw = ", ".join(sorted({e.read.raw_text for e in main}))
        reasons.append(ReviewReason.of(ReviewCode.GRAMMAR_INVALID, f"raw reads {raw}"))
    kind = plate_kind(voted) if voted else None
    if voted is not None and kind is None:
        reasons.append(ReviewReason.of(ReviewCode.GRAMMAR_INVALID, f"voted {voted!r}"))
    if voted is not None and confidence < policy.min_confidence:
        reasons.append(ReviewReason.of(ReviewCode.LOW_CONFIDENCE, f"confidence {confidence:.3f}"))
    elif voted is not None and confidence < policy.confident_alone:
        agreeing_reads = [e.read for e in valid if e.read.text == voted]
        confirmations = len(agreeing_reads) + sum(
            r.confirmed_by_second_view for r in agreeing_reads
        )
        if confirmations < 2:
            reasons.append(ReviewReason.of(ReviewCode.UNCONFIRMED, f"confidence {confidence:.3f}"))
    if max(_plate_width_px(e.read) for e in main) < policy.min_plate_width_px:
        reasons.append(ReviewReason.of(ReviewCode.LOW_RESOLUTION))
    disagreeing = [e for e in valid if e.read.text != voted]
    # Another plate seen with some confidence (front ≠ rear, or two plates in view).
    rivals = [
        e
        for g in tractor_groups[1:]
        for e in g
        if e.read.text is not None and e.read.confidence >= policy.min_confidence
    ]
    cameras_main = {e.source.camera for e in main}
    for e in disagreeing + rivals:
        other_cameras = cameras_main - {e.source.camera} or {
            x.source.camera for x in rivals if x.source.camera != e.source.camera
        }
        code = ReviewCode.CAMERA_DISAGREEMENT if other_cameras else ReviewCode.FRAME_DISAGREEMENT
        if all(r.code is not code for r in reasons):
            reasons.append(ReviewReason.of(code, f"{e.source.camera} read {e.read.text!r}"))
    agreeing_frames = len({e.source.frame_index for e in valid if e.read.text == voted})
    if voted is not None and agreeing_frames < policy.min_agreeing_frames:
        reasons.append(
            ReviewReason.of(
                ReviewCode.TOO_FEW_FRAMES, f"{agreeing_frames} < {policy.min_agreeing_frames}"
            )
        )
    colour_weights: dict[PlateColour, float] = defaultdict(float)
    for e in main:
        colour_weights[e.read.colour] += e.read.confidence + 1e-3
    colour = max(colour_weights, key=lambda c: colour_weights[c])
    if policy.require_known_colour and colour is PlateColour.UNKNOWN:
        reasons.append(ReviewReason.of(ReviewCode.COLOUR_UNKNOWN))
    if voted is not None and not colour_kind_consistent(colour, kind):
        reasons.append(ReviewReason.of(ReviewCode.COLOUR_KIND_MISMATCH, f"{colour.value} {kind}"))
    conflict = vehicle_conflict(colour, kind, facts.axle_count, policy)
    if conflict is not None:
        reasons.append(ReviewReason.of(ReviewCode.VEHICLE_CONFLICT, conflict))
    main_sources = tuple(e.source for e in main)
    alternatives.pop(voted or "", None)
    return VehiclePlateDecision(
        plate=voted,
        kind=kind,
        colour=colour,
        layout=best.read.layout,
        confidence=confidence,
        accepted=not reasons,
        review_reasons=tuple(reasons),
        sources=main_sources,
        alternatives=tuple(
            PlateAlternative(t, s) for t, s in sorted(alternatives.items(), key=lambda kv: -kv[1])
        ),
        trailer_plate=trailer_plate,
        agreeing_frames=agreeing_frames,
    )


def decide_vehicle(
    frames: Sequence[VehicleFrame],
    reader: PlateReader,
    facts: WeighedVehicleFacts | None = None,
    policy: PlatePolicy | None = None,
) -> VehiclePlateDecision:
    """Read every frame of one vehicle and decide its plate.

    Raises
    ------
    FrameError
        A frame's ``captured_at`` is not timezone-aware UTC, or its camera name is empty.
    ImageError
        A frame's image is unusable (see :mod:`zhichao.vision.image`).
    """
    for i, frame in enumerate(frames):
        if not frame.camera:
            raise FrameError(f"frame {i}: camera name is empty")
        offset = frame.captured_at.utcoffset()
        if offset is None or offset != timedelta(0):
            raise FrameError(
                f"frame {i} ({frame.camera}): captured_at {frame.captured_at.isoformat()} "
                "must be timezone-aware UTC"
            )
    frame_reads = [
        (frame, reader.read_image(frame.image, f"{frame.camera}@{frame.captured_at.isoformat()}"))
        for frame in frames
    ]
    return decide_from_reads(frame_reads, facts, policy)
