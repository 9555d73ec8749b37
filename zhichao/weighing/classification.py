"""Stage 6: axle groups and configuration → 62号令 Art. 3 class and its total-mass limit.

WIM sees axle count and spacings, not whether a vehicle is articulated, which axle drives,
or its tyres. The class is decided from spacing patterns only where they are unambiguous;
otherwise the limit is ``None`` with a flag and the candidate limits are listed — never
silently the stricter or the looser one (law.md R1.2). Facts the WIM cannot see (drive axle,
single tyres, the 行驶证 total mass) can be supplied as :class:`KnownAttributes`.
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


@dataclass(frozen=True)
class KnownAttributes:
    """Facts from registration data, images or a reviewer that WIM cannot measure."""

    drive_axles: tuple[int, ...] | None = None  # 1-based axle numbers that drive
    single_tyre_axles: tuple[int, ...] | None = None  # 1-based, non-widened single tyres
    registered_total_mass_kg: int | None = None  # 行驶证 总质量 (caps a 2-axle truck)


@dataclass(frozen=True)
class Classification:
    vehicle_class: str | None
    name_zh: str | None
    limit_kg: int | None
    basis: str
    candidates_kg: tuple[int, ...]
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def axle_groups(spacings_m: list[float], group_spacing_m: float) -> list[list[int]]:
    """Group consecutive axles closer than ``group_spacing_m``; 1-based axle numbers."""
    groups: list[list[int]] = [[1]]
    for i, s in enumerate(spacings_m):
        if s < group_spacing_m:
            groups[-1].append(i + 2)
        else:
            groups.append([i + 2])
    return groups


def _decided(code: str, notes: tuple[str, ...] = ()) -> Classification:
    c = LEGAL_CLASSES[code]
    return Classification(code, c.name_zh, c.limit_kg, c.basis, (c.limit_kg,), (), notes)


def _undecided(codes: list[str], why: str) -> Classification:
    cands = tuple(sorted({LEGAL_CLASSES[c].limit_kg for c in codes}))
    basis = "；".join(sorted({LEGAL_CLASSES[c].basis for c in codes}))
    return Classification(None, None, None, basis, cands, ("class_undecidable",), (why,))


def classify(spacings_m: list[float], cfg: ClassConfig | None = None,
             known: KnownAttributes | None = None) -> Classification:
    """The 62号令 Art. 3 class of a vehicle from its axle spacings [m] (front to rear)."""
    cfg = cfg or ClassConfig()
    known = known or KnownAttributes()
    base = _classify_pattern(spacings_m, cfg, known)
    return _apply_known(base, spacings_m, known)


def _classify_pattern(s: list[float], cfg: ClassConfig, known: KnownAttributes
                      ) -> Classification:
    n = len(s) + 1
    compact = [x < cfg.compact_spacing_m for x in s]
    if n < 2:
        return Classification(None, None, None, "", (), ("class_undecidable",),
                              ("少于两根轴，无法判定车型",))
    if n == 2:
        return _decided("truck_2_axle")
    if n == 3:
        if any(compact):
            return _decided("truck_3_axle")
        if all(x >= cfg.combination_min_spacing_m for x in s) and max(s) >= \
                cfg.articulation_gap_m:
            return _decided("combination_3_axle")
        return _undecided(["truck_3_axle", "combination_3_axle"],
                          "三轴车辆轴距模式不能区分货车与汽车列车")
    if n == 4:
        if compact[0] and compact[2] and s[1] < cfg.articulation_gap_m + 1.5:
            return _decided("truck_4_axle")
        if s[0] >= cfg.single_steer_min_m and max(s[1:]) >= cfg.articulation_gap_m:
            return _decided("combination_4_axle")
        return _undecided(["truck_4_axle", "combination_4_axle"],
                          "四轴车辆轴距模式不能区分货车与汽车列车")
    if n == 5:
        return _decided("combination_5_axle")
    # six or more axles: 49 t, or 46 t when the tractor's drive axle is a single axle
    gaps = [i for i, x in enumerate(s) if x >= cfg.articulation_gap_m]
    if not gaps or gaps[0] == 0:
        return _undecided(["combination_6_axle", "combination_6_axle_single_drive"],
                          "未找到牵引车与挂车之间的铰接间距，无法判定驱动轴")
    tractor_last_spacing = s[gaps[0] - 1]  # spacing between the tractor's last two axles
    if known.drive_axles is not None:
        drives = [a for a in known.drive_axles if a <= gaps[0] + 1]
        return _decided("combination_6_axle_single_drive" if len(drives) == 1
                        else "combination_6_axle", ("驱动轴由外部数据确认",))
    if tractor_last_spacing >= cfg.compact_spacing_m:
        return _decided("combination_6_axle_single_drive")
    if cfg.rear_tandem_is_drive_tandem:
        return _decided("combination_6_axle", ("按辖区规定将牵引车后双轴视为双驱动轴",))
    return _undecided(["combination_6_axle", "combination_6_axle_single_drive"],
                      "牵引车后部为双轴组，可能为双驱动轴（49吨）或单驱动轴加随动轴（46吨），需核查")


def _apply_known(c: Classification, spacings_m: list[float], known: KnownAttributes
                 ) -> Classification:
    """Registration and tyre facts, where supplied, adjust a decided limit."""
    if c.limit_kg is None:
        return c
    limit = c.limit_kg
    basis = c.basis
    notes = list(c.notes)
    if known.single_tyre_axles:
        n = len(spacings_m) + 1
        drives = set(known.drive_axles or ())
        # steer axles (the first one, or the first two when they form a group) are exempt
        steer = {1} | ({2} if n > 2 and spacings_m[0] < 2.6 else set())
        affected = [a for a in known.single_tyre_axles if a not in drives and a not in steer]
        if affected:
            limit -= SINGLE_TYRE_REDUCTION_KG * len(affected)
            basis += f"；{SINGLE_TYRE_BASIS}"
            notes.append(f"第{','.join(map(str, affected))}轴为单轮胎，限值减少"
                         f"{SINGLE_TYRE_REDUCTION_KG * len(affected)}千克")
    if c.vehicle_class == "truck_2_axle" and known.registered_total_mass_kg is not None:
        if known.registered_total_mass_kg < limit:
            limit = known.registered_total_mass_kg
            notes.append("二轴货车以行驶证核定总质量为限")
    return Classification(c.vehicle_class, c.name_zh, limit, basis, (limit,), c.flags,
                          tuple(notes))
