"""zhichao.common: the atomic write's file time."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import zhichao.common as common
from zhichao.common import write_atomic


def test_write_atomic_stamp_now_sets_the_file_time_from_time_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a clock 100 s ahead of the filesystem's: the file carries time.time()'s stamp
    ahead_ns = time.time_ns() + 100 * 10**9
    monkeypatch.setattr(common.time, "time_ns", lambda: ahead_ns)
    path = tmp_path / "cam-20260101T000000000000Z-1.jpg"
    write_atomic(path, b"frame", fsync=False, stamp_now=True)
    assert path.read_bytes() == b"frame"
    assert os.stat(path).st_mtime_ns == ahead_ns
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left
    write_atomic(tmp_path / "other.bin", b"x")  # by default the filesystem stamps it
    assert os.stat(tmp_path / "other.bin").st_mtime_ns < ahead_ns - 50 * 10**9
