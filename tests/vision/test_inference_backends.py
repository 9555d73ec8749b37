"""The two inference runtimes (OpenVINO, the default, and onnxruntime) run the same ONNX files
to the same result: in float32 up to rounding, in bfloat16 up to its rounding, on real
plate images of the dev set."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from zhichao.vision import ctc
from zhichao.vision.detect import input_tensor
from zhichao.vision.errors import ModelRuntimeError
from zhichao.vision.image import load_image
from zhichao.vision.plate_image import single_row_line
from zhichao.vision.plate_lines import plate_line, to_tensor
from zhichao.vision.reader import PlateReader, VisionConfig
from zhichao.vision.recognise import LineRecogniser
from zhichao.vision.runtime import (
    DETECTOR_CLP_DET,
    RECOGNISER_PLATE_CRNN,
    RECOGNISER_PPOCRV4_FUSED,
    ModelSpec,
    OnnxModel,
    native_bf16,
)

SPECS = (DETECTOR_CLP_DET, RECOGNISER_PPOCRV4_FUSED, RECOGNISER_PLATE_CRNN)


needs_bf16 = pytest.mark.skipif(
    not native_bf16(), reason="this CPU has no native bfloat16: OpenVINO runs float32 here"
)


@pytest.fixture(scope="module")
def inputs(reader: PlateReader, dev_dir: Path) -> dict[str, list[np.ndarray]]:
    """Real inputs of each model, from 6 dev scenes (toll and CCPD frames)."""
    names = sorted(p.name for p in dev_dir.glob("toll_*.jpg"))[:4]
    names += sorted(p.name for p in dev_dir.glob("ccpd_*.jpg"))[:2]
    out: dict[str, list[np.ndarray]] = {spec.filename: [] for spec in SPECS}
    out["lines"] = []  # PP-OCRv4's line images
    for name in names:
        image = load_image(dev_dir / name)
        scale = 512 / max(image.shape[:2])
        small = np.ascontiguousarray(
            image[:: max(1, round(1 / scale)), :: max(1, round(1 / scale))]
        )
        out[DETECTOR_CLP_DET.filename].append(input_tensor(small))
        (detection,) = reader.detector.detect(image)[:1]
        line = single_row_line(image, detection.corners_px, reader.config.rectify)
        rgb = line[:, :, ::-1].astype(np.float32) / 127.5 - 1.0
        out[RECOGNISER_PPOCRV4_FUSED.filename].append(rgb.transpose(2, 0, 1)[np.newaxis].copy())
        out["lines"].append(line)
        out[RECOGNISER_PLATE_CRNN.filename].append(
            to_tensor([plate_line(image, detection.corners_px, False)])
        )
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.filename)
def test_openvino_float32_computes_what_onnxruntime_does(
    spec: ModelSpec, inputs: dict[str, list[np.ndarray]]
) -> None:
    ort = OnnxModel(spec, backend="onnxruntime", precision="f32")
    ov = OnnxModel(spec, backend="openvino", precision="f32")
    for tensor in inputs[spec.filename]:
        for a, b in zip(ort.run(tensor), ov.run(tensor), strict=True):
            assert a.shape == b.shape and b.dtype == np.float32
            assert np.allclose(a, b, atol=2e-4, rtol=1e-4), float(np.abs(a - b).max())
    assert ov.precision == ort.precision == "f32"


@needs_bf16
def test_bfloat16_recogniser_reads_what_float32_does(
    inputs: dict[str, list[np.ndarray]],
) -> None:
    """bfloat16 keeps 8 bits of mantissa: probabilities move by a few hundredths at most
    on these lines, and the decoded plate stays the same."""
    ort = LineRecogniser(OnnxModel(RECOGNISER_PPOCRV4_FUSED, backend="onnxruntime"))
    ov = LineRecogniser(OnnxModel(RECOGNISER_PPOCRV4_FUSED, backend="openvino", precision="bf16"))
    for line in inputs["lines"]:
        (a,) = ort.recognise([line])
        (b,) = ov.recognise([line])
        assert float(np.abs(a - b).max()) < 0.1
        assert ctc.decode(a).text == ctc.decode(b).text
    assert ov.model.precision == "bf16"


def test_precision_used_is_reported() -> None:
    reader = PlateReader()
    assert reader.model_ids()["runtime"] is None
    reader.warm_up()
    runtime = reader.model_ids()["runtime"]
    assert runtime is not None and runtime.startswith("openvino ")
    assert runtime.endswith(" bf16" if native_bf16() else " f32")
    f32 = PlateReader(VisionConfig(inference_backend="onnxruntime", inference_precision="f32"))
    f32.warm_up()
    assert (f32.model_ids()["runtime"] or "").startswith("onnxruntime ")
    assert (f32.model_ids()["runtime"] or "").endswith(" f32")


def test_runs_from_several_threads_alike(inputs: dict[str, list[np.ndarray]]) -> None:
    """OpenVINO infer requests are not shareable between threads: each thread gets its own,
    and concurrent runs give what a run alone gives."""
    model = OnnxModel(DETECTOR_CLP_DET, backend="openvino")
    tensors = inputs[DETECTOR_CLP_DET.filename]
    alone = [model.run(t) for t in tensors]
    results: dict[tuple[int, int, int], list[np.ndarray]] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for round_no in range(3):
                for i, t in enumerate(tensors):
                    results[(worker, round_no, i)] = model.run(t)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4 * 3 * len(tensors)
    for (_, _, i), outputs in results.items():
        for a, b in zip(alone[i], outputs, strict=True):
            assert np.array_equal(a, b)


def test_metadata_is_the_same_from_both_runtimes() -> None:
    ov = OnnxModel(RECOGNISER_PPOCRV4_FUSED, backend="openvino").metadata()
    ort = OnnxModel(RECOGNISER_PPOCRV4_FUSED, backend="onnxruntime").metadata()
    assert ov == ort and len(ov["character"].splitlines()) > 6000


@pytest.mark.parametrize(
    ("field", "value"), [("inference_backend", "tensorrt"), ("inference_precision", "int8")]
)
def test_unknown_runtime_settings_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=value):
        PlateReader(VisionConfig(**{field: value}))  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
@pytest.mark.parametrize(
    "shape", [(1, 1, 32, 161), (1, 1, 48, 200), (1, 3, 32, 160), (1, 32, 160)], ids=str
)
def test_an_input_that_does_not_fit_is_refused(backend: str, shape: tuple[int, ...]) -> None:
    """OpenVINO itself answers a wrong-shaped input with empty outputs (and can crash the
    process on the next one): the wrapper refuses it, as onnxruntime does."""
    model = OnnxModel(RECOGNISER_PLATE_CRNN, backend=backend)
    with pytest.raises(ModelRuntimeError, match="inference failed"):
        model.run(np.zeros(shape, dtype=np.float32))
    with pytest.raises(ModelRuntimeError, match="float32"):
        model.run(np.zeros((1, 1, 32, 160), dtype=np.float64))
    (probs, province) = model.run(np.zeros((1, 1, 32, 160), dtype=np.float32))
    assert probs.shape == (1, 40, 74) and province.shape == (1, 32)


def test_one_thread_and_no_pinning_in_the_compiled_models() -> None:
    reader = PlateReader()
    reader.warm_up()
    for model in (reader.detector_model, reader.recogniser_model, reader.plate_model):
        compiled = model.session()
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
        assert compiled.get_property("ENABLE_CPU_PINNING") is False


def test_without_openvino_the_error_says_what_to_do() -> None:
    code = (
        "import sys\n"
        "sys.modules['openvino'] = None  # as if it were not installed\n"
        "from zhichao.vision.errors import ModelRuntimeError\n"
        "from zhichao.vision.runtime import DETECTOR_CLP_DET, OnnxModel\n"
        "try:\n"
        "    OnnxModel(DETECTOR_CLP_DET).session()\n"
        "except ModelRuntimeError as exc:\n"
        "    assert \"inference_backend='onnxruntime'\" in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        "OnnxModel(DETECTOR_CLP_DET, backend='onnxruntime').session()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
