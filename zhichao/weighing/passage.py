"""Quality checks on one passage's axle tracks, as plain functions (stage 8).

The lane processor (:mod:`zhichao.weighing.stream`) calls them while it weighs a vehicle;
each takes what it needs (tracks, wheel loads [kg], the quality settings) and returns a
verdict or the flags it found.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from zhichao.weighing.axles import Track
from zhichao.weighing.config import QualityConfig


def backward_evidence(tracks: list[Track], per_row_counts: list[int]) -> bool:
    """Do these tracks show an axle crossing the rows against the direction of travel?

    Driving forward, every axle crosses row 1 first and every row sees each axle once.
    An axle seen first on a downstream row came from downstream (or row 1 missed its
    pulse: one such axle can be that, two in one passage hardly); an axle that re-crosses
    a row backwards and then forwards adds two hits on that row.
    """
    orphans = sum(1 for tr in tracks if tr.first_row != 0)
    if orphans >= 2:
        return True
    # a row crossed backwards and forwards again has two more hits than a row crossed
    # once; a missed or split pulse makes a difference of one
    return max(per_row_counts) - min(per_row_counts) >= 2


def comes_from_downstream(tr: Track, n_rows: int) -> bool:
    """An axle first seen downstream that one missed pulse cannot explain: a forward axle
    whose row-1 pulse was missed still crosses every other row, in order."""
    return tr.first_row != 0 and sorted(tr.hits) != list(range(1, n_rows))


def wheel_off_sensor(tracks: list[Track], use: npt.NDArray[np.bool_],
                     q: QualityConfig) -> bool:
    """Is a wheel partly off its half-strip (over the outer edge or the centre joint)?

    Each half-strip weighs what is on it, so a wheel partly off its half shifts the
    axle's left/right split; so does a genuinely uneven load. The pulse *shape* tells them
    apart: its length (area / peak, the tyre's contact length plus the strip width) grows
    with the tyre's load, so the heavier wheel of an unevenly loaded axle also gives the
    longer pulse, while a wheel partly off the strip keeps its full contact length and
    loses only amplitude. A vehicle keeps its lateral position over the few metres of the
    array, so the split must have the same sign on every row; rows where one side missed
    its pulse say nothing about the split and are left out.
    """
    for tr in tracks:
        splits: list[float] = []
        shapes: list[float] = []
        for r, h in tr.hits.items():
            if not (use[r] and all(h.present) and min(h.peak) > 0 and not h.saturated):
                continue
            a_l, a_r = h.area
            if a_l <= 0 or a_r <= 0:
                continue
            splits.append((a_r - a_l) / (a_r + a_l))
            len_l, len_r = a_l / h.peak[0], a_r / h.peak[1]
            shapes.append((len_r - len_l) / (len_r + len_l))
        if not splits:
            continue
        split = float(np.mean(splits))
        if abs(split) <= q.shape_check_imbalance or \
                any(x * split <= 0 for x in splits):
            continue
        if abs(split) > q.max_wheel_imbalance:
            return True
        if float(np.mean(shapes)) / split < q.min_shape_response:
            return True
    return False


def usable_rows(wheel: npt.NDArray[np.float64], q: QualityConfig
                ) -> tuple[list[int], list[str]]:
    """Rows whose two halves both work; flags for an empty side (straddling or dead).

    ``wheel`` holds the wheel loads ``[axle, row, side]`` [kg], NaN where an axle missed a row.
    """
    n_rows = wheel.shape[1]
    flags: list[str] = []
    side_share = np.full((n_rows, 2), np.nan)
    for r in range(n_rows):
        w = wheel[:, r, :]
        ok = np.isfinite(w).all(axis=1)
        if ok.any():
            tot = w[ok].sum()
            if tot > 0:
                side_share[r] = w[ok].sum(axis=0) / tot
    empty = side_share < q.empty_side_fraction
    rows = list(range(n_rows))
    for side in (0, 1):
        col = empty[:, side]
        known = np.isfinite(side_share[:, side])
        if known.any() and np.all(col[known]):
            if "straddling" not in flags:
                flags.append("straddling")
        elif col.any():
            # this side is empty on some rows only: those rows' channels are dead
            for r_dead in np.nonzero(col)[0]:
                if int(r_dead) in rows:
                    rows.remove(int(r_dead))
            if "missing_channel" not in flags:
                flags.append("missing_channel")
    return rows, flags
