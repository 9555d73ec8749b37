"""Shared fixtures: simulated lanes, generated once per session into a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhichao.devices.sim import SimOptions, simulate


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few recordings of mixed traffic on a 4-row lane (normal and abnormal driving)."""
    out = tmp_path_factory.mktemp("sim")
    simulate(60, 11, out, SimOptions(abnormal_fraction=0.3), vehicles_per_recording=10)
    return out
