"""The eligibility gate: a complete case is ENFORCEABLE; each defect gives its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.evidence.conftest import case_dict, vehicle_dict
from zhichao.evidence.eligibility import GateConfig, Severity, Status, evaluate, plate_grammar_ok
from zhichao.evidence.errors import InputError
from zhichao.evidence.inputs import CaseInputs, VehicleRecord
from zhichao.evidence.rules import load_rule_set

RULES = load_rule_set("CN-ZJ")


def _eval(tmp_path: Path, config: GateConfig | None = None, **overrides: Any) -> Any:
    case = CaseInputs.from_json(case_dict(tmp_path, **overrides))
    return evaluate(case, RULES, config)


def test_complete_case_is_enforceable(tmp_path: Path) -> None:
    result = _eval(tmp_path)
    assert result.status is Status.ENFORCEABLE, result.reasons
    assert result.to_json()["requires_human_review"] is True


def _device(**kw: Any) -> dict[str, Any]:
    base = {
        "device_id": "WIM-ZJ-0007", "technical_review_approved": True,
        "technical_review_date": "2024-03-01", "legal_review_approved": True,
        "legal_review_date": "2024-03-05", "accuracy_class": "5",
        "certificate_number": "ZJJL-2025-0456", "certificate_issuer": "浙江省计量科学研究院",
        "certificate_valid_from": "2025-01-10T00:00:00+08:00",
        "certificate_valid_to": "2026-01-10T00:00:00+08:00", "drift_alarm_open": False,
    }
    base.update(kw)
    return base


CASES: list[tuple[str, dict[str, Any], Status, str]] = [
    ("no device", {"device": None}, Status.UNUSABLE, "device_unavailable"),
    ("no tech review", {"device": _device(technical_review_approved=False)}, Status.UNUSABLE,
     "device_technical_review"),
    ("legal review later", {"device": _device(legal_review_date="2025-07-01")}, Status.UNUSABLE,
     "device_legal_review"),
    ("cert expired", {"device": _device(certificate_valid_to="2025-06-01T02:03:04Z")},
     Status.UNUSABLE, "certificate_invalid"),
    ("cert not yet valid", {"device": _device(certificate_valid_from="2025-06-02T00:00:00Z")},
     Status.UNUSABLE, "certificate_invalid"),
    ("cert missing", {"device": _device(certificate_number=None)}, Status.UNUSABLE,
     "certificate_unavailable"),
    ("class unknown", {"device": _device(accuracy_class=None)}, Status.UNUSABLE,
     "accuracy_class_unknown"),
    ("drift", {"device": _device(drift_alarm_open=True)}, Status.UNUSABLE, "drift_alarm_open"),
    ("drift unknown", {"device": {k: v for k, v in _device().items()
                                  if k != "drift_alarm_open"}}, Status.UNUSABLE,
     "drift_alarm_open"),
    ("no site", {"site": None}, Status.UNUSABLE, "site_unavailable"),
    ("no clocks", {"clocks": None}, Status.UNUSABLE, "clock_unavailable"),
    ("clock off", {"clocks": {"measured_utc": "2025-06-01T02:00:00Z",
                              "offsets_ms": {"CAM-F": 900}}}, Status.UNUSABLE,
     "clock_out_of_tolerance"),
    ("no images", {"images": []}, Status.UNUSABLE, "image_missing"),
    ("within limit", {"vehicle": vehicle_dict(verdict="within_limit", overloaded=False)},
     Status.UNUSABLE, "no_violation"),
    ("data gap", {"vehicle": vehicle_dict(flags=["data_gap"])}, Status.UNUSABLE, "data_quality"),
    ("reversing", {"vehicle": vehicle_dict(flags=["reversing"])}, Status.MANUAL_REVIEW,
     "abnormal_driving"),
    ("class undecidable", {"vehicle": vehicle_dict(vehicle_class=None, limit_kg=None,
                                                   verdict="undecidable", overloaded=False,
                                                   flags=["class_undecidable"])},
     Status.MANUAL_REVIEW, "limit_undecidable"),
    ("uncertain", {"vehicle": vehicle_dict(verdict="uncertain", overloaded=False)},
     Status.MANUAL_REVIEW, "verdict_uncertain"),
    # 62号令 第三条第一款第（八）项: 46 t only if the drive axle is single, which is not known
    ("stricter limit", {"vehicle": vehicle_dict(limit_kg=46000, excess_kg=16000)},
     Status.MANUAL_REVIEW, "limit_stricter_than_law"),
    # 行政处罚法 第四十条、第四十一条第二款: deduction below the class-1 MPE (620 kg)
    ("small deduction", {"vehicle": vehicle_dict(allowance_kg=300.0)},
     Status.MANUAL_REVIEW, "deduction_below_device_error"),
    ("class 5 device, 1 % deducted", {"device": _device(accuracy_class="5")},
     Status.MANUAL_REVIEW, "deduction_below_device_error"),
    ("no plate", {"plate": None}, Status.MANUAL_REVIEW, "plate_unavailable"),
    ("low confidence", {"plate": {"text": "浙J12345", "confidence": 0.9, "accepted": True}},
     Status.MANUAL_REVIEW, "plate_low_confidence"),
    ("bad grammar", {"plate": {"text": "浙JI2345", "confidence": 0.99, "accepted": True}},
     Status.MANUAL_REVIEW, "plate_grammar_invalid"),
    ("not accepted", {"plate": {"text": "浙J12345", "confidence": 0.99, "accepted": False}},
     Status.MANUAL_REVIEW, "plate_not_accepted"),
    ("registered axles", {"registration": {"plate_text": "浙J12345", "axle_count": 4}},
     Status.MANUAL_REVIEW, "axle_count_mismatch"),
]


@pytest.mark.parametrize(("name", "overrides", "status", "code"), CASES,
                         ids=[c[0] for c in CASES])
def test_each_defect_has_its_reason(tmp_path: Path, name: str, overrides: dict[str, Any],
                                    status: Status, code: str) -> None:
    result = _eval(tmp_path, **overrides)
    assert result.status is status, (name, [r.code for r in result.reasons])
    assert code in {r.code for r in result.reasons}
    reason = next(r for r in result.reasons if r.code == code)
    assert reason.message_zh and reason.basis_zh


def test_site_published_too_recently_is_configurable(tmp_path: Path) -> None:
    site = case_dict(tmp_path)["site"] | {"published_utc": "2025-05-25T00:00:00+08:00"}
    assert _eval(tmp_path, site=site).status is Status.UNUSABLE  # Zhejiang: 15 days
    relaxed = GateConfig(publication_lead_days={"CN-ZJ": 3})
    assert _eval(tmp_path, relaxed, site=site).status is Status.ENFORCEABLE


def test_missing_registration_is_only_info(tmp_path: Path) -> None:
    result = _eval(tmp_path, registration=None)
    assert result.status is Status.ENFORCEABLE
    assert {r.code: r.severity for r in result.reasons} == {
        "registration_unavailable": Severity.INFO,
        "rule_parameters_unconfirmed": Severity.INFO,
        "legal_values_unconfirmed": Severity.INFO}  # the class-1 MPE (❌, shown)


def test_unconfirmed_rule_parameters_are_surfaced(tmp_path: Path) -> None:
    result = _eval(tmp_path)
    reason = next(r for r in result.reasons if r.code == "rule_parameters_unconfirmed")
    for name in ("penalty.part_tonne", "hearing_threshold_yuan", "statement_days",
                 "precedence"):
        assert name in reason.detail, name


@pytest.mark.parametrize(("plate", "ok"), [
    ("浙J12345", True), ("粤BD12345", True), ("京A12345D", True),
    ("浙A1234挂", True), ("浙JO2345", False), ("X12345", False), ("浙J1234", False),
])
def test_plate_grammar(plate: str, ok: bool) -> None:
    assert plate_grammar_ok(plate) is ok


@pytest.mark.parametrize(("field", "value", "message"), [
    ("time_utc", "2025-06-01 02:03:04", "no UTC offset"),
    ("gross_weight_kg", "heavy", "not a number"),
    ("verdict", "guilty", "verdict"),
    ("axle_count", 6.5, "axle_count"),
])
def test_malformed_vehicle_names_the_field(field: str, value: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        VehicleRecord.from_json(vehicle_dict(**{field: value}))


def test_extra_keys_are_tolerated() -> None:
    record = VehicleRecord.from_json(vehicle_dict(new_key=[1, 2]))
    assert record.raw["new_key"] == [1, 2]


@pytest.mark.parametrize(("time_utc", "review_date", "refused"), [
    # 07:00 北京时间 on 1 June is 23:00 UTC on 31 May: approved that (Beijing) day
    ("2025-05-31T23:00:00Z", "2025-06-01", False),
    ("2025-06-01T15:59:59Z", "2025-06-02", True),  # 23:59:59 北京时间 on 1 June
    ("2025-06-01T16:00:00Z", "2025-06-02", False),  # 00:00 北京时间 on 2 June
])
def test_device_approval_dates_are_beijing_dates(tmp_path: Path, time_utc: str,
                                                 review_date: str, refused: bool) -> None:
    device = _device(technical_review_date=review_date, legal_review_date=review_date,
                     certificate_valid_from="2025-01-01T00:00:00Z",
                     certificate_valid_to="2026-01-01T00:00:00Z")
    result = _eval(tmp_path, vehicle=vehicle_dict(time_utc=time_utc), device=device)
    codes = {r.code for r in result.reasons}
    assert ({"device_technical_review", "device_legal_review"} <= codes) is refused
    assert not ({"device_technical_review", "device_legal_review"} & codes) or refused


def test_in_pavement_sensors_need_legal_review(tmp_path: Path) -> None:
    # law.md §2 (🟡): sensors laid in ordinary pavement are outside JJG 907-2006's scope;
    # whether their certificate shows the device verified (浙江 Art. 40) is for legal review
    strip = _eval(tmp_path, device=_device(installation_type="in_pavement_strip",
                                           accuracy_class="1"))
    assert strip.status is Status.MANUAL_REVIEW
    assert "device_outside_jjg907_scope" in {r.code for r in strip.reasons}
    plate = _eval(tmp_path, device=_device(installation_type="platform", accuracy_class="1"))
    assert plate.status is Status.ENFORCEABLE, plate.reasons
    unknown = _eval(tmp_path, device=_device(accuracy_class="1"))  # not recorded: said
    assert unknown.status is Status.ENFORCEABLE
    assert [r.severity for r in unknown.reasons if r.code == "device_installation_unknown"
            ] == [Severity.INFO]
    with pytest.raises(InputError, match="installation_type"):
        _eval(tmp_path, device=_device(installation_type="quartz"))


def test_a_record_weighed_during_a_drift_alarm_is_unusable(tmp_path: Path) -> None:
    # the station's drift monitor flags every record while its alarm is open; a device
    # status that says closed (a package sealed from a stale one) must not make it usable
    flagged = _eval(tmp_path, vehicle=vehicle_dict(flags=["calibration_drift"]))
    assert flagged.status is Status.UNUSABLE
    assert "record_drift_flag" in {r.code for r in flagged.reasons}
    assert "unknown_flag" not in {r.code for r in flagged.reasons}


@pytest.mark.parametrize(("flag", "status"), [
    ("calibration_not_in_force", Status.UNUSABLE),  # weighed uncorrected
    ("outside_calibration_range", Status.MANUAL_REVIEW),  # extrapolated correction
])
def test_calibration_profile_flags_are_known_reasons(tmp_path: Path, flag: str,
                                                     status: Status) -> None:
    from zhichao.weighing.vehicle import CALIBRATION_FLAGS, FLAGS_ZH

    assert flag in CALIBRATION_FLAGS and flag in FLAGS_ZH  # the core raises it
    r = _eval(tmp_path, vehicle=vehicle_dict(flags=[flag]))
    codes = {x.code for x in r.reasons}
    assert flag in codes and "unknown_flag" not in codes
    assert r.status is status
