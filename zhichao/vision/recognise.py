"""Text-line recognition with PP-OCRv4 rec, reduced to the plate alphabet.

Model I/O (documented in ``shared/reference/plates.md``): input ``x`` [N, 3, 48, W]
float32, RGB scaled to [-1, 1]; output [N, W/8, 6625] softmax over blank + the
6623-character dictionary stored in the model metadata key ``character`` + space.
We keep the blank column, fold the separator characters a plate's dot may be
read as into it, and keep one column per :data:`~zhichao.vision.grammar.ALPHABET`
character; everything else is dropped, which is what lets the constrained
decoder ignore look-alike Chinese characters.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from zhichao.vision.errors import ModelRuntimeError
from zhichao.vision.grammar import ALPHABET
from zhichao.vision.image import ImageBGR
from zhichao.vision.runtime import OnnxModel

FloatArray = npt.NDArray[np.float64]

INPUT_HEIGHT_PX = 48
SEPARATORS = "·.-•・ "
"""Characters the plate's dot or a gap may be read as: treated as blank."""


class LineRecogniser:
    """Runs the recogniser on batches of equal-height line images."""

    def __init__(self, model: OnnxModel, max_batch: int = 1) -> None:
        self.model = model
        self.max_batch = max_batch
        """Lines per run. 1 by default: on one CPU thread a batch of 2 lines of
        48 x 240 px took 2.5x as long as one line (measured), so batching does not pay."""
        self._columns: npt.NDArray[np.int64] | None = None
        self._separator_columns: npt.NDArray[np.int64] | None = None

    def _column_map(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        if self._columns is None or self._separator_columns is None:
            characters = self.model.metadata().get("character")
            if not characters:
                raise ModelRuntimeError(
                    f"{self.model.path}: no 'character' dictionary in the model metadata"
                )
            vocabulary = ["<blank>", *characters.splitlines(), " "]
            position = {ch: i for i, ch in reversed(list(enumerate(vocabulary)))}
            missing = [ch for ch in ALPHABET if ch not in position]
            if missing:
                raise ModelRuntimeError(
                    f"{self.model.path}: dictionary lacks plate characters {''.join(missing)}"
                )
            self._columns = np.array([0] + [position[ch] for ch in ALPHABET], dtype=np.int64)
            self._separator_columns = np.array(
                [position[ch] for ch in SEPARATORS if ch in position], dtype=np.int64
            )
        return self._columns, self._separator_columns

    def recognise(self, lines: list[ImageBGR]) -> list[FloatArray]:
        """Per-step plate-alphabet probabilities for each line, ``max_batch`` lines per run."""
        results: list[FloatArray] = []
        for start in range(0, len(lines), self.max_batch):
            results.extend(self._recognise_batch(lines[start : start + self.max_batch]))
        return results

    def _recognise_batch(self, lines: list[ImageBGR]) -> list[FloatArray]:
        """Per-step plate-alphabet probabilities (T, 1 + len(ALPHABET)) for each line.

        Lines must be ``INPUT_HEIGHT_PX`` high; narrower lines of a batch are padded
        on the right with the normalised value 0 (mid-grey), as PP-OCR does.
        """
        if not lines:
            return []
        columns, separators = self._column_map()
        width_px = max(line.shape[1] for line in lines)
        batch = np.zeros((len(lines), 3, INPUT_HEIGHT_PX, width_px), dtype=np.float32)
        for i, line in enumerate(lines):
            if line.shape[0] != INPUT_HEIGHT_PX:
                raise ValueError(f"line {i} is {line.shape[0]} px high, not {INPUT_HEIGHT_PX}")
            rgb = line[:, :, ::-1].astype(np.float32)
            batch[i, :, :, : line.shape[1]] = (rgb / 127.5 - 1.0).transpose(2, 0, 1)
        (output,) = self.model.run(batch)
        results: list[FloatArray] = []
        for i in range(len(lines)):
            full = output[i].astype(np.float64)
            reduced = full[:, columns]
            reduced[:, 0] += full[:, separators].sum(axis=1)
            results.append(reduced)
        return results
