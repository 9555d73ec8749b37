"""A complete, enforceable case with synthetic photos and a raw waveform: the evidence
tests' fixture, also used by the benchmarks and the station's fault tests; and that case
sealed (:func:`seal_plain_case`), the one real package the service's tests and benchmarks
register."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.evidence.signing import generate_key

T = "2025-06-01T02:03:04.500000Z"


def vehicle_dict(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "format": "zhichao.vehicle/1", "time_utc": T, "site_id": "ZJ-G60-K123",
        "lane_id": "2", "speed_kmh": 62.5, "acceleration_ms2": 0.1, "axle_count": 6,
        "axle_loads_kg": [7000.0, 11000.0, 11000.0, 11000.0, 11000.0, 11000.0],
        "wheel_loads_kg": [[3500.0, 3500.0]] * 6,
        "axle_spacings_m": [3.2, 1.35, 6.5, 1.31, 1.31],
        "axle_groups": [[1], [2, 3], [4, 5, 6]],
        "gross_weight_kg": 62000.0, "vehicle_class": "combination_6_axle",
        "vehicle_class_zh": "六轴汽车列车", "limit_kg": 49000,
        "limit_basis": "超限运输车辆行驶公路管理规定 第三条第一款第（八）项",
        "limit_candidates_kg": [46000, 49000], "allowance_kg": 620.0, "excess_kg": 13000.0,
        "excess_after_allowance_kg": 12380.0, "uncertainty_kg": 800.0,
        "verdict": "overloaded", "overloaded": True, "flags": [],
        "pavement_temperature_c": 24.0, "calibration_profile": "CAL-2025-03",
        "recording": "lane2-20250601.npz", "first_sample": 1000, "last_sample": 4000,
        "software_version": "0.1.0", "some_future_field": {"x": 1},
    }
    record.update(overrides)
    return record


def photo(path: Path, label: str, colour: tuple[int, int, int]) -> None:
    img = Image.new("RGB", (320, 200), colour)
    draw = ImageDraw.Draw(img)
    draw.rectangle((40, 60, 280, 150), fill=(230, 230, 230))
    for x in (70, 120, 170, 200, 230, 260):
        draw.ellipse((x - 12, 140, x + 12, 164), fill=(20, 20, 20))
    draw.text((10, 10), label, fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    path.write_bytes(buf.getvalue())


def waveform(path: Path) -> None:
    t = np.linspace(0, 1, 2000)
    samples = np.stack([np.exp(-((t - c) / 0.01) ** 2) * 1000 + 5 * np.sin(40 * t)
                        for c in (0.2, 0.3, 0.5, 0.6, 0.7, 0.8)], axis=1).astype("float32")
    meta = np.array(json.dumps({"format": "zhichao.raw/1"}))
    with path.open("wb") as handle:
        np.savez(handle, samples=samples, meta=meta)


def verified_check(checked_utc: str, offset_ms: float = 2.5) -> dict[str, Any]:
    """A clock record's ``reference_check``: a good NTP check at ``checked_utc``."""
    return {"verified": True, "source": "ntp", "server": "10.0.0.1:123",
            "checked_utc": checked_utc, "offset_ms": offset_ms, "delay_ms": 1.2,
            "stratum": 2, "error_bound_ms": 1.1, "max_offset_ms": 500.0,
            "max_age_s": 3900.0, "reason": "", "reason_zh": ""}


def case_dict(base: Path, **overrides: Any) -> dict[str, Any]:
    for role, colour in (("front", (160, 40, 40)), ("side", (40, 120, 40)),
                         ("rear", (40, 40, 160)), ("plate", (200, 180, 0))):
        if not (base / f"{role}.jpg").exists():
            photo(base / f"{role}.jpg", role, colour)
    if not (base / "lane2.npz").exists():
        waveform(base / "lane2.npz")
    case: dict[str, Any] = {
        "vehicle": vehicle_dict(),
        "device": {
            "device_id": "WIM-ZJ-0007", "technical_review_approved": True,
            "technical_review_date": "2024-03-01", "legal_review_approved": True,
            # class 1 (±1 % in service, ❌ unconfirmed): the record deducts 620 kg of 62 t
            "legal_review_date": "2024-03-05", "accuracy_class": "1",
            "certificate_number": "ZJJL-2025-0456", "certificate_issuer": "浙江省计量科学研究院",
            "certificate_valid_from": "2025-01-10T00:00:00+08:00",
            "certificate_valid_to": "2026-01-10T00:00:00+08:00", "drift_alarm_open": False,
            "installation_type": "bending_plate",  # within JJG 907-2006's scope
        },
        "site": {
            "site_id": "ZJ-G60-K123", "name_zh": "沪昆高速温岭段非现场检测点",
            "road_zh": "G60沪昆高速", "stake_zh": "K123+500", "jurisdiction": "CN-ZJ",
            "published_utc": "2024-04-17T00:00:00+08:00",
            "announcement_zh": "温岭市交通运输局关于启用非现场检测点的通告（2024年4月17日）",
            "authority_zh": "温岭市交通运输局", "handling_place_zh": "温岭市交通运输行政执法队",
        },
        "plate": {"text": "浙J12345", "colour": "黄", "confidence": 0.98, "accepted": True},
        "images": [
            {"path": "front.jpg", "role": "front", "capture_utc": T, "camera_id": "CAM-F"},
            {"path": "side.jpg", "role": "side", "capture_utc": "2025-06-01T02:03:05Z",
             "camera_id": "CAM-S", "axle_count_visible": 6},
            {"path": "rear.jpg", "role": "rear", "capture_utc": "2025-06-01T02:03:06Z"},
            {"path": "plate.jpg", "role": "plate", "capture_utc": T},
        ],
        "clocks": {"reference_zh": "站内参考时钟（NTP 授时，已核验）",
                   "measured_utc": "2025-06-01T02:00:00Z",
                   "offsets_ms": {"WIM-ZJ-0007": 3.0, "CAM-F": -12.0, "CAM-S": 8.0},
                   "reference_check": verified_check("2025-06-01T01:30:00Z")},
        "registration": {"plate_text": "浙J12345", "axle_count": 6, "total_mass_kg": 49000,
                         "owner_name_zh": "温岭某某物流有限公司"},
        "prior_violations": 0,
        "waveform_path": "lane2.npz",
        "station_id": "S001",
    }
    case.update(overrides)
    return case


@dataclass(frozen=True)
class SealedCase:
    """A sealed package: its folder, its manifest and the manifest's SHA-256 (hex)."""

    directory: Path
    manifest: dict[str, Any]
    manifest_sha256: str


def seal_plain_case(root: Path) -> SealedCase:
    """:func:`case_dict` sealed under ``root`` by a fresh station ``S001`` (new key), its
    documents skipped for speed."""
    base = root / "in"
    base.mkdir()
    station = Station("S001", "zhichao-station-S001", generate_key())
    with MerkleLog(root / "log", origin=station.origin, create=True, fsync=False) as log:
        result = seal_package(CaseInputs.from_json(case_dict(base)), root / "pkg",
                              station=station, log=log, base_dir=base,
                              renderer=lambda *_: {})
    raw = (result.directory / "manifest.json").read_bytes()
    return SealedCase(result.directory, json.loads(raw), hashlib.sha256(raw).hexdigest())
