"""Scoring the reader on a labelled folder (``labels.csv`` as in ``shared/data/plates/dev``).

``labels.csv`` columns used: ``file``, ``plate``, ``kind`` (``scene`` or ``crop``) and
``colour``. Each image is decided as one frame of one camera by the same accept policy
the station uses (:func:`~zhichao.vision.vehicle.decide_from_reads`): a scene counts as
correct when the decided plate equals the label; a crop is read without detection.
Character accuracy is 1 − edit distance / label length.
"""

from __future__ import annotations

import csv
import hashlib
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from zhichao.vision.errors import ImageError, VisionError
from zhichao.vision.image import ImageBGR, load_image
from zhichao.vision.policy import PlatePolicy, ReviewCode, ReviewReason
from zhichao.vision.reader import PlateRead, PlateReader
from zhichao.vision.vehicle import VehicleFrame, decide_from_reads, plate_width_px

EVAL_CAMERA = "eval"
"""Camera name every evaluated image is decided under (a policy may give it a lane region)."""
_EVAL_TIME = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class EvalItem:
    file: str
    label: str
    kind: str
    colour: str
    read: str | None
    raw_read: str
    read_colour: str
    confidence: float
    accepted: bool
    review_codes: tuple[str, ...]
    latency_ms: float
    width_px: float = 0.0
    """Width of the best read's plate in the source image (0 when nothing was detected)."""
    plate_model_only: bool = False
    """``read`` is the plate model's (PP-OCRv4 read nothing valid; never accepted)."""
    province_joint: bool = False
    """``read``'s province was chosen with the plate model's head (never accepted)."""

    @property
    def correct(self) -> bool:
        return self.read == self.label

    @property
    def char_accuracy(self) -> float:
        return max(0.0, 1.0 - edit_distance(self.read or "", self.label) / len(self.label))


@dataclass(frozen=True, slots=True)
class GroupScore:
    name: str
    count: int
    exact: int
    char_accuracy: float
    accepted: int
    accepted_correct: int
    colour_correct: int

    @property
    def wrong_accepted(self) -> int:
        return self.accepted - self.accepted_correct

    @property
    def exact_rate(self) -> float:
        return self.exact / self.count if self.count else 0.0

    @property
    def accept_rate(self) -> float:
        return self.accepted / self.count if self.count else 0.0

    @property
    def accept_precision(self) -> float:
        return self.accepted_correct / self.accepted if self.accepted else 1.0


@dataclass(frozen=True, slots=True)
class EvalReport:
    items: tuple[EvalItem, ...]
    groups: tuple[GroupScore, ...]
    scene_latency_mean_ms: float
    scene_latency_p95_ms: float
    crop_latency_mean_ms: float
    crop_latency_p95_ms: float

    def group(self, name: str) -> GroupScore:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def misses(self) -> tuple[EvalItem, ...]:
        return tuple(i for i in self.items if not i.correct)


HELD_OUT_PERCENT = 15
"""Share of ``shared/data/plates/train`` kept apart from the plate model's training:
what the accept policy's thresholds are fitted on."""


def is_held_out(file_name: str) -> bool:
    """Fixed split of the training set by file name: SHA-1 of the name, mod 100, < 15."""
    return int(hashlib.sha1(file_name.encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _score(name: str, items: list[EvalItem]) -> GroupScore:
    return GroupScore(
        name=name,
        count=len(items),
        exact=sum(i.correct for i in items),
        char_accuracy=statistics.fmean(i.char_accuracy for i in items) if items else 0.0,
        accepted=sum(i.accepted for i in items),
        accepted_correct=sum(i.accepted and i.correct for i in items),
        colour_correct=sum(i.read_colour == i.colour for i in items),
    )


def read_labels(folder: Path) -> list[dict[str, str]]:
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise VisionError(f"{folder}: no labels.csv")
    with labels.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass(frozen=True, slots=True)
class LabelledImage:
    """One image to score: a scene (detect, then read) or a crop (one plate, no detection)."""

    file: str
    label: str
    kind: str
    colour: str
    image: ImageBGR | None
    """None when the file could not be used (scored as no plate)."""


def evaluate_folder(
    folder: str | Path,
    reader: PlateReader,
    policy: PlatePolicy | None = None,
    limit: int | None = None,
    progress: Callable[[EvalItem], None] | None = None,
) -> EvalReport:
    """Read every labelled image in ``folder`` and score the decisions.

    Latency is per image, decoding the file excluded, with the reader's thread setting.
    """
    root = Path(folder)
    rows = read_labels(root)[:limit]

    def images() -> Iterable[LabelledImage]:
        for row in rows:
            try:
                image: ImageBGR | None = load_image(root / row["file"], reader.config.limits)
            except ImageError:
                image = None
            kind = row.get("kind", "scene") or "scene"
            yield LabelledImage(row["file"], row["plate"], kind, row.get("colour", ""), image)

    return evaluate_images(images(), reader, policy, progress)


@dataclass(frozen=True, slots=True)
class ReadImage:
    """A labelled image with its reads, ready to be decided under any policy."""

    labelled: LabelledImage
    reads: tuple[PlateRead, ...]
    latency_ms: float


def _read_one(labelled: LabelledImage, reader: PlateReader) -> ReadImage:
    reads: list[PlateRead] = []
    latency_ms = 0.0
    if labelled.image is not None:
        start = time.perf_counter()
        if labelled.kind == "scene":
            reads = reader.read_image(labelled.image, labelled.file)
        else:
            reads = [reader.read_crop(labelled.image, labelled.file)]
        latency_ms = (time.perf_counter() - start) * 1000
    return ReadImage(labelled, tuple(reads), latency_ms)


def read_images(images: Iterable[LabelledImage], reader: PlateReader) -> list[ReadImage]:
    """Read every image once (scenes: detect and read; crops: read as one plate)."""
    reader.warm_up()
    return [_read_one(labelled, reader) for labelled in images]


def decide_read_image(read: ReadImage, policy: PlatePolicy) -> EvalItem:
    """Decide one read image as one frame of camera :data:`EVAL_CAMERA` and score it."""
    labelled = read.labelled
    top = read.reads[0] if read.reads else None
    plate, colour, plate_model_only, province_joint = None, "", False, False
    reasons: tuple[ReviewReason, ...] = (ReviewReason.of(ReviewCode.NO_PLATE),)
    if labelled.image is not None:
        frame = VehicleFrame(labelled.image, EVAL_CAMERA, _EVAL_TIME)
        decision = decide_from_reads([(frame, list(read.reads))], policy=policy)
        plate, colour, reasons = decision.plate, decision.colour.value, decision.review_reasons
        plate_model_only = decision.plate_model_only
        province_joint = decision.province_joint
    return EvalItem(
        file=labelled.file,
        label=labelled.label,
        kind=labelled.kind,
        colour=labelled.colour,
        read=plate,
        raw_read=top.raw_text if top else "",
        read_colour=colour if top else "",
        confidence=top.confidence if top else 0.0,
        accepted=not reasons,
        review_codes=tuple(r.code.value for r in reasons),
        latency_ms=read.latency_ms,
        width_px=plate_width_px(top) if top else 0.0,
        plate_model_only=plate_model_only,
        province_joint=province_joint,
    )


def score(reads: Iterable[ReadImage], policy: PlatePolicy | None = None) -> EvalReport:
    """Decide every read image under ``policy`` (default :class:`PlatePolicy`) and score it."""
    policy = policy or PlatePolicy()
    return _report([decide_read_image(r, policy) for r in reads])


def evaluate_images(
    images: Iterable[LabelledImage],
    reader: PlateReader,
    policy: PlatePolicy | None = None,
    progress: Callable[[EvalItem], None] | None = None,
) -> EvalReport:
    """Read, decide with ``policy`` and score every image."""
    policy = policy or PlatePolicy()
    reader.warm_up()
    items: list[EvalItem] = []
    for labelled in images:
        item = decide_read_image(_read_one(labelled, reader), policy)
        items.append(item)
        if progress is not None:
            progress(item)
    return _report(items)


def _report(items: list[EvalItem]) -> EvalReport:
    groups = [_score("all", items)]
    for kind in sorted({i.kind for i in items}):
        of_kind = [i for i in items if i.kind == kind]
        groups.append(_score(kind, of_kind))
        for colour in sorted({i.colour for i in of_kind}):
            groups.append(_score(f"{kind}/{colour}", [i for i in of_kind if i.colour == colour]))
    for colour in sorted({i.colour for i in items}):
        groups.append(_score(f"colour/{colour}", [i for i in items if i.colour == colour]))
    scene_ms = [i.latency_ms for i in items if i.kind == "scene"]
    crop_ms = [i.latency_ms for i in items if i.kind != "scene"]
    return EvalReport(
        items=tuple(items),
        groups=tuple(groups),
        scene_latency_mean_ms=statistics.fmean(scene_ms) if scene_ms else 0.0,
        scene_latency_p95_ms=percentile(scene_ms, 95),
        crop_latency_mean_ms=statistics.fmean(crop_ms) if crop_ms else 0.0,
        crop_latency_p95_ms=percentile(crop_ms, 95),
    )
