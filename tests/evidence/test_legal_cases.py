"""The verdict by the law on cases, each test citing the article it checks.

Limits never stricter than the law (62号令 Art. 3), the tolerance is the device's error
(行政处罚法 Art. 40, 41(2)), rules by date (行政处罚法 Art. 37; 浙江省公路条例 Art. 61).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from zhichao.evidence.eligibility import Eligibility, Status, evaluate
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.penalty import Outcome
from zhichao.evidence.rules import RuleSet, load_rule_set, parse_rule_set
from zhichao.testing.cases import case_dict, vehicle_dict

SIX = [3.2, 1.35, 6.5, 1.31, 1.31]  # tractor with a rear tandem: 6x4 or 6x2, WIM can't tell
DECIDED = "2025-07-01T00:00:00Z"


def _vehicle(spacings: list[float], gross: float, limit: int, allowance: float | None = None,
             **kw: Any) -> dict[str, Any]:
    n = len(spacings) + 1
    allowance = round(gross * 0.05) if allowance is None else allowance
    return vehicle_dict(axle_count=n, axle_spacings_m=spacings,
                        axle_loads_kg=[gross / n] * n, wheel_loads_kg=[[gross / n / 2] * 2] * n,
                        gross_weight_kg=gross, limit_kg=limit, allowance_kg=allowance,
                        excess_kg=max(0.0, gross - limit),
                        excess_after_allowance_kg=max(0.0, gross - allowance - limit), **kw)


def _case(tmp_path: Path, vehicle: dict[str, Any], reg: dict[str, Any] | None = None,
          device_class: str = "5", jurisdiction: str = "CN", **kw: Any) -> CaseInputs:
    base = case_dict(tmp_path)
    base["device"]["accuracy_class"] = device_class
    base["site"]["jurisdiction"] = jurisdiction
    registration = {"plate_text": "浙J12345", "axle_count": vehicle["axle_count"],
                    "total_mass_kg": None} | (reg or {})
    images = [dict(i, axle_count_visible=vehicle["axle_count"]) if i["role"] == "side" else i
              for i in base["images"]]
    raw = base | {"vehicle": vehicle, "registration": registration, "images": images,
                  "decision_utc": DECIDED} | kw
    return CaseInputs.from_json(raw)


def _run(case: CaseInputs, rules: RuleSet | None = None) -> Eligibility:
    return evaluate(case, rules or load_rule_set(case.site.jurisdiction if case.site else "CN"))


def _codes(result: Eligibility) -> set[str]:
    return {r.code for r in result.reasons}


# --------------------------------------------------------------- limits (62号令 第三条)

def test_six_axle_unknown_drive_over_49_t_is_enforceable(tmp_path: Path) -> None:
    """62号令 第三条第一款第（八）项: 49 t; "46 t if single drive" noted for the reviewer."""
    r = _run(_case(tmp_path, _vehicle(SIX, 75000.0, 49000)))
    assert r.status is Status.ENFORCEABLE, _codes(r)
    assert r.assessment is not None and r.assessment.limit_kg == 49000
    assert any("46000" in s and "单轴" in s for s in r.assessment.stricter_zh)
    assert r.penalty is not None and r.penalty.outcome is Outcome.FINE
    # 75 000 − 3 750 − 49 000 = 22 250 kg: 22 t × 500 yuan (62号令 第四十三条第（二）项)
    assert r.penalty.fine_yuan == 11000


def test_six_axle_between_46_and_49_t_goes_to_review(tmp_path: Path) -> None:
    """62号令 第三条第一款第（八）项: over 46 t only matters if the drive axle is single."""
    r = _run(_case(tmp_path, _vehicle(SIX, 50500.0, 49000)))
    assert r.status is Status.MANUAL_REVIEW and "limit_depends_on_facts" in _codes(r)
    assert r.penalty is None


def test_registration_gives_the_single_drive_axle(tmp_path: Path) -> None:
    """62号令 第三条第一款第（八）项: a single drive axle (registration) → 46 t."""
    r = _run(_case(tmp_path, _vehicle(SIX, 50500.0, 46000), reg={"drive_axles": [2]}))
    assert r.assessment is not None and r.assessment.limit_kg == 46000
    assert r.assessment.verdict == "overloaded" and r.penalty is not None


def test_record_stricter_than_the_law_gets_no_penalty(tmp_path: Path) -> None:
    """62号令 第三条: a record carrying 46 t for a double-drive combination (49 t) at 48.5 t
    must not get the warning it used to get."""
    r = _run(_case(tmp_path, _vehicle(SIX, 48500.0, 46000), reg={"drive_axles": [2, 3]}))
    assert "limit_stricter_than_law" in _codes(r) and r.status is not Status.ENFORCEABLE
    assert r.penalty is None
    heavy = _run(_case(tmp_path, _vehicle(SIX, 70000.0, 46000)))  # over 49 t too: still none
    assert "limit_stricter_than_law" in _codes(heavy) and heavy.penalty is None


def test_two_axle_truck_without_registration_is_reviewed_not_unusable(tmp_path: Path) -> None:
    """认定标准 note 1 (🟡): min(18 t, 行驶证总质量); unknown → 18 t and a reviewer checks."""
    r = _run(_case(tmp_path, _vehicle([4.5], 25000.0, 18000)))
    assert r.status is Status.MANUAL_REVIEW, _codes(r)
    assert "registration_needed" in _codes(r) and r.penalty is not None
    assert r.assessment is not None and r.assessment.limit_kg == 18000


def test_two_axle_truck_with_lower_registered_mass(tmp_path: Path) -> None:
    """认定标准 note 1: a 12 t 行驶证 mass is the limit."""
    r = _run(_case(tmp_path, _vehicle([4.5], 16000.0, 18000), reg={"total_mass_kg": 12000}))
    assert r.assessment is not None and r.assessment.limit_kg == 12000
    assert r.assessment.verdict == "overloaded" and "limit_lowered_by_facts" in _codes(r)


def test_three_axle_truck_air_suspension(tmp_path: Path) -> None:
    """62号令 第三条第二款 with the 认定标准 note (🟡): +1 t with dual drive tyres and air
    suspension; unknown → the +1 t applies, marked unconfirmed and shown to the reviewer."""
    v = _vehicle([3.8, 1.35], 26900.0, 26000)
    r = _run(_case(tmp_path, v))
    assert r.assessment is not None and r.assessment.limit_kg == 26000
    # 26 900 − 1 345 = 25 555 kg: over 25 t only if there is no air suspension → review
    assert r.assessment.verdict == "depends_on_facts" and r.penalty is None
    assert "legal_values_unconfirmed" in _codes(r)
    no_air = _run(_case(tmp_path, _vehicle([3.8, 1.35], 26900.0, 25000),
                        reg={"air_suspension": False}))
    assert no_air.assessment is not None and no_air.assessment.limit_kg == 25000
    assert no_air.assessment.verdict == "overloaded" and no_air.penalty is not None


def test_four_axle_articulated_37_t(tmp_path: Path) -> None:
    """认定标准 note (🟡): 4-axle articulated, air suspension, spread ≥ 1.8 m → 37 t."""
    r = _run(_case(tmp_path, _vehicle([3.6, 7.0, 1.9], 38500.0, 37000)))
    assert r.assessment is not None and r.assessment.limit_kg == 37000
    assert r.assessment.verdict == "depends_on_facts"  # over 36 t + tolerance only


# --------------------------------------------------- tolerance (行政处罚法 第四十、四十一条)

def test_class_10_device_deducts_10_percent(tmp_path: Path) -> None:
    """行政处罚法 第四十一条第二款: no penalty inside the device's error (class 10: ±10 %,
    ❌ unconfirmed, shown to the reviewer)."""
    v = _vehicle(SIX, 54000.0, 49000, allowance=5400.0)
    r = _run(_case(tmp_path, v, device_class="10"))
    assert r.assessment is not None and r.assessment.tolerance_kg == 5400
    # 54 000 − 5 400 = 48 600 kg: not over 49 t (over 46 t only if single drive)
    assert r.assessment.verdict == "depends_on_facts" and r.penalty is None
    detail = next(x.detail for x in r.reasons if x.code == "legal_values_unconfirmed")
    assert "10级" in detail


def test_record_without_deduction_is_never_enforceable(tmp_path: Path) -> None:
    """行政处罚法 第四十条: a record that deducted less than its device's error."""
    r = _run(_case(tmp_path, _vehicle(SIX, 75000.0, 49000, allowance=0.0)))
    assert r.status is not Status.ENFORCEABLE
    assert "deduction_below_device_error" in _codes(r)
    # the proposal, for the reviewer, still deducts the device's error
    assert r.assessment is not None and r.assessment.tolerance_kg == 3750


def test_class_1_device_gets_no_5_percent(tmp_path: Path) -> None:
    """The deduction is the device's own error: class 1 (±1 %, ❌) with a record that
    deducted 1 %."""
    r = _run(_case(tmp_path, _vehicle(SIX, 50000.0, 49000, allowance=500.0), device_class="1"))
    assert r.assessment is not None and r.assessment.tolerance_kg == 500
    assert r.assessment.verdict == "overloaded"


def test_jurisdiction_may_set_a_larger_deduction_with_its_source(tmp_path: Path) -> None:
    raw = json.loads(resources.files("zhichao.evidence").joinpath("rules", "cn.json")
                     .read_text("utf-8"))
    raw["versions"][0]["allowance"] = {"method": "ratio_of_gross", "ratio": "0.08", "source": {
        "law_zh": "某省规定", "article_zh": "第X条", "status": "❌"}}
    rules = parse_rule_set(raw)
    r = _run(_case(tmp_path, _vehicle(SIX, 75000.0, 49000)), rules)
    assert r.assessment is not None and r.assessment.tolerance_kg == 6000
    assert "某省规定" in r.assessment.tolerance_basis_zh
    assert "allowance.method" in next(x.detail for x in r.reasons
                                      if x.code == "rule_parameters_unconfirmed")


# ---------------------------------------------------------- rules by date (第三十七条)

def _zj_case(tmp_path: Path, gross: float, act: str, decided: str) -> CaseInputs:
    v = _vehicle(SIX, gross, 49000, time_utc=act)
    case = _case(tmp_path, v, jurisdiction="CN-ZJ", decision_utc=decided)
    return case


def test_zhejiang_in_force_from_2020_09_01() -> None:
    """浙江省公路条例 第六十一条: in force from 2020-09-01, not 2020-05-15."""
    rules = load_rule_set("CN-ZJ")
    assert rules.in_force(datetime(2020, 8, 31, 15, 59, tzinfo=UTC)).version == "CN-ZJ-62-2016"
    assert rules.in_force(datetime(2020, 8, 31, 16, 0, tzinfo=UTC)).version == "CN-ZJ-2020"


def test_later_lighter_rule_applies(tmp_path: Path) -> None:
    """行政处罚法 第三十七条: an act of 2020-08 decided in 2021 takes the lighter 浙江 rule."""
    act = "2020-08-15T02:00:00Z"
    case = _zj_case(tmp_path, 75000.0, act, "2021-03-01T00:00:00Z")
    r = evaluate(case, load_rule_set("CN-ZJ"))
    assert r.rule is not None and r.rule.version == "CN-ZJ-62-2016"  # in force at the act
    assert r.penalty is not None and r.penalty.rule_version == "CN-ZJ-2020"
    # 62号令: 22 t × 500 = 11 000; 浙江: (22 250 − 9 800) kg → 12 t × 300 = 3 600
    assert r.penalty.fine_yuan == 3600
    assert any("第三十七条" in n for n in r.penalty.reviewer_notes_zh)
    before = evaluate(_zj_case(tmp_path, 75000.0, act, "2020-08-20T00:00:00Z"),
                      load_rule_set("CN-ZJ"))
    assert before.penalty is not None and before.penalty.fine_yuan == 11000


def test_rules_that_cannot_be_compared_go_to_review(tmp_path: Path) -> None:
    """行政处罚法 第三十七条: 警告 (62号令, ≤ 1 000 kg over) against 批评教育 (浙江, < 20 %)."""
    case = _zj_case(tmp_path, 52100.0, "2020-08-15T02:00:00Z", "2021-03-01T00:00:00Z")
    r = evaluate(case, load_rule_set("CN-ZJ"))
    assert r.assessment is not None and r.assessment.excess_kg == Decimal("495")
    assert "lenity_not_comparable" in _codes(r)
    reason = next(x for x in r.reasons if x.code == "lenity_not_comparable")
    assert "警告" in reason.detail and "批评教育" in reason.detail
    assert reason.severity == "manual_review"


# ------------------------------------------------------- evaluate and seal agree

@pytest.mark.parametrize("gross", [75000.0, 50500.0, 48000.0])
def test_evaluate_and_seal_reach_the_same_decision(tmp_path: Path, gross: float) -> None:
    """``zhichao evaluate`` and ``zhichao seal`` on the same case file."""
    from zhichao.cli import main

    base = tmp_path / "in"
    base.mkdir()
    raw = case_dict(base) | {"vehicle": _vehicle(SIX, gross, 49000), "decision_utc": DECIDED}
    case_path = base / "case.json"
    case_path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    assert main(["keygen", str(tmp_path / "k")]) == 0
    out = tmp_path / "decision.json"
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["evaluate", str(case_path), "--json"]) == 0
    out.write_text(buf.getvalue(), encoding="utf-8")
    decision = json.loads(buf.getvalue())
    assert main(["seal", str(case_path), "--out", str(tmp_path / "pkg"), "--key",
                 str(tmp_path / "k.key"), "--station", "S001", "--log",
                 str(tmp_path / "log")]) == 0
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["case"]["eligibility"] == decision["eligibility"]
    assert manifest["case"]["penalty"] == decision["penalty"]


def test_evaluate_bad_input_is_a_clear_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from zhichao.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["evaluate", str(bad)]) == 2
    assert "JSON 格式错误" in capsys.readouterr().err
    raw = case_dict(tmp_path)
    del raw["vehicle"]["gross_weight_kg"]
    bad.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    assert main(["evaluate", str(bad)]) == 2
    assert "gross_weight_kg" in capsys.readouterr().err
    raw = case_dict(tmp_path)
    raw["registration"]["drive_axles"] = ["2"]
    bad.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    assert main(["evaluate", str(bad)]) == 2
    assert "drive_axles" in capsys.readouterr().err


def test_evaluate_text_shows_limit_tolerance_and_penalty(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zhichao.cli import main

    path = tmp_path / "case.json"
    path.write_text(json.dumps(case_dict(tmp_path), ensure_ascii=False), encoding="utf-8")
    assert main(["evaluate", str(path)]) == 0
    out = capsys.readouterr().out
    for text in ("ENFORCEABLE", "49000", "46000千克", "允差 tolerance: 620", "1级",
                 "拟处罚 proposed penalty: 罚款 600 元", "第五十三条", "北京时间"):
        assert text in out, text


def test_unconfirmed_class_mpe_is_configurable(tmp_path: Path) -> None:
    """The ❌ table entries stay configurable: a deployment sets class 10 after legal review."""
    from zhichao.evidence.eligibility import GateConfig

    case = _case(tmp_path, _vehicle(SIX, 60000.0, 49000, allowance=6000.0), device_class="10")
    plain = evaluate(case, load_rule_set("CN"))
    assert plain.assessment is not None and plain.assessment.device_mpe_kg == 6000
    assert "legal_values_unconfirmed" in _codes(plain)
    set_ = evaluate(case, load_rule_set("CN"), GateConfig(class_mpe_in_service_pct={"10": 8.0}))
    assert set_.assessment is not None and set_.assessment.device_mpe_kg == 4800
    assert "legal_values_unconfirmed" not in _codes(set_)
    assert set_.assessment.tolerance_kg == 6000  # the record's own 6 000 kg stays the larger


def test_registration_of_another_plate_gives_no_facts(tmp_path: Path) -> None:
    """Registration facts apply only when the plate matches (otherwise the lenient limit)."""
    r = _run(_case(tmp_path, _vehicle(SIX, 50500.0, 49000),
                   reg={"plate_text": "浙J99999", "drive_axles": [2]}))
    assert "registration_plate_mismatch" in _codes(r)
    assert r.assessment is not None and r.assessment.limit_kg == 49000


def test_a_bus_is_not_judged_by_the_goods_vehicle_table(tmp_path: Path) -> None:
    """62号令 第三条第一款: every row is a 货车 or an 汽车列车; an articulated bus (客车) at
    29 t is no 三轴汽车列车 over 27 t."""
    r = _run(_case(tmp_path, _vehicle([5.9, 6.4], 29000.0, 27000),
                   reg={"vehicle_kind": "passenger"}))
    assert r.status is Status.MANUAL_REVIEW and "limit_undecidable" in _codes(r)
    assert r.penalty is None


def test_a_truck_with_a_full_trailer_is_not_taken_for_a_single_drive_tractor(
        tmp_path: Path) -> None:
    """62号令 第三条第一款第（八）项: 46 t only where the tractor's drive axle is single; a
    6x4 truck + full trailer (3.5 m drawbar, the trailer's own 5.0 m wheelbase) at 50.5 t
    is over 46 t only: review, no proposal."""
    r = _run(_case(tmp_path, _vehicle([3.8, 1.35, 3.5, 5.0, 1.3], 50500.0, 49000)))
    assert r.assessment is not None and r.assessment.limit_kg == 49000
    assert r.status is Status.MANUAL_REVIEW and "limit_depends_on_facts" in _codes(r)
    assert r.penalty is None


def test_the_ambiguous_tractor_kind_is_refused(tmp_path: Path) -> None:
    """62号令 第三条第二款第（四）项 is about 拖拉机; a semi-trailer tractor (半挂牵引车) fed as
    "tractor" would have had its own 行驶证 mass as the combination's limit."""
    from zhichao.evidence.errors import InputError

    with pytest.raises(InputError, match="farm_tractor"):
        _case(tmp_path, _vehicle(SIX, 60000.0, 49000), reg={"vehicle_kind": "tractor"})
    farm = _run(_case(tmp_path, _vehicle([2.5], 6000.0, 4500),
                      reg={"vehicle_kind": "farm_tractor", "total_mass_kg": 4500}))
    assert farm.assessment is not None and farm.assessment.limit_kg == 4500
