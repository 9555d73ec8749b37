"""Stage 6 and 7: 62号令 Art. 3 classes and their most lenient lawful limits; the tolerance
(device MPE vs the site's scatter, never summed) and the verdict."""

from __future__ import annotations

import math

import pytest

from zhichao.weighing.classification import KnownAttributes, axle_groups, classify
from zhichao.weighing.config import ClassConfig, OverloadConfig, WeighingConfig
from zhichao.weighing.errors import WeighingConfigError
from zhichao.weighing.overload import (
    ACCURACY_CLASSES,
    HistoryPassage,
    check_overload,
    estimate_scatter,
    mpe_fraction,
    tolerance_for,
)
from zhichao.weighing.scatter import prior_scatter, upper_sd


# 62号令 第三条第一款 (items 4–8), with the 认定标准 air-suspension note applied to trucks
# whose suspension is unknown (the most lenient lawful value, 🟡 configurable)
@pytest.mark.parametrize(("spacings", "code", "limit"), [
    ([4.5], "truck_2_axle", 18000),
    ([3.8, 1.35], "truck_3_axle", 26000),
    ([1.9, 4.2], "truck_3_axle", 26000),
    ([3.6, 7.0], "combination_3_axle", 27000),
    ([1.9, 4.0, 1.35], "truck_4_axle", 32000),
    ([3.6, 7.0, 1.31], "combination_4_axle", 36000),
    ([3.3, 1.35, 6.8], "combination_4_axle", 36000),
    ([3.6, 7.0, 1.31, 1.31], "combination_5_axle", 43000),
])
def test_decidable_classes(spacings: list[float], code: str, limit: int) -> None:
    c = classify(spacings)
    assert (c.vehicle_class, c.limit_kg) == (code, limit)
    assert "第三条" in c.basis and "62号" in c.basis
    assert not c.flags


# 62号令 第三条第一款第（八）项: 49 t, 46 t when the tractor's drive axle is a single axle.
# What WIM cannot see takes the most lenient value; the stricter one is named.
@pytest.mark.parametrize(("spacings", "limit", "stricter"), [
    ([3.3, 1.35, 7.0, 1.31, 1.31], 49000, 46000),  # 6x4 or 6x2 with a tag axle
    # a tractor that ends in one axle: its drive axle is not seen by WIM either (the first
    # long spacing can lie inside a full trailer: the next case)
    ([1.9, 2.8, 7.0, 1.31, 1.31], 49000, 46000),
    ([3.6, 7.0, 1.31, 1.31, 1.31], 49000, 46000),
    # a 6x4 rigid truck + a full trailer behind a 3.5 m drawbar: the 5.0 m spacing is the
    # trailer's own wheelbase, axle 4 its front axle, not a single drive axle
    ([3.8, 1.35, 3.5, 5.0, 1.3], 49000, 46000),
    ([1.8, 3.2, 1.35, 3.0, 4.8, 1.3], 49000, 46000),  # 7 axles, the same
    ([3.0, 3.0], 27000, 26000),  # truck or combination (item 5)
    ([2.7, 3.4, 3.0], 36000, 32000),  # item 6
])
def test_unseen_facts_take_the_most_lenient_limit(spacings: list[float], limit: int,
                                                  stricter: int) -> None:
    c = classify(spacings)
    assert c.limit_kg == limit and not c.flags
    assert stricter in c.candidates_kg and max(c.candidates_kg) == limit
    assert any(str(stricter) in n and "有利于当事人" in n for n in c.notes)


def test_six_axle_names_the_single_drive_fact() -> None:
    c = classify([3.3, 1.35, 7.0, 1.31, 1.31])
    assert [(s.limit_kg, s.fact_zh) for s in c.stricter] == [(46000, "若牵引车驱动轴为单轴")]


def test_external_facts_decide_the_drive_axle_and_tyres() -> None:
    tandem = classify([3.3, 1.35, 7.0, 1.31, 1.31], known=KnownAttributes(drive_axles=(2, 3)))
    assert tandem.limit_kg == 49000 and not tandem.stricter
    single = classify([3.3, 1.35, 7.0, 1.31, 1.31], known=KnownAttributes(drive_axles=(2,)))
    assert single.limit_kg == 46000
    policy = classify([3.3, 1.35, 7.0, 1.31, 1.31],
                      ClassConfig(rear_tandem_is_drive_tandem=True))
    assert policy.limit_kg == 49000 and not policy.stricter
    # the fleet setting speaks of rear tandems only: a tractor ending in one axle keeps
    # the note
    one = classify([3.6, 7.0, 1.31, 1.31, 1.31], ClassConfig(rear_tandem_is_drive_tandem=True))
    assert [s.limit_kg for s in one.stricter] == [46000]
    # 第三条第二款第（二）项: −3 000 kg per non-drive axle with single tyres
    tyres = classify([3.6, 7.0, 1.31, 1.31], known=KnownAttributes(single_tyre_axles=(3, 4, 5)))
    assert tyres.limit_kg == 43000 - 3 * 3000


# 第三条第二款第（二）项: only the axles the law presumes dual-tyred (2-/3-axle groups and
# trailer axles) that are not drive axles lose 3 000 kg for single tyres
@pytest.mark.parametrize(("spacings", "known", "limit", "noted"), [
    # a 2-axle truck's rear axle: not in a group, not a trailer's: no presumption, no cut
    ([4.5], KnownAttributes(single_tyre_axles=(2,)), 18000, None),
    # a 4x2 tractor + 1-axle semitrailer: axle 2 is the tractor's (could drive), axle 3 the
    # trailer's
    ([3.6, 7.0], KnownAttributes(single_tyre_axles=(2,)), 27000, None),
    ([3.6, 7.0], KnownAttributes(single_tyre_axles=(3,)), 24000, None),
    # a 3-axle truck's rear tandem with drive unknown: it could drive: noted, not applied
    ([3.8, 1.35], KnownAttributes(single_tyre_axles=(3,), air_suspension=False), 25000, 22000),
    # the same with axle 2 known to drive: axle 3 is a non-drive group axle: cut
    ([3.8, 1.35], KnownAttributes(single_tyre_axles=(3,), drive_axles=(2,),
                                  air_suspension=False), 22000, None),
    ([3.8, 1.35], KnownAttributes(single_tyre_axles=(2,), drive_axles=(2,),
                                  air_suspension=False), 25000, None),
    # steer axles are never cut, twin steer included
    ([1.9, 4.0, 1.35], KnownAttributes(single_tyre_axles=(1, 2), air_suspension=False),
     31000, None),
    # a semitrailer's tridem: trailer axles, cut whatever the tractor's drive
    ([3.6, 7.0, 1.31, 1.31], KnownAttributes(single_tyre_axles=(4,)), 40000, None),
])
def test_single_tyres_cut_only_presumed_dual_non_drive_axles(
        spacings: list[float], known: KnownAttributes, limit: int, noted: int | None) -> None:
    c = classify(spacings, known=known)
    assert c.limit_kg == limit
    tyre_notes = [s for s in c.stricter if "单轮胎" in s.fact_zh]
    if noted is None:
        assert not tyre_notes
    else:
        assert [s.limit_kg for s in tyre_notes] == [noted] and noted in c.candidates_kg


def test_two_axle_truck_takes_the_registered_mass_when_lower() -> None:
    # 认定标准 note 1 (🟡): min(18 000, 行驶证总质量); unknown → 18 t, the lower noted
    assert classify([4.5], known=KnownAttributes(registered_total_mass_kg=16000)).limit_kg == 16000
    assert classify([4.5], known=KnownAttributes(registered_total_mass_kg=25000)).limit_kg == 18000
    unknown = classify([4.5])
    assert unknown.limit_kg == 18000 and unknown.stricter[0].limit_kg is None


def test_tractor_and_low_speed_truck_use_the_registered_mass() -> None:
    # 62号令 第三条第二款第（四）项
    c = classify([3.0, 3.0], known=KnownAttributes(vehicle_kind="low_speed_truck",
                                                   registered_total_mass_kg=4500))
    assert c.limit_kg == 4500 and "第（四）项" in c.basis


def test_air_suspension_values_are_configurable_and_marked() -> None:
    # 认定标准 notes (🟡): +1 t for 3-/4-axle trucks, 37 t for a 4-axle articulated
    truck = classify([1.9, 4.0, 1.35])
    assert truck.limit_kg == 32000 and truck.unconfirmed
    assert any("待确认" in n for n in truck.notes)
    no_air = classify([1.9, 4.0, 1.35], known=KnownAttributes(air_suspension=False))
    assert no_air.limit_kg == 31000 and not no_air.unconfirmed
    off = classify([1.9, 4.0, 1.35], ClassConfig(air_suspension_bonus_kg=0))
    assert off.limit_kg == 31000
    artic = classify([3.6, 7.0, 1.9])  # semitrailer spread d ≥ 1.8 m
    assert artic.limit_kg == 37000 and 36000 in artic.candidates_kg
    assert classify([3.6, 7.0, 1.9], ClassConfig(articulated_4_axle_air_limit_kg=0)
                    ).limit_kg == 36000


def test_axle_groups() -> None:
    assert axle_groups([3.3, 1.35, 7.0, 1.31, 1.31], 1.8) == [[1], [2, 3], [4, 5, 6]]


# Scatter small enough that the device's MPE governs (class 5: ±5 %, 🟡), at a known speed
# (an unknown one takes the prior at 100 km/h)
QUIET = OverloadConfig(scatter_bands_kmh_sd=((250.0, 0.005),))


def test_accuracy_class_table_marks_unconfirmed_entries() -> None:
    assert mpe_fraction("5") == 0.05 and ACCURACY_CLASSES["5"].confirmed
    assert mpe_fraction("10") == 0.10 and not ACCURACY_CLASSES["10"].confirmed
    with pytest.raises(WeighingConfigError):
        WeighingConfig(overload=OverloadConfig(accuracy_class="7"))


def test_at_the_limit_is_not_over() -> None:
    # 62号令 第三条: "超过" the limit
    r = check_overload(18000, 18000, [18000, 18000, 18000, 18000], QUIET,
                       speed_kmh=50.0)
    assert (r.verdict, r.overloaded, r.excess_kg) == ("within_limit", False, 0)


def test_device_error_is_deducted_before_the_excess_counts() -> None:
    # 行政处罚法 第四十条、第四十一条第二款: 18 900 kg over by 900, inside ±5 % (945 kg)
    r = check_overload(18900, 18000, [18900] * 4, QUIET, speed_kmh=50.0)
    assert r.excess_kg == 900 and r.allowance_kg == 945
    assert r.excess_after_allowance_kg == 0 and r.verdict == "within_limit"
    # a class-10 device deducts 10 %
    c10 = check_overload(19900, 18000, [19900] * 4,
                         OverloadConfig(accuracy_class="10",
                                        scatter_bands_kmh_sd=((250.0, 0.005),)),
                         speed_kmh=50.0)
    assert c10.allowance_kg == 1990 and c10.verdict == "within_limit"


def test_the_larger_deduction_not_the_sum() -> None:
    cfg = OverloadConfig(scatter_bands_kmh_sd=((50.0, 0.005), (250.0, 0.02)),
                         coverage_factor=4.0)
    slow = tolerance_for(40000, 30.0, cfg)  # 4 × 0.5 % = 2 % < 5 %
    assert (slow.tolerance_kg, slow.governing) == (2000, "device_mpe")
    fast = tolerance_for(40000, 80.0, cfg)  # 4 × 2 % = 8 % > 5 %
    assert (fast.tolerance_kg, fast.governing) == (3200, "site_scatter")
    assert fast.tolerance_kg < fast.device_mpe_kg + (fast.scatter_kg or 0)
    # an unknown speed: the worst band, or the prior at 100 km/h when that is larger
    assert tolerance_for(40000, None, cfg, rows=4).tolerance_kg == math.ceil(
        4.0 * prior_scatter(None, 4) * 40000)
    high = OverloadConfig(scatter_bands_kmh_sd=((250.0, 0.30),))
    assert tolerance_for(40000, None, high, rows=4).tolerance_kg == 48000


def test_jurisdiction_deduction_needs_its_source() -> None:
    with pytest.raises(WeighingConfigError):
        WeighingConfig(overload=OverloadConfig(jurisdiction_fraction=0.08))
    cfg = OverloadConfig(jurisdiction_fraction=0.08, jurisdiction_basis="某省规定第X条",
                         scatter_bands_kmh_sd=((250.0, 0.005),))
    t = tolerance_for(50000, 50.0, cfg)
    assert (t.tolerance_kg, t.governing, t.basis_zh) == (4000, "jurisdiction", "某省规定第X条")


def test_verdicts_between_candidate_limits() -> None:
    # six-axle, drive unknown: > 49 t + tolerance overloaded; between 46 and 49 t undecidable
    over = check_overload(53000, 49000, [53000] * 4, QUIET, (46000, 49000), 50.0)
    assert over.verdict == "overloaded" and over.overloaded
    between = check_overload(50000, 49000, [50000] * 4, QUIET, (46000, 49000), 50.0)
    assert between.verdict == "undecidable" and not between.overloaded
    within = check_overload(48000, 49000, [48000] * 4, QUIET, (46000, 49000), 50.0)
    assert within.verdict == "within_limit"


def test_one_row_cannot_be_checked_for_an_anomaly() -> None:
    assert check_overload(30000, 18000, [30000], QUIET, speed_kmh=50.0).verdict == "uncertain"


def test_no_limit_means_undecidable_never_a_default() -> None:
    r = check_overload(60000, None, [60000] * 4, QUIET, candidates_kg=(46000, 49000),
                       speed_kmh=50.0)
    assert r.verdict == "undecidable" and not r.overloaded and r.exceeds_all_candidates


def test_scatter_is_pooled_from_reference_runs_and_passages() -> None:
    ref = [HistoryPassage(55.0, [40800, 41200], 40000.0)] * 20  # +2.5 %
    rows = [HistoryPassage(55.0, [39000, 41000])] * 20  # rows ±2.5 % around the mean
    bands = estimate_scatter(ref + rows, band_kmh=10.0, correlation_factor=1.0)
    assert [(b.speed_min_kmh, b.speed_max_kmh) for b in bands] == [(50.0, 60.0)]
    # reference: 0.025 on 20 dof; rows: s² = 2 · 0.025² / 1, / N=2 → 0.025 on 40 dof
    assert bands[0].estimate == pytest.approx(0.025, rel=1e-3)
    # the bound: the reference pool's, on fewer degrees of freedom, is the larger
    assert bands[0].relative_sd == pytest.approx(upper_sd(0.025 ** 2, 20), rel=1e-6)
    assert bands[0].relative_sd > 0.025
    assert bands[0].samples == 60  # a reference run counts in both pools


@pytest.mark.parametrize("known", [
    KnownAttributes(vehicle_kind="passenger"),  # an articulated bus: no row of the table
    KnownAttributes(vehicle_kind="special_purpose"),  # 专用作业车: Art. 3 para 2 item 5
    KnownAttributes(vehicle_kind="farm_tractor"),  # 拖拉机 without its 行驶证 mass: item 4
])
def test_kinds_the_table_does_not_judge_are_undecidable(known: KnownAttributes) -> None:
    c = classify([5.9, 6.4], known=known)
    assert c.limit_kg is None and c.vehicle_class is None
    assert c.flags == ("class_undecidable",) and c.notes and "需人工核定" in c.notes[0]
