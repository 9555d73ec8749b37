"""The ids station.toml gives every passage record (site, lane) within the limits the center
checks (zhichao.sync.wire.check_passage_record): a station whose ids are too long would
start and have every passage it signs refused for ever (passage.malformed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zhichao.station.config import load_config, parse_config
from zhichao.station.errors import StationConfigError
from zhichao.sync.errors import OutboxError
from zhichao.sync.wire import LANE_ID_MAX_CHARS, SITE_ID_MAX_CHARS, check_passage_record
from zhichao.testing.cases import vehicle_dict


def _raw(section: str, key: str, value: str) -> dict[str, dict[str, str]]:
    return {section: {key: value}}


@pytest.mark.parametrize(("section", "key", "limit"), [
    ("lane", "lane_id", LANE_ID_MAX_CHARS), ("site", "site_id", SITE_ID_MAX_CHARS)])
def test_an_id_longer_than_the_center_takes_is_refused_at_load(
        section: str, key: str, limit: int, tmp_path: Path) -> None:
    at_limit = "K" * limit
    cfg = parse_config(_raw(section, key, at_limit), tmp_path)
    # what the config accepts, the center accepts
    check_passage_record(vehicle_dict(site_id=cfg.site.site_id, lane_id=cfg.lane.lane_id))
    with pytest.raises(OutboxError):
        check_passage_record(vehicle_dict(**{key: at_limit + "1"}))
    with pytest.raises(StationConfigError) as info:
        parse_config(_raw(section, key, at_limit + "1"), tmp_path)
    assert f"{section}.{key}" in str(info.value)
    assert f"at most {limit} characters" in str(info.value)


def test_config_check_refuses_a_long_lane_id(tmp_path: Path) -> None:
    """``zhichao run`` loads the config the same way (load_config) and exits 2."""
    toml = tmp_path / "station.toml"
    toml.write_text('[lane]\nlane_id = "G60-K123-northbound-1"\n', encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "zhichao", "config", "check", str(toml)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr  # as every other config error
    assert "lane.lane_id: at most 16 characters" in res.stderr
    with pytest.raises(StationConfigError, match="lane.lane_id: at most 16"):
        load_config(toml)
