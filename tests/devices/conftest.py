"""Shared helpers for the devices tests: synthetic samples and the no-silent-loss check."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest

from zhichao.devices.samples import SampleBlock, SampleSource
from zhichao.devices.twins.samples import SampleStreamTwin

START_UTC = datetime(2026, 5, 1, 8, 0, 0, tzinfo=UTC)


def make_samples(n: int, n_channels: int = 8, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_channels)).astype(np.float32)


def collect(source: SampleSource, twin: SampleStreamTwin, *, timeout_s: float = 20.0,
            settle_s: float = 0.3) -> list[SampleBlock]:
    """Read blocks until the twin has finished and the link has been quiet for ``settle_s``."""
    import time

    blocks: list[SampleBlock] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        block = source.read_block(settle_s if twin.done.is_set() else 0.2)
        if block is not None:
            blocks.append(block)
        elif twin.done.is_set():
            break
    return blocks


def check_no_silent_loss(blocks: list[SampleBlock], twin: SampleStreamTwin,
                         *, exact: bool = True) -> np.ndarray:
    """Every delivered sample at its true index, once; every discontinuity reported.

    With ``exact`` the delivered set must equal what left the twin intact.
    Returns the per-sample delivery count.
    """
    rec = twin.samples
    delivered = np.zeros(rec.shape[0], dtype=np.int64)
    prev_end: int | None = None
    for b in blocks:
        assert b.samples.dtype == np.float32
        assert b.first_index >= 0 and b.end_index <= rec.shape[0], (b.first_index, b.end_index)
        np.testing.assert_array_equal(b.samples, rec[b.first_index:b.end_index])
        delivered[b.first_index:b.end_index] += 1
        if prev_end is not None:
            if b.gap_before_samples > 0:
                assert b.first_index - prev_end == b.gap_before_samples, b
                assert b.reason
            elif b.gap_before_samples == 0:
                assert b.first_index == prev_end, (prev_end, b.first_index, b.reason)
            else:
                assert b.gap_before_samples == -1 and b.reason
        prev_end = b.end_index
    assert delivered.max(initial=0) <= 1, "a sample was delivered twice"
    if exact:
        intact = twin.intact_mask()
        missing = np.flatnonzero(intact & (delivered == 0))
        extra = np.flatnonzero(~intact & (delivered > 0))
        assert missing.size == 0, f"intact samples never delivered, first {missing[:5]}"
        assert extra.size == 0, f"damaged samples delivered, first {extra[:5]}"
    return delivered


@pytest.fixture
def samples_8ch() -> npt.NDArray[np.float32]:
    return make_samples(20_000, 8, seed=1)
