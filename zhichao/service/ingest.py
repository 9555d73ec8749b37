"""Registering what stations send: passages (every weighed vehicle) and sealed packages.

The center's end of the station → center sync (:mod:`zhichao.service.center`) verifies a
package first and then hands it over with :func:`register_ingested_package`; a station can
also call it on its own packages. Both functions are idempotent: the same passage or
package registered twice returns the existing row; the same ``package_id`` with a
different manifest hash is refused (:class:`IngestError`), never overwritten.

A case is opened for review only when the package proposes a penalty and the gate did not
say UNUSABLE; otherwise only the passage is kept (with its eligibility status).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, exists, insert, literal, select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.evidence.canonical import canonicalize
from zhichao.service import audit
from zhichao.service.errors import IngestError, InvalidInputError
from zhichao.service.models import (
    AuditEntry,
    Case,
    CaseHolder,
    Device,
    Lane,
    Passage,
    Site,
    UTCDateTime,
    Vehicle,
)
from zhichao.service.objectstore import local_package
from zhichao.vision.plate_image import PLATE_COLOURS_ZH

_COLOUR_FROM_ZH = {zh: code for code, zh in PLATE_COLOURS_ZH.items()}
_COLOUR_FROM_ZH.update({"蓝色": "blue", "黄色": "yellow", "绿色": "green", "白色": "white",
                        "黑色": "black", "渐变绿": "green", "黄绿色": "yellow_green"})


# Separators people type inside a plate: middle dots of every script (·・‧∙⋅•), full stops
# and hyphens; after NFKC a full-width ．or ･ is one of these, an ideographic space a space.
_PLATE_SEPARATORS = frozenset("·・‧∙⋅•.-")


def normalise_plate(plate: str | None) -> str | None:
    """NFKC (full-width Ｊ５ → J5), upper case, no spaces or separator dots
    (浙A·12345, 浙A・12345, 浙Ａ１２３４５ → 浙A12345). The one plate normaliser: what
    stations send, what the registry imports and what owners type all go through it."""
    if plate is None:
        return None
    text = unicodedata.normalize("NFKC", plate).upper()
    text = "".join(ch for ch in text if ch not in _PLATE_SEPARATORS and not ch.isspace())
    return text or None


def normalise_colour(colour: str | None) -> str | None:
    """``blue``/``蓝``/``蓝色`` → ``blue``; unknown names → None (a human must look)."""
    if colour is None:
        return None
    text = colour.strip().lower()
    if text in PLATE_COLOURS_ZH:
        return text
    return _COLOUR_FROM_ZH.get(colour.strip())


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise IngestError(f"{where}: expected an RFC 3339 time string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise IngestError(f"{where}: {value!r} is not an RFC 3339 time") from exc
    if moment.tzinfo is None:
        raise IngestError(f"{where}: {value!r} has no UTC offset")
    return moment.astimezone(UTC)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _obj(parent: dict[str, Any], key: str, where: str, *, required: bool = True) -> Any:
    value = parent.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise IngestError(f"{where}.{key}: expected a JSON object")
    return value


def register_passage(session: Session, record: dict[str, Any], *, station_id: str | None,
                     plate: str | None = None, plate_colour: str | None = None,
                     device_id: str | None = None, eligibility_status: str | None = None,
                     package_id: str | None = None, source_key: str | None = None) -> Passage:
    """Store one ``zhichao.vehicle/1`` record; idempotent on ``source_key``.

    ``source_key`` defaults to the SHA-256 of the record's canonical JSON.
    """
    if not isinstance(record, dict) or record.get("format") != "zhichao.vehicle/1":
        raise IngestError("vehicle record: expected format zhichao.vehicle/1")
    key = source_key or hashlib.sha256(canonicalize(record)).hexdigest()
    existing = session.scalars(select(Passage).where(Passage.source_key == key)).first()
    if existing is not None:
        return existing
    site_id, lane = record.get("site_id"), record.get("lane_id")
    if not isinstance(site_id, str) or not site_id or lane is None:
        raise IngestError("vehicle record: site_id and lane_id are required")
    flags = record.get("flags") or []
    if not isinstance(flags, list):
        raise IngestError("vehicle record.flags: expected a list")
    axle_count = record.get("axle_count")
    passage = Passage(
        source_key=key, station_id=station_id, site_id=site_id, lane_code=str(lane),
        device_id=device_id, time_utc=_time(record.get("time_utc"), "vehicle record.time_utc"),
        plate=plate, plate_colour=plate_colour, speed_kmh=_num(record.get("speed_kmh")),
        axle_count=axle_count if isinstance(axle_count, int) else None,
        gross_weight_kg=_num(record.get("gross_weight_kg")),
        vehicle_class=record.get("vehicle_class") if isinstance(
            record.get("vehicle_class"), str) else None,
        limit_kg=_num(record.get("limit_kg")), excess_kg=_num(record.get("excess_kg")),
        verdict=record.get("verdict") if isinstance(record.get("verdict"), str) else None,
        overloaded=bool(record.get("overloaded")), flags=[str(f) for f in flags],
        eligibility_status=eligibility_status, package_id=package_id)
    session.add(passage)
    session.flush()
    return passage


CERTIFICATE_ACTION = "device.certificate"
SITE_PUBLISHED_ACTION = "site.published"


def _ensure_site_lane_device(session: Session, facts: dict[str, Any], *, actor: str,
                             now: datetime) -> None:
    """The center's register of the package's site, lane and device: created from the
    first package that names them. Later packages add what the register lacks, audited: a
    device certificate the register has not seen (a re-verified device: the register keeps
    every period, ``device_certificates``) and the publication of a site registered as
    unpublished; they never change what is registered."""
    site = facts.get("site")
    if isinstance(site, dict) and isinstance(site.get("site_id"), str):
        row = session.get(Site, site["site_id"])
        if row is not None and row.announced_utc is None \
                and site.get("published_utc") is not None:
            row.announced_utc = _time(site["published_utc"], "site")
            audit.append(session, actor=actor, action=SITE_PUBLISHED_ACTION, object_type="site",
                         object_id=row.site_id, now=now,
                         detail={"announced_utc": row.announced_utc.isoformat()})
        if row is None:
            published = site.get("published_utc")
            session.add(Site(
                site_id=site["site_id"], name_zh=str(site.get("name_zh") or site["site_id"]),
                road_zh=site.get("road_zh"), stake_zh=site.get("stake_zh"),
                jurisdiction=str(site.get("jurisdiction") or "CN"),
                announcement_zh=site.get("announcement_zh"),
                announced_utc=None if published is None else _time(published, "site"),
                authority_zh=site.get("authority_zh"),
                handling_place_zh=site.get("handling_place_zh")))
            session.flush()
        lane_code = str(facts.get("lane_id"))
        lane = session.scalars(select(Lane).where(Lane.site_id == site["site_id"],
                                                  Lane.lane_code == lane_code)).first()
        if lane is None:
            lane = Lane(site_id=site["site_id"], lane_code=lane_code)
            session.add(lane)
            session.flush()
        device = facts.get("device")
        if isinstance(device, dict) and isinstance(device.get("device_id"), str) \
                and session.get(Device, device["device_id"]) is None:
            session.add(Device(
                device_id=device["device_id"], lane_id=lane.id,
                accuracy_class=device.get("accuracy_class"),
                technical_review_approved=bool(device.get("technical_review_approved")),
                technical_review_date=_date(device.get("technical_review_date")),
                legal_review_approved=bool(device.get("legal_review_approved")),
                legal_review_date=_date(device.get("legal_review_date")),
                certificate_number=device.get("certificate_number"),
                certificate_issuer=device.get("certificate_issuer"),
                certificate_valid_from=_opt_time(device.get("certificate_valid_from")),
                certificate_valid_to=_opt_time(device.get("certificate_valid_to")),
                calibration_profile_id=facts.get("calibration_profile"),
                health="drift_alarm" if device.get("drift_alarm_open") else "unknown"))
            session.flush()
        elif isinstance(device, dict) and isinstance(device.get("device_id"), str):
            _record_certificate(session, device, actor=actor, now=now)


def _certificate_key(number: Any, valid_from: datetime | None, valid_to: datetime | None
                     ) -> tuple[str, str, str]:
    return (str(number or ""), "" if valid_from is None else valid_from.isoformat(),
            "" if valid_to is None else valid_to.isoformat())


def device_certificates(session: Session, device_id: str
                        ) -> list[tuple[str, datetime | None, datetime | None]]:
    """Every verification certificate the center has registered for the device: (number,
    valid from, valid to), the device row's first, then those recorded later."""
    row = session.get(Device, device_id)
    out: list[tuple[str, datetime | None, datetime | None]] = []
    if row is not None:
        out.append((row.certificate_number or "", row.certificate_valid_from,
                    row.certificate_valid_to))
    for entry in session.scalars(select(AuditEntry).where(
            AuditEntry.action == CERTIFICATE_ACTION, AuditEntry.object_type == "device",
            AuditEntry.object_id == device_id).order_by(AuditEntry.id)):
        d = entry.detail
        out.append((str(d.get("certificate_number") or ""),
                    _opt_time(d.get("valid_from")), _opt_time(d.get("valid_to"))))
    return out


def _record_certificate(session: Session, device: dict[str, Any], *, actor: str,
                        now: datetime) -> None:
    """Register a certificate of a known device that the center has not seen yet."""
    valid_from = _opt_time(device.get("certificate_valid_from"))
    valid_to = _opt_time(device.get("certificate_valid_to"))
    if valid_from is None or valid_to is None:
        return
    key = _certificate_key(device.get("certificate_number"), valid_from, valid_to)
    known = {_certificate_key(*c) for c in device_certificates(session, device["device_id"])}
    if key in known:
        return
    audit.append(session, actor=actor, action=CERTIFICATE_ACTION, object_type="device",
                 object_id=device["device_id"], now=now,
                 detail={"certificate_number": device.get("certificate_number"),
                         "certificate_issuer": device.get("certificate_issuer"),
                         "valid_from": valid_from.isoformat(),
                         "valid_to": valid_to.isoformat()})


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _opt_time(value: Any) -> datetime | None:
    return None if value is None else _time(value, "device certificate validity")


HEALTH_STATES = ("ok", "degraded", "fault", "drift_alarm", "offline", "unknown")


def update_device_health(session: Session, device_id: str, *, health: str,
                         detail: str | None = None, now: datetime | None = None) -> Device:
    """Record a device's health (from the station's monitoring); audited."""
    if health not in HEALTH_STATES:
        raise InvalidInputError(f"health {health!r} not in {HEALTH_STATES}", "设备状态无效")
    device = session.get(Device, device_id)
    if device is None:
        raise IngestError(f"device {device_id} unknown", "设备未登记")
    now = now or utc_now()
    device.health, device.health_detail, device.health_updated_utc = health, detail, now
    audit.append(session, actor="station", action="device.health", object_type="device",
                 object_id=device_id, now=now, detail={"health": health})
    return device


def read_package_manifest(package_path: Path | str, *, expected_sha256: str | None = None
                          ) -> tuple[dict[str, Any], str]:
    """The parsed ``manifest.json`` of a package folder or ``.zip`` and the SHA-256 of its
    bytes. In a zip the manifest is at the top, or in the package's one top folder.

    Raises
    ------
    IngestError
        If the package or its manifest cannot be read, or its hash is not ``expected_sha256``.
    """
    path = local_package(package_path)  # an s3:// location: a verified local copy
    try:
        if path.is_dir():
            raw = (path / "manifest.json").read_bytes()
        else:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist()
                         if n == "manifest.json" or (n.endswith("/manifest.json")
                                                     and n.count("/") == 1)]
                if not names:
                    raise KeyError("no manifest.json in the zip")
                raw = archive.read(min(names, key=len))
        manifest = json.loads(raw)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise IngestError(f"package at {path}: manifest unreadable ({exc})",
                          "证据包清单无法读取") from exc
    if not isinstance(manifest, dict):
        raise IngestError(f"package at {path}: manifest.json is not a JSON object",
                          "证据包清单格式错误")
    digest = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise IngestError(f"package at {path}: manifest SHA-256 {digest}, expected "
                          f"{expected_sha256}", "证据包清单哈希与登记不符")
    return manifest, digest


def register_ingested_package(session: Session, manifest: dict[str, Any] | None,
                              package_path: Path | str, *, manifest_sha256: str | None = None,
                              now: datetime | None = None,
                              passage_source_key: str | None = None) -> Case | Passage:
    """Register a verified package: always its passage, and a case when one is due.

    ``manifest`` is the parsed ``manifest.json`` (``zhichao.evidence/1``) and
    ``manifest_sha256`` the SHA-256 of its bytes; ``package_path`` where the center keeps
    the package (directory or ``.zip``, e.g. the sync's stored zip). With ``manifest=None``
    the manifest is read from ``package_path`` and its hash computed (and checked against
    ``manifest_sha256`` when given). The caller verifies the package first. Returns the
    :class:`Case` (state ``technical_review``) or, when no case is due, the
    :class:`Passage`. Runs inside the caller's transaction.

    ``passage_source_key`` (default ``package:<package_id>``) is the key the package's
    passage is stored under. The center's sync passes the key its passage records get
    (``sync:<SHA-256 of the canonical vehicle record>``), so a vehicle the station sent both
    as a passage record and inside a package is one passage: a passage registered earlier
    from the record, with no package yet, is linked to this package (plate, colour,
    device, eligibility from the package) instead of being stored twice.
    """
    now = now or utc_now()
    if manifest is None:
        manifest, manifest_sha256 = read_package_manifest(package_path,
                                                          expected_sha256=manifest_sha256)
    elif manifest_sha256 is None:
        raise InvalidInputError("manifest_sha256: required when the manifest is given",
                                "缺少清单哈希")
    if not isinstance(manifest, dict) or manifest.get("format") != "zhichao.evidence/1":
        raise IngestError("manifest: expected format zhichao.evidence/1")
    package_id = manifest.get("package_id")
    if not isinstance(package_id, str) or not package_id:
        raise IngestError("manifest.package_id: missing")
    if len(manifest_sha256) != 64:
        raise InvalidInputError("manifest_sha256: 64 hex digits")
    station_id = _obj(manifest, "station", "manifest").get("station_id")
    if not isinstance(station_id, str) or not package_id.startswith(f"{station_id}-"):
        # package ids begin with their station's id (station-time-lane-hash): another
        # station's id taken first would make the genuine package fail for ever
        raise IngestError(f"package {package_id}: not an id of station {station_id!r}; refused",
                          "证据包编号与所属检测站不符，已拒绝")
    existing = session.scalars(select(Case).where(Case.package_id == package_id)).first()
    if existing is not None:
        if existing.manifest_sha256 != manifest_sha256:
            raise IngestError(f"package {package_id}: registered with manifest "
                              f"{existing.manifest_sha256}, now {manifest_sha256}; refused",
                              "同一证据包编号的内容不一致，已拒绝")
        return existing
    facts = _obj(manifest, "case", "manifest")
    station = _obj(manifest, "station", "manifest")
    vehicle = _obj(facts, "vehicle", "manifest.case")
    eligibility = _obj(facts, "eligibility", "manifest.case")
    status = str(eligibility.get("status"))
    plate = _obj(facts, "plate", "manifest.case", required=False) or {}
    device = _obj(facts, "device", "manifest.case", required=False) or {}
    penalty = _obj(facts, "penalty", "manifest.case", required=False)
    no_case = penalty is None or penalty.get("outcome") in (None, "none") \
        or status == "UNUSABLE"
    key = passage_source_key or f"package:{package_id}"
    prior = session.scalars(select(Passage).where(Passage.source_key == key)).first()
    if no_case and prior is not None and prior.package_id == package_id:
        return prior  # registered before (no case due): nothing to add, not even an audit
    _ensure_site_lane_device(session, facts, actor=f"station:{station.get('station_id')}",
                             now=now)
    passage = register_passage(
        session, vehicle, station_id=station.get("station_id"),
        plate=normalise_plate(plate.get("text")),
        plate_colour=normalise_colour(plate.get("colour")),
        device_id=device.get("device_id"),
        eligibility_status=status, package_id=package_id,
        source_key=key)
    if passage.package_id is None and passage_source_key is not None:
        # the same vehicle record arrived before as a plain passage: this is its package
        passage.package_id = package_id
        passage.plate = normalise_plate(plate.get("text"))
        passage.plate_colour = normalise_colour(plate.get("colour"))
        passage.device_id = device.get("device_id")
        passage.eligibility_status = status
        session.flush()
    if passage.package_id != package_id:
        raise IngestError(f"package {package_id}: passage key already used by another package")
    if no_case:
        audit.append(session, actor=f"station:{station.get('station_id')}",
                     action="package.registered", object_type="passage",
                     object_id=str(passage.id), now=now,
                     detail={"package_id": package_id, "manifest_sha256": manifest_sha256,
                             "case": False})
        return passage
    hearing = penalty.get("hearing_right")
    fine = penalty.get("fine_yuan")
    site = facts.get("site") or {}
    basis = penalty.get("basis") if isinstance(penalty.get("basis"), dict) else {}
    basis_zh = f"《{basis.get('law_zh')}》{basis.get('article_zh')}" if basis else None
    case = Case(
        passage_id=passage.id, package_id=package_id, manifest_sha256=manifest_sha256,
        package_path=str(package_path), station_id=station.get("station_id"),
        site_id=passage.site_id, jurisdiction=site.get("jurisdiction"),
        time_utc=passage.time_utc, plate=passage.plate, plate_colour=passage.plate_colour,
        state="technical_review", eligibility_status=status,
        proposed_outcome=str(penalty.get("outcome")),
        proposed_fine_yuan=fine if isinstance(fine, int) else None,
        hearing_right={True: "yes", False: "no"}.get(hearing, "undetermined"),
        legal_basis_zh=basis_zh,
        created_utc=now, updated_utc=now)
    session.add(case)
    session.flush()
    holder_vin = _plate_holder_vin(session, passage)
    if holder_vin is not None:  # the vehicle holding the plate now is the case's
        session.add(CaseHolder(case_id=case.id, vin=holder_vin, bound_utc=now))
        session.flush()
    audit.append(session, actor=f"station:{station.get('station_id')}",
                 action="package.registered", object_type="case", object_id=str(case.id),
                 now=now, detail={"package_id": package_id, "manifest_sha256": manifest_sha256,
                                  "case": True})
    return case


def _plate_holder_vin(session: Session, passage: Passage) -> str | None:
    """The VIN of the vehicle registered under the passage's plate now (the case's holder)."""
    if passage.plate is None or passage.plate_colour is None:
        return None
    return session.scalars(select(Vehicle.vin).where(
        Vehicle.plate == passage.plate, Vehicle.plate_colour == passage.plate_colour)).first()


def _bind_unbound_cases(session: Session, plate: str, plate_colour: str, vin: str) -> None:
    """Give the plate's cases that have no holder yet (registered before the registry knew
    the plate) this VIN, in one INSERT … SELECT. A bound case keeps its VIN for good."""
    session.flush()
    unbound = (select(Case.id, literal(vin, String(17)), literal(utc_now(), UTCDateTime()))
               .where(Case.plate == plate, Case.plate_colour == plate_colour,
                      ~exists().where(CaseHolder.case_id == Case.id)))
    session.execute(insert(CaseHolder).from_select(["case_id", "vin", "bound_utc"], unbound))


def upsert_vehicle(session: Session, *, plate: str, plate_colour: str, vin: str,
                   licence_file_number: str | None = None, owner_name_zh: str | None = None,
                   owner_phone: str | None = None) -> Vehicle:
    """Registration data from the vehicle registry (车管所) that owners prove themselves with.

    The row is the plate's current holder. When a re-import gives the plate another VIN,
    the plate's cases keep the VIN they were registered under (``CaseHolder``): the new
    holder never sees the old holder's cases, and the old holder still finds them with
    their own VIN. Cases registered before the registry knew the plate get this VIN."""
    plate = normalise_plate(plate) or ""
    colour = normalise_colour(plate_colour)
    if not plate or colour is None:
        raise InvalidInputError(f"plate {plate!r} / colour {plate_colour!r}", "号牌或颜色无效")
    plate_colour = colour
    vin = vin.strip().upper()
    if len(vin) != 17 or not vin.isalnum():
        raise InvalidInputError(f"vin {vin!r}: 17 letters/digits", "车辆识别代号须为 17 位")
    row = session.scalars(select(Vehicle).where(Vehicle.plate == plate,
                                                Vehicle.plate_colour == plate_colour)).first()
    if row is None:
        row = Vehicle(plate=plate, plate_colour=plate_colour, vin=vin)
        session.add(row)
    elif row.vin != vin:  # the plate passed to another vehicle: its cases stay the old one's
        _bind_unbound_cases(session, plate, plate_colour, row.vin)
    _bind_unbound_cases(session, plate, plate_colour, vin)
    row.vin = vin
    row.licence_file_number = licence_file_number
    row.owner_name_zh = owner_name_zh
    row.owner_phone = owner_phone
    row.updated_utc = utc_now()
    session.flush()
    return row
