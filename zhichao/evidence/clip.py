"""Video clips of a passage (全过程记录): H.264 video in an MP4 container.

Why H.264/MP4: it is the one codec and container that the default players of Windows
(Media Player / 电影和电视), macOS (QuickTime Player), Android, iOS and every current
browser play without anything installed, so a court's or an owner's computer plays the
clip as it is. The encoder is libx264 as shipped in PyAV's binary wheels (``av`` on
PyPI, which bundles FFmpeg); pixel format ``yuv420p`` (what those players require),
``+faststart`` (the index first, so a browser plays while it downloads).

A clip's frames keep their capture times: each frame's presentation time is its capture
time minus the clip's start, in milliseconds (a variable frame rate, so a camera that
dropped frames gives a clip with a gap, not a clip that runs fast). :func:`probe_clip`
decodes every frame of a clip; the package records what it found (frame count, duration,
size, codec) and ``zhichao verify`` decodes the clip again and compares.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zhichao.evidence.errors import ClipError

CLIP_MEDIA_TYPE = "video/mp4"
CLIP_CODEC = "h264"
CLIP_SUFFIX = ".mp4"
TIME_BASE = Fraction(1, 1000)  # presentation times in milliseconds
DEFAULT_CRF = 26  # x264 constant quality (lower: better and larger); measured in docs
DEFAULT_PRESET = "veryfast"
MAX_DECODE_FRAMES = 10_000  # a clip is seconds long; refuse to decode a feature film


@dataclass(frozen=True)
class ClipInfo:
    """What decoding a clip found."""

    codec: str
    width: int
    height: int
    frame_count: int
    duration_s: float

    def to_json(self) -> dict[str, Any]:
        return {"codec": self.codec, "width": self.width, "height": self.height,
                "frame_count": self.frame_count, "duration_s": self.duration_s}


def _av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency
        raise ClipError("PyAV (pip package 'av') is not installed: clips cannot be "
                        "encoded or decoded") from None
    return av


def _even(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """H.264 in 4:2:0 needs an even width and height: drop a last odd row/column."""
    h, w = image.shape[:2]
    return image[:h - h % 2, :w - w % 2]


def to_i420(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A BGR image as planar YUV 4:2:0 (I420, ``[h × 3/2, w]``; even size): half the
    bytes of BGR, and what the encoder takes without converting."""
    import cv2

    return np.asarray(cv2.cvtColor(_even(image), cv2.COLOR_BGR2YUV_I420), np.uint8)


def encode_clip(frames: Sequence[tuple[float, npt.NDArray[np.uint8]]], path: Path, *,
                fps: float, crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET,
                i420: bool = False) -> ClipInfo:
    """Write ``frames`` — (seconds from the clip's start, BGR image, or I420 from
    :func:`to_i420` with ``i420``) in time order — as an H.264/MP4 file at ``path``
    (written in place: the caller renames it into view).

    ``fps`` is the nominal rate (the encoder's rate control and the last frame's
    duration). BGR frames of another size than the first are resized to it; I420 frames
    must all have the first one's size.

    Raises
    ------
    ClipError
        No frames, times out of order, or the encoder failed.
    """
    if not frames:
        raise ClipError(f"{path.name}: no frames to encode")
    times = [t for t, _ in frames]
    if any(b <= a for a, b in zip(times, times[1:], strict=False)) or times[0] < 0:
        raise ClipError(f"{path.name}: frame times must start at >= 0 and increase")
    av = _av()
    first = frames[0][1] if i420 else _even(frames[0][1])
    height, width = first.shape[:2]
    if i420:
        height = height * 2 // 3
    if width < 16 or height < 16:
        raise ClipError(f"{path.name}: frames of {width}×{height} are too small")
    rate = Fraction(max(1, round(fps * 1000)), 1000)
    try:
        with av.open(str(path), "w", format="mp4",
                     options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = TIME_BASE  # frames keep their capture times (to the ms):
            stream.codec_context.time_base = TIME_BASE  # not rounded to 1 / fps
            stream.codec_context.options = {"preset": preset, "crf": str(crf),
                                            "threads": "1"}
            last_pts = -1
            for t, image in frames:
                vf = _video_frame(av, image, first.shape, (width, height), i420)
                pts = max(last_pts + 1, round(t * 1000))
                vf.pts, vf.time_base = pts, TIME_BASE
                last_pts = pts
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except (av.FFmpegError, ValueError, OSError) as exc:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise ClipError(f"{path.name}: encoding failed: {exc}") from exc
    return probe_clip(path.read_bytes(), where=path.name)


def _video_frame(av: Any, image: npt.NDArray[np.uint8], first_shape: tuple[int, ...],
                 size: tuple[int, int], i420: bool) -> Any:
    if i420:
        if image.shape != first_shape:
            raise ValueError(f"I420 frame {image.shape}, expected {first_shape}")
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="yuv420p")
    image = _even(image)
    if image.shape[:2] != (size[1], size[0]):
        import cv2
        image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")


def probe_clip(data: bytes, *, where: str = "clip") -> ClipInfo:
    """Decode every frame of an H.264/MP4 clip held in ``data``.

    Raises
    ------
    ClipError
        Not an MP4 with one H.264 video stream, a frame that does not decode, or no frame.
    """
    import io

    av = _av()
    try:
        with av.open(io.BytesIO(data), "r", format="mp4") as container:
            videos = container.streams.video
            if len(videos) != 1:
                raise ClipError(f"{where}: {len(videos)} video streams, expected 1")
            stream = videos[0]
            codec = str(stream.codec_context.name)
            if codec != CLIP_CODEC:
                raise ClipError(f"{where}: codec {codec}, expected {CLIP_CODEC}")
            stream.codec_context.options = {"threads": "1"}
            n = 0
            first_pts: int | None = None
            last_end = 0
            width = height = 0
            for frame in container.decode(stream):
                n += 1
                if n > MAX_DECODE_FRAMES:
                    raise ClipError(f"{where}: more than {MAX_DECODE_FRAMES} frames")
                width, height = int(frame.width), int(frame.height)
                pts = int(frame.pts or 0)
                first_pts = pts if first_pts is None else min(first_pts, pts)
                last_end = max(last_end, pts + int(frame.duration or 0))
            tb = stream.time_base or TIME_BASE
    except ClipError:
        raise
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise ClipError(f"{where}: does not decode as H.264/MP4: {exc}") from exc
    if n == 0 or first_pts is None:
        raise ClipError(f"{where}: no decodable frame")
    duration_s = round(float((last_end - first_pts) * tb), 3)
    return ClipInfo(codec, width, height, n, duration_s)


__all__ = ["CLIP_CODEC", "CLIP_MEDIA_TYPE", "CLIP_SUFFIX", "ClipError", "ClipInfo",
           "encode_clip", "probe_clip"]
