"""Scoring the reader on a labelled folder (``labels.csv`` as in ``shared/data/plates/dev``).

``labels.csv`` columns used: ``file``, ``plate``, ``kind`` (``scene`` or ``crop``) and
``colour``. A scene counts as correct when the best read equals the label; a crop is
read without detection. Character accuracy is 1 − edit distance / label length.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zhichao.vision.errors import ImageError, VisionError
from zhichao.vision.image import load_image
from zhichao.vision.policy import PlatePolicy
from zhichao.vision.reader import PlateRead, PlateReader
from zhichao.vision.vehicle import assess_read


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


def evaluate_folder(
    folder: str | Path,
    reader: PlateReader,
    policy: PlatePolicy | None = None,
    limit: int | None = None,
    progress: Callable[[EvalItem], None] | None = None,
) -> EvalReport:
    """Read every labelled image in ``folder`` and score the reads.

    Latency is per image, decoding the file excluded, with the reader's thread setting.
    """
    policy = policy or PlatePolicy()
    root = Path(folder)
    rows = read_labels(root)[:limit]
    reader.warm_up()
    items: list[EvalItem] = []
    for row in rows:
        path = root / row["file"]
        kind = row.get("kind", "scene") or "scene"
        top: PlateRead | None
        try:
            image = load_image(path, reader.config.limits)
            start = time.perf_counter()
            if kind == "scene":
                reads = reader.read_image(image, str(path))
                top = reads[0] if reads else None
            else:
                top = reader.read_crop(image, str(path))
            latency_ms = (time.perf_counter() - start) * 1000
        except ImageError:
            top, latency_ms = None, 0.0
        reasons = assess_read(top, policy)
        item = EvalItem(
            file=row["file"],
            label=row["plate"],
            kind=kind,
            colour=row.get("colour", ""),
            read=top.text if top else None,
            raw_read=top.raw_text if top else "",
            read_colour=top.colour.value if top else "",
            confidence=top.confidence if top else 0.0,
            accepted=not reasons,
            review_codes=tuple(r.code.value for r in reasons),
            latency_ms=latency_ms,
        )
        items.append(item)
        if progress is not None:
            progress(item)
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
