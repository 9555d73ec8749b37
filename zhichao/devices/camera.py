"""Cameras: the names of the camera kind and its backends, in one place.

The code lives in the kind (:mod:`zhichao.devices.camera_source`: ``Camera``, its frames and
the trigger API) and one module per backend (:mod:`zhichao.devices.interfaces.folder_camera`,
:mod:`~zhichao.devices.interfaces.video_capture`, :mod:`~zhichao.devices.interfaces.sim_camera`);
this module re-exports them so that ``from zhichao.devices.camera import Camera`` keeps
working.
"""

from __future__ import annotations

from zhichao.devices.camera_source import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    Camera,
    CameraFrame,
    EndOfStream,
    TriggeredFrame,
)
from zhichao.devices.interfaces.folder_camera import FolderCamera
from zhichao.devices.interfaces.sim_camera import SimulatedCamera
from zhichao.devices.interfaces.video_capture import VideoCaptureCamera

__all__ = [
    "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "Camera", "CameraFrame", "EndOfStream",
    "FolderCamera", "SimulatedCamera", "TriggeredFrame", "VideoCaptureCamera",
]
