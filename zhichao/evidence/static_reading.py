"""Static re-weighing (复检): the reading of a static weighbridge and its scale's certificate.

A WIM lane only selects a vehicle; where the station also has a static weighbridge
(non-automatic weighing instrument, 数字指示秤 / 固定式电子衡器) an officer may weigh the
vehicle again at rest. This module holds what the evidence stage needs to know about that
weighing, free of any device or station code:

* :class:`ScaleCertificate` — the scale's verification (检定) facts: certificate number,
  issuer, accuracy class, verification scale interval ``e``, maximum capacity, validity.
* :class:`StaticReading` — one stable reading with the indicator's status flags, the raw
  bytes it was decoded from, when it was taken, who linked it.
* :func:`static_mpe_kg` — the scale's maximum permissible error at a load (the static
  tolerance, :data:`STATIC_CLASSES`).
* :func:`reading_problem` — why a reading can never be a weight (overload, unstable, an
  error of the indicator, net mode, beyond the capacity), in zh-CN, or None.

Legal and metrological sources (confidence labels of ``shared/reference/law.md``):

* Static re-weighing as 复检 of a non-site WIM record: law.md §4.5 recommendation ("flag the
  event and require manual review or a static re-weigh") 🟡; 《公路超限检测站管理办法》: only
  verified (检定合格) equipment may establish 超限, the certificate is displayed 🟡.
* MPE of a class III (中准确度级) non-automatic weighing instrument, in multiples of the
  verification scale interval e (JJG 539《数字指示秤检定规程》, which follows OIML R76-1):
  ±0.5 e for 0 ≤ m ≤ 500 e, ±1.0 e for 500 e < m ≤ 2000 e, ±1.5 e for 2000 e < m ≤ 10000 e at
  initial verification; twice those in service (使用中检验). 🟡 — one secondary source each
  (a metrology forum reproducing the JJG 539-1997 table; a scale-service page on R76); the
  same bands appear in ``shared/reference/wim.md`` for OIML R134's static tests. The
  in-service column is what a scale in use is held to, and the most lenient lawful value,
  so it is the default (``in_service=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from zhichao.evidence._util import format_time, parse_time, to_decimal
from zhichao.evidence.errors import InputError

READING_FORMAT = "zhichao.static-reading/1"


@dataclass(frozen=True)
class StaticClass:
    """MPE bands of a non-automatic weighing instrument's accuracy class."""

    name: str
    bands_e: tuple[int, ...]  # upper ends of the load bands, in e (the last: the class's max)
    mpe_e: tuple[Decimal, ...]  # MPE at initial verification per band, in e
    source_zh: str
    status: str  # law.md confidence label

    @property
    def confirmed(self) -> bool:
        return self.status.startswith("✅")

    @property
    def status_zh(self) -> str:
        """The status in words (the PDF fonts lack law.md's emoji labels)."""
        return "已确认" if self.confirmed else "待确认：仅有二手来源"


_JJG539 = "JJG 539《数字指示秤检定规程》（参照 OIML R76-1）"
STATIC_CLASSES: dict[str, StaticClass] = {
    "III": StaticClass("III", (500, 2000, 10000),
                       (Decimal("0.5"), Decimal("1.0"), Decimal("1.5")), _JJG539, "🟡"),
    "IIII": StaticClass("IIII", (50, 200, 1000),
                        (Decimal("0.5"), Decimal("1.0"), Decimal("1.5")), _JJG539, "🟡"),
}
#: in service (使用中检验) a scale is held to twice the initial-verification MPE (🟡)
IN_SERVICE_FACTOR = Decimal(2)
#: the flags of a reading that make it no weight (see :func:`reading_problem`)
BLOCKING_FLAGS: dict[str, str] = {
    "overload": "仪表显示超载/欠载（超出称量范围），该读数不是重量",
    "unstable": "仪表显示称重未稳定（动态），该读数不能作为复检重量",
    "stability_unknown": "读数未经稳定判定，不能作为复检重量",
    "net": "仪表处于净重（去皮）模式，复检须为车辆总质量（毛重）",
    "error": "仪表报告数据无效（错误位），该读数不是重量",
}

#: the status flags in words, for officers and documents (the console, the 复检记录)
FLAG_ZH: dict[str, str] = {
    "overload": "超载/欠载（超出称量范围）", "unstable": "动态（未稳定）",
    "net": "净重（去皮）", "error": "数据无效（错误位）", "stability_unknown": "未判定稳定",
}
#: how a reading was called stable (:attr:`StaticReading.stable_by`), in words
STABLE_BY_ZH: dict[str, str] = {"device": "仪表稳定位（仪表自身判定稳定）",
                                "detector": "连续相同读数判定稳定（该仪表协议无稳定位）"}


def static_mpe_kg(load_kg: Decimal, division_kg: Decimal, class_name: str, *,
                  in_service: bool = True) -> Decimal | None:
    """The MPE [kg] of a ``class_name`` scale with interval ``division_kg`` at ``load_kg``;
    None when the class is unknown or the load is beyond the class's range (not a weight
    the scale is verified for)."""
    cls = STATIC_CLASSES.get(class_name)
    if cls is None or division_kg <= 0 or load_kg < 0:
        return None
    load_e = load_kg / division_kg
    for upper, mpe in zip(cls.bands_e, cls.mpe_e, strict=True):
        if load_e <= upper:
            factor = IN_SERVICE_FACTOR if in_service else Decimal(1)
            return mpe * factor * division_kg
    return None


def _dec(raw: dict[str, Any], key: str, where: str) -> Decimal:
    if key not in raw:
        raise InputError(f"{where}: missing field {key!r}")
    return to_decimal(raw[key], f"{where}.{key}")


def _text(raw: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InputError(f"{where}.{key}: expected a non-empty string")
    return value


def _dec_text(x: Decimal) -> str:
    return format(x.normalize(), "f") if x == x.to_integral_value() else format(x, "f")


@dataclass(frozen=True)
class ScaleCertificate:
    """The static scale's verification facts (``[static_scale]`` of station.toml)."""

    scale_id: str
    certificate_number: str
    issuer_zh: str
    accuracy_class: str  # "III" (JJG 539 中准确度级) or "IIII"
    division_kg: Decimal  # verification scale interval e
    max_capacity_kg: Decimal
    valid_until: datetime
    valid_from: datetime | None = None
    unconfirmed_zh: tuple[str, ...] = ()  # values a human must still confirm

    @classmethod
    def from_json(cls, raw: Any, where: str = "certificate") -> ScaleCertificate:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        valid_from = raw.get("valid_from")
        unconfirmed = raw.get("unconfirmed_zh") or []
        if not isinstance(unconfirmed, list):
            raise InputError(f"{where}.unconfirmed_zh: expected a list")
        return cls(
            scale_id=_text(raw, "scale_id", where),
            certificate_number=_text(raw, "certificate_number", where),
            issuer_zh=_text(raw, "issuer_zh", where),
            accuracy_class=_text(raw, "accuracy_class", where),
            division_kg=_dec(raw, "division_kg", where),
            max_capacity_kg=_dec(raw, "max_capacity_kg", where),
            valid_until=parse_time(raw.get("valid_until"), f"{where}.valid_until"),
            valid_from=None if valid_from is None
            else parse_time(valid_from, f"{where}.valid_from"),
            unconfirmed_zh=tuple(str(u) for u in unconfirmed))

    def to_json(self) -> dict[str, Any]:
        return {"scale_id": self.scale_id, "certificate_number": self.certificate_number,
                "issuer_zh": self.issuer_zh, "accuracy_class": self.accuracy_class,
                "division_kg": _dec_text(self.division_kg),
                "max_capacity_kg": _dec_text(self.max_capacity_kg),
                "valid_from": None if self.valid_from is None else format_time(self.valid_from),
                "valid_until": format_time(self.valid_until),
                "unconfirmed_zh": list(self.unconfirmed_zh)}

    def problem_at(self, t: datetime) -> str | None:
        """Why this certificate does not cover a weighing at ``t`` (zh-CN), or None."""
        if self.accuracy_class not in STATIC_CLASSES:
            return f"静态衡器准确度等级 {self.accuracy_class!r} 未知（应为 III 或 IIII）"
        if not self.certificate_number.strip():
            return "静态衡器计量检定证书编号缺失"
        if self.valid_from is not None and t < self.valid_from:
            return f"复检时间早于检定证书生效时间 {format_time(self.valid_from)}"
        if t >= self.valid_until:
            return f"复检时检定证书已过有效期（有效至 {format_time(self.valid_until)}）"
        return None


@dataclass(frozen=True)
class StaticReading:
    """One reading of the static scale, linked to a passage by an officer.

    ``flags`` are the indicator's status flags (``overload``, ``unstable``,
    ``stability_unknown``, ``net``, ``error``) as it reported them; ``stable_by`` says who
    called it stable: ``device`` (the indicator's own stable bit) or ``detector`` (N equal
    readings over a time span: XK3190 frames carry no stable bit).
    """

    reading_id: str
    weight_kg: Decimal
    reading_utc: datetime
    flags: tuple[str, ...]
    stable_by: str  # device | detector | "" (never called stable)
    raw_hex: str
    indicator: str  # the indicator's protocol, e.g. xk3190, toledo, modbus
    certificate: ScaleCertificate
    officer: str = ""
    linked_utc: datetime | None = None

    @classmethod
    def from_json(cls, raw: Any, where: str = "static_reweigh") -> StaticReading:
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object")
        flags = raw.get("flags") or []
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise InputError(f"{where}.flags: expected a list of strings")
        linked = raw.get("linked_utc")
        return cls(
            reading_id=_text(raw, "reading_id", where),
            weight_kg=_dec(raw, "weight_kg", where),
            reading_utc=parse_time(raw.get("reading_utc"), f"{where}.reading_utc"),
            flags=tuple(flags), stable_by=_text(raw, "stable_by", where, required=False),
            raw_hex=_text(raw, "raw_hex", where, required=False),
            indicator=_text(raw, "indicator", where, required=False),
            certificate=ScaleCertificate.from_json(raw.get("certificate"),
                                                   f"{where}.certificate"),
            officer=_text(raw, "officer", where, required=False),
            linked_utc=None if linked is None else parse_time(linked, f"{where}.linked_utc"))

    def to_json(self) -> dict[str, Any]:
        return {"format": READING_FORMAT, "reading_id": self.reading_id,
                "weight_kg": _dec_text(self.weight_kg),
                "reading_utc": format_time(self.reading_utc), "flags": list(self.flags),
                "stable_by": self.stable_by, "raw_hex": self.raw_hex,
                "indicator": self.indicator, "certificate": self.certificate.to_json(),
                "officer": self.officer,
                "linked_utc": None if self.linked_utc is None else format_time(self.linked_utc)}

    def mpe_kg(self) -> Decimal | None:
        c = self.certificate
        return static_mpe_kg(self.weight_kg, c.division_kg, c.accuracy_class)


def reading_problem(reading: StaticReading) -> str | None:
    """Why ``reading`` can never be the evidence weight (zh-CN), or None."""
    for flag in reading.flags:
        if flag in BLOCKING_FLAGS:
            return BLOCKING_FLAGS[flag]
    if reading.stable_by not in ("device", "detector"):
        return BLOCKING_FLAGS["stability_unknown"]
    if reading.weight_kg <= 0:
        return f"读数 {reading.weight_kg} kg 不是车辆重量（秤台空载或零点异常）"
    if reading.weight_kg > reading.certificate.max_capacity_kg:
        return (f"读数 {reading.weight_kg} kg 超过衡器最大秤量 "
                f"{reading.certificate.max_capacity_kg} kg")
    if reading.mpe_kg() is None:
        cls = reading.certificate.accuracy_class
        return f"读数 {reading.weight_kg} kg 不在 {cls} 级衡器检定范围内"
    return None
