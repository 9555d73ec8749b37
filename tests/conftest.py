"""Shared fixtures: simulated lanes, generated once per session into a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhichao.devices.sim import SimOptions, simulate

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"  # ../shared beside the repository
PLATES_DEV = SHARED / "data" / "plates" / "dev"


@pytest.fixture(scope="session")
def plates_dev() -> Path:
    """The real labelled plate images in ../shared (skipped with the reason if absent)."""
    if not (PLATES_DEV / "labels.csv").is_file():
        pytest.skip(f"the shared plate images are not at {PLATES_DEV} (../shared beside the "
                    "repository)")
    return PLATES_DEV


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few recordings of mixed traffic on a 4-row lane (normal and abnormal driving)."""
    out = tmp_path_factory.mktemp("sim")
    simulate(60, 11, out, SimOptions(abnormal_fraction=0.3), vehicles_per_recording=10)
    return out
