"""station.toml: defaults, the shipped example, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zhichao.station.config import EXAMPLE_CONFIG, load_config, parse_config
from zhichao.station.errors import StationConfigError


def test_embedded_defaults_and_example_are_valid() -> None:
    cfg = load_config(None)
    assert cfg.simulated and len(cfg.cameras) == 3
    example = load_config(EXAMPLE_CONFIG)
    assert example.station.station_id
    assert not example.simulated  # the example describes a real lane


@pytest.mark.parametrize(("raw", "key", "problem"), [
    ({"station": {"statoin_id": "X"}}, "station.statoin_id", "unknown key"),
    ({"wim": {"sensor": {"rows_x_m": [0.0, 3.0, 2.0]}}}, "wim.sensor.rows_x_m", "increase"),
    ({"wim": {"read_timeout_s": "fast"}}, "wim.read_timeout_s", "expected a number"),
    ({"wim": {"url": "http://x"}}, "wim.url", "WIM device URL"),
    ({"camera": [{"role": "top"}]}, "camera[0].role", "one of"),
    ({"camera": [{"camera_id": "C" * 65, "role": "front", "spool_dir": "s"}]},
     "camera[0].camera_id", "at most 64"),
    ({"camera": [{"camera_id": "a/b", "role": "front", "spool_dir": "s"}]},
     "camera[0].camera_id", "no '/'"),
    ({"site": {"published_utc": "2025-06-01 00:00"}}, "site.published_utc", "UTC offset"),
    ({"vision": {"read": "some"}}, "vision.read", "candidates"),
    ({"vision": {"inference_backend": "tensorrt"}}, "vision.inference_backend", "onnxruntime"),
    ({"vision": {"inference_precision": "int8"}}, "vision.inference_precision", "f32"),
    ({"device": {"legal_review_date": "10/05/2025"}}, "device.legal_review_date", "YYYY"),
    ({"station": {"center_url": "http://127.0.0.1:9"}}, "station.center_key_file", "required"),
    ({"station": {"center_key_file": "c.pub"}}, "station.center_key_file", "only used"),
    ({"station": {"center_url": "http://h", "center_key_file": "/nonexistent/c.pub"}},
     "station.center_key_file", "does not exist"),
    ({"station": {"upload_max_delay_s": 0.0}}, "station.upload_max_delay_s", "within"),
])
def test_errors_name_the_key(raw: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(StationConfigError) as info:
        parse_config(raw)
    assert key in str(info.value) and problem in str(info.value)


def test_the_example_names_every_vision_key_and_a_runtime_is_read() -> None:
    import dataclasses
    import tomllib

    from zhichao.station.config_sections import VisionSection

    example = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    assert set(example["vision"]) == {f.name for f in dataclasses.fields(VisionSection)}
    vision = parse_config(
        {"vision": {"inference_backend": "onnxruntime", "inference_precision": "f32"}}
    ).vision
    assert (vision.inference_backend, vision.inference_precision) == ("onnxruntime", "f32")
    assert load_config(None).vision.inference_backend == "openvino"


def _camera(**keys: object) -> dict[str, object]:
    return {"camera": [{"camera_id": "C1", "role": "front", "spool_dir": "s", **keys}]}


@pytest.mark.parametrize(("region", "problem"), [
    ([0.1, 0.2, 0.9], "4 numbers"),
    ([0.1, 0.2, 0.9, 0.8, 1.0], "4 numbers"),
    ([0.6, 0.2, 0.4, 0.9], "left < right"),
    ([0.1, 0.9, 0.9, 0.9], "top < bottom"),
    ([-0.1, 0.2, 0.9, 0.9], "0 <= left"),
    ([0.1, 0.2, 1.2, 0.9], "right <= 1"),
])
def test_a_bad_lane_region_is_refused(region: list[float], problem: str) -> None:
    with pytest.raises(StationConfigError) as info:
        parse_config(_camera(lane_region=region))
    assert "camera[0].lane_region" in str(info.value)
    assert str(region) in str(info.value)
    assert all(word in str(info.value) for word in problem.split())


def test_a_lane_region_is_read() -> None:
    cfg = parse_config(_camera(lane_region=[0.25, 0.5, 0.75, 1]))
    assert cfg.cameras[0].lane_region == (0.25, 0.5, 0.75, 1.0)
    assert parse_config(_camera()).cameras[0].lane_region == ()  # the whole frame
    with pytest.raises(StationConfigError, match=r"camera\[0\]\.lane_region\[1\]: expected a "
                                                  "number"):
        parse_config(_camera(lane_region=[0.1, "top", 0.9, 0.9]))


def test_center_key_file_must_be_a_public_key(tmp_path: Path) -> None:
    from zhichao.evidence.signing import generate_key, private_pem, public_pem

    key = generate_key()
    (tmp_path / "center.pub").write_bytes(public_pem(key.public_key()))
    (tmp_path / "private.pem").write_bytes(private_pem(key))
    raw = {"station": {"center_url": "http://127.0.0.1:9", "center_key_file": "center.pub"}}
    assert parse_config(raw, tmp_path).station.center_key_file == "center.pub"
    raw["station"]["center_key_file"] = "private.pem"
    with pytest.raises(StationConfigError) as info:
        parse_config(raw, tmp_path)
    assert "station.center_key_file" in str(info.value) and "public key" in str(info.value)


def test_config_check_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[lane]\nlane_id = ""\n', encoding="utf-8")
    ok = subprocess.run([sys.executable, "-m", "zhichao", "config", "check", str(EXAMPLE_CONFIG)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "配置有效" in ok.stdout
    res = subprocess.run([sys.executable, "-m", "zhichao", "config", "check", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "lane.lane_id" in res.stderr


def test_a_real_device_never_gets_the_simulated_certificate(tmp_path: Path) -> None:
    """The embedded [device] record is the simulated lane's (SIM-CERT-0001, both reviews
    approved); a station with a real WIM device that station.toml does not describe has no
    certificate and no approvals, so the evidence gate refuses its cases until they are
    given (a review found a Modbus lane sealing with the simulated certificate)."""
    from zhichao.station.device import device_from_config

    real = parse_config({"wim": {"url": "modbus+tcp://10.0.0.5:502"}}, tmp_path)
    device = device_from_config(real)
    assert device.certificates == [] and not device.technical_review_approved
    assert not device.legal_review_approved and real.device.accuracy_class == ""
    given = parse_config({"wim": {"url": "modbus+tcp://10.0.0.5:502"},
                          "device": {"device_id": "WIM-ZJ-0007", "accuracy_class": "5"}},
                         tmp_path)
    assert given.device.device_id == "WIM-ZJ-0007" and given.device.accuracy_class == "5"
    assert not given.device.technical_review_approved  # what it does not say stays unset
    sim = parse_config({}, tmp_path)
    assert device_from_config(sim).certificates[0].number == "SIM-CERT-0001"
