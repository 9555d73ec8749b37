"""The zhichao.raw/1 format: round trip, and every refusal names the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zhichao.devices.errors import RecordingError
from zhichao.devices.recording import read_recording, write_recording


def _rewrite(src: Path, dst: Path, meta_edit: object = None, samples: object = None) -> Path:
    with np.load(src) as z:
        meta = json.loads(str(z["meta"]))
        data = z["samples"]
    if callable(meta_edit):
        meta_edit(meta)
    if samples is not None:
        data = samples
    with dst.open("wb") as f:
        np.savez(f, samples=data, meta=np.array(json.dumps(meta)))
    return dst


def test_round_trip(sim_dir: Path, tmp_path: Path) -> None:
    rec = read_recording(sim_dir / "rec_00001.npz")
    out = write_recording(tmp_path / "copy.npz", rec.samples, rec.meta)
    again = read_recording(out)
    assert np.array_equal(again.samples, rec.samples)
    assert again.meta == rec.meta
    assert again.meta.start_utc.tzinfo is not None


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(format="zhichao.raw/2"), "format"),
    (lambda m: m.update(sample_rate_hz=0), "sample_rate_hz must be > 0"),
    (lambda m: m["channels"].pop(1), "missing side"),
    (lambda m: m["channels"][0].update(kind="loop"), "unknown channel kind"),
    (lambda m: m.update(start_utc="2026-01-05 08:00:00"), "start_utc"),
    (lambda m: m["channels"][0].update(width_m=-0.05), "width_m must be > 0"),
])
def test_inconsistent_meta_is_refused(sim_dir: Path, tmp_path: Path, edit: object,
                                      message: str) -> None:
    def drop_column(m: dict[str, object]) -> None:
        edit(m)  # type: ignore[operator]

    src = sim_dir / "rec_00001.npz"
    with np.load(src) as z:
        data = z["samples"]
    bad_samples = data[:, [0] + list(range(2, data.shape[1]))] if message == "missing side" \
        else None
    bad = _rewrite(src, tmp_path / "bad.npz", drop_column, bad_samples)
    with pytest.raises(RecordingError) as err:
        read_recording(bad)
    assert str(bad) in str(err.value)
    assert message in str(err.value)


def test_nan_samples_are_refused_with_position(sim_dir: Path, tmp_path: Path) -> None:
    src = sim_dir / "rec_00001.npz"
    with np.load(src) as z:
        data = z["samples"].copy()
    data[123, 2] = np.nan
    bad = _rewrite(src, tmp_path / "nan.npz", samples=data)
    with pytest.raises(RecordingError, match=r"NaN or inf \(first at sample 123, channel r2L\)"):
        read_recording(bad)


def test_truncated_file_is_refused(sim_dir: Path, tmp_path: Path) -> None:
    raw = (sim_dir / "rec_00001.npz").read_bytes()
    bad = tmp_path / "cut.npz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(RecordingError, match="cut.npz"):
        read_recording(bad)
    with pytest.raises(RecordingError, match="no such file"):
        read_recording(tmp_path / "absent.npz")
