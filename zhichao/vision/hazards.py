"""Synthetic hazards for stress-testing the accept policy on real frames.

Each hazard takes a real scene, the corners of its plate (top-left, top-right,
bottom-right, bottom-left, in frame pixels) and, where it needs one, a donor scene
with its plate corners, and returns a new frame and the label that frame now shows:

- :func:`paste_second_plate` — another real plate pasted beside the vehicle's own, as
  when a second vehicle is in view: the label stays; the policy must send it to review.
- :func:`downscale_to_width` — the whole frame shrunk so the plate is N px wide (a far
  or low-resolution camera): the label stays.
- :func:`swap_province` — the province character replaced by the donor plate's (a real
  glyph of another province): the label changes to the donor's province.
- :func:`blur_province` — the province character blurred beyond reading: the label stays,
  and no read of it may be accepted unless it is right.

The plate's character layout follows GA 36-2018 (440 mm single-row plate, province
character 45 mm wide starting 15.5 mm from the left edge).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from zhichao.vision.evaluate import LabelledImage, ReadImage
from zhichao.vision.image import ImageBGR

Corners = tuple[tuple[float, float], ...]

_CANON_W, _CANON_H = 440, 140
"""Canonical single-row plate, 1 px per mm (GA 36-2018: 440 x 140 mm)."""
_PROVINCE_X_MM = (10, 64)
"""The province character's columns on the canonical plate, with a little slack."""


def _homography(corners_px: Corners) -> npt.NDArray[np.float64]:
    """Canonical plate → frame."""
    src = np.array([[0, 0], [_CANON_W, 0], [_CANON_W, _CANON_H], [0, _CANON_H]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, np.array(corners_px, dtype=np.float32))
    return np.asarray(matrix, dtype=np.float64)


def _canonical(image: ImageBGR, corners_px: Corners) -> ImageBGR:
    matrix = np.linalg.inv(_homography(corners_px))
    out = cv2.warpPerspective(
        image, matrix, (_CANON_W, _CANON_H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.ascontiguousarray(out, dtype=np.uint8)


def _paste_canonical(
    image: ImageBGR, corners_px: Corners, canonical: ImageBGR, columns_mm: tuple[int, int]
) -> ImageBGR:
    """Warp ``canonical``'s columns back onto ``image`` at the plate ``corners_px``."""
    height, width = image.shape[:2]
    matrix = _homography(corners_px)
    mask = np.zeros((_CANON_H, _CANON_W), dtype=np.uint8)
    mask[:, columns_mm[0] : columns_mm[1]] = 255
    warped = cv2.warpPerspective(canonical, matrix, (width, height), flags=cv2.INTER_LINEAR)
    warped_mask = cv2.warpPerspective(mask, matrix, (width, height), flags=cv2.INTER_LINEAR)
    alpha = (warped_mask.astype(np.float32) / 255.0)[:, :, np.newaxis]
    out = image.astype(np.float32) * (1 - alpha) + warped.astype(np.float32) * alpha
    return np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))


def swap_province(
    image: ImageBGR, corners_px: Corners, donor: ImageBGR, donor_corners_px: Corners
) -> ImageBGR:
    """``image`` with its plate's province character replaced by the donor plate's.

    The donor's character is matched to the plate's mean colour and brightness per
    channel, so the seam is not a give-away. Use donors of the same plate colour.
    """
    plate = _canonical(image, corners_px).astype(np.float32)
    glyph = _canonical(donor, donor_corners_px).astype(np.float32)
    x0, x1 = _PROVINCE_X_MM
    region, donor_region = plate[:, x0:x1], glyph[:, x0:x1]
    scale = (region.std(axis=(0, 1)) + 1.0) / (donor_region.std(axis=(0, 1)) + 1.0)
    matched = (donor_region - donor_region.mean(axis=(0, 1))) * scale + region.mean(axis=(0, 1))
    plate[:, x0:x1] = matched
    canonical = np.ascontiguousarray(np.clip(plate, 0, 255).astype(np.uint8))
    return _paste_canonical(image, corners_px, canonical, _PROVINCE_X_MM)


def blur_province(image: ImageBGR, corners_px: Corners, kernel_px: int = 31) -> ImageBGR:
    """``image`` with its plate's province character blurred (Gaussian, on the 1 mm grid)."""
    plate = _canonical(image, corners_px)
    x0, x1 = _PROVINCE_X_MM
    plate[:, x0:x1] = cv2.GaussianBlur(plate[:, x0:x1], (kernel_px, kernel_px), 0)
    return _paste_canonical(image, corners_px, plate, _PROVINCE_X_MM)


def paste_second_plate(
    image: ImageBGR, corners_px: Corners, donor: ImageBGR, donor_corners_px: Corners
) -> ImageBGR:
    """``image`` with the donor's plate pasted at the same size beside the vehicle's plate.

    It goes one and a half plate widths to the side that has room (left or right), or
    above when neither has; the vehicle's own plate stays untouched.
    """
    width = image.shape[1]
    c = np.array(corners_px, dtype=np.float64)
    plate_w = float(c[:, 0].max() - c[:, 0].min())
    plate_h = float(c[:, 1].max() - c[:, 1].min())
    shift = np.array([1.5 * plate_w, 0.0])
    if c[:, 0].max() + shift[0] > width - 2:
        shift = -shift
    if c[:, 0].min() + shift[0] < 2:
        shift = np.array([0.0, -2.0 * plate_h])
        if c[:, 1].min() + shift[1] < 2:
            shift = -shift
    target = tuple((float(x), float(y)) for x, y in c + shift)
    canonical = _canonical(donor, donor_corners_px)
    return _paste_canonical(image, target, canonical, (0, _CANON_W))


def downscale_to_width(image: ImageBGR, corners_px: Corners, width_px: float) -> ImageBGR:
    """The whole frame shrunk (area interpolation) so the plate is ``width_px`` wide.

    A frame whose plate is already narrower is returned unchanged.
    """
    c = np.array(corners_px, dtype=np.float64)
    plate_w = float((np.linalg.norm(c[1] - c[0]) + np.linalg.norm(c[2] - c[3])) / 2)
    scale = width_px / max(plate_w, 1e-6)
    if scale >= 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small, dtype=np.uint8)


HAZARDS = ("second_plate", "province_swap", "province_blur", "small")
SMALL_WIDTHS_PX = (60, 70, 80, 90, 100, 110, 120, 130, 140)
"""Plate widths the ``small`` hazard cycles through, one per scene."""


def _corners(read: ReadImage) -> Corners | None:
    if not read.reads:
        return None
    if read.labelled.kind == "scene":
        return read.reads[0].detection.corners_px
    height, width = read.labelled.image.shape[:2] if read.labelled.image is not None else (0, 0)
    return ((0.0, 0.0), (float(width), 0.0), (float(width), float(height)), (0.0, float(height)))


def _derived(
    base: LabelledImage, hazard: str, image: ImageBGR, label: str | None = None
) -> LabelledImage:
    return LabelledImage(
        f"{base.file}+{hazard}", label or base.label, base.kind, base.colour, image
    )


def stress_images(
    reads: list[ReadImage], hazards: tuple[str, ...] = HAZARDS
) -> list[LabelledImage]:
    """The stress set: each hazard applied to each read image that has a plate.

    The plate's corners are those of the clean image's best detection (a crop's are its
    own corners). Donors are chosen deterministically: the next image in order with a
    different plate (``second_plate``), or of the same colour and another province
    (``province_swap``; images without such a donor are skipped). File names are
    ``<file>+<hazard>`` (``+small<width>`` for the downscales).
    """
    usable = [
        (r, c) for r in reads if r.labelled.image is not None and (c := _corners(r)) is not None
    ]
    out: list[LabelledImage] = []
    for i, (read, corners) in enumerate(usable):
        base = read.labelled
        assert base.image is not None
        later = usable[i + 1 :] + usable[:i]

        if "second_plate" in hazards and base.kind == "scene":
            donor = next((d for d in later if d[0].labelled.label != base.label), None)
            if donor is not None and donor[0].labelled.image is not None:
                image = paste_second_plate(base.image, corners, donor[0].labelled.image, donor[1])
                out.append(_derived(base, "second_plate", image))
        if "province_swap" in hazards:
            donor = next(
                (
                    d
                    for d in later
                    if d[0].labelled.colour == base.colour
                    and d[0].labelled.label[:1] != base.label[:1]
                ),
                None,
            )
            if donor is not None and donor[0].labelled.image is not None:
                image = swap_province(base.image, corners, donor[0].labelled.image, donor[1])
                label = donor[0].labelled.label[:1] + base.label[1:]
                out.append(_derived(base, "province_swap", image, label))
        if "province_blur" in hazards:
            out.append(_derived(base, "province_blur", blur_province(base.image, corners)))
        if "small" in hazards:
            width_px = SMALL_WIDTHS_PX[i % len(SMALL_WIDTHS_PX)]
            image = downscale_to_width(base.image, corners, width_px)
            out.append(_derived(base, f"small{width_px}", image))
    return out


def hazard_of(file: str) -> str:
    """The hazard a stress-set file name carries (``small`` for every downscale)."""
    hazard = file.rsplit("+", 1)[-1]
    return "small" if hazard.startswith("small") else hazard
