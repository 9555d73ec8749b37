"""Per-vehicle plate decision from several frames (front and rear cameras).

Flow: read every frame → set aside reads outside their camera's lane region (another
vehicle's plate) → group reads of the same physical plate (same camera and
overlapping boxes in consecutive frames, or the same-length text differing in at
most two positions) → set trailer plates (…挂) aside, since they identify the
semi-trailer, not the tractor → choose the best-supported tractor group → vote
per character, weighted by each read's per-character probability → apply the
:class:`~zhichao.vision.policy.PlatePolicy`: agreeing decodings, per-character and
province sureness, resolution, other plates in view, colour.

The voted confidence of a position is the sum of the agreeing reads'
probabilities divided by the number of valid reads in the group, so a read that
disagrees lowers it; the plate's confidence is the lowest position's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from zhichao.vision.ctc import SHARED_LOOKALIKES
from zhichao.vision.errors import FrameError
from zhichao.vision.grammar import is_trailer_plate, plate_kind
from zhichao.vision.image import ImageBGR
from zhichao.vision.plate_image import Layout, PlateColour
from zhichao.vision.plate_model import SecondRead
from zhichao.vision.policy import (
    PlatePolicy,
    RecogniserReads,
    ReviewCode,
    ReviewReason,
    both_recognisers_char_confidences,
    colour_kind_consistent,
    colours_disagree,
    evidence_reasons,
    frame_confirms,
    kth_best_char_confidences,
    recogniser_reasons,
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
    char_confidences: tuple[float, ...] = ()
    """PP-OCRv4's per-character probabilities of ``text``."""
    second: SecondRead | None = None
    """The plate model's read of the same plate (None when it was not run)."""
    joint_text: str | None = None
    """The plate with the province both recognisers find most probable together, where
    that is another than ``text``'s (:attr:`PlateRead.joint_text`)."""
    joint_char_confidences: tuple[float, ...] = ()
    """Per character of ``joint_text`` (:attr:`PlateRead.joint_char_confidences`)."""


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
    penalty. Where PP-OCRv4 read nothing grammar-valid but the plate model did, ``plate``
    is the plate model's read, for the reviewer to check (:func:`_plate_model_suggestion`;
    never accepted: it carries ``plate_model_only`` in place of ``grammar_invalid``, and the
    colour checks of its kind)."""

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
    """The frames that count for ``min_agreeing_frames``: over several frames, those that
    confirm the plate (both recognisers, :func:`~zhichao.vision.policy.frame_confirms`);
    on one frame, without the agreement rule, or when no frame confirms (the decision then
    carries ``recogniser_disagreement``), those where PP-OCRv4 reads it."""
    plate_model_only: bool = False
    """``plate`` is the plate model's read: PP-OCRv4 read nothing grammar-valid."""
    province_joint: bool = False
    """``plate``'s province is the one both recognisers find most probable together, not
    PP-OCRv4's (:func:`decide_from_reads`); never accepted."""

    @property
    def review_codes(self) -> tuple[str, ...]:
        return tuple(r.code.value for r in self.review_reasons)


def assess_read(read: PlateRead | None, policy: PlatePolicy) -> tuple[ReviewReason, ...]:
    """Review reasons for a single read on its own, as one frame of its own camera would get
    (no lane region, no other plate in view); an empty tuple means auto-accept."""
    if read is None:
        return (ReviewReason.of(ReviewCode.NO_PLATE),)
    reasons = [] if read.joint_text is None else [_joint_reason(read.text, read.joint_text)]
    if read.text is None:
        reasons.append(ReviewReason.of(ReviewCode.GRAMMAR_INVALID, f"raw read {read.raw_text!r}"))
    elif read.confidence < policy.min_confidence:
        reasons.append(
            ReviewReason.of(ReviewCode.LOW_CONFIDENCE, f"confidence {read.confidence:.3f}")
        )
    else:
        decodings = read.agreeing_decodings(read.text)
        reasons += evidence_reasons(
            len(decodings), _sure_in_both([read], read.text, decodings, policy), policy)
        reasons += _dedupe(reasons, recogniser_reasons([[_pair(read)]], read.text, policy))
    reasons += _resolution_reasons(plate_width_px(read), policy)
    reasons += _colour_reasons(read.colour, read.kind, read.text, WeighedVehicleFacts(), policy)
    return tuple(reasons)


def _pair(read: PlateRead) -> RecogniserReads:
    """What PP-OCRv4 and the plate model read on this plate."""
    second = read.second
    if second is None:
        return RecogniserReads(read.text, None, (), "", 0.0)
    return RecogniserReads(read.text, second.text, second.char_confidences, second.province,
                           second.province_confidence)


def _by_frame(main: list[_Entry]) -> list[list[_Entry]]:
    frames: dict[int, list[_Entry]] = defaultdict(list)
    for e in main:
        frames[e.source.frame_index].append(e)
    return list(frames.values())


def _confirming(main: list[_Entry], text: str, policy: PlatePolicy) -> list[list[_Entry]] | None:
    """Over several frames with the agreement rule: the frames that confirm ``text``
    (:func:`frame_confirms`); None on one frame or without the rule (every read counts)."""
    frames = _by_frame(main)
    if not policy.require_recogniser_agreement or len(frames) < 2:
        return None
    return [f for f in frames if frame_confirms([_pair(e.read) for e in f], text, policy)]


def _basis(main: list[_Entry], confirming: list[list[_Entry]] | None) -> list[_Entry]:
    """The reads the plate's width and colour are judged on: over several frames with the
    agreement rule, those of the confirming frames (when any); else every read."""
    return [e for f in confirming for e in f] if confirming else main


def _evidence(
    main: list[_Entry], text: str, policy: PlatePolicy, confirming: list[list[_Entry]] | None
) -> list[ReviewReason]:
    """``evidence_reasons`` over the decodings that count: on one frame (or without the
    agreement rule) every decoding that reads ``text``, the k-th best per position; over
    several frames only those of the ``confirming`` frames (:func:`_confirming`), and no
    character surer than the less sure recogniser's surest read of it (one recogniser's
    frames never stand in for the other's)."""
    reads = [e.read for f in confirming for e in f] if confirming else [e.read for e in main]
    decodings = [d for r in reads for d in r.agreeing_decodings(text)]
    return evidence_reasons(len(decodings), _sure_in_both(reads, text, decodings, policy),
                            policy)


def _sure_in_both(reads: list[PlateRead], text: str, decodings: list[tuple[float, ...]],
                  policy: PlatePolicy) -> tuple[float, ...]:
    """Per position, what the thresholds apply to: the k-th best of the agreeing
    ``decodings``, and with the agreement rule no surer than the less sure recogniser's
    surest read of it — on one frame too: two detections of one plate (or PP-OCRv4's views)
    read from the same pixels never make an unsure plate model sure (found by review)."""
    kth = kth_best_char_confidences(decodings, policy.min_independent_reads)
    if not policy.require_recogniser_agreement:
        return kth
    own = both_recognisers_char_confidences(
        [d for r in reads for d in r.primary_decodings(text)],
        [r.second.char_confidences for r in reads
         if r.second is not None and r.second.text == text],
    )
    return tuple(min(a, b) for a, b in zip(kth, own, strict=True)) if own else kth


def _joint_reason(ppocr_text: str | None, joint_text: str) -> ReviewReason:
    """``province_joint``: the plate shown has the province both recognisers find most
    probable together, not PP-OCRv4's, so a person checks it."""
    return ReviewReason.of(
        ReviewCode.PROVINCE_JOINT,
        f"PP-OCRv4 read {ppocr_text!r}; province of {joint_text!r} chosen by PP-OCRv4 and the "
        "plate model's province head together",
    )


def _joint_plate(main: list[_Entry], voted: str) -> str | None:
    """``voted`` with the province the group's reads vote when each read that has a joint
    plate (:attr:`PlateRead.joint_text`) counts its joint province with its joint
    probability, where that is another grammar-valid plate; None elsewhere. Only the
    province changes: the other characters stay PP-OCRv4's vote."""
    weights: dict[str, float] = defaultdict(float)
    joint = False
    for e in main:
        text, chars = e.read.text, e.read.char_confidences
        if text is None or len(text) != len(voted) or not chars:
            continue
        joint_text, joint_chars = e.read.joint_text, e.read.joint_char_confidences
        if joint_text is not None and len(joint_text) == len(text) == len(joint_chars):
            weights[joint_text[0]] += joint_chars[0]
            joint = True
        else:
            weights[text[0]] += chars[0]
    if not joint:
        return None
    province = max(weights, key=lambda c: weights[c])
    plate = province + voted[1:]
    return plate if province != voted[0] and plate_kind(plate) is not None else None


def _dedupe(have: list[ReviewReason], new: list[ReviewReason]) -> list[ReviewReason]:
    """``new`` without the codes already in ``have`` (details of the first one kept)."""
    codes = {r.code for r in have}
    return [r for r in new if r.code not in codes]


def _resolution_reasons(width_px: float, policy: PlatePolicy) -> list[ReviewReason]:
    if width_px < policy.min_plate_width_px:
        return [ReviewReason.of(ReviewCode.LOW_RESOLUTION, f"plate {width_px:.0f} px wide")]
    return []


def _colour_reasons(
    colour: PlateColour,
    kind: str | None,
    text: str | None,
    facts: WeighedVehicleFacts,
    policy: PlatePolicy,
) -> list[ReviewReason]:
    reasons: list[ReviewReason] = []
    if policy.require_known_colour and colour is PlateColour.UNKNOWN:
        reasons.append(ReviewReason.of(ReviewCode.COLOUR_UNKNOWN))
    if text is not None and not colour_kind_consistent(colour, kind):
        reasons.append(ReviewReason.of(ReviewCode.COLOUR_KIND_MISMATCH, f"{colour.value} {kind}"))
    conflict = vehicle_conflict(colour, kind, facts.axle_count, policy)
    if conflict is not None:
        reasons.append(ReviewReason.of(ReviewCode.VEHICLE_CONFLICT, conflict))
    return reasons


def plate_width_px(read: PlateRead) -> float:
    """Width of the read's plate in the source frame (mean of its top and bottom edges)."""
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


def _group_text(read: PlateRead) -> str | None:
    """The text a read is grouped by: PP-OCRv4's, or where it read nothing valid the plate
    model's (so a frame only the plate model read, on another camera, is judged with the
    plate it shows: a sure other plate there vetoes; found by review)."""
    if read.text is not None:
        return read.text
    return read.second.text if read.second is not None else None


def _same_text(a: PlateRead, b: PlateRead) -> bool:
    """Reads similar enough to be one plate read twice; a trailer's …挂 plate is never one
    with a tractor's plate, however similar (found by review: 鲁H1234挂 took 鲁H12345)."""
    ta, tb = _group_text(a), _group_text(b)
    return _similar(ta, tb) and is_trailer_plate(ta or "") == is_trailer_plate(tb or "")


@dataclass(slots=True)
class _Entry:
    source: PlateSource
    read: PlateRead
    in_lane: bool = True


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
            if tracked or _same_text(a.read, b.read):
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


def _entries(
    frame_reads: Sequence[tuple[VehicleFrame, list[PlateRead]]], policy: PlatePolicy
) -> list[_Entry]:
    entries: list[_Entry] = []
    for index, (frame, reads) in enumerate(frame_reads):
        region = policy.region(frame.camera)
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
                char_confidences=read.char_confidences,
                second=read.second,
                joint_text=read.joint_text,
                joint_char_confidences=read.joint_char_confidences,
            )
            entries.append(_Entry(source, read, region.contains(read.box_px, frame.image.shape)))
    return entries


def _alternatives(entries: list[_Entry], voted: str | None) -> tuple[PlateAlternative, ...]:
    support: dict[str, float] = defaultdict(float)
    for e in entries:
        if e.read.text is not None and not is_trailer_plate(e.read.text):
            support[e.read.text] += e.read.confidence
        for alt in e.read.alternatives:
            if not is_trailer_plate(alt.text):
                support[alt.text] += 0.0
        second = e.read.second  # the plate model's plate is shown too, never hidden
        if second is not None and second.text is not None and not is_trailer_plate(second.text):
            support[second.text] += 0.0
    support.pop(voted or "", None)
    ranked = sorted(support.items(), key=lambda kv: -kv[1])
    return tuple(PlateAlternative(t, s) for t, s in ranked)


def _support(group: list[_Entry]) -> float:
    return sum(e.read.confidence * e.read.detection.score for e in group) + 1e-3 * len(group)


def _text_reasons(
    main: list[_Entry],
    voted: str | None,
    confidence: float,
    policy: PlatePolicy,
    confirming: list[list[_Entry]] | None,
) -> list[ReviewReason]:
    """Grammar, confidence, independent agreement and resolution of the chosen group
    (``confirming``: :func:`_confirming` of ``voted``)."""
    reasons: list[ReviewReason] = []
    if voted is None:
        raw = ", ".join(sorted({e.read.raw_text for e in main}))
        reasons.append(ReviewReason.of(ReviewCode.GRAMMAR_INVALID, f"raw reads {raw}"))
    elif plate_kind(voted) is None:
        reasons.append(ReviewReason.of(ReviewCode.GRAMMAR_INVALID, f"voted {voted!r}"))
    elif confidence < policy.min_confidence:
        reasons.append(ReviewReason.of(ReviewCode.LOW_CONFIDENCE, f"confidence {confidence:.3f}"))
    else:
        reasons += _evidence(main, voted, policy, confirming)
        frames = [[_pair(e.read) for e in f] for f in _by_frame(main)]
        reasons += _dedupe(reasons, recogniser_reasons(frames, voted, policy))
    # over several frames the width is a confirming frame's: the agreement must not rest
    # on a plate too narrow to trust while a frame that counts neither way supplies it
    basis = _basis(main, confirming)
    reasons += _resolution_reasons(max(plate_width_px(e.read) for e in basis), policy)
    return reasons


def _plausible(read: PlateRead, policy: PlatePolicy) -> bool:
    """Could this detection be a real plate (of another vehicle)?"""
    raw_chars = len(read.raw_text.replace("|", ""))
    return read.text is not None or raw_chars >= policy.rival_min_raw_chars


def _rival_reasons(
    main: list[_Entry],
    others: list[list[_Entry]],
    candidates: list[_Entry],
    policy: PlatePolicy,
) -> list[ReviewReason]:
    """Another plausible plate in a frame of the chosen plate, or another plate read elsewhere."""
    reasons: list[ReviewReason] = []
    for frame_index in {e.source.frame_index for e in main}:
        in_frame = [
            e
            for e in candidates
            if e.source.frame_index == frame_index and _plausible(e.read, policy)
        ]
        apart = any(
            _iou(a.source.box_px, b.source.box_px) < 0.1
            for i, a in enumerate(in_frame)
            for b in in_frame[i + 1 :]
        )
        if apart:
            detail = ", ".join(repr(e.read.text or e.read.raw_text) for e in in_frame)
            reasons.append(ReviewReason.of(ReviewCode.MULTIPLE_PLATES, detail))
            break
    voted = _vote(main)[0]
    disagreeing = [e for e in main if e.read.text is not None and e.read.text != voted]
    # Another plate seen with some confidence (front ≠ rear, or a plate in another frame).
    rivals = [e for g in others for e in g if _rival_text(e.read, policy) is not None]
    cameras_main = {e.source.camera for e in main}
    for e in disagreeing + rivals:
        other_cameras = cameras_main - {e.source.camera} or {
            x.source.camera for x in rivals if x.source.camera != e.source.camera
        }
        code = ReviewCode.CAMERA_DISAGREEMENT if other_cameras else ReviewCode.FRAME_DISAGREEMENT
        if all(r.code is not code for r in reasons):
            text = e.read.text if e in disagreeing else _rival_text(e.read, policy)
            reasons.append(ReviewReason.of(code, f"{e.source.camera} read {text!r}"))
    return reasons


def _rival_text(read: PlateRead, policy: PlatePolicy) -> str | None:
    """The other plate a read of another group shows, where either recogniser reads it with
    some sureness: PP-OCRv4 at ``min_confidence``, or the plate model (a valid plate other
    than a …挂 one) at ``min_dissent_confidence`` — a rear frame PP-OCRv4 reads nothing
    valid of can still show another vehicle's plate (found by review)."""
    if read.text is not None and read.confidence >= policy.min_confidence:
        return read.text
    second = read.second
    if (second is not None and second.text is not None and not is_trailer_plate(second.text)
            and second.confidence >= policy.min_dissent_confidence):
        return second.text
    return None


def _colour_agreement_reasons(basis: list[_Entry], kind: str | None,
                              facts: WeighedVehicleFacts, policy: PlatePolicy,
                              have: list[ReviewReason]) -> list[ReviewReason]:
    """The colours read on the plate's frames must be one plate's (number and colour are
    its registration identity: a blue front and a yellow rear are two plates or a misread),
    and none may conflict with the weighed vehicle (a vote hid a blue front plate on a
    3-axle truck; found by review)."""
    colours = {e.read.colour for e in basis}
    reasons: list[ReviewReason] = []
    if colours_disagree(colours):
        detail = ", ".join(sorted(f"{e.source.camera} {e.read.colour.value}" for e in basis))
        reasons.append(ReviewReason.of(ReviewCode.COLOUR_DISAGREEMENT, detail))
    for c in sorted(colours):
        conflict = vehicle_conflict(c, kind, facts.axle_count, policy)
        if conflict is not None:
            reasons += _dedupe(have + reasons,
                               [ReviewReason.of(ReviewCode.VEHICLE_CONFLICT, conflict)])
    return reasons


def _voted_colour(main: list[_Entry]) -> PlateColour:
    weights: dict[PlateColour, float] = defaultdict(float)
    for e in main:
        weights[e.read.colour] += e.read.confidence + 1e-3
    return max(weights, key=lambda c: weights[c])


def _no_tractor_decision(
    reasons: list[ReviewReason],
    entries: list[_Entry],
    trailer_plate: str | None,
) -> VehiclePlateDecision:
    return VehiclePlateDecision(
        plate=None,
        kind=None,
        colour=PlateColour.UNKNOWN,
        layout=None,
        confidence=0.0,
        accepted=False,
        review_reasons=tuple(reasons),
        sources=tuple(e.source for e in entries),
        alternatives=_alternatives(entries, None),
        trailer_plate=trailer_plate,
        agreeing_frames=0,
    )


def _plate_model_suggestion(main: list[_Entry]) -> tuple[str, float] | None:
    """The plate model's surest grammar-valid read of the chosen plate (not a …挂 plate),
    with its confidence, for a plate PP-OCRv4 read nothing valid of; None if it has none.

    Only a pre-fill for the reviewer: one recogniser alone is never enough to accept.
    """
    reads = [
        e.read.second
        for e in main
        if e.read.second is not None
        and e.read.second.text is not None
        and not is_trailer_plate(e.read.second.text)
    ]
    if not reads:
        return None
    best = max(reads, key=lambda r: r.confidence)
    assert best.text is not None
    return best.text, best.confidence


def _filled_in(
    plate: str,
    first: ReviewReason,
    others: list[ReviewReason],
    colour: PlateColour,
    facts: WeighedVehicleFacts,
    policy: PlatePolicy,
) -> tuple[str | None, list[ReviewReason]]:
    """A plate filled in for the reviewer that is not PP-OCRv4's vote: its kind, and the
    reasons with ``first`` (why it is filled in; it is never accepted) before ``others``
    and the colour checks of that kind added."""
    kind = plate_kind(plate)
    reasons = [first, *others]
    return kind, reasons + _dedupe(reasons, _colour_reasons(colour, kind, plate, facts, policy))


def decide_from_reads(
    frame_reads: Sequence[tuple[VehicleFrame, list[PlateRead]]],
    facts: WeighedVehicleFacts | None = None,
    policy: PlatePolicy | None = None,
    link_window: timedelta = timedelta(seconds=10),
) -> VehiclePlateDecision:
    """Decide from reads already made (see :func:`decide_vehicle`)."""
    policy = policy or PlatePolicy()
    facts = facts or WeighedVehicleFacts()
    entries = _entries(frame_reads, policy)
    if not entries:
        return _no_tractor_decision([ReviewReason.of(ReviewCode.NO_PLATE)], [], None)
    reasons: list[ReviewReason] = []
    candidates = [e for e in entries if e.in_lane]
    if not candidates:  # every plate seen lies outside this lane's expected region
        reasons.append(ReviewReason.of(ReviewCode.OUTSIDE_LANE, f"{len(entries)} plates"))
        candidates = entries
    groups = _group(candidates, link_window)
    trailer_groups = [g for g in groups if any(is_trailer_plate(e.read.text or "") for e in g)]
    tractor_groups = sorted(
        (g for g in groups if g not in trailer_groups), key=_support, reverse=True
    )
    trailer_plate = None
    if trailer_groups:
        best_trailer = max(trailer_groups, key=lambda g: sum(e.read.confidence for e in g))
        # voted from its …挂 reads only (a misread of it in a tracked frame is no trailer's)
        trailer_plate = _vote([e for e in best_trailer
                               if is_trailer_plate(e.read.text or "")])[0]
    if not tractor_groups:
        reasons.append(ReviewReason.of(ReviewCode.TRAILER_PLATE_ONLY))
        return _no_tractor_decision(reasons, entries, trailer_plate)
    main = tractor_groups[0]
    voted, confidence, _ = _vote(main)
    kind = plate_kind(voted) if voted else None
    confirming = _confirming(main, voted, policy) if voted is not None else None
    reasons += _text_reasons(main, voted, confidence, policy, confirming)
    reasons += _rival_reasons(main, tractor_groups[1:], candidates, policy)
    # the frames that count: over several frames with the agreement rule the confirming
    # ones (none confirming: recogniser_reasons says so); else those that read the text
    agreeing_frames = (
        len(confirming)
        if confirming
        else len({e.source.frame_index for e in main if voted and e.read.text == voted})
    )
    if voted is not None and agreeing_frames < policy.min_agreeing_frames:
        reasons.append(
            ReviewReason.of(
                ReviewCode.TOO_FEW_FRAMES, f"{agreeing_frames} < {policy.min_agreeing_frames}"
            )
        )
    basis = _basis(main, confirming)
    colour = _voted_colour(basis)
    reasons += _colour_reasons(colour, kind, voted, facts, policy)
    reasons += _colour_agreement_reasons(basis, kind, facts, policy, reasons)
    best = max(main, key=lambda e: (e.read.text is not None, e.read.confidence))
    plate = voted
    suggestion = _plate_model_suggestion(main) if voted is None else None
    if suggestion is not None:  # PP-OCRv4 read nothing valid: plate_model_only, not
        plate, confidence = suggestion  # grammar_invalid, which the filled plate is not
        raw = ", ".join(sorted({e.read.raw_text for e in main}))
        alone = ReviewReason.of(
            ReviewCode.PLATE_MODEL_ONLY,
            f"plate model alone read {plate!r}; PP-OCRv4 raw reads {raw}",
        )  # never accepted: this reason is always there
        others = [r for r in reasons if r.code is not ReviewCode.GRAMMAR_INVALID]
        kind, reasons = _filled_in(plate, alone, others, colour, facts, policy)
    # everything above is PP-OCRv4's own reads, as before the joint province; where the
    # province both recognisers chose wins the group's vote, that plate is what the reviewer
    # finds filled in, never accepted (every reason above stays; its confidence PP-OCRv4's)
    joint_plate = _joint_plate(main, voted) if voted is not None else None
    if joint_plate is not None:
        plate = joint_plate
        first = _joint_reason(voted, joint_plate)
        kind, reasons = _filled_in(plate, first, reasons, colour, facts, policy)
    return VehiclePlateDecision(
        plate=plate,
        kind=kind,
        colour=colour,
        layout=best.read.layout,
        confidence=confidence,
        accepted=not reasons,
        review_reasons=tuple(reasons),
        sources=tuple(e.source for e in main),
        alternatives=_alternatives(entries, plate),
        trailer_plate=trailer_plate,
        agreeing_frames=agreeing_frames,
        plate_model_only=suggestion is not None,
        province_joint=joint_plate is not None,
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


def read_provenance(reader: PlateReader, policy: PlatePolicy) -> dict[str, Any]:
    """What decided a plate, for its evidence record: the SHA-256 of each model file, what
    computed them (e.g. ``openvino 2026.4.1 bf16``: the same files can decide differently in
    float32, ``docs/vision.md`` *Latency* run 3), the reader's settings that change a
    decision and every threshold of the accept policy, with the software's version.

    Call it after the models are loaded (:meth:`PlateReader.warm_up`); before, the model
    hashes and the runtime are None.
    """
    from zhichao import __version__

    config = reader.config
    ids = reader.model_ids()
    return {
        "software_version": __version__,
        "models_sha256": {k: v for k, v in ids.items() if k != "runtime"},
        "runtime": ids["runtime"],
        "settings": {
            "use_plate_model": config.use_plate_model,
            "plate_model_province_from_head": config.plate_model_province_from_head,
            "ppocr_fold_lookalikes": config.ppocr_fold_lookalikes,
            "joint_province": config.joint_province,
            "joint_province_min_head_confidence": config.joint_province_min_head_confidence,
            "ppocr_shared_lookalikes": [list(pair) for pair in SHARED_LOOKALIKES]
            if config.ppocr_fold_lookalikes else [],
            "double_row_split": "ink_gap",
            "views": [view.name for view in config.views],
        },
        "policy": {
            f.name: ({camera: asdict(region) for camera, region in policy.lane_regions.items()}
                     if f.name == "lane_regions" else getattr(policy, f.name))
            for f in fields(policy)
        },
    }


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(v), 4) for v in values]


def _probabilities(values: Sequence[float]) -> list[float]:
    """Probabilities as recorded: rounded, within [0, 1] (bfloat16 rounding, or a folded
    look-alike, can put one a hair above 1; a NaN, which no decoder passes, as 0)."""
    return [min(1.0, max(0.0, v)) if math.isfinite(v) else (1.0 if v > 0 else 0.0)
            for v in _rounded(values)]


#: the longest text a read records (an unconstrained raw read is cut there)
READ_TEXT_MAX_CHARS = 128
#: the most reads, and the most other strings, a decision records (the surest first);
#: ``zhichao.evidence.inputs`` refuses more
MAX_RECORDED_READS = 64


def decision_reads(decision: VehiclePlateDecision) -> dict[str, Any]:
    """The reads behind ``decision``, for its evidence record (JSON data, UTC times):
    every read of the chosen plate (camera, time, box in the frame's pixels, PP-OCRv4's
    text and per-character probabilities, its joint plate where it has one
    (:attr:`PlateRead.joint_text`, null else), colour, layout, and the plate model's text,
    per-character probabilities and province head), and the other plate strings seen
    with their support."""
    reads = []
    for s in decision.sources[:MAX_RECORDED_READS]:
        second = s.second
        reads.append({
            "camera": s.camera,
            "captured_utc": s.captured_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "box_px": [v if math.isfinite(v) else 0.0 for v in _rounded(s.box_px)],
            "text": s.text,
            "joint_text": s.joint_text,
            "joint_char_confidences": _probabilities(s.joint_char_confidences),
            "raw_text": s.raw_text[:READ_TEXT_MAX_CHARS],
            "char_confidences": _probabilities(s.char_confidences),
            "colour": s.colour.value,
            "layout": s.layout.value,
            "plate_model": None if second is None else {
                "text": second.text,
                "char_confidences": _probabilities(second.char_confidences),
                "province": second.province,
                "province_confidence": _probabilities([second.province_confidence])[0],
            },
        })
    return {
        "reads": reads,
        "alternatives": [{"text": a.text[:READ_TEXT_MAX_CHARS],
                          "support": round(float(a.support), 4) if math.isfinite(a.support)
                          else 0.0}
                         for a in decision.alternatives[:MAX_RECORDED_READS]],
    }
