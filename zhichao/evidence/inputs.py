"""Typed inputs of the evidence stage, independent of the stages that produce them.

The weighing core's ``zhichao.vehicle/1`` record is parsed into :class:`VehicleRecord`
(extra keys are kept verbatim in :attr:`VehicleRecord.raw`). Calibration's device legal
status, vision's plate result, the lane images, the clock offsets and the registration
look-up are small dataclasses here; each ``from_json`` tolerates extra keys and names the
field when something is wrong. A part that is missing is passed as ``None`` and means
"not available", which the eligibility gate never treats as good.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from zhichao.evidence._util import format_time, parse_time, to_decimal
from zhichao.evidence.errors import InputError
from zhichao.evidence.static_reading import StaticReading

VEHICLE_FORMAT = "zhichao.vehicle/1"
VERDICTS = ("overloaded", "within_limit", "uncertain", "undecidable")
CAMERA_ROLES = ("front", "side", "rear", "plate")


def _req(raw: dict[str, Any], key: str, where: str) -> Any:
    if key not in raw:
        raise InputError(f"{where}: missing field {key!r}")
    return raw[key]


def _opt_str(raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    return value


def _str(raw: dict[str, Any], key: str, where: str) -> str:
    value = _req(raw, key, where)
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}.{key}: expected a non-empty string")
    return value


def _int(raw: dict[str, Any], key: str, where: str) -> int:
    value = _req(raw, key, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}.{key}: expected an integer, got {value!r}")
    return value


def _opt_dec(raw: dict[str, Any], key: str, where: str) -> Decimal | None:
    value = raw.get(key)
    return None if value is None else to_decimal(value, f"{where}.{key}")


def _date(raw: dict[str, Any], key: str, where: str) -> date | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}.{key}: expected a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{where}.{key}: {value!r} is not a YYYY-MM-DD date") from None


@dataclass(frozen=True)
class VehicleRecord:
    """One weighed vehicle, as emitted by the weighing core (``zhichao.vehicle/1``)."""

    time_utc: datetime
    site_id: str
    lane_id: str
    speed_kmh: Decimal | None
    acceleration_ms2: Decimal | None
    axle_count: int
    axle_loads_kg: tuple[Decimal, ...]
    axle_spacings_m: tuple[Decimal, ...]
    axle_groups: tuple[tuple[int, ...], ...]
    gross_weight_kg: Decimal
    vehicle_class: str | None
    vehicle_class_zh: str | None
    limit_kg: Decimal | None
    limit_basis: str | None
    allowance_kg: Decimal
    excess_kg: Decimal | None
    excess_after_allowance_kg: Decimal | None
    uncertainty_kg: Decimal | None
    verdict: str
    overloaded: bool
    flags: tuple[str, ...]
    calibration_profile: str | None
    recording: str | None
    software_version: str | None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any, where: str = "vehicle") -> VehicleRecord:
        """Parse a ``zhichao.vehicle/1`` dict; extra keys are tolerated and kept in ``raw``.

        Raises
        ------
        InputError
            Naming the field, for a missing or mistyped field or a wrong ``format``.
        """
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        fmt = raw.get("format", VEHICLE_FORMAT)
        if fmt != VEHICLE_FORMAT:
            raise InputError(f"{where}.format: {fmt!r} is not {VEHICLE_FORMAT}")
        verdict = _str(raw, "verdict", where)
        if verdict not in VERDICTS:
            raise InputError(f"{where}.verdict: {verdict!r} not one of {VERDICTS}")
        loads = _req(raw, "axle_loads_kg", where)
        spacings = raw.get("axle_spacings_m") or []
        groups = raw.get("axle_groups") or []
        flags = raw.get("flags") or []
        if not isinstance(loads, list) or not isinstance(spacings, list):
            raise InputError(f"{where}: axle_loads_kg and axle_spacings_m must be lists")
        if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
            raise InputError(f"{where}.axle_groups: must be a list of lists")
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise InputError(f"{where}.flags: must be a list of strings")
        overloaded = raw.get("overloaded", False)
        if not isinstance(overloaded, bool):
            raise InputError(f"{where}.overloaded: expected true/false")
        gross = to_decimal(_req(raw, "gross_weight_kg", where), f"{where}.gross_weight_kg")
        return cls(
            time_utc=parse_time(_req(raw, "time_utc", where), f"{where}.time_utc"),
            site_id=_str(raw, "site_id", where),
            lane_id=str(_req(raw, "lane_id", where)),
            speed_kmh=_opt_dec(raw, "speed_kmh", where),
            acceleration_ms2=_opt_dec(raw, "acceleration_ms2", where),
            axle_count=_int(raw, "axle_count", where),
            axle_loads_kg=tuple(
                to_decimal(v, f"{where}.axle_loads_kg[{i}]") for i, v in enumerate(loads)
            ),
            axle_spacings_m=tuple(
                to_decimal(v, f"{where}.axle_spacings_m[{i}]") for i, v in enumerate(spacings)
            ),
            axle_groups=tuple(tuple(int(a) for a in g) for g in groups),
            gross_weight_kg=gross,
            vehicle_class=_opt_str(raw, "vehicle_class", where),
            vehicle_class_zh=_opt_str(raw, "vehicle_class_zh", where),
            limit_kg=_opt_dec(raw, "limit_kg", where),
            limit_basis=_opt_str(raw, "limit_basis", where),
            allowance_kg=_opt_dec(raw, "allowance_kg", where) or Decimal(0),
            excess_kg=_opt_dec(raw, "excess_kg", where),
            excess_after_allowance_kg=_opt_dec(raw, "excess_after_allowance_kg", where),
            uncertainty_kg=_opt_dec(raw, "uncertainty_kg", where),
            verdict=verdict,
            overloaded=overloaded,
            flags=tuple(flags),
            calibration_profile=_opt_str(raw, "calibration_profile", where),
            recording=_opt_str(raw, "recording", where),
            software_version=_opt_str(raw, "software_version", where),
            raw=dict(raw),
        )



INSTALLATION_TYPES = ("in_pavement_strip", "platform", "bending_plate", "other")
"""How a weighing device is installed (law.md R2.1); sensors laid in ordinary pavement
(``in_pavement_strip``) are outside JJG 907-2006's scope (law.md §2, 🟡)."""
WITHIN_JJG907 = ("platform", "bending_plate")


def _installation(raw: dict[str, Any], where: str) -> str | None:
    value = _opt_str(raw, "installation_type", where)
    if value is not None and value not in INSTALLATION_TYPES:
        raise InputError(f"{where}.installation_type: {value!r} is not one of "
                         f"{', '.join(INSTALLATION_TYPES)}")
    return value


@dataclass(frozen=True)
class DeviceStatus:
    """The legal status of a weighing device (from calibration / the device register)."""

    device_id: str
    technical_review_approved: bool
    technical_review_date: date | None
    legal_review_approved: bool
    legal_review_date: date | None
    accuracy_class: str | None  # e.g. "5" (JJG 907), None = unknown
    certificate_number: str | None
    certificate_issuer: str | None
    certificate_valid_from: datetime | None
    certificate_valid_to: datetime | None
    drift_alarm_open: bool
    manufacturer: str | None = None
    model: str | None = None
    # law.md R2.1: in_pavement_strip | platform | bending_plate | other; None: not recorded
    installation_type: str | None = None

    @classmethod
    def from_json(cls, raw: Any, where: str = "device") -> DeviceStatus:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")

        def _t(key: str) -> datetime | None:
            value = raw.get(key)
            return None if value is None else parse_time(value, f"{where}.{key}")

        return cls(
            device_id=_str(raw, "device_id", where),
            technical_review_approved=raw.get("technical_review_approved") is True,
            technical_review_date=_date(raw, "technical_review_date", where),
            legal_review_approved=raw.get("legal_review_approved") is True,
            legal_review_date=_date(raw, "legal_review_date", where),
            accuracy_class=(
                None if raw.get("accuracy_class") is None else str(raw["accuracy_class"])
            ),
            certificate_number=_opt_str(raw, "certificate_number", where),
            certificate_issuer=_opt_str(raw, "certificate_issuer", where),
            certificate_valid_from=_t("certificate_valid_from"),
            certificate_valid_to=_t("certificate_valid_to"),
            # Unknown drift status counts as an open alarm: never good by default.
            drift_alarm_open=raw.get("drift_alarm_open", True) is not False,
            manufacturer=_opt_str(raw, "manufacturer", where),
            model=_opt_str(raw, "model", where),
            installation_type=_installation(raw, where),
        )


@dataclass(frozen=True)
class SiteInfo:
    """A monitoring site and its publication (行政处罚法 Art. 41; 浙江 Art. 38)."""

    site_id: str
    name_zh: str
    road_zh: str | None
    stake_zh: str | None
    jurisdiction: str  # rule set, e.g. "CN" or "CN-ZJ"
    published_utc: datetime | None
    announcement_zh: str | None
    authority_zh: str | None = None  # 执法机关
    handling_place_zh: str | None = None  # 处理地点

    @classmethod
    def from_json(cls, raw: Any, where: str = "site") -> SiteInfo:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        pub = raw.get("published_utc")
        return cls(
            site_id=_str(raw, "site_id", where),
            name_zh=_str(raw, "name_zh", where),
            road_zh=_opt_str(raw, "road_zh", where),
            stake_zh=_opt_str(raw, "stake_zh", where),
            jurisdiction=_str(raw, "jurisdiction", where),
            published_utc=None if pub is None else parse_time(pub, f"{where}.published_utc"),
            announcement_zh=_opt_str(raw, "announcement_zh", where),
            authority_zh=_opt_str(raw, "authority_zh", where),
            handling_place_zh=_opt_str(raw, "handling_place_zh", where),
        )


@dataclass(frozen=True)
class PlateResult:
    """Vision's plate result. ``accepted`` is vision's own gate; review_reasons say why not."""

    text: str | None
    colour: str | None
    confidence: float | None
    accepted: bool
    review_reasons: tuple[str, ...] = ()
    reader: dict[str, Any] | None = None
    """What decided it (``zhichao.vision.vehicle.read_provenance``): the models' SHA-256, the
    runtime that computed them, the reader's settings and the accept policy's thresholds.
    None for a result recorded before it was kept."""
    reads: tuple[dict[str, Any], ...] = ()
    """Every read of the chosen plate (``zhichao.vision.vehicle.decision_reads``): camera,
    time, box, each recogniser's text and per-character probabilities, province head."""
    alternatives: tuple[dict[str, Any], ...] = ()
    """Other plate strings seen for the vehicle, with their support."""

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "colour": self.colour, "confidence": self.confidence,
                "accepted": self.accepted, "review_reasons": list(self.review_reasons),
                **({} if self.reader is None else {"reader": self.reader}),
                **({"reads": list(self.reads)} if self.reads else {}),
                **({"alternatives": list(self.alternatives)} if self.alternatives else {})}

    @classmethod
    def from_json(cls, raw: Any, where: str = "plate") -> PlateResult:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        reader = raw.get("reader")
        if reader is not None:
            check_plate_reader(reader, f"{where}.reader")
        reads = _listed(raw.get("reads"), f"{where}.reads", check_plate_read)
        alternatives = _listed(raw.get("alternatives"), f"{where}.alternatives",
                               _check_alternative)
        conf = raw.get("confidence")
        if conf is not None and (isinstance(conf, bool) or not isinstance(conf, int | float)):
            raise InputError(f"{where}.confidence: expected a number")
        reasons = raw.get("review_reasons") or []
        if not isinstance(reasons, list):
            raise InputError(f"{where}.review_reasons: expected a list")
        return cls(
            text=_opt_str(raw, "text", where),
            colour=_opt_str(raw, "colour", where),
            confidence=None if conf is None else float(conf),
            accepted=raw.get("accepted") is True,
            review_reasons=tuple(str(r) for r in reasons),
            reader=reader,
            reads=reads,
            alternatives=alternatives,
        )


MAX_PLATE_READS = 64
"""Reads (and other strings) a plate result may list; the vision stage records at most as
many (``zhichao.vision.vehicle.MAX_RECORDED_READS``, a test keeps them equal)."""
MAX_PLATE_TEXT = 128
"""Characters of any text in a read (a plate has 7 or 8; an unconstrained raw read of a
double-row plate's two lines up to about 60; a camera id as configured)."""


def _listed(raw: Any, where: str, check: Any) -> tuple[dict[str, Any], ...]:
    """An optional list of at most :data:`MAX_PLATE_READS` JSON objects, each checked."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InputError(f"{where}: expected a list")
    if len(raw) > MAX_PLATE_READS:
        raise InputError(f"{where}: {len(raw)} entries, at most {MAX_PLATE_READS}")
    for i, item in enumerate(raw):
        check(item, f"{where}[{i}]")
    return tuple(raw)


def _short_text(raw: dict[str, Any], key: str, where: str, *, required: bool = False) -> None:
    value = raw.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or len(value) > MAX_PLATE_TEXT:
        raise InputError(f"{where}.{key}: expected text of at most {MAX_PLATE_TEXT} characters")


def _probabilities(raw: dict[str, Any], key: str, where: str) -> None:
    values = raw.get(key)
    if values is None:
        return
    if not isinstance(values, list) or len(values) > MAX_PLATE_TEXT or not all(
            _is_number(v) and 0.0 <= v <= 1.0 for v in values):
        raise InputError(f"{where}.{key}: expected a list of probabilities (0 to 1)")


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def check_plate_read(raw: Any, where: str = "plate.reads[0]") -> None:
    """One read of a plate result's ``reads``: raise :class:`InputError` naming the field
    unless ``camera`` is text, ``captured_utc`` an RFC 3339 time with an offset, ``box_px``
    four finite numbers (left, top, right, bottom), the texts short text or null (or absent:
    ``joint_text``, the plate with the province both recognisers chose together, and its
    ``joint_char_confidences`` are absent from reads recorded before 2026-12-08), the
    per-character probabilities lists of numbers from 0 to 1, and ``plate_model`` null or
    an object of the same kind (``province_confidence`` a probability)."""
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a JSON object")
    _short_text(raw, "camera", where, required=True)
    parse_time(raw.get("captured_utc"), f"{where}.captured_utc")
    box = raw.get("box_px")
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise InputError(f"{where}.box_px: expected four numbers (left, top, right, bottom)")
    for key in ("text", "joint_text", "raw_text", "colour", "layout"):
        _short_text(raw, key, where)
    _probabilities(raw, "char_confidences", where)
    _probabilities(raw, "joint_char_confidences", where)
    model = raw.get("plate_model")
    if model is not None:
        if not isinstance(model, dict):
            raise InputError(f"{where}.plate_model: expected a JSON object")
        _short_text(model, "text", f"{where}.plate_model")
        _short_text(model, "province", f"{where}.plate_model")
        _probabilities(model, "char_confidences", f"{where}.plate_model")
        conf = model.get("province_confidence")
        if conf is not None and not (_is_number(conf) and 0.0 <= conf <= 1.0):
            raise InputError(f"{where}.plate_model.province_confidence: expected a probability")


def _check_alternative(raw: Any, where: str) -> None:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a JSON object")
    _short_text(raw, "text", where, required=True)
    if not _is_number(raw.get("support")):
        raise InputError(f"{where}.support: expected a number")


_READER_MODELS = ("detector", "recogniser", "plate_model")


def check_plate_reader(raw: Any, where: str = "plate.reader") -> None:
    """A plate result's ``reader`` record: raise :class:`InputError` unless it names each
    model by a SHA-256 (64 lowercase hex digits, or null: not loaded), the runtime and the
    software version as text (or null), and the settings and policy as JSON objects."""
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a JSON object")
    models = raw.get("models_sha256")
    if not isinstance(models, dict) or set(models) != set(_READER_MODELS):
        raise InputError(f"{where}.models_sha256: expected an object with "
                         f"{', '.join(_READER_MODELS)}")
    for name, digest in models.items():
        if digest is not None and not (isinstance(digest, str) and len(digest) == 64
                                       and all(c in "0123456789abcdef" for c in digest)):
            raise InputError(f"{where}.models_sha256.{name}: not 64 lowercase hex digits")
    for key in ("runtime", "software_version"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise InputError(f"{where}.{key}: expected text")
    for key in ("settings", "policy"):
        if not isinstance(raw.get(key), dict):
            raise InputError(f"{where}.{key}: expected a JSON object")


@dataclass(frozen=True)
class ImageRef:
    """One original image file of the passage."""

    path: str  # file to include in the package, as given
    role: str  # front | side | rear | plate
    capture_utc: datetime
    camera_id: str | None = None
    axle_count_visible: int | None = None  # side view: axles a reviewer/vision counted

    @classmethod
    def from_json(cls, raw: Any, where: str = "image") -> ImageRef:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        role = _str(raw, "role", where)
        if role not in CAMERA_ROLES:
            raise InputError(f"{where}.role: {role!r} not one of {CAMERA_ROLES}")
        axles = raw.get("axle_count_visible")
        return cls(
            path=_str(raw, "path", where),
            role=role,
            capture_utc=parse_time(_req(raw, "capture_utc", where), f"{where}.capture_utc"),
            camera_id=_opt_str(raw, "camera_id", where),
            axle_count_visible=None if axles is None else int(axles),
        )


def _opt_num(raw: dict[str, Any], key: str, where: str) -> float | None:
    value = raw.get(key)
    return None if value is None else float(to_decimal(value, f"{where}.{key}"))


#: how a package names the time source its clock was checked against (zh-CN): the claim
#: (``reference_zh``), the 取证单, ``zhichao status`` and the live view all take it from here
TIME_SOURCE_ZH = {"ntp": "NTP 授时", "gnss": "GNSS 卫星授时", "sim": "模拟授时"}


@dataclass(frozen=True)
class ReferenceCheck:
    """The station's check of its reference time source that covers the passage (or why
    none does): an NTP exchange, a GNSS receiver through gpsd, or on a simulated lane the
    simulator's published clock. ``verified`` is the station's claim; the gate checks it
    again."""

    verified: bool
    source: str  # a key of TIME_SOURCE_ZH, or "" where no check was made
    server: str = ""  # "host:port" (NTP), "gpsd://host:port" (GNSS), "devices.json" (sim)
    checked_utc: datetime | None = None  # reference time of the check
    offset_ms: float | None = None  # source minus station clock
    delay_ms: float | None = None  # round trip
    stratum: int | None = None
    error_bound_ms: float | None = None  # |true offset − offset_ms| at most this
    max_offset_ms: float | None = None  # the station's tolerance
    max_age_s: float | None = None  # how old a covering check may be
    reason: str = ""  # why not verified (English code: detail)
    reason_zh: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"verified": self.verified, "source": self.source, "server": self.server,
                "checked_utc": None if self.checked_utc is None
                else format_time(self.checked_utc),
                "offset_ms": self.offset_ms, "delay_ms": self.delay_ms,
                "stratum": self.stratum, "error_bound_ms": self.error_bound_ms,
                "max_offset_ms": self.max_offset_ms, "max_age_s": self.max_age_s,
                "reason": self.reason, "reason_zh": self.reason_zh}

    @classmethod
    def from_json(cls, raw: Any, where: str = "clocks.reference_check") -> ReferenceCheck:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        verified = raw.get("verified")
        if not isinstance(verified, bool):
            raise InputError(f"{where}.verified: expected true or false")
        stratum = raw.get("stratum")
        if stratum is not None and (isinstance(stratum, bool) or not isinstance(stratum, int)):
            raise InputError(f"{where}.stratum: expected an integer")
        checked = raw.get("checked_utc")
        return cls(
            verified=verified, source=str(raw.get("source") or ""),
            server=str(raw.get("server") or ""),
            checked_utc=None if checked is None else parse_time(checked, f"{where}.checked_utc"),
            offset_ms=_opt_num(raw, "offset_ms", where),
            delay_ms=_opt_num(raw, "delay_ms", where), stratum=stratum,
            error_bound_ms=_opt_num(raw, "error_bound_ms", where),
            max_offset_ms=_opt_num(raw, "max_offset_ms", where),
            max_age_s=_opt_num(raw, "max_age_s", where),
            reason=str(raw.get("reason") or ""), reason_zh=str(raw.get("reason_zh") or ""))


@dataclass(frozen=True)
class VideoClipRef:
    """The video clip of the passage from one streaming camera, or why there is none.

    ``start_utc``/``end_utc``: the window asked for (reference clock). ``path``: the
    H.264/MP4 file (:mod:`zhichao.evidence.clip`); ``None`` with ``missing_reason``
    (English) when the camera could not give it: the package says so."""

    camera_id: str
    start_utc: datetime
    end_utc: datetime
    path: str | None = None
    missing_reason: str | None = None
    first_frame_utc: datetime | None = None  # capture times of the clip's first and last
    last_frame_utc: datetime | None = None  # frames (reference clock), when known

    @classmethod
    def from_json(cls, raw: Any, where: str = "video") -> VideoClipRef:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        path, reason = _opt_str(raw, "path", where), _opt_str(raw, "missing_reason", where)
        if (path is None) == (reason is None):
            raise InputError(f"{where}: give exactly one of path or missing_reason")
        return cls(camera_id=_str(raw, "camera_id", where),
                   start_utc=parse_time(_req(raw, "start_utc", where), f"{where}.start_utc"),
                   end_utc=parse_time(_req(raw, "end_utc", where), f"{where}.end_utc"),
                   path=path, missing_reason=reason,
                   first_frame_utc=None if raw.get("first_frame_utc") is None else parse_time(
                       raw["first_frame_utc"], f"{where}.first_frame_utc"),
                   last_frame_utc=None if raw.get("last_frame_utc") is None else parse_time(
                       raw["last_frame_utc"], f"{where}.last_frame_utc"))


@dataclass(frozen=True)
class ClockSync:
    """Clock offsets of the station's devices against the reference time source [ms],
    and the check of that reference (``None``: not recorded, e.g. an older package)."""

    reference_zh: str  # e.g. "站内参考时钟（NTP 授时，已核验）"
    measured_utc: datetime
    offsets_ms: dict[str, float]  # device or camera id -> offset [ms]
    reference_check: ReferenceCheck | None = None

    @classmethod
    def from_json(cls, raw: Any, where: str = "clocks") -> ClockSync:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        offsets = _req(raw, "offsets_ms", where)
        if not isinstance(offsets, dict):
            raise InputError(f"{where}.offsets_ms: expected an object of id -> ms")
        check = raw.get("reference_check")
        return cls(
            reference_zh=str(raw.get("reference_zh", "")),
            measured_utc=parse_time(_req(raw, "measured_utc", where), f"{where}.measured_utc"),
            offsets_ms={str(k): float(to_decimal(v, f"{where}.offsets_ms.{k}"))
                        for k, v in offsets.items()},
            reference_check=None if check is None
            else ReferenceCheck.from_json(check, f"{where}.reference_check"),
        )

    def to_json(self) -> dict[str, Any]:
        return {"reference_zh": self.reference_zh,
                "measured_utc": format_time(self.measured_utc),
                "offsets_ms": dict(self.offsets_ms),
                "reference_check": None if self.reference_check is None
                else self.reference_check.to_json()}


# the registration's vehicle kind: "farm_tractor" is a 拖拉机 (its 行驶证 mass is its
# limit), never a semi-trailer tractor (半挂牵引车: "truck"; the bare word "tractor" is
# refused as ambiguous); passenger (客车) and special_purpose (专用作业车) are not judged by
# the 62号令 Art. 3 table (zhichao.weighing.classification)
VEHICLE_KINDS = ("truck", "farm_tractor", "agricultural", "low_speed_truck", "passenger",
                 "special_purpose")


def _opt_bool(raw: dict[str, Any], key: str, where: str) -> bool | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, bool):
        raise InputError(f"{where}.{key}: expected true, false or null")
    return value


def _opt_axles(raw: dict[str, Any], key: str, where: str) -> tuple[int, ...] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(a, int) and not isinstance(a, bool) and a >= 1 for a in value):
        raise InputError(f"{where}.{key}: expected a list of axle numbers (1 = front)")
    return tuple(value)


@dataclass(frozen=True)
class Registration:
    """Registration data (行驶证 / 公告) looked up for the plate, when available.

    The facts a limit depends on are optional; ``None`` means not given, and the limit then
    takes the value most lenient to the party (the reviewer is told which facts matter).
    """

    plate_text: str
    axle_count: int | None
    total_mass_kg: Decimal | None  # 行驶证总质量
    owner_name_zh: str | None = None
    owner_address_zh: str | None = None
    drive_axles: tuple[int, ...] | None = None  # 1-based axle numbers that drive
    single_tyre_axles: tuple[int, ...] | None = None  # non-widened single tyres
    air_suspension: bool | None = None
    dual_drive_tyres: bool | None = None
    articulated: bool | None = None  # 汽车列车 (True) or a rigid truck (False)
    vehicle_kind: str | None = None  # VEHICLE_KINDS

    @classmethod
    def from_json(cls, raw: Any, where: str = "registration") -> Registration:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        axles = raw.get("axle_count")
        kind = _opt_str(raw, "vehicle_kind", where)
        if kind == "tractor":
            raise InputError(f"{where}.vehicle_kind: 'tractor' is ambiguous: 'farm_tractor' "
                             "for a 拖拉机, 'truck' for a semi-trailer tractor (半挂牵引车)")
        if kind is not None and kind not in VEHICLE_KINDS:
            raise InputError(f"{where}.vehicle_kind: {kind!r} not one of {VEHICLE_KINDS}")
        return cls(
            plate_text=_str(raw, "plate_text", where),
            axle_count=None if axles is None else int(axles),
            total_mass_kg=_opt_dec(raw, "total_mass_kg", where),
            owner_name_zh=_opt_str(raw, "owner_name_zh", where),
            owner_address_zh=_opt_str(raw, "owner_address_zh", where),
            drive_axles=_opt_axles(raw, "drive_axles", where),
            single_tyre_axles=_opt_axles(raw, "single_tyre_axles", where),
            air_suspension=_opt_bool(raw, "air_suspension", where),
            dual_drive_tyres=_opt_bool(raw, "dual_drive_tyres", where),
            articulated=_opt_bool(raw, "articulated", where),
            vehicle_kind=kind,
        )


@dataclass(frozen=True)
class CaseInputs:
    """Everything known about one passage. ``None`` = not available."""

    vehicle: VehicleRecord
    device: DeviceStatus | None = None
    site: SiteInfo | None = None
    plate: PlateResult | None = None
    images: tuple[ImageRef, ...] = ()
    clocks: ClockSync | None = None
    registration: Registration | None = None
    prior_violations: int | None = None  # in the repeat window, not counting this one
    waveform_path: str | None = None  # the raw recording file of the passage
    video_paths: tuple[str, ...] = ()
    videos: tuple[VideoClipRef, ...] = ()  # a clip (or why none) per streaming camera
    station_id: str | None = None
    decision_utc: datetime | None = None  # when the case is decided (从旧兼从轻); None: now
    # a stable static re-weighing (复检) linked to this passage: the evidence weight
    static_reweigh: StaticReading | None = None

    @classmethod
    def from_json(cls, raw: Any, where: str = "case") -> CaseInputs:
        """Parse a case file: ``{"vehicle": …, "device": …, "site": …, …}``."""
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")

        def opt(key: str, kind: Any) -> Any:
            value = raw.get(key)
            return None if value is None else kind.from_json(value, f"{where}.{key}")

        images = raw.get("images") or []
        if not isinstance(images, list):
            raise InputError(f"{where}.images: expected a list")
        videos = raw.get("video_paths") or []
        prior = raw.get("prior_violations")
        return cls(
            vehicle=VehicleRecord.from_json(_req(raw, "vehicle", where), f"{where}.vehicle"),
            device=opt("device", DeviceStatus),
            site=opt("site", SiteInfo),
            plate=opt("plate", PlateResult),
            images=tuple(ImageRef.from_json(v, f"{where}.images[{i}]")
                         for i, v in enumerate(images)),
            clocks=opt("clocks", ClockSync),
            registration=opt("registration", Registration),
            prior_violations=None if prior is None else int(prior),
            waveform_path=_opt_str(raw, "waveform_path", where),
            video_paths=tuple(str(v) for v in videos),
            videos=tuple(VideoClipRef.from_json(v, f"{where}.videos[{i}]")
                         for i, v in enumerate(raw.get("videos") or [])),
            station_id=_opt_str(raw, "station_id", where),
            decision_utc=None if raw.get("decision_utc") is None
            else parse_time(raw["decision_utc"], f"{where}.decision_utc"),
            static_reweigh=opt("static_reweigh", StaticReading),
        )
