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
    ({"site": {"published_utc": "2025-06-01 00:00"}}, "site.published_utc", "UTC offset"),
    ({"vision": {"read": "some"}}, "vision.read", "candidates"),
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
