"""A SIGKILL at every write step of sealing a case leaves a station that starts, and the
case is sealed (completed or sealed again) into a package that verifies.

Fault points, not random times: a forked child seals one case and kills itself right
before its k-th file-system step (a write, copy, mkdir, rename or fsync — in the evidence
log, the package or the fsync of the package tree), for every k until the seal completes.
The parent then does what a restarting station does (open the sealer: the log repairs a
torn tail; recover: a ``.partial`` is completed or removed; seal what is still pending)."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from zhichao.evidence.inputs import ImageRef
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.verify import verify_package
from zhichao.station.config import StationConfig, parse_config
from zhichao.station.sealing import CaseMaterial, Sealer
from zhichao.testing.cases import photo as _photo
from zhichao.testing.cases import vehicle_dict
from zhichao.testing.cases import waveform as _waveform

_PATCHED: list[tuple[Any, str]] = [
    (os, "fsync"), (os, "rename"), (os, "replace"), (os, "write"), (shutil, "copyfile"),
    (pathlib.Path, "write_bytes"), (pathlib.Path, "write_text"), (pathlib.Path, "mkdir"),
    (pathlib.Path, "rename"), (pathlib.Path, "touch"),
]


def _config(data: Path, documents: bool) -> StationConfig:
    return parse_config({"station": {"data_dir": str(data)},
                         "evidence": {"render_documents": documents},
                         "http": {"metrics_port": 0, "console_port": 0}}, data)


def _material(cfg: StationConfig, n: int) -> CaseMaterial:
    key = f"{cfg.site.site_id}-{cfg.lane.lane_id}-{1000 + n}"
    frames = cfg.data_dir / "frames" / key
    frames.mkdir(parents=True, exist_ok=True)
    t = datetime(2026, 12, 6, 8, 0, n % 60, tzinfo=UTC)
    images = []
    for role, colour in (("front", (160, 40, 40)), ("side", (40, 120, 40))):
        path = frames / f"{role}.jpg"
        _photo(path, f"{role} {n}", colour)
        images.append(ImageRef(path=str(path), role=role, capture_utc=t, camera_id=role))
    wave = cfg.data_dir / "waveforms" / f"{key}.npz"
    wave.parent.mkdir(parents=True, exist_ok=True)
    _waveform(wave)
    record = vehicle_dict(site_id=cfg.site.site_id, lane_id=cfg.lane.lane_id,
                          time_utc=t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                          first_sample=1000 + n, last_sample=4000 + n)
    return CaseMaterial(key, record, None, tuple(images), None, str(wave))


def _seal_in_child(cfg: StationConfig, m: CaseMaterial, kill_at: int | None) -> int:
    """Seal ``m`` in a forked child that SIGKILLs itself before step ``kill_at``; returns
    the number of steps taken (when it was not killed) or -1 (killed)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        steps = [0]
        real_write = os.write

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            def inner(*args: Any, **kwargs: Any) -> Any:
                steps[0] += 1
                if kill_at is not None and steps[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return fn(*args, **kwargs)
            return inner

        for owner, name in _PATCHED:
            setattr(owner, name, wrap(getattr(owner, name)))
        try:
            sealer = Sealer(cfg)
            sealer.seal(m)
            sealer.close()
            real_write(write, str(steps[0]).encode())
        finally:
            os._exit(0)
    os.close(write)
    out = b""
    while chunk := os.read(read, 64):
        out += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return -1
    assert out, "the child neither sealed nor was killed"
    return int(out)


def _restart_and_seal(cfg: StationConfig, m: CaseMaterial) -> dict[str, Any]:
    """What a restarting station does for the pending case ``m``; returns the recovery."""
    sealer = Sealer(cfg)  # must open, whatever the kill left
    try:
        info = sealer.recover(set(), [m.passage_key])
        out = sealer.package_dir(m.passage_key)
        if m.passage_key not in info["complete"]:
            assert not out.exists()
            sealer.seal(m)
        assert not list(sealer.packages.glob("*.partial"))
        report = verify_package(out, key=sealer.key.public_key(), log_dir=sealer.log.directory)
        assert report.ok, [c for c in report.checks if c.result.value != "pass"]
        assert sealer.log.audit() == []
        return info
    finally:
        sealer.close()


@pytest.mark.parametrize("documents", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["no-documents", "documents"])
def test_kill_at_every_step_of_a_seal(tmp_path: Path, documents: bool) -> None:
    cfg = _config(tmp_path / "station", documents)
    Sealer(cfg).close()  # the key and the log exist before the first seal, as on a station
    total = _seal_in_child(cfg, _material(cfg, 0), None)
    assert total > 20
    points = range(1, total + 1) if not documents else range(1, total + 1, 3)
    outcomes = {"completed": 0, "resealed": 0, "log_repaired": 0}
    for k in points:
        m = _material(cfg, k)
        assert _seal_in_child(cfg, m, k) == -1, f"step {k} of {total} was not reached"
        info = _restart_and_seal(cfg, m)
        outcomes["completed" if m.passage_key in info["complete"] or info[
            "completed_partial"] else "resealed"] += 1
        outcomes["log_repaired"] += int(info["log_repaired"] > 0)
    # every kind of outcome happened: kills before the log entry, inside the append
    # (torn tail repaired), and after the package was complete
    assert outcomes["resealed"] > 0 and outcomes["completed"] > 0, outcomes
    assert outcomes["log_repaired"] > 0, outcomes
    with MerkleLog(cfg.data_dir / "evidence" / "log", read_only=True) as log:
        assert log.audit() == []
