"""``zhichao devices probe`` against twins, and the backend registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.devices.conftest import START_UTC, make_samples
from tests.devices.test_devices_records import records
from zhichao.cli import main
from zhichao.devices.errors import DeviceNotAvailableError
from zhichao.devices.registry import guess_kind, open_device
from zhichao.devices.samples import StreamSampleSource
from zhichao.devices.twins.indicators import ModbusIndicatorTwin, truck_program
from zhichao.devices.twins.records import RecordLineTwin
from zhichao.devices.twins.samples import SampleStreamTwin


def test_registry() -> None:
    with open_device("samples", "tcp://127.0.0.1:9") as dev:
        assert isinstance(dev, StreamSampleSource)
    assert guess_kind("xk3190+serial:///dev/ttyS0") == "indicator"
    with pytest.raises(DeviceNotAvailableError):
        open_device("samples", "carrier-pigeon://x:1")


def test_probe_sample_stream(capsys: pytest.CaptureFixture[str]) -> None:
    with SampleStreamTwin(make_samples(5000, 8), 5000, START_UTC, speed=1) as twin:
        assert main(["devices", "probe", twin.url, "--listen-s", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "connected    yes" in out and "n_channels = 8" in out


def test_probe_modbus_indicator(capsys: pytest.CaptureFixture[str]) -> None:
    with ModbusIndicatorTwin(truck_program(1000.0)) as twin:
        assert main(["devices", "probe", twin.url, "--kind", "indicator",
                     "--listen-s", "0.3"]) == 0
    assert "weight" in capsys.readouterr().out


def test_probe_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "probe", "tcp://127.0.0.1:9", "--listen-s", "0.1"]) == 1
    assert "无法连接" in capsys.readouterr().out


def test_simulate_runs_for_a_while(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "simulate", "toledo", "--link", "pty", "--duration-s", "0.2"]) == 0
    assert "twin" in capsys.readouterr().out


def test_probe_record_source_and_camera(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path, plates_dev: Path) -> None:
    with RecordLineTwin(records(5), link="tcp", interval_s=0.05) as twin:
        assert main(["devices", "probe", twin.url, "--kind", "records",
                     "--listen-s", "0.6"]) == 0
    out = capsys.readouterr().out
    assert "record 1/0" in out and "records:" in out and "protocol = ZWR/1" in out
    for i, src in enumerate(sorted(plates_dev.glob("*.jpg"))[:2]):
        shutil.copy(src, tmp_path / f"{i}.jpg")
    assert guess_kind(f"folder://{tmp_path}") == "camera"
    assert main(["devices", "probe", f"folder://{tmp_path}", "--listen-s", "1"]) == 0
    out = capsys.readouterr().out
    assert "camera: 2 frames" in out and "frame 0" in out


def test_simulate_records_twin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "simulate", "records", "--link", "pty",
                 "--duration-s", "0.2"]) == 0
    assert "records twin" in capsys.readouterr().out


@pytest.mark.parametrize(("kind", "url", "unknown"), [
    ("samples", "tcp://127.0.0.1:9?stall_timeout_s=2&bogus=1", "bogus"),
    ("records", "modbus+tcp://127.0.0.1:9?kind=records&device_id=2&baudrate=9600", "baudrate"),
    ("indicator", "xk3190+tcp://127.0.0.1:9?baud_rate=9600", "baud_rate"),
    ("indicator", "modbus+tcp://127.0.0.1:9?map=zhichao&poll_interval=0.1", "poll_interval"),
    ("camera", "folder:///nonexistent?fps=5&frame_rate=5", "frame_rate"),
])
def test_unknown_url_settings_are_refused(kind: str, url: str, unknown: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A setting the backend does not read is an error naming it and what the backend
    does read, through the registry and through ``devices probe`` (exit 2, nothing
    opened); the same URL without it builds."""
    from zhichao.devices.errors import DeviceConfigurationError

    with pytest.raises(DeviceConfigurationError) as err:
        open_device(kind, url)
    assert f"unknown setting(s) {unknown} " in str(err.value)
    assert "this backend reads:" in str(err.value) and "无法识别" in str(err.value)
    assert main(["devices", "probe", url, "--kind", kind, "--listen-s", "0.1"]) == 2
    assert unknown in capsys.readouterr().out
    base, _, query = url.partition("?")
    kept = "&".join(kv for kv in query.split("&") if not kv.startswith(unknown + "="))
    open_device(kind, f"{base}?{kept}").close()


@pytest.mark.parametrize("url", [
    "rtsp://10.0.0.5:554/cam/realmonitor?channel=1&subtype=0",  # Dahua
    "rtsp://10.0.0.6/axis-media/media.amp?videocodec=h264",  # Axis
    "http://10.0.0.7/video.cgi?channel=1",
])
def test_a_network_cameras_own_query_is_passed_on(url: str) -> None:
    """The query of an rtsp/http camera URL is the camera's, not this backend's settings:
    the camera is built with the URL untouched (nothing refused, nothing dropped)."""
    camera = open_device("camera", url)
    try:
        assert camera.source == url  # type: ignore[attr-defined]
    finally:
        camera.close()
