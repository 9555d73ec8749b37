"""Certificates and the legal status of a weighing device: may its data be used at a time?

Law (``shared/reference/law.md`` §2): data from an instrument that is unverified, overdue
for verification, or failed it cannot be used as a basis for enforcement (计量法 Art. 9;
河南省治超条例 Art. 10; 浙江省公路条例 Art. 40). Design rule R2.1: every device record
stores its accuracy class, the verification certificate (number, issuing body, valid
from/to) and the installation type; an event outside the certificate's validity, or of a
device whose class is unknown, is not enforceable. A drift alarm that is still open makes the
lane's data unusable until a new calibration or verification closes it; the data taken while
it was open (from its estimated change point to its closure, ``drift_alarm_intervals``) stay
unusable after it is closed.

A certificate is valid on ``[valid_from, valid_to)`` (UTC), the same reading as the evidence
stage's eligibility gate. :meth:`DeviceLegalStatus.to_evidence_json` gives the evidence stage
its ``DeviceStatus`` input.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from zhichao.calibration.errors import DeviceRecordError
from zhichao.common import beijing_date, format_utc, parse_utc

INSTALLATION_TYPES = ("in_pavement_strip", "platform", "bending_plate", "other")
GROSS_CLASSES = ("0.2", "0.5", "1", "2", "5", "10")
AXLE_CLASSES = ("A", "B", "C", "D", "E", "F")

REASONS_ZH: dict[str, str] = {
    "certificate_missing": "无检定证书",
    "certificate_not_yet_valid": "检定证书尚未生效",
    "certificate_expired": "检定证书已过期",
    "class_unknown": "设备准确度等级未知",
    "drift_alarm_open": "设备漂移报警未关闭",
    "drift_alarm_interval": "采集时处于设备漂移报警期间（报警已关闭，其间数据仍不可用）",
    "technical_review_missing": "设备未通过技术审核",
    "legal_review_missing": "设备未通过法制审核",
}
WARNINGS_ZH: dict[str, str] = {
    "outside_jjg907_scope": "传感器直接铺设于路面，不在 JJG 907-2006 适用范围内（仅可参照），"
                            "检定依据需人工确认",
    "calibration_expired": "在用校准参数已超过其有效期，应重新校准",
    "no_calibration_profile": "未记录在用校准参数",
}


@dataclass(frozen=True)
class Certificate:
    """A verification certificate (检定证书)."""

    number: str
    issuer: str
    valid_from_utc: datetime
    valid_to_utc: datetime
    accuracy_class: str | None = None  # vehicle mass class it certifies, e.g. "5"
    axle_class: str | None = None  # e.g. "E"

    def __post_init__(self) -> None:
        for name in ("valid_from_utc", "valid_to_utc"):
            t = getattr(self, name)
            if not isinstance(t, datetime) or t.tzinfo is None:
                raise DeviceRecordError(f"certificate {self.number}: {name} must be a UTC "
                                        f"datetime with a time zone")
        if not self.number or not self.issuer:
            raise DeviceRecordError("a certificate needs a number and an issuing body")
        if self.valid_to_utc <= self.valid_from_utc:
            raise DeviceRecordError(f"certificate {self.number}: valid_to must be after "
                                    f"valid_from")
        if self.accuracy_class is not None and self.accuracy_class not in GROSS_CLASSES:
            raise DeviceRecordError(f"certificate {self.number}: accuracy class "
                                    f"{self.accuracy_class!r} is not one of {GROSS_CLASSES}")
        if self.axle_class is not None and self.axle_class not in AXLE_CLASSES:
            raise DeviceRecordError(f"certificate {self.number}: axle class "
                                    f"{self.axle_class!r} is not one of {AXLE_CLASSES}")

    def valid_at(self, t: datetime) -> bool:
        return self.valid_from_utc <= t < self.valid_to_utc

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "issuer": self.issuer,
                "valid_from_utc": format_utc(self.valid_from_utc),
                "valid_to_utc": format_utc(self.valid_to_utc),
                "accuracy_class": self.accuracy_class, "axle_class": self.axle_class}


@dataclass(frozen=True)
class Reason:
    code: str
    detail: str = ""

    @property
    def text_zh(self) -> str:
        return REASONS_ZH.get(self.code, WARNINGS_ZH.get(self.code, self.code))


@dataclass(frozen=True)
class Usability:
    usable: bool
    reasons: tuple[Reason, ...]  # why not (empty when usable)
    warnings: tuple[Reason, ...] = ()  # for a human, not blocking
    certificate: Certificate | None = None  # the one in force at that time


@dataclass
class DeviceLegalStatus:
    """A device's record: certificates, class, installation, profile in force, approvals."""

    device_id: str
    site_id: str
    lane_id: str
    installation_type: str
    certificates: list[Certificate] = field(default_factory=list)
    manufacturer: str | None = None
    model: str | None = None
    calibration_profile_id: str | None = None
    calibration_valid_until_utc: datetime | None = None
    technical_review_approved: bool = False
    technical_review_date: date | None = None
    legal_review_approved: bool = False
    legal_review_date: date | None = None
    drift_alarm_open: bool = False
    drift_alarm_since_utc: datetime | None = None
    # closed drift alarms: [start, closed) each; data taken inside stay unusable
    drift_alarm_intervals: list[tuple[datetime, datetime]] = field(default_factory=list)

    def drift_interval_at(self, t: datetime) -> tuple[datetime, datetime] | None:
        """The closed drift alarm interval ``[start, closed)`` holding ``t``, if any."""
        return next(((a, b) for a, b in self.drift_alarm_intervals if a <= t < b), None)

    def __post_init__(self) -> None:
        if not self.device_id:
            raise DeviceRecordError("device_id must be a non-empty string")
        if self.installation_type not in INSTALLATION_TYPES:
            raise DeviceRecordError(f"device {self.device_id}: installation_type "
                                    f"{self.installation_type!r} is not one of "
                                    f"{INSTALLATION_TYPES}")

    def certificate_at(self, t: datetime) -> Certificate | None:
        valid = [c for c in self.certificates if c.valid_at(t)]
        return max(valid, key=lambda c: c.valid_from_utc) if valid else None

    def accuracy_class_at(self, t: datetime) -> str | None:
        c = self.certificate_at(t)
        return c.accuracy_class if c else None

    def is_usable_at(self, t: datetime) -> Usability:
        """Whether this device's data taken at ``t`` (UTC) may be used, with reasons."""
        if not isinstance(t, datetime) or t.tzinfo is None:
            raise DeviceRecordError("is_usable_at needs a UTC datetime with a time zone")
        t = t.astimezone(UTC)
        reasons: list[Reason] = []
        warnings: list[Reason] = []
        cert = self.certificate_at(t)
        if cert is None:
            if not self.certificates:
                reasons.append(Reason("certificate_missing"))
            elif all(t < c.valid_from_utc for c in self.certificates):
                first = min(self.certificates, key=lambda c: c.valid_from_utc)
                reasons.append(Reason("certificate_not_yet_valid",
                                      f"{first.number} valid from "
                                      f"{format_utc(first.valid_from_utc)}"))
            else:
                last = max((c for c in self.certificates if c.valid_to_utc <= t),
                           key=lambda c: c.valid_to_utc, default=None)
                reasons.append(Reason("certificate_expired", "" if last is None else
                                      f"{last.number} valid to {format_utc(last.valid_to_utc)}"))
        elif cert.accuracy_class is None:
            reasons.append(Reason("class_unknown", cert.number))
        if self.drift_alarm_open:
            since = self.drift_alarm_since_utc
            if since is None or since <= t:
                reasons.append(Reason("drift_alarm_open", "" if since is None else
                                      f"since {format_utc(since)}"))
        interval = self.drift_interval_at(t)
        if interval is not None:
            reasons.append(Reason("drift_alarm_interval", f"{format_utc(interval[0])} – "
                                                          f"{format_utc(interval[1])}"))
        if not self.technical_review_approved or self.technical_review_date is None or \
                self.technical_review_date > beijing_date(t):
            reasons.append(Reason("technical_review_missing"))
        if not self.legal_review_approved or self.legal_review_date is None or \
                self.legal_review_date > beijing_date(t):
            reasons.append(Reason("legal_review_missing"))
        if self.installation_type == "in_pavement_strip":
            warnings.append(Reason("outside_jjg907_scope"))
        if self.calibration_profile_id is None:
            warnings.append(Reason("no_calibration_profile"))
        elif self.calibration_valid_until_utc is not None and \
                t >= self.calibration_valid_until_utc:
            warnings.append(Reason("calibration_expired", self.calibration_profile_id))
        return Usability(not reasons, tuple(reasons), tuple(warnings), cert)

    # ------------------------------------------------------------------ JSON
    def to_evidence_json(self, at_utc: datetime | None = None) -> dict[str, Any]:
        """The evidence stage's ``DeviceStatus`` input: the certificate in force at
        ``at_utc`` (default: the latest one), and this record's approvals and alarm (open
        also when ``at_utc`` lies in a closed alarm's interval)."""
        cert = self.certificate_at(at_utc) if at_utc is not None else (
            max(self.certificates, key=lambda c: c.valid_from_utc) if self.certificates
            else None)
        return {
            "device_id": self.device_id,
            "technical_review_approved": self.technical_review_approved,
            "technical_review_date": _d(self.technical_review_date),
            "legal_review_approved": self.legal_review_approved,
            "legal_review_date": _d(self.legal_review_date),
            "accuracy_class": cert.accuracy_class if cert else None,
            "certificate_number": cert.number if cert else None,
            "certificate_issuer": cert.issuer if cert else None,
            "certificate_valid_from": format_utc(cert.valid_from_utc) if cert else None,
            "certificate_valid_to": format_utc(cert.valid_to_utc) if cert else None,
            "drift_alarm_open": self.drift_alarm_open or (
                at_utc is not None and self.drift_interval_at(at_utc) is not None),
            "manufacturer": self.manufacturer,
            "model": self.model,
            "installation_type": self.installation_type,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "zhichao.device/1",
            "device_id": self.device_id, "site_id": self.site_id, "lane_id": self.lane_id,
            "installation_type": self.installation_type,
            "certificates": [c.to_json() for c in self.certificates],
            "manufacturer": self.manufacturer, "model": self.model,
            "calibration_profile_id": self.calibration_profile_id,
            "calibration_valid_until_utc": _t(self.calibration_valid_until_utc),
            "technical_review_approved": self.technical_review_approved,
            "technical_review_date": _d(self.technical_review_date),
            "legal_review_approved": self.legal_review_approved,
            "legal_review_date": _d(self.legal_review_date),
            "drift_alarm_open": self.drift_alarm_open,
            "drift_alarm_since_utc": _t(self.drift_alarm_since_utc),
            "drift_alarm_intervals": [[format_utc(a), format_utc(b)]
                                      for a, b in self.drift_alarm_intervals],
        }

    @classmethod
    def from_json(cls, raw: Any, where: str = "device") -> DeviceLegalStatus:
        if not isinstance(raw, dict) or raw.get("format") != "zhichao.device/1":
            raise DeviceRecordError(f"{where}: format must be 'zhichao.device/1'")
        try:
            certs = [Certificate(
                number=str(c["number"]), issuer=str(c["issuer"]),
                valid_from_utc=_parse(c["valid_from_utc"], f"{where}.certificates[{i}]"),
                valid_to_utc=_parse(c["valid_to_utc"], f"{where}.certificates[{i}]"),
                accuracy_class=c.get("accuracy_class"), axle_class=c.get("axle_class"))
                for i, c in enumerate(raw.get("certificates", []))]
            return cls(
                device_id=str(raw["device_id"]), site_id=str(raw["site_id"]),
                lane_id=str(raw["lane_id"]), installation_type=str(raw["installation_type"]),
                certificates=certs, manufacturer=raw.get("manufacturer"),
                model=raw.get("model"), calibration_profile_id=raw.get("calibration_profile_id"),
                calibration_valid_until_utc=_opt_parse(raw.get("calibration_valid_until_utc"),
                                                       where),
                technical_review_approved=raw.get("technical_review_approved") is True,
                technical_review_date=_opt_date(raw.get("technical_review_date"), where),
                legal_review_approved=raw.get("legal_review_approved") is True,
                legal_review_date=_opt_date(raw.get("legal_review_date"), where),
                # unknown drift state is an open alarm: never good by default
                drift_alarm_open=raw.get("drift_alarm_open", True) is not False,
                drift_alarm_since_utc=_opt_parse(raw.get("drift_alarm_since_utc"), where),
                drift_alarm_intervals=_intervals(raw.get("drift_alarm_intervals", []), where))
        except KeyError as exc:
            raise DeviceRecordError(f"{where}: missing field {exc}") from None


def with_drift_state(device: DeviceLegalStatus, alarm_open: bool,
                     alarm_since_utc: datetime | None) -> DeviceLegalStatus:
    """The record with a drift monitor's state (e.g. ``DriftMonitor.alarm_open`` and the
    first open alarm's time), for the lane this device weighs."""
    return replace(device, drift_alarm_open=alarm_open,
                   drift_alarm_since_utc=alarm_since_utc if alarm_open else None)


def is_usable_at(device: DeviceLegalStatus, t: datetime) -> Usability:
    """Whether ``device``'s data taken at ``t`` may be used; see the module doc."""
    return device.is_usable_at(t)


def _d(x: date | None) -> str | None:
    return None if x is None else x.isoformat()


def _t(x: datetime | None) -> str | None:
    return None if x is None else format_utc(x)


def _parse(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise DeviceRecordError(f"{where}: expected an RFC 3339 UTC timestamp")
    try:
        return parse_utc(text)
    except ValueError as exc:
        raise DeviceRecordError(f"{where}: {text!r} is not an RFC 3339 UTC time ({exc})"
                                ) from None


def _opt_parse(text: Any, where: str) -> datetime | None:
    return None if text is None else _parse(text, where)


def _intervals(raw: Any, where: str) -> list[tuple[datetime, datetime]]:
    if not isinstance(raw, list) or not all(isinstance(x, list) and len(x) == 2 for x in raw):
        raise DeviceRecordError(f"{where}: drift_alarm_intervals must be [[start, end], …]")
    key = f"{where}.drift_alarm_intervals"
    out = [(_parse(a, key), _parse(b, key)) for a, b in raw]
    if any(b <= a for a, b in out):
        raise DeviceRecordError(f"{where}: a drift alarm interval must end after it starts")
    return out


def _opt_date(text: Any, where: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise DeviceRecordError(f"{where}: {text!r} is not a YYYY-MM-DD date") from None
