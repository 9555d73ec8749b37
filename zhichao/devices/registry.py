"""Backends by URL scheme: ``(kind, scheme) -> ("module", "Class")``, imported lazily.

``open_device(kind, url)`` picks the backend from the URL's scheme, imports its module only
then, and builds it with ``Class.from_url(url, **settings)``. An unknown scheme or a failed
import raises :class:`~zhichao.devices.errors.DeviceNotAvailableError`, never ImportError;
a malformed URL or setting raises :class:`~zhichao.devices.errors.DeviceConfigurationError`.

A WIM device is either a sample source (raw strip samples, weighed by zhichao's core) or a
record source (a vendor controller reporting finished vehicles). ``open_wim_device(url)``
opens either from one URL (``wim_kind`` tells which, see ``docs/devices.md``):

=================================================  =======  ==========================
URL                                                kind     backend
=================================================  =======  ==========================
``zsf+tcp://host:port``, ``tcp://host:port``        samples  ZSF/1 frames over TCP
``zsf+serial:///dev/ttyX``, ``serial:///dev/ttyX``  samples  ZSF/1 frames over serial
``modbus+tcp://host:502``, ``modbus+rtu:///dev/X``  samples  the Modbus sample ring
``zwr+tcp://host:port``                             records  ZWR/1 lines over TCP
``zwr+serial:///dev/ttyX``                          records  ZWR/1 lines over serial
``modbus+tcp://host:502?kind=records`` (or rtu)     records  the Modbus record ring
=================================================  =======  ==========================

``tcp://`` and ``serial://`` also take ``kind=records`` (ZWR/1). Nothing connects before
the first read (or ``open()``).
"""

from __future__ import annotations

import importlib
from typing import Any

from zhichao.devices.base import ASKED_SETTINGS, Device, parse_device_url
from zhichao.devices.errors import DeviceConfigurationError, DeviceNotAvailableError

_I = "zhichao.devices.interfaces."
BACKENDS: dict[tuple[str, str], tuple[str, str]] = {
    ("samples", "zsf+tcp"): (_I + "zsf_stream", "StreamSampleSource"),
    ("samples", "zsf+serial"): (_I + "zsf_stream", "StreamSampleSource"),
    ("samples", "tcp"): (_I + "zsf_stream", "StreamSampleSource"),
    ("samples", "serial"): (_I + "zsf_stream", "StreamSampleSource"),
    ("samples", "modbus+tcp"): (_I + "modbus_samples", "ModbusSampleSource"),
    ("samples", "modbus+rtu"): (_I + "modbus_samples", "ModbusSampleSource"),
    ("indicator", "xk3190+serial"): (_I + "stream_indicator", "StreamIndicator"),
    ("indicator", "xk3190+tcp"): (_I + "stream_indicator", "StreamIndicator"),
    ("indicator", "toledo+serial"): (_I + "stream_indicator", "StreamIndicator"),
    ("indicator", "toledo+tcp"): (_I + "stream_indicator", "StreamIndicator"),
    ("indicator", "modbus+tcp"): (_I + "modbus_indicator", "ModbusIndicator"),
    ("indicator", "modbus+rtu"): (_I + "modbus_indicator", "ModbusIndicator"),
    ("records", "zwr+tcp"): (_I + "zwr_stream", "StreamRecordSource"),
    ("records", "zwr+serial"): (_I + "zwr_stream", "StreamRecordSource"),
    ("records", "tcp"): (_I + "zwr_stream", "StreamRecordSource"),
    ("records", "serial"): (_I + "zwr_stream", "StreamRecordSource"),
    ("records", "modbus+tcp"): (_I + "modbus_records", "ModbusRecordSource"),
    ("records", "modbus+rtu"): (_I + "modbus_records", "ModbusRecordSource"),
    ("camera", "folder"): (_I + "folder_camera", "FolderCamera"),
    ("camera", "file"): (_I + "video_capture", "VideoCaptureCamera"),
    ("camera", "rtsp"): (_I + "video_capture", "VideoCaptureCamera"),
    ("camera", "rtsps"): (_I + "video_capture", "VideoCaptureCamera"),
    ("camera", "usb"): (_I + "video_capture", "VideoCaptureCamera"),
    ("camera", "http"): (_I + "video_capture", "VideoCaptureCamera"),  # MJPEG over HTTP
    ("camera", "https"): (_I + "video_capture", "VideoCaptureCamera"),
    ("camera", "sim"): (_I + "sim_camera", "SimulatedCamera"),
}
KINDS: tuple[str, ...] = ("samples", "records", "indicator", "camera")
#: the kinds a station's WIM device (``wim.url``) can be
WIM_KINDS: tuple[str, ...] = ("samples", "records")


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


#: query settings the registry itself reads (to choose the kind), not the backend
REGISTRY_SETTINGS: tuple[str, ...] = ("kind",)


def open_device(kind: str, url: str, **settings: Any) -> Device:
    """Build (not yet connect) the device for ``url``; drivers connect on first read.

    A query setting that the backend does not read (a typo such as ``baud=9600``, or a
    setting of another backend) is refused with :class:`DeviceConfigurationError`, naming
    the settings this backend does read: a setting silently ignored is a device configured
    other than the operator believes. A network camera's query (``rtsp://…?channel=1``)
    is the camera's own and is passed on (``QUERY_PASSES_THROUGH``)."""
    cls = backend_class(kind, url)
    parsed = parse_device_url(url)
    asked: set[str] = set()
    token = ASKED_SETTINGS.set(asked)
    try:
        device: Device = cls.from_url(parsed, **settings)  # type: ignore[attr-defined]
    finally:
        ASKED_SETTINGS.reset(token)
    unknown = sorted(set(parsed.query) - asked - set(REGISTRY_SETTINGS))
    if unknown and parsed.scheme not in cls.QUERY_PASSES_THROUGH:
        device.close()
        known = sorted(asked) or ["(none)"]
        raise DeviceConfigurationError(
            f"{url}: unknown setting(s) {', '.join(unknown)} for a {kind} device over "
            f"{parsed.scheme}:// 设备地址含无法识别的参数 (this backend reads: "
            f"{', '.join(known)}; docs/devices.md)")
    return device


def guess_kind(url: str) -> str:
    """``samples`` unless the scheme only exists for another kind (``xk3190+…``,
    ``zwr+…``, ``folder://``, ``rtsp://`` …), a ``kind=`` query says otherwise, or a
    Modbus URL names an indicator register ``map=``."""
    parsed = parse_device_url(url)
    if "kind" in parsed.query:
        return parsed.query["kind"]
    if "map" in parsed.query and ("indicator", parsed.scheme) in BACKENDS:
        return "indicator"
    kinds = [k for k, s in BACKENDS if s == parsed.scheme]
    return kinds[0] if kinds else "samples"


def wim_kind(url: str) -> str:
    """``samples`` or ``records`` for a WIM device URL (see the module docstring); raises
    :class:`DeviceConfigurationError` for a URL that names no WIM device."""
    kind = guess_kind(url)
    if kind not in WIM_KINDS:
        raise DeviceConfigurationError(
            f"{url}: not a WIM device URL ({kind}) 不是称重设备地址; expected one of "
            + ", ".join(sorted({s for k, s in BACKENDS if k in WIM_KINDS}))
            + " (kind=records for a record controller on tcp://, serial:// or modbus+…)")
    return kind


def open_wim_device(url: str, **settings: Any) -> Device:
    """Build (not yet connect) the WIM device of ``url``: a
    :class:`~zhichao.devices.sample_source.SampleSource` or a
    :class:`~zhichao.devices.record_source.RecordSource`. Raises
    :class:`DeviceConfigurationError` (bad URL or setting) or
    :class:`DeviceNotAvailableError` (unknown scheme)."""
    return open_device(wim_kind(url), url, **settings)
