"""Stage 6 and 7: 62号令 Art. 3 classes and limits, allowance and the uncertainty verdict."""

from __future__ import annotations

import pytest

from zhichao.weighing.classification import KnownAttributes, axle_groups, classify
from zhichao.weighing.config import ClassConfig, OverloadConfig
from zhichao.weighing.overload import check_overload


@pytest.mark.parametrize(("spacings", "code", "limit"), [
    ([4.5], "truck_2_axle", 18000),
    ([3.8, 1.35], "truck_3_axle", 25000),
    ([1.9, 4.2], "truck_3_axle", 25000),
    ([3.6, 7.0], "combination_3_axle", 27000),
    ([1.9, 4.0, 1.35], "truck_4_axle", 31000),
    ([3.6, 7.0, 1.31], "combination_4_axle", 36000),
    ([3.3, 1.35, 6.8], "combination_4_axle", 36000),
    ([3.6, 7.0, 1.31, 1.31], "combination_5_axle", 43000),
    ([1.9, 2.8, 7.0, 1.31, 1.31], "combination_6_axle_single_drive", 46000),
    ([3.6, 7.0, 1.31, 1.31, 1.31], "combination_6_axle_single_drive", 46000),
])
def test_decidable_classes(spacings: list[float], code: str, limit: int) -> None:
    c = classify(spacings)
    assert (c.vehicle_class, c.limit_kg) == (code, limit)
    assert "第三条" in c.basis and "62号" in c.basis
    assert not c.flags


@pytest.mark.parametrize(("spacings", "candidates"), [
    ([3.3, 1.35, 7.0, 1.31, 1.31], (46000, 49000)),  # 6x4 or 6x2 with a tag axle
    ([3.0, 3.0], (25000, 27000)),
    ([2.7, 3.4, 3.0], (31000, 36000)),
])
def test_undecidable_configurations_have_no_limit(spacings: list[float],
                                                  candidates: tuple[int, ...]) -> None:
    c = classify(spacings)
    assert c.limit_kg is None and c.vehicle_class is None
    assert c.flags == ("class_undecidable",)
    assert c.candidates_kg == candidates


def test_external_facts_decide_the_drive_axle_and_tyres() -> None:
    tandem = classify([3.3, 1.35, 7.0, 1.31, 1.31], known=KnownAttributes(drive_axles=(2, 3)))
    assert tandem.limit_kg == 49000
    single = classify([3.3, 1.35, 7.0, 1.31, 1.31], known=KnownAttributes(drive_axles=(2,)))
    assert single.limit_kg == 46000
    policy = classify([3.3, 1.35, 7.0, 1.31, 1.31],
                      ClassConfig(rear_tandem_is_drive_tandem=True))
    assert policy.limit_kg == 49000
    tyres = classify([3.6, 7.0, 1.31, 1.31], known=KnownAttributes(single_tyre_axles=(3, 4, 5)))
    assert tyres.limit_kg == 43000 - 3 * 3000
    two = classify([4.5], known=KnownAttributes(registered_total_mass_kg=16000))
    assert two.limit_kg == 16000


def test_axle_groups() -> None:
    assert axle_groups([3.3, 1.35, 7.0, 1.31, 1.31], 1.8) == [[1], [2, 3], [4, 5, 6]]


CFG = OverloadConfig(allowance_fraction=0.05, confidence=0.99)


def test_at_the_limit_is_not_over() -> None:
    r = check_overload(18000, 18000, [18000, 18000, 18000, 18000], CFG)
    assert (r.verdict, r.overloaded, r.excess_kg) == ("within_limit", False, 0)


def test_allowance_is_subtracted_before_the_excess_counts() -> None:
    # 18 900 kg: over the limit by 900, but the 5 % allowance (945 kg) covers it
    r = check_overload(18900, 18000, [18900] * 4, CFG)
    assert r.excess_kg == 900 and r.allowance_kg == 945
    assert r.excess_after_allowance_kg == 0 and r.verdict == "within_limit"


def test_overload_needs_the_rows_to_support_it() -> None:
    agree = check_overload(21000, 18000, [20950, 21050, 21000, 21000], CFG)
    assert agree.verdict == "overloaded" and agree.overloaded
    assert agree.excess_after_allowance_kg == 21000 - 1050 - 18000
    scatter = check_overload(21000, 18000, [18500, 23500, 19000, 23000], CFG)
    assert scatter.verdict == "uncertain" and not scatter.overloaded
    one_row = check_overload(30000, 18000, [30000], CFG)
    assert one_row.verdict == "uncertain"


def test_no_limit_means_undecidable_never_a_default() -> None:
    r = check_overload(60000, None, [60000] * 4, CFG, candidates_kg=(46000, 49000))
    assert r.verdict == "undecidable" and not r.overloaded and r.exceeds_all_candidates
