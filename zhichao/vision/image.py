"""Reading frames safely: sniff the format, check the size in the header, then decode.

A lane camera, a file share or an owner's upload can hand us anything: an empty
file, an HTML error page, a JPEG cut off mid-transfer or a 20 000 × 20 000 px
bomb. Each becomes a specific :class:`~zhichao.vision.errors.ImageError` naming
the file. JPEG, PNG and BMP sizes are read from the header, so the decoder never
sees one larger than the configured limits; WebP and TIFF are checked after
decoding (OpenCV's own 2^30-pixel cap applies before that).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from zhichao.vision.errors import (
    EmptyImageError,
    ImageDecodeError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
)

ImageBGR = npt.NDArray[np.uint8]
"""An OpenCV colour image: ``uint8`` array of shape (height_px, width_px, 3), BGR order."""

_JPEG_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD})


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Largest image accepted, checked from the header before decoding."""

    max_pixels: int = 50_000_000
    max_side_px: int = 12_000


DEFAULT_LIMITS = ImageLimits()


def sniff_format(data: bytes) -> str | None:
    """Return ``"jpeg"``, ``"png"``, ``"bmp"``, ``"webp"``, ``"tiff"`` or None from magic bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width_px, height_px) from the first SOF segment, or None if not found."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF_MARKERS and i + 9 <= n:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        if marker == 0xDA:  # start of scan before any SOF
            return None
        i += 2 + length
    return None


def _header_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    if fmt == "jpeg":
        return _jpeg_size(data)
    if fmt == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if fmt == "bmp" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(int(width)), abs(int(height))
    return None


def _check_complete(fmt: str, data: bytes, source: str) -> None:
    if fmt == "jpeg":
        # The EOI marker ends every complete JPEG; some cameras append a little data after
        # it. Inside entropy-coded data 0xFF is byte-stuffed, so FFD9 there is a real marker.
        if b"\xff\xd9" not in data[-1024:]:
            raise TruncatedImageError(source, "JPEG has no end-of-image marker (file truncated)")
    elif fmt == "png" and b"IEND" not in data[-32:]:
        raise TruncatedImageError(source, "PNG has no IEND chunk (file truncated)")


def _check_size(width_px: int, height_px: int, source: str, limits: ImageLimits) -> None:
    if width_px <= 0 or height_px <= 0:
        raise EmptyImageError(source, f"image is {width_px}×{height_px} px (zero size)")
    if max(width_px, height_px) > limits.max_side_px or width_px * height_px > limits.max_pixels:
        raise ImageTooLargeError(
            source,
            f"image is {width_px}×{height_px} px; limit is {limits.max_side_px} px per side "
            f"and {limits.max_pixels} px in all",
        )


def decode_image(data: bytes, source: str, limits: ImageLimits = DEFAULT_LIMITS) -> ImageBGR:
    """Decode encoded image bytes to a BGR array.

    Raises
    ------
    EmptyImageError, NotAnImageError, TruncatedImageError, ImageTooLargeError, ImageDecodeError
    """
    if len(data) == 0:
        raise EmptyImageError(source, "file is empty (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise NotAnImageError(source, "not an image (no JPEG/PNG/BMP/WebP/TIFF signature)")
    size = _header_size(fmt, data)
    if size is not None:
        _check_size(size[0], size[1], source, limits)
    _check_complete(fmt, data, source)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError(source, f"decoder failed: {exc}") from exc
    if image is None:
        raise ImageDecodeError(source, f"{fmt.upper()} could not be decoded (corrupt data)")
    _check_size(int(image.shape[1]), int(image.shape[0]), source, limits)
    return np.ascontiguousarray(image, dtype=np.uint8)


def load_image(path: str | Path, limits: ImageLimits = DEFAULT_LIMITS) -> ImageBGR:
    """Read and decode an image file (see :func:`decode_image` for what it raises)."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError as exc:
        raise ImageDecodeError(source, "is a directory, not an image file") from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError(source, "no such file") from exc
    except OSError as exc:
        raise ImageDecodeError(source, f"cannot be read: {exc.strerror or exc}") from exc
    return decode_image(data, source, limits)


def check_array(image: object, source: str, limits: ImageLimits = DEFAULT_LIMITS) -> ImageBGR:
    """Validate an in-memory frame and return it as a contiguous BGR ``uint8`` array.

    Grey (H, W) and BGRA (H, W, 4) frames are converted to BGR.
    """
    if not isinstance(image, np.ndarray):
        raise NotAnImageError(source, f"expected a numpy image array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageDecodeError(source, f"expected dtype uint8, got {image.dtype}")
    if image.ndim == 2:
        _check_size(int(image.shape[1]), int(image.shape[0]), source, limits)
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageDecodeError(source, f"expected shape (H, W, 3), got {image.shape}")
    _check_size(int(image.shape[1]), int(image.shape[0]), source, limits)
    if image.shape[2] == 4:
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    return np.ascontiguousarray(image, dtype=np.uint8)
