"""Stage 1 and 3 kernels against the slow reference, chunk invariance, edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zhichao.devices.recording import read_recording
from zhichao.weighing.errors import WeighingInputError
from zhichao.weighing.pulses import FLAG_SATURATED, PulseDetector, Pulses, detect_pulses
from zhichao.weighing.reference import detect_pulses_reference


def _sorted(p: Pulses) -> Pulses:
    order = np.lexsort((p.channel, p.end))
    return Pulses(*(getattr(p, f)[order] for f in (
        "channel", "start", "end", "peak_index", "flags", "area_n_samples", "centroid",
        "peak_n")))


def _assert_same(a: Pulses, b: Pulses) -> None:
    a, b = _sorted(a), _sorted(b)
    assert len(a) == len(b)
    for f in ("channel", "start", "end", "peak_index", "flags"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    for f in ("area_n_samples", "centroid", "peak_n"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-12, atol=1e-9)


@pytest.fixture(scope="module")
def window(sim_dir: Path) -> tuple[np.ndarray, list[float], list[float]]:
    rec = read_recording(sim_dir / "rec_00001.npz")
    sens = [c.sensitivity_per_n for c in rec.meta.channels]
    full = [c.full_scale or np.inf for c in rec.meta.channels]
    return rec.samples[:60000], sens, full


def test_kernel_matches_reference(window: tuple[np.ndarray, list[float], list[float]]) -> None:
    samples, sens, full = window
    fast = detect_pulses(samples, sens, 5000.0, full_scale=full)
    slow = detect_pulses_reference(samples, sens, 5000.0, full_scale=full)
    assert len(fast) > 20
    _assert_same(fast, slow)


@pytest.mark.parametrize("chunk", [1, 7, 333, 4096])
def test_chunked_equals_whole(window: tuple[np.ndarray, list[float], list[float]],
                              chunk: int) -> None:
    samples, sens, full = window
    samples = samples[:20000]
    whole = detect_pulses(samples, sens, 5000.0, full_scale=full)
    det = PulseDetector(sens, 5000.0, full_scale=full, capacity=16)  # tiny buffer: resumes
    parts = [det.feed(samples[i:i + chunk])[0] for i in range(0, len(samples), chunk)]
    _assert_same(Pulses.concat(parts), whole)


def test_negative_sensitivity_and_saturation() -> None:
    fs = 5000.0
    t = np.arange(5000) / fs
    force = 40000.0 * np.exp(-(((t - 0.5) / 0.004) ** 2))
    sig = (-1e-4 * force + 0.3).astype(np.float32)
    p = detect_pulses(sig[:, None], [-1e-4], fs)
    assert len(p) == 1 and p.flags[0] == 0
    assert abs(p.centroid[0] - 2500) < 0.5
    clipped = np.maximum(sig, np.float32(-3.0))[:, None]
    q = detect_pulses(clipped, [-1e-4], fs, full_scale=[3.0])
    assert len(q) == 1 and q.flags[0] & FLAG_SATURATED
    # flat top without a declared full scale is recognised as clipping too
    r = detect_pulses(clipped, [-1e-4], fs)
    assert r.flags[0] & FLAG_SATURATED


@pytest.mark.parametrize("bad", [
    np.zeros((10, 3), dtype=np.float32),
    np.zeros(10, dtype=np.float32),
    np.array([[0.0, np.nan]], dtype=np.float32),
])
def test_bad_input_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(WeighingInputError):
        detect_pulses(bad, [1e-4, 1e-4], 5000.0)


def test_bad_sensitivity_is_refused() -> None:
    with pytest.raises(WeighingInputError):
        PulseDetector([1e-4, 0.0], 5000.0)
    with pytest.raises(WeighingInputError):
        PulseDetector([1e-4], 0.0)
