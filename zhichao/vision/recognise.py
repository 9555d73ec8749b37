"""Text-line recognition with PP-OCRv4 rec, reduced to the plate alphabet.

Model I/O (documented in ``shared/reference/plates.md``): input ``x`` [N, 3, 48, W]
float32, RGB scaled to [-1, 1]; output [N, W/8, 6625] softmax over blank + the
6623-character dictionary stored in the model metadata key ``character`` + space.
We keep the blank column, fold the separator characters a plate's dot may be
read as into it, and keep one column per :data:`~zhichao.vision.grammar.ALPHABET`
character; everything else is dropped, which is what lets the constrained
decoder ignore look-alike Chinese characters.

GA 36 leaves I out of every plate because it cannot be told from 1
(``shared/reference/plates.md`` §6), so PP-OCRv4's I (a dictionary character the
reduction would drop) is added to 1: without this a clear 1 that PP-OCRv4 split between 1
and I was an unsure character. O is *not* folded into 0 here, though GA 36 has no O in the
serial either: O is a plate character (the issuing letter, 粤O…), so its probability
would count twice, and an issuing-letter O lasting several steps could be spent as O and
then again as a serial 0 with no blank between (粤O1234D read as 粤O01234D). Instead the
decoded text's 0s and Os are judged on 0 and O together, after decoding and on the plain
alignment (:data:`zhichao.vision.ctc.SHARED_LOOKALIKES`, ``PlateReader``): no position
allows both. Nothing else is folded (D / 0, Q / 0, Z / 7, 8 / B are all plate
characters, often at the same position).
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
READ_AS = {"I": "1"}
"""Dictionary character that no plate has → the plate character its probability is added
to. Only characters outside :data:`~zhichao.vision.grammar.ALPHABET` may be here, so no
probability is counted twice."""


class LineRecogniser:
    """Runs the recogniser on batches of equal-height line images."""

    def __init__(self, model: OnnxModel, max_batch: int = 1, fold_lookalikes: bool = True) -> None:
        self.model = model
        self.max_batch = max_batch
        """Lines per run. 1 by default: on one CPU thread a batch of 2 lines of
        48 x 240 px took 2.5x as long as one line (measured), so batching does not pay."""
        self._columns: npt.NDArray[np.int64] | None = None
        self._separator_columns: npt.NDArray[np.int64] | None = None
        self._read_as: list[tuple[int, int]] = []
        """(dictionary column, reduced column) pairs of :data:`READ_AS`."""
        self.fold_lookalikes = fold_lookalikes
        """:data:`READ_AS` (False: as before 2026-12-07)."""

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
            self._read_as = [
                (position[ch], 1 + ALPHABET.index(plate_ch))
                for ch, plate_ch in READ_AS.items()
                if ch in position
            ]
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
            if self.fold_lookalikes:
                fold_lookalikes(reduced, full, self._read_as)
            results.append(reduced)
        return results


def fold_lookalikes(
    reduced: FloatArray, full: FloatArray, read_as: list[tuple[int, int]]
) -> None:
    """In place: add each :data:`READ_AS` dictionary column of ``full`` to its plate
    column of ``reduced`` (the source column itself is left as it is)."""
    for source, target in read_as:
        reduced[:, target] += full[:, source]
