"""Stage 6: axle groups and configuration → 62号令 Art. 3 class and its total-mass limit.

WIM sees axle count and spacings, not whether a vehicle is articulated, which axle drives,
its tyres or its suspension. Never stricter than the law: a fact that the WIM cannot see and
that :class:`KnownAttributes` (registration data, images, a reviewer) does not give takes
the value that gives the **most lenient** lawful limit, and the result names each fact that
would lower it (:attr:`Classification.stricter`), for the reviewer. E.g. a six-axle
combination whose drive axles cannot be told: limit 49 t, "46 t if the tractor's drive axle
is a single axle" noted (62号令 Art. 3 para 1 item 8).

Limits by fact (62号令 Art. 3; 认定标准 notes, law.md §1.2 — 🟡 values are configurable in
:class:`~zhichao.weighing.config.ClassConfig` and marked in :attr:`Classification.unconfirmed`):

* 2-axle truck: min(18 t, 行驶证 total mass); without registration 18 t, lower noted;
* 3-/4-axle truck with dual-tyre drive axle and air suspension: +1 t (🟡);
* 4-axle articulated with air suspension, dual drive tyres, semitrailer spread ≥ 1.8 m:
  37 t (🟡);
* every axle with single (not widened) tyres that the law presumes dual-tyred (in a 2- or
  3-axle group, or on a trailer) and that is not a drive axle: −3 t (Art. 3 para 2 item 2);
  an axle that could be a drive axle (drive unknown, on the motor vehicle) only noted;
* 6+ axles: 49 t; 46 t (tractor with a single drive axle) only where external data say so;
* 拖拉机、农用车、低速货车: the 行驶证 total mass (Art. 3 para 2 item 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from zhichao.weighing.config import ClassConfig

SOURCE_62 = "《超限运输车辆行驶公路管理规定》（交通运输部令2016年第62号）"
EFFECTIVE_62 = date(2016, 9, 21)


@dataclass(frozen=True)
class LegalClass:
    code: str
    name_zh: str
    limit_kg: int
    basis: str  # article and item
    effective_from: date = EFFECTIVE_62


LEGAL_CLASSES: dict[str, LegalClass] = {
    c.code: c
    for c in (
        LegalClass("truck_2_axle", "二轴货车", 18000, f"{SOURCE_62}第三条第一款第（四）项"),
        LegalClass("truck_3_axle", "三轴货车", 25000, f"{SOURCE_62}第三条第一款第（五）项"),
        LegalClass("combination_3_axle", "三轴汽车列车", 27000,
                   f"{SOURCE_62}第三条第一款第（五）项"),
        LegalClass("truck_4_axle", "四轴货车", 31000, f"{SOURCE_62}第三条第一款第（六）项"),
        LegalClass("combination_4_axle", "四轴汽车列车", 36000,
                   f"{SOURCE_62}第三条第一款第（六）项"),
        LegalClass("combination_5_axle", "五轴汽车列车", 43000,
                   f"{SOURCE_62}第三条第一款第（七）项"),
        LegalClass("combination_6_axle", "六轴及六轴以上汽车列车", 49000,
                   f"{SOURCE_62}第三条第一款第（八）项"),
        LegalClass("combination_6_axle_single_drive",
                   "六轴及六轴以上汽车列车（牵引车驱动轴为单轴）",
                   46000, f"{SOURCE_62}第三条第一款第（八）项"),
    )
}
SINGLE_TYRE_REDUCTION_KG = 3000
SINGLE_TYRE_BASIS = f"{SOURCE_62}第三条第二款第（二）项"
REGISTERED_MASS_BASIS = f"{SOURCE_62}第三条第二款第（四）项"
STANDARD_2016 = "《公路货运车辆超限超载认定标准》（2016）表注（二手来源，待确认）"
# 拖拉机、农用车、低速货车: the limit is the 行驶证 total mass (Art. 3 para 2 item 4);
# "farm_tractor" is a 拖拉机, never a semi-trailer tractor (半挂牵引车: a "truck" here)
REGISTERED_MASS_KINDS = ("farm_tractor", "agricultural", "low_speed_truck")
# kinds the Art. 3 table does not judge: every row is a 货车 or an 汽车列车
NOT_IN_TABLE_KINDS: dict[str, str] = {
    "passenger": "客车不属于62号令第三条第一款所列货车或汽车列车，不按该表认定超限，需人工核定",
    "special_purpose": ("专用作业车符合GB 1589的不认定为超限（62号令第三条第二款第（五）项），"
                        "需人工核定"),
}


@dataclass(frozen=True)
class KnownAttributes:
    """Facts from registration data, images or a reviewer that WIM cannot measure.

    ``None`` means unknown: the fact then takes the value that gives the most lenient
    lawful limit, and the stricter limit it would give is noted.
    """

    drive_axles: tuple[int, ...] | None = None  # 1-based axle numbers that drive
    single_tyre_axles: tuple[int, ...] | None = None  # 1-based, non-widened single tyres
    registered_total_mass_kg: int | None = None  # 行驶证 总质量
    air_suspension: bool | None = None  # drive axle(s) on air suspension
    dual_drive_tyres: bool | None = None  # drive axle(s) with dual tyres
    articulated: bool | None = None  # 汽车列车 (True) or a rigid truck (False)
    # "truck" | "farm_tractor" (拖拉机) | "agricultural" | "low_speed_truck" |
    # "passenger" (客车) | "special_purpose" (专用作业车)
    vehicle_kind: str | None = None


@dataclass(frozen=True)
class StricterLimit:
    """A lower limit that a fact the WIM cannot see would make lawful."""

    limit_kg: int | None  # None: the 行驶证 mass, not known
    fact_zh: str

    def note_zh(self) -> str:
        value = "行驶证核定总质量" if self.limit_kg is None else f"{self.limit_kg}千克"
        return f"{self.fact_zh}，限值为{value}"


@dataclass(frozen=True)
class Classification:
    vehicle_class: str | None
    name_zh: str | None
    limit_kg: int | None  # the most lenient limit lawful for what is known
    basis: str
    candidates_kg: tuple[int, ...]  # the limit and every stricter one in stricter
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    stricter: tuple[StricterLimit, ...] = ()
    unconfirmed: tuple[str, ...] = ()  # 🟡 values this limit rests on


def axle_groups(spacings_m: list[float], group_spacing_m: float) -> list[list[int]]:
    """Group consecutive axles closer than ``group_spacing_m``; 1-based axle numbers."""
    groups: list[list[int]] = [[1]]
    for i, s in enumerate(spacings_m):
        if s < group_spacing_m:
            groups[-1].append(i + 2)
        else:
            groups.append([i + 2])
    return groups


@dataclass
class _Draft:
    code: str
    limit_kg: int
    basis: str
    notes: list[str] = field(default_factory=list)
    stricter: list[StricterLimit] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)
    certain_combination: bool = False  # an 汽车列车 for sure (not only the lenient choice)


def _draft(code: str, *notes: str) -> _Draft:
    c = LEGAL_CLASSES[code]
    return _Draft(code, c.limit_kg, c.basis, list(notes))


def classify(spacings_m: list[float], cfg: ClassConfig | None = None,
             known: KnownAttributes | None = None) -> Classification:
    """The 62号令 Art. 3 class of a vehicle from its axle spacings [m] (front to rear), with
    the most lenient limit lawful for what is known and the stricter ones noted."""
    cfg = cfg or ClassConfig()
    known = known or KnownAttributes()
    if len(spacings_m) < 1:
        return Classification(None, None, None, "", (), ("class_undecidable",),
                              ("少于两根轴，无法判定车型",))
    if known.vehicle_kind in NOT_IN_TABLE_KINDS:
        return Classification(None, None, None, f"{SOURCE_62}第三条", (), ("class_undecidable",),
                              (NOT_IN_TABLE_KINDS[known.vehicle_kind],))
    if known.vehicle_kind in REGISTERED_MASS_KINDS and known.registered_total_mass_kg is None:
        return Classification(None, None, None, REGISTERED_MASS_BASIS, (),
                              ("class_undecidable",),
                              ("拖拉机、农用车、低速货车以行驶证核定总质量为限，核定总质量不可得，"
                               "需人工核定",))
    d = _configuration(spacings_m, cfg, known)
    _single_tyres(d, spacings_m, cfg, known, d.certain_combination)
    _registered_mass(d, known)
    stricter = tuple(x for x in d.stricter if x.limit_kg is None or x.limit_kg < d.limit_kg)
    cands = tuple(sorted({d.limit_kg, *(x.limit_kg for x in stricter if x.limit_kg)}))
    notes = [*d.notes, *(f"【限值取有利于当事人的值】{x.note_zh()}" for x in stricter),
             *(f"【待确认规则（可配置）】{u}" for u in d.unconfirmed)]
    return Classification(d.code, LEGAL_CLASSES[d.code].name_zh, d.limit_kg, d.basis, cands,
                          (), tuple(notes), stricter, tuple(d.unconfirmed))


def _configuration(s: list[float], cfg: ClassConfig, known: KnownAttributes) -> _Draft:
    n = len(s) + 1
    compact = [x < cfg.compact_spacing_m for x in s]
    if n == 2:
        return _draft("truck_2_axle")
    if n in (3, 4):
        if n == 3:
            truck = any(compact)
            combo = all(x >= cfg.combination_min_spacing_m for x in s) and \
                max(s) >= cfg.articulation_gap_m
        else:
            truck = compact[0] and compact[2] and s[1] < cfg.articulation_gap_m + 1.5
            combo = s[0] >= cfg.single_steer_min_m and max(s[1:]) >= cfg.articulation_gap_m
        if known.articulated is not None:
            truck, combo = not known.articulated, known.articulated
        if truck and not combo:
            return _truck(n, cfg, known)
        d = _combination(n, s, cfg, known)
        d.certain_combination = combo
        if not combo:  # the pattern does not tell: the combination's limit is the lenient one
            t = _truck(n, cfg, known)
            d.stricter.append(StricterLimit(t.limit_kg, f"若为{n}轴货车（非汽车列车）"))
            d.notes.append(f"{n}轴车辆轴距模式不能区分货车与汽车列车")
        return d
    if n == 5:
        d = _draft("combination_5_axle")
    else:
        d = _six_axles(s, cfg, known)
    d.certain_combination = True  # five axles and more: only 汽车列车 in the table
    return d


def _air_unknown_or_true(known: KnownAttributes) -> bool:
    return known.air_suspension is not False and known.dual_drive_tyres is not False


def _truck(n: int, cfg: ClassConfig, known: KnownAttributes) -> _Draft:
    d = _draft("truck_3_axle" if n == 3 else "truck_4_axle")
    if cfg.air_suspension_bonus_kg and _air_unknown_or_true(known):
        base = d.limit_kg
        d.limit_kg += cfg.air_suspension_bonus_kg
        d.basis += f"；{SOURCE_62}第三条第二款第（五）项；{STANDARD_2016}"
        d.unconfirmed.append(f"空气悬架且驱动轴双胎的{n}轴货车限值增加"
                             f"{cfg.air_suspension_bonus_kg}千克（单一二手来源，待确认）")
        if known.air_suspension is None or known.dual_drive_tyres is None:
            d.stricter.append(StricterLimit(base, "若驱动轴非空气悬架或非双胎"))
    return d


def _combination(n: int, s: list[float], cfg: ClassConfig, known: KnownAttributes) -> _Draft:
    d = _draft("combination_3_axle" if n == 3 else "combination_4_axle")
    if n != 4 or not cfg.articulated_4_axle_air_limit_kg:
        return d
    # semitrailer spread d: the last two axles when they are the semitrailer's tandem
    spread_ok = (s[-2] >= cfg.articulation_gap_m
                 and cfg.semitrailer_spread_min_m <= s[-1] < cfg.articulation_gap_m)
    if spread_ok and _air_unknown_or_true(known) and known.articulated is not False:
        base = d.limit_kg
        d.limit_kg = cfg.articulated_4_axle_air_limit_kg
        d.basis += f"；{STANDARD_2016}"
        d.unconfirmed.append(f"空气悬架、驱动轴双胎、半挂车轴距≥{cfg.semitrailer_spread_min_m}米的"
                             f"四轴铰接列车限值{cfg.articulated_4_axle_air_limit_kg}千克（单一二手来源，待确认）")
        if None in (known.air_suspension, known.dual_drive_tyres, known.articulated):
            d.stricter.append(StricterLimit(base, "若非铰接列车、非空气悬架或驱动轴非双胎"))
    return d


def _six_axles(s: list[float], cfg: ClassConfig, known: KnownAttributes) -> _Draft:
    """49 t, or 46 t when the tractor's drive axle is a single axle (Art. 3 para 1 item 8)
    and external data (registration, a reviewer) say so; otherwise 49 t, 46 t noted."""
    gaps = [i for i, x in enumerate(s) if x >= cfg.articulation_gap_m]
    if known.drive_axles is not None and gaps:
        drives = [a for a in known.drive_axles if a <= gaps[0] + 1]
        return _draft("combination_6_axle_single_drive" if len(drives) == 1
                      else "combination_6_axle", "驱动轴由外部数据确认")
    # never from the spacings alone: a rigid truck's drawbar can be shorter than the gap
    # rule, so the first long spacing may lie inside a full trailer (a 6x4 truck + full
    # trailer read as a single-drive tractor); which axle drives is a fact WIM cannot see
    d = _draft("combination_6_axle")
    # the jurisdiction's fleet setting: a tractor whose last axles form a tandem drives both
    rear_tandem = bool(gaps) and gaps[0] > 0 and s[gaps[0] - 1] < cfg.compact_spacing_m
    if not (cfg.rear_tandem_is_drive_tandem and rear_tandem):
        d.stricter.append(StricterLimit(
            LEGAL_CLASSES["combination_6_axle_single_drive"].limit_kg, "若牵引车驱动轴为单轴"))
    if not gaps or gaps[0] == 0:
        d.notes.append("未找到牵引车与挂车之间的铰接间距，无法判定驱动轴")
    return d


def first_trailer_axle(spacings_m: list[float], cfg: ClassConfig) -> int | None:
    """The first axle behind the first tractor-to-trailer gap (1-based), where the motor
    vehicle has at least two axles; None when no spacing is that long."""
    for i, x in enumerate(spacings_m):
        if i >= 1 and x >= cfg.articulation_gap_m:
            return i + 2
    return None


def _single_tyres(d: _Draft, spacings_m: list[float], cfg: ClassConfig,
                  known: KnownAttributes, combination: bool) -> None:
    """−3 t per axle with single (not widened) tyres that the law presumes dual-tyred: an
    axle of a 2- or 3-axle group, or a trailer axle, that is not a drive axle (62号令
    第三条第二款第（二）项). A motor-vehicle axle whose drive is not known could be a drive
    axle: its cut is only noted (the most lenient lawful value). Steer axles are never cut.
    ``combination``: the class is surely an 汽车列车 (the axles behind its gap are a
    trailer's)."""
    if not known.single_tyre_axles:
        return
    n = len(spacings_m) + 1
    steer = {1} | ({2} if n > 2 and spacings_m[0] < cfg.compact_spacing_m else set())
    grouped = {a for g in axle_groups(spacings_m, cfg.group_spacing_m) if len(g) in (2, 3)
               for a in g}
    first_trailer = first_trailer_axle(spacings_m, cfg) if combination else None
    trailer = set(range(first_trailer, n + 1)) if first_trailer is not None else set()
    drives = set(known.drive_axles) if known.drive_axles is not None else None
    presumed_dual = [a for a in sorted(set(known.single_tyre_axles))
                     if 1 <= a <= n and a not in steer and (a in grouped or a in trailer)]
    certain = [a for a in presumed_dual
               if (a not in drives if drives is not None else a in trailer)]
    possible = [a for a in presumed_dual if a not in certain and drives is None]
    if certain:
        cut = SINGLE_TYRE_REDUCTION_KG * len(certain)
        d.limit_kg -= cut
        d.stricter = [StricterLimit(None if x.limit_kg is None else x.limit_kg - cut,
                                    x.fact_zh) for x in d.stricter]
        d.basis += f"；{SINGLE_TYRE_BASIS}"
        d.notes.append(f"第{','.join(map(str, certain))}轴为单轮胎（非驱动轴），"
                       f"限值减少{cut}千克")
    if possible:
        d.stricter.append(StricterLimit(
            d.limit_kg - SINGLE_TYRE_REDUCTION_KG * len(possible),
            f"若单轮胎的第{','.join(map(str, possible))}轴非驱动轴"))


def _registered_mass(d: _Draft, known: KnownAttributes) -> None:
    """2-axle trucks: min(18 t, 行驶证 mass); 拖拉机/农用车/低速货车: the 行驶证 mass."""
    reg = known.registered_total_mass_kg
    if known.vehicle_kind in REGISTERED_MASS_KINDS:
        if reg is not None:
            d.limit_kg, d.stricter = reg, []
            d.basis = REGISTERED_MASS_BASIS
            d.notes.append("拖拉机、农用车、低速货车以行驶证核定总质量为限")
        return
    if d.code != "truck_2_axle":
        return
    if reg is None:
        d.stricter.append(StricterLimit(None, "若行驶证核定总质量低于18000千克"))
        d.notes.append("二轴货车限值另受行驶证核定总质量限制，登记信息不可得，需核查")
    elif reg < d.limit_kg:
        d.limit_kg = reg
        d.basis += f"；{STANDARD_2016}"
        d.notes.append("二轴货车以行驶证核定总质量为限")
