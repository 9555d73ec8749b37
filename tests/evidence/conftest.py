"""Fixtures: a complete, enforceable case with synthetic photos and a raw waveform
(:mod:`zhichao.testing.cases`, shared with the benchmarks)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.evidence.signing import generate_key
from zhichao.testing.cases import T, case_dict, vehicle_dict
from zhichao.testing.cases import photo as _photo
from zhichao.testing.cases import waveform as _waveform

__all__ = ["T", "_photo", "_waveform", "case_dict", "vehicle_dict"]


@pytest.fixture
def good_case(tmp_path: Path) -> tuple[CaseInputs, Path]:
    base = tmp_path / "in"
    base.mkdir()
    return CaseInputs.from_json(case_dict(base)), base


@dataclass
class Env:
    station: Station
    log: MerkleLog
    root: Path


@pytest.fixture(scope="session")
def station() -> Station:
    return Station("S001", "zhichao-station-S001", generate_key())


@pytest.fixture(scope="session")
def sealed_template(tmp_path_factory: pytest.TempPathFactory, station: Station) -> Path:
    """One package with documents, sealed once per session; tests use copies."""
    root = tmp_path_factory.mktemp("template")
    base = root / "in"
    base.mkdir()
    case = CaseInputs.from_json(case_dict(base))
    with MerkleLog(root / "log", origin=station.origin, create=True, fsync=False) as log:
        seal_package(case, root / "pkg", station=station, log=log, base_dir=base)
    return root / "pkg"


@pytest.fixture
def env(tmp_path: Path, station: Station) -> Iterator[Env]:
    log = MerkleLog(tmp_path / "log", origin=station.origin, create=True, fsync=False)
    yield Env(station, log, tmp_path)
    log.close()
