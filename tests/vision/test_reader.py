"""Real models on real dev images: geometry, layout, colour and the double-row path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from zhichao.vision.detect import Detection
from zhichao.vision.image import load_image
from zhichao.vision.plate_image import Layout, PlateColour, warp
from zhichao.vision.reader import PlateReader


def test_yellow_truck_plate_scene(reader: PlateReader, dev_dir: Path) -> None:
    image = load_image(dev_dir / "toll_0004.jpg")
    height_px, width_px = image.shape[:2]
    best = reader.read_image(image)[0]
    assert best.text == "沪B74992"
    assert best.colour is PlateColour.YELLOW
    assert best.layout is Layout.SINGLE
    x1, y1, x2, y2 = best.box_px
    assert 0 <= x1 < x2 <= width_px and 0 <= y1 < y2 <= height_px
    assert len(best.char_confidences) == 7


def test_green_new_energy_plate(reader: PlateReader, dev_dir: Path) -> None:
    best = reader.read_path(dev_dir / "ccpd_0006.jpg")[0]
    assert best.text == "皖AF05568"
    assert best.kind == "nev_small"
    assert best.colour is PlateColour.GREEN


def test_large_frames_are_downscaled_before_detection(reader: PlateReader, dev_dir: Path) -> None:
    image = load_image(dev_dir / "toll_0001.jpg")  # 650 x 580
    big = cv2.resize(image, None, fx=3.0, fy=3.0, interpolation=cv2.INTER_CUBIC)  # 1950 x 1740
    small_box = reader.read_image(image)[0].box_px
    best = reader.read_image(big)[0]
    assert best.text == "川QEZ982"
    # coordinates come back in the big frame's pixels
    assert abs(best.box_px[0] - 3 * small_box[0]) < 15
    assert abs(best.box_px[2] - 3 * small_box[2]) < 15


def test_crop_is_read_without_detection(reader: PlateReader, dev_dir: Path) -> None:
    assert reader.read_crop_path(dev_dir / "lprnet_0001.jpg").text is not None


def _double_row_from_single(
    image: np.ndarray, corners: tuple[tuple[float, float], ...]
) -> np.ndarray:
    """Re-lay a real single-row plate as a 440 x 220 double-row plate (2 chars over 5)."""
    plate = warp(image, corners, 440, 140, 0.0, 0.0)
    canvas = np.full((220, 440, 3), plate[5:15, 5:15].mean(axis=(0, 1)), dtype=np.uint8)
    top = cv2.resize(plate[:, :125], (190, 85))  # province + letter
    bottom = cv2.resize(plate[:, 135:], (420, 125))  # five serial characters
    canvas[5:90, 125:315] = top
    canvas[90:215, 10:430] = bottom
    return canvas


def test_double_row_layout_is_split_and_read(reader: PlateReader, dev_dir: Path) -> None:
    """Built from a real plate's pixels; no real double-row plate is in the dev set."""
    image = load_image(dev_dir / "toll_0004.jpg")
    single = reader.read_image(image)[0]
    plate = _double_row_from_single(image, single.detection.corners_px)
    frame = np.full((400, 700, 3), 90, dtype=np.uint8)
    frame[100:320, 130:570] = plate
    corners = ((130.0, 100.0), (570.0, 100.0), (570.0, 320.0), (130.0, 320.0))
    detection = Detection((130.0, 100.0, 570.0, 320.0), corners, 1.0)
    read = reader.read_detections(frame, [detection])[0]
    assert read.layout is Layout.DOUBLE
    assert read.text == "沪B74992"
    assert len(read.line_images) == 2


def test_compiled_decoding_equals_the_reference_on_real_recogniser_output(
    reader: PlateReader, dev_dir: Path
) -> None:
    """Both recognisers' real outputs on dev images decode identically with the compiled
    kernels and the plain-Python reference (texts, alternatives, every probability)."""
    from zhichao.vision import ctc
    from zhichao.vision.grammar import TEMPLATES, split_templates
    from zhichao.vision.plate_image import double_row_lines, single_row_line
    from zhichao.vision.plate_lines import plate_line

    tops, bottoms = split_templates(TEMPLATES)
    files = ["toll_0001.jpg", "toll_0004.jpg", "toll_0075.jpg", "ccpd_0005.jpg", "ccpd_0006.jpg"]
    decoded = 0
    for name in files:
        image = load_image(dev_dir / name)
        for detection in reader.detector.detect(image):
            corners = detection.corners_px
            line = single_row_line(image, corners, reader.config.rectify)
            top, bottom = double_row_lines(image, corners, reader.config.rectify)
            cases = [(probs, TEMPLATES, 12) for probs in reader.recogniser.recognise([line])]
            top_probs, bottom_probs = reader.recogniser.recognise([top, bottom])
            cases += [(top_probs, tops, 12), (bottom_probs, bottoms, 12)]
            for double in (False, True):
                ((probs, _),) = reader.second_recogniser.run([plate_line(image, corners, double)])
                cases.append((probs, TEMPLATES, 8))
            for probs, templates, beam in cases:
                fast = ctc.decode(probs, templates, beam)
                assert fast == ctc.decode_reference(probs, templates, beam)
                if fast.text:
                    text = fast.text
                    assert ctc.char_probabilities(probs, text) == (
                        ctc.char_probabilities_reference(probs, text)
                    )
                decoded += 1
    assert decoded >= 5 * len(files)


def test_detector_input_tensor_is_the_mean_subtracted_nchw_frame() -> None:
    from zhichao.vision.detect import _MEAN_BGR, input_tensor

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    for frame in (image, image[:, ::-1], image[5:30, 7:40]):
        expected = (frame.astype(np.float32) - _MEAN_BGR).transpose(2, 0, 1)[np.newaxis]
        tensor = input_tensor(frame)
        assert tensor.dtype == np.float32 and tensor.flags.c_contiguous
        assert np.array_equal(tensor, expected)


def test_two_stage_detection_reads_the_plate_in_frame_coordinates(
    reader: PlateReader, dev_dir: Path
) -> None:
    """The optional two-stage detector (coarse pass, then a crop per plate) returns boxes and
    corners in the frame's pixels, near the one-stage ones, and the same read."""
    from dataclasses import replace

    from zhichao.vision.reader import VisionConfig

    image = load_image(dev_dir / "toll_0004.jpg")
    one = reader.read_image(image)[0]
    config = VisionConfig()
    two_stage = PlateReader(replace(config, detector=replace(config.detector, coarse_side_px=320)))
    two = two_stage.read_image(image)[0]
    assert two.text == one.text == "沪B74992"
    assert all(abs(a - b) < 8 for a, b in zip(two.box_px, one.box_px, strict=True))
    for (xa, ya), (xb, yb) in zip(two.detection.corners_px, one.detection.corners_px, strict=True):
        assert abs(xa - xb) < 8 and abs(ya - yb) < 8


def test_detector_settings_refuse_an_unknown_resize_method() -> None:
    import pytest

    from zhichao.vision.detect import DetectorSettings

    assert DetectorSettings(resize_interpolation="linear").resize_interpolation == "linear"
    with pytest.raises(ValueError, match="resize_interpolation"):
        DetectorSettings(resize_interpolation="cubic")


def _double_plate(shift_px: int = 0) -> np.ndarray:
    """A 440 × 220 yellow double-row plate with dark strokes (box outlines) where GA 36 puts
    its characters, moved up by ``shift_px`` (corners that cut the plate's top; negative:
    corners that reach above it, a dark margin above the plate)."""
    from zhichao.vision.plate_image import GA36_DOUBLE_BOXES_MM

    up, down = max(shift_px, 0), max(-shift_px, 0)
    plate = np.full((220 + up, 440, 3), (0, 200, 240), dtype=np.uint8)
    for x, y, w, h in GA36_DOUBLE_BOXES_MM:
        cv2.rectangle(plate, (int(x), int(y)), (int(x + w), int(y + h)), (20, 20, 20), 8)
    plate = plate[up:up + 220 - down]
    margin = np.full((down, 440, 3), (0, 200, 240), dtype=np.uint8)  # plate-coloured: no ink
    return np.ascontiguousarray(np.concatenate([margin, plate]))


def test_the_rows_of_a_double_row_plate_are_split_at_the_gap_between_them() -> None:
    from zhichao.vision.plate_image import (
        DOUBLE_BOTTOM_FIXED_ROWS,
        DOUBLE_TOP_FIXED_ROWS,
        GA36_DOUBLE_BOXES_MM,
        GA36_SINGLE_BOXES_MM,
        double_row_split,
    )

    top_end = GA36_DOUBLE_BOXES_MM[0][1] + GA36_DOUBLE_BOXES_MM[0][3]  # 75 mm
    bottom_start = GA36_DOUBLE_BOXES_MM[2][1]  # 90 mm
    (t0, t1), (b0, b1) = double_row_split(_double_plate())
    assert t0 == 0 and top_end <= t1 == b0 <= bottom_start and b1 == 220
    # corners that cut 25 px off the top: the fixed split (to 88) would take the bottom
    # row's tops into the top line; the gap moves with the rows
    (t0, t1), (b0, b1) = double_row_split(_double_plate(25))
    assert top_end - 25 <= t1 == b0 <= bottom_start - 25
    assert DOUBLE_TOP_FIXED_ROWS[1] > bottom_start - 25
    # no ink-free row where the gap would be (a single-row plate, or nothing at all): the
    # fixed GA 36 proportions
    single = np.full((220, 440, 3), (0, 200, 240), dtype=np.uint8)
    for x, _y, w, _h in GA36_SINGLE_BOXES_MM:
        cv2.rectangle(single, (int(x), 30), (int(x + w), 190), (20, 20, 20), 8)
    fixed = (DOUBLE_TOP_FIXED_ROWS, DOUBLE_BOTTOM_FIXED_ROWS)
    assert double_row_split(single) == fixed
    assert double_row_split(np.full((220, 440, 3), 200, dtype=np.uint8)) == fixed
    # light characters on a dark plate: the characters are still the minority
    assert double_row_split(255 - _double_plate(25)) == double_row_split(_double_plate(25))
    # corners reaching 40 px above the plate: the empty margin above the top row is no gap
    (t0, t1), (b0, b1) = double_row_split(_double_plate(-40))
    assert top_end + 40 <= t1 == b0 <= bottom_start + 40
    with pytest.raises(ValueError, match="440, 220"):
        double_row_split(np.zeros((110, 220, 3), dtype=np.uint8))
