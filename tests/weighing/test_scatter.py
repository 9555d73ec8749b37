"""σ(v): upper confidence bounds, the physics prior and its fallbacks, axle-count classes,
and a legal truck at its limit never reported overloaded (行政处罚法 Art. 40, 41(2): no
penalty while the excess may be the device's error)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from zhichao.devices.recording import read_recording
from zhichao.devices.sim import SimOptions, simulate
from zhichao.devices.sim.lane import read_truth
from zhichao.weighing.config import OverloadConfig, WeighingConfig
from zhichao.weighing.errors import CalibrationProfileError, WeighingConfigError
from zhichao.weighing.evaluation import match_vehicles
from zhichao.weighing.overload import PRIOR_SOURCE_ZH, check_overload, tolerance_for
from zhichao.weighing.scatter import (
    IN_SERVICE,
    REFERENCE,
    SCATTER_FORMAT,
    HistoryPassage,
    ScatterBand,
    combined_bound,
    estimate_scatter,
    prior_scatter,
    profile_scatter,
    read_scatter,
    scatter_at,
    scatter_document,
    site_config,
    upper_sd,
    write_scatter,
)
from zhichao.weighing.stream import weigh_recording


def test_upper_bound_shrinks_towards_the_estimate_with_more_data() -> None:
    few, many = upper_sd(0.03 ** 2, 10), upper_sd(0.03 ** 2, 10_000)
    assert few > many > 0.03
    assert many == pytest.approx(0.03, rel=0.03)
    assert math.isinf(upper_sd(0.03 ** 2, 0))


def test_prior_grows_with_speed_and_shrinks_with_rows() -> None:
    assert prior_scatter(90.0, 2) > prior_scatter(40.0, 2) > 0.0
    assert prior_scatter(90.0, 4) < prior_scatter(90.0, 2)
    # unknown speed: the top of the operating range
    assert prior_scatter(None, 4) == prior_scatter(100.0, 4)


def test_pooled_sigma_is_the_dynamic_scatter_alone() -> None:
    """The class MPE covers the error common to all rows; σ from row spread is not inflated
    by it a second time (the verdict issue, item 1: the larger of the two, not their sum)."""
    hist = [HistoryPassage(25.0, [30000.0, 30300.0, 29700.0, 30000.0])] * 400
    (band,) = estimate_scatter(hist, min_samples=30)
    s2 = ((0.0 ** 2) + 0.01 ** 2 + 0.01 ** 2 + 0.0 ** 2) / 3  # rows' relative variance
    assert band.estimate == pytest.approx(math.sqrt(1.25 ** 2 * s2 / 4), rel=1e-6)
    t = tolerance_for(30000, 25.0, WeighingConfig().with_scatter((band,), "t").overload, 4)
    assert t.tolerance_kg == max(t.device_mpe_kg, t.scatter_kg or 0)


def test_without_history_the_prior_governs_and_says_so() -> None:
    t = tolerance_for(40000, 80.0, OverloadConfig(), rows=4)
    sigma = prior_scatter(80.0, 4)
    assert t.governing == "site_scatter" and PRIOR_SOURCE_ZH in t.basis_zh
    assert t.tolerance_kg == math.ceil(4.0 * sigma * 40000)
    # fewer rows, larger deduction
    assert tolerance_for(40000, 80.0, OverloadConfig(), rows=2).tolerance_kg > t.tolerance_kg


def test_sparse_bands_are_left_to_the_prior() -> None:
    hist = [HistoryPassage(25.0, [30000, 30300, 29900, 30100])] * 40 + \
        [HistoryPassage(75.0, [30000, 31000, 29000, 30500])] * 5
    bands = estimate_scatter(hist, min_samples=30)
    assert [(b.speed_min_kmh, b.speed_max_kmh) for b in bands] == [(20.0, 30.0)]
    cfg = WeighingConfig().with_scatter(bands, "test").overload
    assert scatter_at(25.0, cfg.scatter_bands) == bands[0].relative_sd
    assert scatter_at(75.0, cfg.scatter_bands) is None  # → the prior
    at75 = tolerance_for(30000, 75.0, cfg, rows=4)
    assert PRIOR_SOURCE_ZH in at75.basis_zh


def test_axle_classes_pool_separately_and_unknown_axles_take_the_worst() -> None:
    two = [HistoryPassage(45.0, [20000, 22000], axle_count=2)] * 40
    six = [HistoryPassage(45.0, [40000, 40400], axle_count=6)] * 40
    bands = estimate_scatter(two + six, min_samples=30, axle_classes=((2, 2), (5, 99)))
    assert len(bands) == 2
    s2, s6 = scatter_at(45.0, bands, 2), scatter_at(45.0, bands, 6)
    assert s2 is not None and s6 is not None and s2 > 4 * s6
    assert scatter_at(45.0, bands, None) == s2  # axle count unknown: the larger
    assert scatter_at(45.0, bands, 3) is None  # no class for 3 axles → the prior


def test_where_two_sources_cover_a_speed_the_larger_applies(tmp_path: Path) -> None:
    file_band = ScatterBand(60.0, 0.02, 100, 50.0)
    doc = scatter_document([file_band], method="in_service_rows", site_id="S", lane_id="1",
                           profile_id=None, confidence=0.95, passages=100)
    path = write_scatter(doc, tmp_path / "s.json")
    assert read_scatter(path)[0]["format"] == SCATTER_FORMAT
    cfg = site_config(WeighingConfig(overload=OverloadConfig(
        scatter_bands_kmh_sd=((250.0, 0.03),))), None, path)
    assert scatter_at(55.0, cfg.overload.scatter_bands) == 0.03
    cfg = site_config(None, None, path)
    assert scatter_at(55.0, cfg.overload.scatter_bands) == 0.02


def test_bad_scatter_files_and_bands_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": SCATTER_FORMAT, "bands": [
        {"speed_min_kmh": 50, "speed_max_kmh": 40, "relative_sd": 0.02}]}), encoding="utf-8")
    with pytest.raises(CalibrationProfileError):
        read_scatter(bad)
    with pytest.raises(CalibrationProfileError):
        read_scatter(tmp_path / "missing.json")
    with pytest.raises(WeighingConfigError):
        WeighingConfig(overload=OverloadConfig(scatter_measured=((60.0, 50.0, 0.02, 10),)))


def test_legal_trucks_at_their_limit_are_never_reported_overloaded(tmp_path: Path) -> None:
    """Rough road, 2 rows, the shipped defaults (no history): each legal truck's
    measurement error stays inside its deduction, so none would be reported overloaded
    even loaded exactly to its limit; and none is."""
    opts = SimOptions(n_rows=2, road="rough", trucks_only=True, abnormal_fraction=0.0,
                      load_profile="near_limit", sensor_seed=5)
    n = 0
    for p in simulate(60, 17, tmp_path, opts, 30):
        for m in match_vehicles(read_truth(p)["vehicles"], weigh_recording(read_recording(p))):
            w, t = m.weighed, m.truth
            assert w is not None and w.gross_weight_kg and w.allowance_kg is not None
            if t["gross_weight_kg"] <= t["limit_kg"]:
                n += 1
                assert not w.overloaded
                assert w.gross_weight_kg - w.allowance_kg <= t["gross_weight_kg"]
    assert n >= 50
    # and the verdict itself: a passage reading its limit plus the device's error is not over
    r = check_overload(31000 * 1.05, 31000, [31000 * 1.05] * 2, OverloadConfig(),
                       speed_kmh=20.0, axle_count=4)
    assert not r.overloaded


def test_weigh_pools_the_scatter_of_its_own_recordings(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from zhichao.cli import main

    opts = SimOptions(n_rows=4, trucks_only=True, abnormal_fraction=0.0, sensor_seed=3,
                      speed_kmh=(41.0, 49.0))
    recs = [str(p) for p in simulate(150, 23, tmp_path, opts, 50)]
    assert main(["weigh", "--json", "--no-pool-scatter", *recs]) == 0
    prior = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert main(["weigh", "--json", *recs]) == 0  # pooling is the default
    pooled = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    # the record names what governed its deduction: the batch's own pool, where it did
    assert sum("本批记录在役过车离散" in v["allowance_basis"] for v in pooled) >= 0.5 * len(pooled)
    assert not any("本批记录在役过车离散" in v["allowance_basis"] for v in prior)
    assert all("本点尚无历史数据" in v["allowance_basis"] for v in prior
               if "最大允许误差" not in v["allowance_basis"])
    assert len(pooled) == len(prior) >= 140
    # a smooth road's measured scatter is far below the rough-road prior; axle classes
    # with fewer than 10 passages (20 degrees of freedom) in the band keep the prior
    pairs = [(p["uncertainty_kg"], q["uncertainty_kg"]) for p, q in zip(pooled, prior,
                                                                        strict=True)]
    assert all(p <= q + 1.0 for p, q in pairs)
    assert sum(p < 0.8 * q for p, q in pairs) >= 0.6 * len(pairs)


def test_a_small_pool_needs_ten_passages_and_twenty_degrees_of_freedom() -> None:
    from zhichao.weighing.scatter import MIN_DOF, MIN_PASSAGES, pooled_bands

    two_rows = [HistoryPassage(45.0, [30000.0, 30600.0], axle_count=5)]
    four_rows = [HistoryPassage(45.0, [30000.0, 30600.0, 29800.0, 30200.0], axle_count=5)]
    assert (MIN_PASSAGES, MIN_DOF) == (10, 20)
    assert pooled_bands(four_rows * 9) == ()  # 9 passages: too few
    (band,) = pooled_bands(four_rows * 10)  # 10 passages, 30 degrees of freedom
    assert band.dof == 30 and band.relative_sd > band.estimate
    assert pooled_bands(two_rows * 19) == ()  # 19 degrees of freedom
    (band,) = pooled_bands(two_rows * 20)
    assert band.dof == 20


def _band(kind: str, est: float | None, dof: int, lo: float = 40.0, hi: float = 60.0,
          amin: int = 0, amax: int = 99) -> ScatterBand:
    bound = upper_sd((est or 0.03) ** 2, max(dof, 1))
    return ScatterBand(hi, bound, dof, lo, est, dof, amin, amax, kind)


def test_reference_and_in_service_bands_that_agree_pool_their_degrees_of_freedom() -> None:
    """A 9-pass reference band no longer sets the deduction by its own wide bound where the
    site's many in-service passages show the same scatter (issue 16 item 1: σ from the
    site's pooled history, reference runs and in-service passages)."""
    ref, ins = _band(REFERENCE, 0.021, 9), _band(IN_SERVICE, 0.020, 400)
    both = combined_bound(ref, ins)
    assert both == pytest.approx(upper_sd((9 * 0.021 ** 2 + 400 * 0.020 ** 2) / 409, 409))
    assert 0.020 < both < 1.01 * ins.relative_sd < ref.relative_sd
    assert ref.relative_sd > 1.5 * 0.021  # why it mattered: 9 passes, bound ≈ 1.6 × estimate
    # scatter_at applies it where both kinds cover the speed and axle count
    assert scatter_at(50.0, [ref, ins], 5) == pytest.approx(both)
    assert scatter_at(30.0, [ref, ins], 5) is None
    # a hand-set band still joins the maximum
    hand = ScatterBand(60.0, 0.05, 0, 40.0)
    assert scatter_at(50.0, [ref, ins, hand], 5) == 0.05


@pytest.mark.parametrize("ref_est", [0.045, 0.006])
def test_bands_that_disagree_keep_the_larger_bound(ref_est: float) -> None:
    """Reference trucks showing more error than the rows' spread (a calibration error) or
    much less (trucks unlike the site's traffic): not one population, the larger applies."""
    ref, ins = _band(REFERENCE, ref_est, 9), _band(IN_SERVICE, 0.020, 400)
    assert combined_bound(ref, ins) == max(ref.relative_sd, ins.relative_sd)
    assert scatter_at(50.0, [ref, ins], 5) == max(ref.relative_sd, ins.relative_sd)


def test_bands_without_estimate_or_kind_keep_the_larger_bound() -> None:
    ins = _band(IN_SERVICE, 0.020, 400)
    no_est = ScatterBand(60.0, 0.05, 9, 40.0, None, 0, 0, 99, REFERENCE)
    assert combined_bound(no_est, ins) == 0.05
    unknown = _band("", 0.021, 9)
    assert scatter_at(50.0, [unknown, ins], 5) == unknown.relative_sd


def test_band_kinds_survive_config_files_and_old_documents(tmp_path: Path) -> None:
    ref, ins = _band(REFERENCE, 0.021, 9), _band(IN_SERVICE, 0.020, 400, amin=5)
    cfg = WeighingConfig().with_scatter([ref], "ref").with_scatter([ins], "ins")
    back = cfg.overload.scatter_bands
    assert [(b.kind, b.estimate, b.dof, b.axles_min) for b in back] == [
        (REFERENCE, 0.021, 9, 0), (IN_SERVICE, 0.020, 400, 5)]
    assert scatter_at(50.0, back, 5) == pytest.approx(combined_bound(ref, ins))
    # documents written before bands carried their kind take it from the method
    old = {"method": "reference_runs", "bands": [
        {k: v for k, v in ref.to_json().items() if k != "kind"}]}
    assert profile_scatter({"site_scatter": old})[0].kind == REFERENCE
    doc = scatter_document([ins], method="in_service_rows", site_id="S", lane_id="1",
                           profile_id=None, confidence=0.95, passages=400)
    del doc["bands"][0]["kind"]
    assert read_scatter(write_scatter(doc, tmp_path / "s.json"))[1][0].kind == IN_SERVICE
    with pytest.raises(CalibrationProfileError):
        profile_scatter({"site_scatter": {"bands": [ref.to_json() | {"kind": "guess"}]}})
