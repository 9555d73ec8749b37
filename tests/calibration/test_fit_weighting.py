"""The fit's statistical model on synthetic data with a known answer.

The rows of one pass sample a truck's body bounce at different phases: their individual
errors are large (several per cent at highway speed) but largely cancel in the pass mean,
which is what the core reports as the gross. Both scatters grow with speed. These tests
build per-half-strip loads with exactly that structure (no signals, so they are fast) and
check that the fit recovers the true gains and a flat speed response to within what the
pass means allow, and that outliers are judged at their own speed.
"""

from __future__ import annotations

import numpy as np
import pytest

from zhichao.calibration.accuracy import DEFAULT_TABLES, PassResult, speed_ranges
from zhichao.calibration.fit import (
    FitConfig,
    _Arrays,
    _scale_by_speed,
    _solve,
    _speed_groups,
    outlier_passes,
)

N_ROWS = 4
SPEEDS_KMH = (20.0, 40.0, 60.0, 80.0)


def _synthetic(seed: int, passes_per_speed: int = 30
               ) -> tuple[_Arrays, np.ndarray, dict[float, float], np.ndarray]:
    rng = np.random.default_rng(seed)
    gain = rng.uniform(0.9, 1.1, (N_ROWS, 2))  # base load × gain = true load
    alpha = np.full((N_ROWS, 2), -0.0002)
    left, right, dt, speed, gross, true_err = [], [], [], [], [], []
    pass_sd = {v: 0.002 + 0.01 * (v / 80.0) ** 2 for v in SPEEDS_KMH}  # 0.26 … 1.2 %
    contrast_sd = {v: 0.005 + 0.045 * v / 80.0 for v in SPEEDS_KMH}  # 1.6 … 5 %
    for v in SPEEDS_KMH:
        for _ in range(passes_per_speed):
            g = float(rng.uniform(15000, 40000))
            d_t = float(rng.uniform(-20, 20))
            contrast = rng.normal(0.0, contrast_sd[v], N_ROWS)
            contrast -= contrast.mean()  # the rows' bounce errors cancel in the mean
            true_err.append(rng.normal(0.0, pass_sd[v]))
            row_err = true_err[-1] + contrast
            share = float(np.clip(rng.normal(0.5, 0.015), 0.45, 0.55))
            true_row = g * (1.0 + row_err)
            # what the lane reports with its base sensitivities: true / gain, × temperature
            left.append(true_row * share / gain[:, 0] * (1 + alpha[:, 0] * d_t))
            right.append(true_row * (1 - share) / gain[:, 1] * (1 + alpha[:, 1] * d_t))
            dt.append(d_t)
            speed.append(v + float(rng.uniform(-3, 3)))
            gross.append(g)
    arr = _Arrays(left=np.array(left), right=np.array(right),
                  valid=np.ones((len(left), N_ROWS), dtype=bool), dt_c=np.array(dt),
                  speed_kmh=np.array(speed), gross_kg=np.array(gross))
    return arr, gain, pass_sd, np.array(true_err)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fit_recovers_gains_and_a_flat_speed_response(seed: int) -> None:
    arr, gain, pass_sd, true_err = _synthetic(seed)
    sol = _solve(arr, FitConfig())
    # each row's sum of gains (what its gross sees) to within a fraction of a per cent
    row_gain_true = gain.mean(axis=1)
    row_gain_fit = sol.gain.mean(axis=1)
    # the fixed speed knot absorbs the common level: compare after removing it
    common = float(np.mean(row_gain_fit / row_gain_true))
    assert np.allclose(row_gain_fit / row_gain_true / common, 1.0, atol=0.006)
    # the speed factors: flat within what n passes of the pass-mean scatter allow
    factors = sol.factors * common
    n = 30
    ref = sol.knots_kmh[int(np.argmin(sol.u_log_factor))]  # the knot fixed at 1
    for k, f, u in zip(sol.knots_kmh, factors, sol.u_log_factor, strict=True):
        # relative to the fixed knot: both knots' pass means contribute
        sd_diff = float(np.hypot(pass_sd[k], pass_sd[ref])) / np.sqrt(n)
        assert abs(f - 1.0) < 4.0 * sd_diff + 0.002, (k, f, sd_diff)
        # the stated uncertainty follows the pass means (not a row's larger scatter)
        assert u < 1.6 * sd_diff + 1e-9, (k, u, sd_diff)
    # the scatter estimates follow the speed
    assert sol.pass_sd_by_knot[-1] > 2.0 * sol.pass_sd_by_knot[0]
    for i, sd in enumerate(sol.pass_sd_by_knot):
        e = true_err[30 * i:30 * (i + 1)]
        realised = 1.4826 * float(np.median(np.abs(e - np.median(e))))
        assert sd == pytest.approx(realised, rel=0.2)
    # the fitted pass errors are the true ones (to what the parameters' errors leave)
    assert float(np.std(sol.pass_error - true_err)) < 0.0015
    assert sol.contrast_sd_by_knot[-1] > 2.0 * sol.contrast_sd_by_knot[0]


def test_scale_by_speed_pools_thin_bands() -> None:
    speeds = np.array([20.0] * 10 + [80.0] * 10 + [50.0] * 2)
    groups = _speed_groups(speeds, [20.0, 50.0, 80.0])
    assert list(groups[:10]) == [0] * 10 and list(groups[-2:]) == [1, 1]
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 0.01, 10), rng.normal(0, 0.05, 10), [0.0, 0.0]])
    per_pass, per_group = _scale_by_speed(values, groups, 3, min_n=8)
    assert per_group[0] < 0.02 < 0.025 < per_group[2]
    # the 2-pass band takes the pooled value, not its own (zero) scatter
    assert per_group[1] > 0.005
    assert per_pass[-1] == per_group[1]


def test_outliers_are_judged_at_their_own_speed() -> None:
    err = np.array([0.0, 0.0, 0.0, 0.010, 0.020, 0.030, -0.05])
    sd = np.array([0.004, 0.004, 0.012, 0.004, 0.004, 0.012, 0.012])
    # 2.5 σ at low speed kept, 5 σ rejected; 2.5 σ of a fast pass kept; −4.2 σ rejected
    assert outlier_passes(err, sd, 3.5) == [4, 6]


def _pass(name: str, speed_kmh: float, error_pct: float) -> PassResult:
    return PassResult(recording=name, sha256="", truck="2轴 16000 kg", speed_kmh=speed_kmh,
                      temperature_c=20.0, flags=[], valid=True, reason="",
                      reference_gross_kg=16000.0, reference_axles_kg=[6000.0, 10000.0],
                      gross_kg=16000.0 * (1 + error_pct / 100), axle_loads_kg=[],
                      axle_groups=[])


def test_speed_ranges_are_the_longest_run_of_passes_within_the_mpe() -> None:
    passes = [_pass("a", 22, 1.0), _pass("b", 31, -2.4), _pass("c", 48, 2.0),
              _pass("d", 52, 0.5), _pass("e", 61, -2.6), _pass("f", 71, 1.0),
              _pass("g", 79, 3.5)]
    r = speed_ranges(passes, DEFAULT_TABLES)
    five = r["initial"]["5"]
    assert five is not None
    assert five["speed_kmh"] == [22.0, 52.0] and five["n"] == 4 and five["of"] == 7
    assert five["ended_above_by"] == "e" and five["ended_below_by"] is None
    ten = r["initial"]["10"]
    assert ten is not None and ten["speed_kmh"] == [22.0, 79.0] and ten["n"] == 7
    assert r["initial"]["0.2"] is None  # no pass within ±0.1 %
    assert r["in_service"]["5"] is not None and r["in_service"]["5"]["n"] == 7
