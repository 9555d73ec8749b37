"""Frames leave the spool whole: a kill during a move across filesystems (copy, then
delete) never leaves a truncated image for the sealer."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from zhichao.station import commit
from zhichao.station.commit import archive_committed_frames, move_frame

JPEG = b"\xff\xd8" + bytes(range(256)) * 400 + b"\xff\xd9"


class _Store:
    """What start-up reconciliation reads: the frames of the newest passages."""

    def __init__(self, frames: list[dict[str, Any]]) -> None:
        self.frames = frames

    def recent_frames(self, n: int) -> list[dict[str, Any]]:
        return self.frames[:n]


def _cross_device(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.rename

    def rename(src: Any, dst: Any) -> None:
        if Path(src).parent.name == "spool":
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(src, dst)

    monkeypatch.setattr(commit.os, "rename", rename)


def test_a_truncated_copy_beside_the_spools_frame_is_made_again(tmp_path: Path) -> None:
    """Killed half-way through a copy across filesystems: the partial ``dst`` exists and
    the whole frame is still in the spool. At start-up the spool's frame wins."""
    src = tmp_path / "spool" / "cam-front.jpg"
    dst = tmp_path / "frames" / "20261207" / "P1" / "cam-front.jpg"
    src.parent.mkdir(parents=True)
    dst.parent.mkdir(parents=True)
    src.write_bytes(JPEG)
    dst.write_bytes(JPEG[:5000])  # what the kill left
    archive_committed_frames(_Store([{"spool_path": str(src), "path": str(dst)}]))  # type: ignore[arg-type]
    assert dst.read_bytes() == JPEG
    assert not src.exists()


def test_a_move_across_filesystems_is_whole_or_not_at_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cross_device(monkeypatch)
    src = tmp_path / "spool" / "cam-front.jpg"
    dst = tmp_path / "frames" / "P1" / "cam-front.jpg"
    src.parent.mkdir(parents=True)
    src.write_bytes(JPEG)
    real_replace = os.replace

    def killed(_a: Any, _b: Any) -> None:  # the kill comes after the copy, before rename
        raise KeyboardInterrupt

    monkeypatch.setattr(commit.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        move_frame(src, dst)
    assert src.read_bytes() == JPEG and not dst.exists()  # no truncated dst under its name
    monkeypatch.setattr(commit.os, "replace", real_replace)
    archive_committed_frames(_Store([{"spool_path": str(src), "path": str(dst)}]))  # type: ignore[arg-type]
    assert dst.read_bytes() == JPEG
    assert not src.exists()
    assert [p.name for p in dst.parent.iterdir()] == ["cam-front.jpg"]  # no temporary


def test_a_frame_already_moved_is_left_alone(tmp_path: Path) -> None:
    dst = tmp_path / "frames" / "P1" / "cam-front.jpg"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(JPEG)
    archive_committed_frames(_Store([{"spool_path": str(tmp_path / "spool" / "cam-front.jpg"),  # type: ignore[arg-type]
                                      "path": str(dst)}]))
    assert dst.read_bytes() == JPEG
