"""A vehicle waiting for its commit keeps its samples in the ring (its waveform is written
at the commit, which waits for frames and plates): the README's lane at 20x sealed a case
without its waveform while its plate workers were starting."""

from __future__ import annotations

import numpy as np

from zhichao.station.commit import Ring
from zhichao.station.intake import RING_HOLD_MAX_S, evict
from zhichao.station.resume import RING_S

FS = 100.0


def _ring(blocks: int, n: int = 100) -> Ring:
    return Ring((i * n, np.zeros((n, 2), np.float32)) for i in range(blocks))


def test_the_ring_keeps_what_a_waiting_vehicle_needs() -> None:
    end = 200 * 100  # 200 s of stream at 100 Hz
    free = _ring(200)
    evict(free, end, FS, None)
    assert free[0][0] == 7900  # RING_S = 120 s back (the block reaching into it stays)
    assert RING_S == 120.0
    held = _ring(200)
    evict(held, end, FS, 3050)  # a vehicle from 30.5 s waits for its plate
    assert held[0][0] == 3000 and held[-1][0] == 19900
    later = _ring(200)
    evict(later, end, FS, 15000)  # one inside the window changes nothing
    assert later[0][0] == 7900


def test_the_hold_is_bounded() -> None:
    end = int((RING_HOLD_MAX_S + 300) * FS)
    ring = _ring(end // 100)
    evict(ring, end, FS, 0)
    assert ring[0][0] == end - int(RING_HOLD_MAX_S * FS) - 100
