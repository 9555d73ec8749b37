"""Certificates and a device's legal status; the evidence stage's input round-trips."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from zhichao.calibration.errors import DeviceRecordError
from zhichao.calibration.legal import Certificate, DeviceLegalStatus, is_usable_at
from zhichao.evidence.inputs import DeviceStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _device(**kw: object) -> DeviceLegalStatus:
    base: dict[str, object] = dict(
        device_id="WIM-330100-01", site_id="SIM-SITE-01", lane_id="1",
        installation_type="in_pavement_strip", manufacturer="某某称重", model="QZ-4",
        certificates=[Certificate("JJ2026-0001", "浙江省计量科学研究院", T0,
                                  T0 + timedelta(days=365), "5", "E")],
        calibration_profile_id="CAL-X", calibration_valid_until_utc=T0 + timedelta(days=200),
        technical_review_approved=True, technical_review_date=date(2025, 12, 20),
        legal_review_approved=True, legal_review_date=date(2025, 12, 28))
    base.update(kw)
    return DeviceLegalStatus(**base)  # type: ignore[arg-type]


def test_usable_inside_the_certificate_with_a_scope_warning() -> None:
    u = is_usable_at(_device(), T0 + timedelta(days=10))
    assert u.usable and u.reasons == ()
    assert u.certificate is not None and u.certificate.number == "JJ2026-0001"
    assert [w.code for w in u.warnings] == ["outside_jjg907_scope"]


@pytest.mark.parametrize(("when", "code"), [
    (T0 - timedelta(seconds=1), "certificate_not_yet_valid"),
    (T0 + timedelta(days=365), "certificate_expired"),  # valid_to is exclusive
])
def test_outside_the_certificate_is_unusable(when: datetime, code: str) -> None:
    u = _device().is_usable_at(when)
    assert not u.usable
    assert code in [r.code for r in u.reasons]
    assert all(r.text_zh for r in u.reasons)


def test_other_reasons_class_drift_reviews_missing_certificate() -> None:
    t = T0 + timedelta(days=10)
    no_class = _device(certificates=[Certificate("C1", "院", T0, T0 + timedelta(days=9 * 40))])
    assert [r.code for r in no_class.is_usable_at(t).reasons] == ["class_unknown"]
    drift = _device(drift_alarm_open=True, drift_alarm_since_utc=T0 + timedelta(days=5))
    assert [r.code for r in drift.is_usable_at(t).reasons] == ["drift_alarm_open"]
    # data from before the alarm was raised stays usable
    assert drift.is_usable_at(T0 + timedelta(days=4)).usable
    none = _device(certificates=[], technical_review_approved=False)
    codes = [r.code for r in none.is_usable_at(t).reasons]
    assert codes == ["certificate_missing", "technical_review_missing"]
    late = _device(calibration_valid_until_utc=T0 + timedelta(days=1))
    assert "calibration_expired" in [w.code for w in late.is_usable_at(t).warnings]


def test_renewed_certificate_is_picked_at_each_time() -> None:
    c2 = Certificate("JJ2027-0001", "浙江省计量科学研究院", T0 + timedelta(days=365),
                     T0 + timedelta(days=730), "10", "F")
    d = _device(certificates=[*_device().certificates, c2])
    assert d.accuracy_class_at(T0 + timedelta(days=10)) == "5"
    assert d.accuracy_class_at(T0 + timedelta(days=400)) == "10"


def test_evidence_json_round_trips_through_the_evidence_stage() -> None:
    d = _device(drift_alarm_open=True)
    raw = d.to_evidence_json(T0 + timedelta(days=10))
    assert set(raw) == {"device_id", "technical_review_approved", "technical_review_date",
                        "legal_review_approved", "legal_review_date", "accuracy_class",
                        "certificate_number", "certificate_issuer", "certificate_valid_from",
                        "certificate_valid_to", "drift_alarm_open", "manufacturer", "model",
                        "installation_type"}
    s = DeviceStatus.from_json(raw)
    assert s.device_id == d.device_id
    assert s.accuracy_class == "5"
    assert s.certificate_number == "JJ2026-0001"
    assert s.certificate_issuer == "浙江省计量科学研究院"
    assert s.certificate_valid_from == T0
    assert s.certificate_valid_to == T0 + timedelta(days=365)
    assert s.technical_review_approved and s.technical_review_date == date(2025, 12, 20)
    assert s.legal_review_approved and s.legal_review_date == date(2025, 12, 28)
    assert s.drift_alarm_open is True
    assert (s.manufacturer, s.model) == ("某某称重", "QZ-4")
    assert s.installation_type == d.installation_type  # law.md R2.1, judged by the gate
    # and our own record round-trips too
    again = DeviceLegalStatus.from_json(d.to_json())
    assert again == d


def test_bad_records_are_refused_with_the_field() -> None:
    with pytest.raises(DeviceRecordError, match="installation_type"):
        _device(installation_type="floating")
    with pytest.raises(DeviceRecordError, match="valid_to must be after"):
        Certificate("C", "院", T0, T0)
    with pytest.raises(DeviceRecordError, match="time zone"):
        Certificate("C", "院", datetime(2026, 1, 1), datetime(2027, 1, 1))
    with pytest.raises(DeviceRecordError, match="accuracy class"):
        Certificate("C", "院", T0, T0 + timedelta(days=1), "3")
    raw = _device().to_json()
    raw["certificates"][0]["valid_from_utc"] = "2026-01-01 00:00"
    with pytest.raises(DeviceRecordError, match=r"certificates\[0\]"):
        DeviceLegalStatus.from_json(raw)
    raw = _device().to_json()
    del raw["drift_alarm_open"]
    assert DeviceLegalStatus.from_json(raw).drift_alarm_open is True  # unknown = open
    with pytest.raises(DeviceRecordError, match="UTC datetime"):
        _device().is_usable_at(datetime(2026, 1, 1))
