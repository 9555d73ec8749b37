"""Backends by URL scheme: ``(kind, scheme) -> ("module", "Class")``, imported lazily.

``open_device(kind, url)`` picks the backend from the URL's scheme, imports its module only
then, and builds it with ``Class.from_url(url, **settings)``. An unknown scheme or a failed
import raises :class:`~zhichao.devices.errors.DeviceNotAvailableError`, never ImportError.
"""

from __future__ import annotations

import importlib
from typing import Any

from zhichao.devices.base import Device, parse_device_url
from zhichao.devices.errors import DeviceNotAvailableError

BACKENDS: dict[tuple[str, str], tuple[str, str]] = {
    ("samples", "tcp"): ("zhichao.devices.samples", "StreamSampleSource"),
    ("samples", "serial"): ("zhichao.devices.samples", "StreamSampleSource"),
    ("samples", "modbus+tcp"): ("zhichao.devices.samples", "ModbusSampleSource"),
    ("samples", "modbus+rtu"): ("zhichao.devices.samples", "ModbusSampleSource"),
    ("indicator", "xk3190+serial"): ("zhichao.devices.indicators", "StreamIndicator"),
    ("indicator", "xk3190+tcp"): ("zhichao.devices.indicators", "StreamIndicator"),
    ("indicator", "toledo+serial"): ("zhichao.devices.indicators", "StreamIndicator"),
    ("indicator", "toledo+tcp"): ("zhichao.devices.indicators", "StreamIndicator"),
    ("indicator", "modbus+tcp"): ("zhichao.devices.indicators", "ModbusIndicator"),
    ("indicator", "modbus+rtu"): ("zhichao.devices.indicators", "ModbusIndicator"),
    ("records", "tcp"): ("zhichao.devices.records", "StreamRecordSource"),
    ("records", "serial"): ("zhichao.devices.records", "StreamRecordSource"),
    ("records", "modbus+tcp"): ("zhichao.devices.records", "ModbusRecordSource"),
    ("records", "modbus+rtu"): ("zhichao.devices.records", "ModbusRecordSource"),
    ("camera", "folder"): ("zhichao.devices.camera", "FolderCamera"),
    ("camera", "file"): ("zhichao.devices.camera", "VideoCaptureCamera"),
    ("camera", "rtsp"): ("zhichao.devices.camera", "VideoCaptureCamera"),
    ("camera", "rtsps"): ("zhichao.devices.camera", "VideoCaptureCamera"),
    ("camera", "usb"): ("zhichao.devices.camera", "VideoCaptureCamera"),
    ("camera", "sim"): ("zhichao.devices.camera", "SimulatedCamera"),
}
KINDS: tuple[str, ...] = ("samples", "records", "indicator", "camera")


def backend_class(kind: str, url: str) -> type[Device]:
    scheme = parse_device_url(url).scheme
    try:
        module_name, class_name = BACKENDS[(kind, scheme)]
    except KeyError:
        known = sorted(s for k, s in BACKENDS if k == kind)
        raise DeviceNotAvailableError(
            f"no {kind} backend for scheme {scheme!r} (known: {', '.join(known)})") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DeviceNotAvailableError(
            f"cannot import {module_name} for {kind} backend {scheme!r}: {exc}") from None
    cls: type[Device] = getattr(module, class_name)
    return cls


def open_device(kind: str, url: str, **settings: Any) -> Device:
    """Build (not yet connect) the device for ``url``; drivers connect on first read."""
    cls = backend_class(kind, url)
    device: Device = cls.from_url(url, **settings)  # type: ignore[attr-defined]
    return device


def guess_kind(url: str) -> str:
    """``samples`` unless the scheme only exists for another kind (``xk3190+…``,
    ``toledo+…``, ``folder://``, ``rtsp://`` …) or a ``kind=`` query says otherwise."""
    parsed = parse_device_url(url)
    if "kind" in parsed.query:
        return parsed.query["kind"]
    kinds = [k for k, s in BACKENDS if s == parsed.scheme]
    return kinds[0] if kinds else "samples"
