"""The WIM device's legal status and the lane's drift monitor, as the pipeline uses them.

* The device record is a :class:`zhichao.calibration.legal.DeviceLegalStatus`: from the
  ``[device]`` keys of ``station.toml`` or, with ``device.status_file``, a
  ``zhichao.device/1`` JSON record (the calibration stage's register).
* Every weighed vehicle goes, in weighing order, through a
  :class:`zhichao.calibration.drift.DriftMonitor` (its state is committed with the passage,
  so a SIGKILL neither loses nor repeats an observation). While an alarm is open every
  record carries ``calibration_drift`` and the device status put into new packages has the
  drift alarm open (:func:`zhichao.calibration.legal.with_drift_state`), so the eligibility
  gate refuses them as evidence (``drift_alarm_open``); the passages are still recorded.
* :meth:`DeviceRegister.usability` is ``is_usable_at(device, t)``: a passage weighed while
  the device may not be used is recorded with the reasons (zh-CN) and marked for a human.
  An open alarm in the register itself is never closed by the station's monitor: the
  record's alarm is open if either says so.
* A calibration profile other than the one the monitor's baseline was taken with resets the
  monitor (reason ``calibration``): a new calibration starts a new baseline. An open alarm
  is closed only by a profile *created after it was raised* (or a certificate taking effect
  after it): removing the profile, putting an older or undated one back leaves it open
  (``alarm_kept`` says why). A closed alarm's interval (from its estimated change point to
  its closure) stays in the record (``drift_alarm_intervals``): a late or replayed passage
  from inside it is refused.
* The profile's validity is copied into the device record (``calibration_valid_until_utc``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

from zhichao.calibration.drift import DriftAlarm, DriftConfig, DriftMonitor
from zhichao.calibration.errors import DriftStateError
from zhichao.calibration.legal import (
    Certificate,
    DeviceLegalStatus,
    Usability,
    is_usable_at,
    with_drift_state,
)
from zhichao.common import format_utc
from zhichao.station.config import StationConfig, _device_file, parse_utc_key
from zhichao.weighing.calibration_profile import CalibrationProfile
from zhichao.weighing.config import OverloadConfig, WeighingConfig
from zhichao.weighing.overload import ACCURACY_CLASSES, accuracy_class
from zhichao.weighing.vehicle import WeighedVehicle

LOG = logging.getLogger("zhichao.station.device")
DRIFT_STATE_KEY = "drift_state"
DRIFT_ALARM = "calibration_drift"


def device_from_config(cfg: StationConfig) -> DeviceLegalStatus:
    """The device record of ``station.toml`` (``[device]`` or ``device.status_file``)."""
    d = cfg.device
    if d.status_file:
        device: DeviceLegalStatus = _device_file(cfg)
        return device
    certs: list[Certificate] = []
    if d.certificate_number and d.certificate_valid_from and d.certificate_valid_to:
        certs.append(Certificate(
            number=d.certificate_number, issuer=d.certificate_issuer,
            valid_from_utc=parse_utc_key("device.certificate_valid_from",
                                         d.certificate_valid_from),
            valid_to_utc=parse_utc_key("device.certificate_valid_to", d.certificate_valid_to),
            accuracy_class=d.accuracy_class or None))
    return DeviceLegalStatus(
        device_id=d.device_id, site_id=cfg.site.site_id, lane_id=cfg.lane.lane_id,
        installation_type=d.installation_type, certificates=certs,
        manufacturer=d.manufacturer or None, model=d.model or None,
        calibration_profile_id=None,
        technical_review_approved=d.technical_review_approved,
        technical_review_date=(date.fromisoformat(d.technical_review_date)
                               if d.technical_review_date else None),
        legal_review_approved=d.legal_review_approved,
        legal_review_date=(date.fromisoformat(d.legal_review_date)
                           if d.legal_review_date else None),
        drift_alarm_open=d.drift_alarm_open,
        drift_alarm_since_utc=None)


def device_accuracy_class(cfg: StationConfig, at: datetime | None = None) -> str:
    """The WIM device's accuracy class for the weighing core's tolerance: from the
    certificate in force at ``at`` (now) in ``device.status_file``, else ``[device]
    accuracy_class``. A class that is not known (no certificate in force, or a class
    outside the table) takes the most lenient class of the table (the largest in-service
    MPE) — never stricter than the device allows; the evidence gate refuses such a case
    anyway (``accuracy_class_unknown``, from the same record)."""
    if cfg.device.status_file:
        name = device_from_config(cfg).accuracy_class_at(at or datetime.now(UTC))
    else:
        name = cfg.device.accuracy_class or None
    row = accuracy_class(name)
    if row is not None:
        return row.name
    lenient = max(ACCURACY_CLASSES.values(), key=lambda c: c.in_service_pct)
    LOG.warning("device accuracy class unknown; the weighing tolerance uses the most "
                "lenient class", extra={"fields": {"class": name, "used": lenient.name}})
    return lenient.name


def weighing_config(cfg: StationConfig) -> WeighingConfig:
    """The weighing core's configuration for this lane: the defaults with the device's
    accuracy class (:func:`device_accuracy_class`), whose in-service MPE is deducted."""
    return WeighingConfig(overload=OverloadConfig(accuracy_class=device_accuracy_class(cfg)))


def _time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class DeviceRegister:
    """The device record plus the lane's drift monitor (pipeline thread only)."""

    def __init__(self, cfg: StationConfig, profile_id: str | None,
                 state_json: str | None, *, profile: CalibrationProfile | None = None
                 ) -> None:
        """``profile``: the profile in use (its id is ``profile_id``); its creation time
        decides whether it closes an open drift alarm, its validity goes into the record.
        With only an id nothing shows when it was made: it closes no alarm."""
        if profile is not None and profile.profile_id != profile_id:
            raise ValueError(f"profile {profile.profile_id!r} given for id {profile_id!r}")
        base = device_from_config(cfg)
        if profile_id is not None and base.calibration_profile_id is None:
            base.calibration_profile_id = profile_id
        if profile is not None and base.calibration_profile_id == profile_id and \
                base.calibration_valid_until_utc is None:
            base.calibration_valid_until_utc = profile.valid_until_utc
        self.base = base
        self.enabled = cfg.drift.enabled
        self.reset_on_start: str | None = None
        self.alarm_kept: str | None = None  # why a profile change left an alarm open
        monitor: DriftMonitor | None = None
        if state_json:
            monitor = DriftMonitor.from_state(json.loads(state_json))
            if monitor.alarm_open:
                self._close_if_recalibrated_or_verified(monitor, profile_id, profile)
            elif monitor.profile_id != profile_id:  # a new calibration: a new baseline
                old = monitor.profile_id
                monitor.reset("calibration", format_utc(datetime.now(UTC)),
                              profile_id=profile_id)
                monitor.profile_id = profile_id
                self.reset_on_start = f"calibration profile {old!r} → {profile_id!r}"
        self.monitor = monitor or DriftMonitor(
            cfg.lane.lane_id, DriftConfig(baseline_n=cfg.drift.baseline_n),
            profile_id=profile_id)

    def _close_if_recalibrated_or_verified(self, monitor: DriftMonitor,
                                           profile_id: str | None,
                                           profile: CalibrationProfile | None) -> None:
        """Close the open alarms with a profile created after they were raised, or a
        certificate taking effect after; otherwise leave them open (``alarm_kept``)."""
        raised = monitor.alarm_raised_utc
        assert raised is not None
        now = format_utc(datetime.now(UTC))
        if monitor.profile_id != profile_id:
            old = monitor.profile_id
            created = None if profile is None or profile.created_utc is None else format_utc(
                profile.created_utc)
            try:
                monitor.reset("calibration", now, profile_id=profile_id,
                              profile_created_utc=created)
            except DriftStateError as exc:
                self.alarm_kept = (f"calibration profile {old!r} → {profile_id!r} "
                                   f"(created {created or 'unknown'}): {exc}")
                LOG.warning("drift alarm kept open", extra={"fields": {
                    "why": self.alarm_kept}})
            else:
                monitor.profile_id = profile_id
                self.reset_on_start = f"calibration profile {old!r} → {profile_id!r}"
                return
        cert = self._verified_after(_time(raised))
        if cert is not None:  # re-verified since the alarm: it is closed
            monitor.reset("verification", format_utc(cert.valid_from_utc),
                          profile_id=profile_id)
            self.reset_on_start = (f"verification certificate {cert.number} valid "
                                   f"from {format_utc(cert.valid_from_utc)}")

    def _verified_after(self, since: datetime) -> Certificate | None:
        """The newest certificate in the register that took effect after ``since`` and is
        in force now: a verification (检定) made after a drift alarm closes it."""
        now = datetime.now(UTC)
        fresh = [c for c in self.base.certificates
                 if since < c.valid_from_utc <= now < c.valid_to_utc]
        return max(fresh, key=lambda c: c.valid_from_utc) if fresh else None

    # ------------------------------------------------------------------ per vehicle
    def process(self, v: WeighedVehicle) -> tuple[WeighedVehicle, list[DriftAlarm], bool]:
        """Observe one vehicle (weighing order) and mark it while an alarm is open:
        (record to store, new alarms, whether the monitor's state changed)."""
        if not self.enabled:
            return v, [], False
        seen = self.monitor.trucks_seen
        marked, decision = self.monitor.process(v)
        return marked, decision.new_alarms, self.monitor.trucks_seen != seen

    def state_json(self) -> str:
        return json.dumps(self.monitor.to_state(), ensure_ascii=False,
                          separators=(",", ":"))

    @property
    def drift_alarm_open(self) -> bool:
        return self.enabled and self.monitor.alarm_open

    def device_at(self) -> DeviceLegalStatus:
        """The record with the drift state: open if the register or the monitor says so
        (the earlier start)."""
        since: list[datetime] = []
        if self.base.drift_alarm_open and self.base.drift_alarm_since_utc is not None:
            since.append(self.base.drift_alarm_since_utc)
        if self.drift_alarm_open and self.monitor.alarm_since_utc:
            since.append(_time(self.monitor.alarm_since_utc))
        open_ = self.base.drift_alarm_open or self.drift_alarm_open
        if self.base.drift_alarm_open and self.base.drift_alarm_since_utc is None:
            since = []  # open since an unknown time: open for every record
        device = with_drift_state(self.base, open_, min(since) if since else None)
        device.drift_alarm_intervals = [
            *self.base.drift_alarm_intervals,
            *((_time(a), _time(b)) for a, b in self.monitor.closed_intervals_utc())]
        return device

    def usability(self, time_utc: str) -> Usability:
        return is_usable_at(self.device_at(), _time(time_utc))

    def evidence_json(self, time_utc: str) -> dict[str, Any]:
        """The package's ``device`` input (the certificate in force at that time)."""
        return self.device_at().to_evidence_json(_time(time_utc))

    def snapshot(self) -> dict[str, Any]:
        """For /health, ``zhichao status`` and the view (JSON)."""
        now = datetime.now(UTC)
        use = is_usable_at(self.device_at(), now)
        return {"device_id": self.base.device_id, "usable_now": use.usable,
                "reasons": reasons_json(use.reasons), "warnings": reasons_json(use.warnings),
                "drift_monitor": self.enabled,
                "drift_alarm_open": self.device_at().drift_alarm_open,
                "drift_alarms": [asdict(a) for a in self.monitor.alarms],
                "drift_trucks_seen": self.monitor.trucks_seen}


def reasons_json(reasons: Any) -> list[dict[str, str]]:
    return [{"code": r.code, "text_zh": r.text_zh, "detail": r.detail} for r in reasons]
