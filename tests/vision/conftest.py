"""Shared fixtures: the real dev images beside the repo and one reader per session."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from zhichao.vision.reader import PlateReader

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
DEV = SHARED / "data" / "plates" / "dev"


@pytest.fixture(scope="session")
def dev_dir() -> Path:
    assert (DEV / "labels.csv").is_file(), f"dev plate set not found at {DEV}"
    return DEV


@pytest.fixture(scope="session")
def labels(dev_dir: Path) -> dict[str, dict[str, str]]:
    with (dev_dir / "labels.csv").open(encoding="utf-8", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="session")
def reader() -> PlateReader:
    r = PlateReader()
    r.warm_up()
    return r
