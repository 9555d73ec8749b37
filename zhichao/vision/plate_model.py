"""The second, plate-specific recogniser: a small CRNN trained here (``training/plates/``).

Model I/O: input ``line`` [N, 1, 32, 160] float32, grey scaled to [-1, 1] (built by
:mod:`zhichao.vision.plate_lines`; a double-row plate's two rows side by side); outputs
``probs`` [N, 40, 1 + len(ALPHABET)], softmax over CTC blank and
:data:`~zhichao.vision.grammar.ALPHABET` in that order (what :func:`zhichao.vision.ctc.decode`
takes as it is), and ``province`` [N, 32], softmax of a separate head over
:data:`PROVINCE_CLASSES` — its own reader of the first character, which decides it where
it is surer than the CTC decoding (:class:`PlateModelRecogniser`).

It was trained on rendered GA 36 plates and the training part of
``shared/data/plates/train`` only (recipe: ``docs/vision.md``), so it is independent of
PP-OCRv4 in data, architecture and input; the accept policy wants both to agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from zhichao.vision import ctc
from zhichao.vision.errors import ModelRuntimeError
from zhichao.vision.grammar import ALPHABET, PROVINCES, Template
from zhichao.vision.image import ImageBGR
from zhichao.vision.plate_lines import GreyLine, plate_line, to_tensor
from zhichao.vision.runtime import OnnxModel

PROVINCE_CLASSES = PROVINCES + "使"


@dataclass(frozen=True, slots=True)
class SecondRead:
    """The plate model's read of one plate."""

    text: str | None
    """Best grammar-valid string (constrained CTC decoding), or None. With the province
    head deciding (the default), its first character is the head's answer where the head
    is surer than the CTC decoding (:meth:`PlateModelRecogniser.decode`)."""
    char_confidences: tuple[float, ...]
    """Per character; with the province head deciding, position 0 is the head's
    probability of its answer when the text carries it, the rest the CTC decoding's."""
    province: str
    """The province head's answer (always one of :data:`PROVINCE_CLASSES`)."""
    province_confidence: float
    double_row: bool
    province_probabilities: tuple[float, ...] = field(default=(), repr=False, compare=False)
    """The province head's whole output, one probability per :data:`PROVINCE_CLASSES`
    (empty where not known); what :func:`~zhichao.vision.reader.joint_province` weighs."""

    @property
    def confidence(self) -> float:
        return min(self.char_confidences) if self.char_confidences else 0.0

    @property
    def province_agrees(self) -> bool:
        """The province head names the read's first character (which is the head's
        answer wherever the head decided it)."""
        return self.text is not None and self.text[0] == self.province


def with_province(templates: tuple[Template, ...], province: str) -> tuple[Template, ...]:
    """``templates`` that allow ``province`` first, narrowed to it there."""
    return tuple(
        Template(t.kind, (frozenset(province), *t.positions[1:]))
        for t in templates
        if t.positions and province in t.positions[0]
    )


class PlateModelRecogniser:
    """Runs the plate model on lines and decodes them under the plate grammar.

    ``province_from_head``: the province head, trained on the first character alone,
    decides it (issue #20 item 2) where it is surer of its answer than the CTC decoding is
    of its own province: the line is then decoded again with the first position narrowed
    to the head's answer, so the other characters are aligned to that province. Where the
    text's province is the head's, position 0 carries the head's probability. Where the
    CTC decoding is the surer one, or no grammar-valid path runs through the head's
    answer, the CTC read stays as it is, and the accept policy sees a head that does not
    name the read's province: a sure other province still vetoes as before.
    """

    def __init__(self, model: OnnxModel, province_from_head: bool = True) -> None:
        self.model = model
        self.province_from_head = province_from_head

    def run(self, lines: list[GreyLine]) -> list[tuple[ctc.FloatArray, np.ndarray]]:
        """(per-step probabilities (40, 1 + K), province probabilities) for each line."""
        if not lines:
            return []
        probs, province = self.model.run(to_tensor(lines))
        if probs.shape[-1] != 1 + len(ALPHABET) or province.shape[-1] != len(PROVINCE_CLASSES):
            raise ModelRuntimeError(
                f"{self.model.path}: outputs {probs.shape}, {province.shape} do not fit the "
                f"plate alphabet ({1 + len(ALPHABET)}) and provinces ({len(PROVINCE_CLASSES)})"
            )
        return [(probs[i].astype(np.float64), province[i]) for i in range(len(lines))]

    def read(
        self,
        image: ImageBGR,
        corners_px: tuple[tuple[float, float], ...],
        layouts: tuple[bool, ...],
        templates: tuple[Template, ...],
        beam_width: int = 8,
    ) -> tuple[SecondRead, GreyLine]:
        """Read the plate at ``corners_px`` as each layout in ``layouts`` (double_row flags)
        and keep the best: grammar-valid first, then the surest."""
        lines = [plate_line(image, corners_px, double) for double in layouts]
        best: tuple[tuple[bool, float], SecondRead, GreyLine] | None = None
        for double, line, (probs, province) in zip(layouts, lines, self.run(lines), strict=True):
            read = self.decode(probs, province, templates, double, beam_width)
            key = (read.text is not None, read.confidence)
            if best is None or key > best[0]:
                best = (key, read, line)
        assert best is not None
        return best[1], best[2]

    def decode(
        self,
        probs: ctc.FloatArray,
        province: np.ndarray,
        templates: tuple[Template, ...],
        double_row: bool = False,
        beam_width: int = 8,
    ) -> SecondRead:
        """One line's outputs (``run``) as a read under ``templates``."""
        k = int(np.argmax(province))
        head, head_p = PROVINCE_CLASSES[k], float(province[k])
        result = ctc.decode(probs, templates, beam_width=beam_width, max_alternatives=0)
        chars = result.char_probabilities if result.text else ()
        text = result.text
        if self.province_from_head and text:
            if text[0] != head and head_p > chars[0]:
                narrowed = with_province(templates, head)
                again = (
                    ctc.decode(probs, narrowed, beam_width=beam_width, max_alternatives=0)
                    if narrowed
                    else None
                )
                if again is not None and again.text is not None:
                    text, chars = again.text, again.char_probabilities
            if text[0] == head:
                chars = (head_p, *chars[1:])
        return SecondRead(
            text=text,
            char_confidences=tuple(chars),
            province=head,
            province_confidence=head_p,
            double_row=double_row,
            province_probabilities=tuple(float(v) for v in province),
        )
