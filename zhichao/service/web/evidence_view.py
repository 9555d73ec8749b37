"""What the case page shows of a sealed package: facts, photos, figures, integrity.

Read-only helpers over :mod:`zhichao.service.owners` (manifest and file access) and
:func:`zhichao.evidence.verify.verify_package`; no database writes here (the routes log
every evidence view through ``owners.log_evidence_view``). The integrity view verifies
with the key the center holds for the case's station (``sync_station``), never with the
key inside the package: without a registered key the origin is unproven and the view
fails.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, object_session

from zhichao.evidence import strict_json
from zhichao.evidence._util import parse_time
from zhichao.evidence.documents import colour_zh, joint_province_probability, lowest_probability
from zhichao.evidence.errors import EvidenceError, InputError
from zhichao.evidence.manifest import INCLUSION_NAME, MANIFEST_NAME
from zhichao.evidence.reader import PackageRefusedError, read_package
from zhichao.evidence.signing import load_public_key_bytes
from zhichao.evidence.verify import RESULT_ZH, Result, read_inclusion, verify_package
from zhichao.service import owners
from zhichao.service.center.tables import trusted_key
from zhichao.service.errors import NotFoundError
from zhichao.service.models import Case
from zhichao.service.objectstore import local_package
from zhichao.service.web import svg
from zhichao.weighing.vehicle import FLAGS_ZH

IMAGE_ROLES_ZH = {
    "image_front": "车头照片", "image_side": "车身侧面照片", "image_rear": "车尾照片",
    "image_plate": "号牌特写", "image_overview": "全景照片",
}


@dataclass
class IntegrityView:
    ok: bool
    summary_zh: str
    checks: list[dict[str, str]] = field(default_factory=list)


@dataclass
class EvidenceView:
    manifest: dict[str, Any]
    photos: list[dict[str, str]]
    plate_crop: dict[str, str] | None
    vehicle: dict[str, Any]
    flags: list[dict[str, str]]
    reasons: list[dict[str, str]]
    eligibility_zh: str
    penalty: dict[str, Any]
    limit: dict[str, Any]
    axle_rows: list[dict[str, Any]]
    axle_figure: Markup | None
    load_figure: Markup | None
    waveform_figure: Markup | None
    waveform_note_zh: str | None
    problems_zh: list[str]
    videos: list[dict[str, str]] = field(default_factory=list)  # the passage's clips
    videos_missing: list[dict[str, str]] = field(default_factory=list)  # … and why none
    plate_reads: list[dict[str, Any]] = field(default_factory=list)  # the reads behind the plate


# why a clip is missing (the package says it in English, zhichao.station.clips), for officers
CLIP_MISSING_ZH = (
    ("the camera's stream has given no frame yet", "摄像机视频流尚未接通，没有画面"),
    ("the camera's stream gave no frame in the window", "摄像机视频流在该时段内没有画面"),
    ("the camera's stream stopped before the window", "摄像机视频流在该时段之前已中断"),
    ("encoding the clip failed", "视频编码失败"),
    ("no clip was made", "站点在该时段结束前停止或重启，未生成视频"),
    ("the clip file cannot be used", "视频文件无法解码"),
)


def _clip_missing_zh(reason: Any) -> str:
    text = str(reason or "")
    zh = next((z for prefix, z in CLIP_MISSING_ZH if text.startswith(prefix)), "原因未登记")
    return f"{zh}（记录原文：{text}）"


#: the share of a read's box added on each side of its close-up
PLATE_CROP_MARGIN = 0.25


def _box(raw: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(raw, list) or len(raw) != 4 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in raw):
        return None
    x0, y0, x1, y1 = (float(v) for v in raw)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _read_image(files: list[dict[str, Any]], read: dict[str, Any]) -> str | None:
    """The package photo a plate read was made on: the camera's photo (its capture time
    decides between several)."""
    photos = [f for f in files if str(f.get("role", "")).startswith("image_")
              and f.get("camera_id") == read.get("camera")]
    if len(photos) > 1:
        when = _utc_time(read.get("captured_utc"))
        photos = [f for f in photos
                  if when is not None and _utc_time(f.get("capture_utc")) == when]
    return str(photos[0].get("path")) if len(photos) == 1 else None


def _utc_time(text: Any) -> datetime | None:
    """A recorded time as an instant (the same instant is written with or without
    microseconds by different writers); None where it is not one."""
    try:
        return parse_time(text, "captured_utc")
    except InputError:
        return None


def plate_reads(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The sealed reads behind the plate (``case.plate.reads``), for the reviewers' table:
    each recogniser's text and least sure character (``joint_text``: the plate with the
    province both recognisers chose together, where that is another), the province head,
    and the photo and box its close-up is cut from (None when the photo is not in the
    package)."""
    facts = manifest.get("case") if isinstance(manifest.get("case"), dict) else {}
    plate = facts.get("plate") if isinstance(facts, dict) else None
    if not isinstance(plate, dict):
        return []
    files = [f for f in manifest.get("files", []) if isinstance(f, dict)]
    rows = []
    for n, read in enumerate(r for r in plate.get("reads") or [] if isinstance(r, dict)):
        model = read.get("plate_model")
        second: dict[str, Any] = model if isinstance(model, dict) else {}
        box = _box(read.get("box_px"))
        image = _read_image(files, read) if box is not None else None
        rows.append({
            "n": n, "camera": str(read.get("camera") or "—"),
            "captured_utc": str(read.get("captured_utc") or "—"),
            "text": str(read.get("text") or "—"),
            "joint_text": str(read["joint_text"]) if read.get("joint_text") else None,
            "joint_p": joint_province_probability(read),
            "low": lowest_probability(read.get("char_confidences")),
            "model_text": str(second.get("text") or "—"),
            "model_low": lowest_probability(second.get("char_confidences")),
            "province": str(second.get("province") or "—"),
            "province_confidence": lowest_probability([second.get("province_confidence")]),
            "colour": colour_zh(read.get("colour")),
            "image": image, "box_px": box,
        })
    return rows


def plate_read_crop(case: Case, n: int) -> bytes:
    """A JPEG close-up of the plate of read ``n``: its box (with
    :data:`PLATE_CROP_MARGIN` on each side) cut from the package photo it was read on."""
    from io import BytesIO

    from PIL import Image, UnidentifiedImageError

    reads = plate_reads(owners.read_manifest(case.package_path))
    if not 0 <= n < len(reads) or reads[n]["image"] is None:
        raise NotFoundError(f"plate read {n}: none with a photo in {case.package_id}",
                            "号牌特写不存在")
    _media, data = owners.package_file(case, reads[n]["image"])
    x0, y0, x1, y1 = reads[n]["box_px"]
    dx, dy = (x1 - x0) * PLATE_CROP_MARGIN, (y1 - y0) * PLATE_CROP_MARGIN
    try:
        with Image.open(BytesIO(data)) as image:
            width, height = image.size
            box = (max(0, int(x0 - dx)), max(0, int(y0 - dy)),
                   min(width, int(x1 + dx + 1)), min(height, int(y1 + dy + 1)))
            if box[2] <= box[0] or box[3] <= box[1]:
                raise NotFoundError(f"plate read {n}: its box lies outside the photo",
                                    "号牌特写不存在")
            out = BytesIO()
            image.crop(box).convert("RGB").save(out, format="JPEG", quality=90)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError, EOFError) as exc:  # whatever a damaged photo makes Pillow raise
        raise NotFoundError(f"plate read {n}: the photo cannot be decoded: {exc}",
                            "号牌特写不存在") from exc
    return out.getvalue()


def unavailable_view(message_zh: str) -> EvidenceView:
    """What the case page shows when the package cannot be read at all (history stays)."""
    return EvidenceView(manifest={}, photos=[], plate_crop=None, vehicle={}, flags=[],
                        reasons=[], eligibility_zh="—", penalty={}, limit={}, axle_rows=[],
                        axle_figure=None, load_figure=None, waveform_figure=None,
                        waveform_note_zh=message_zh, problems_zh=[message_zh])


def _num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def manifest_bytes(package_path: str) -> bytes:
    """The raw ``manifest.json`` of a package directory or zip (read strictly)."""
    try:
        data = read_package(local_package(package_path)).read(MANIFEST_NAME)
    except PackageRefusedError as exc:
        raise NotFoundError(f"package at {package_path}: {exc}",
                            f"证据包暂不可用（{exc.message_zh}）") from exc
    if data is None:
        raise NotFoundError(f"package at {package_path}: no {MANIFEST_NAME}", "证据包暂不可用")
    return data


def _check(code: str, result: Result, message_zh: str) -> dict[str, str]:
    return {"code": code, "result": RESULT_ZH[result], "css": result.value.lower(),
            "message_zh": message_zh}


def _key_claim(package_path: str) -> tuple[str | None, int | None, int | None]:
    """(the key fingerprint the manifest names, the package's log index, its checkpoint's
    size): claims that only
    pick which of the station's registered keys verifies it (a replaced key is trusted for
    what it sealed); the verifier checks both."""
    try:
        contents = read_package(local_package(package_path))
        manifest = strict_json.loads(contents.read(MANIFEST_NAME) or b"", MANIFEST_NAME)
        station = strict_json.member(manifest, "station", MANIFEST_NAME)
        named = strict_json.string(station, "key_sha256", f"{MANIFEST_NAME}.station")
        index, size, _hashes, _inc = read_inclusion(contents.read(INCLUSION_NAME) or b"")
    except (PackageRefusedError, EvidenceError, NotFoundError, OSError):
        return None, None, None
    return named, index, size


def _registered_key(case: Case, session: Session | None) -> tuple[Any, dict[str, str]]:
    """(the station key the center registered for this package — its current key, or a
    replaced one for what that key sealed — or ``None``; the check saying which)."""
    session = session if session is not None else object_session(case)
    try:
        named, index, size = _key_claim(case.package_path)
        trusted = None if session is None else trusted_key(session, case.station_id, named,
                                                            index, size)
        pem = None if trusted is None else trusted[0]
        key = None if pem is None else load_public_key_bytes(pem, "registered key")
    except (SQLAlchemyError, EvidenceError) as exc:
        return None, _check("key.registered", Result.FAIL,
                            f"无法读取中心登记的站点公钥（{type(exc).__name__}），来源无法证实")
    if key is None:
        return None, _check("key.registered", Result.FAIL,
                            f"中心未登记站点 {case.station_id or '（未知）'} 的公钥：只能用包内"
                            "公钥核验，证据来源未经证实，须人工核查")
    return key, _check("key.registered", Result.PASS,
                       f"使用中心登记的站点 {case.station_id} 公钥核验（不使用包内公钥）")


def integrity(case: Case, session: Session | None = None) -> IntegrityView:
    """Offline verification of the stored package with the station key registered at the
    center (``session``: the case's own session when not given), plus the registered
    manifest hash."""
    checks: list[dict[str, str]] = []
    try:
        digest = hashlib.sha256(manifest_bytes(case.package_path)).hexdigest()
        same = digest == case.manifest_sha256
        checks.append(_check("center.manifest_sha256", Result.PASS if same else Result.FAIL,
                             "清单哈希与登记时一致" if same else
                             f"清单哈希与登记时不一致（登记 {case.manifest_sha256[:16]}…，"
                             f"现为 {digest[:16]}…）"))
    except NotFoundError as exc:
        same = False
        checks.append(_check("center.manifest_sha256", Result.FAIL, exc.message_zh))
    key, key_check = _registered_key(case, session)
    checks.append(key_check)
    report = verify_package(local_package(case.package_path), key=key)
    for check in report.checks:
        checks.append(_check(check.code, check.result, check.message_zh))
    ok = report.ok and same and key is not None
    failed = sum(1 for c in checks if c["css"] == "fail")
    summary = ("证据包完整性核验通过：以中心登记的站点公钥核验，文件哈希、签名与日志证明均一致"
               if ok else
               f"证据包完整性核验失败：{failed} 项未通过，不得作为处罚依据，须人工核查")
    return IntegrityView(ok, summary, checks)


def evidence_view(case: Case, *, waveform_max_points: int = 600) -> EvidenceView:
    manifest = owners.read_manifest(case.package_path)
    facts = manifest.get("case") if isinstance(manifest.get("case"), dict) else {}
    assert isinstance(facts, dict)
    vehicle = facts.get("vehicle") if isinstance(facts.get("vehicle"), dict) else {}
    assert isinstance(vehicle, dict)
    problems: list[str] = []
    files = [f for f in manifest.get("files", []) if isinstance(f, dict)]
    photos = [{"path": str(f.get("path")), "role": str(f.get("role")),
               "role_zh": IMAGE_ROLES_ZH.get(str(f.get("role")), str(f.get("role"))),
               "capture_utc": str(f.get("capture_utc") or "—"),
               "camera_id": str(f.get("camera_id") or "—")}
              for f in files if str(f.get("role", "")).startswith("image_")]
    plate_crop = next((p for p in photos if p["role"] == "image_plate"), None)
    flags = sorted({str(f) for f in (vehicle.get("flags") or []) + (facts.get("flags") or [])})
    flag_rows = [{"code": f, "text_zh": FLAGS_ZH.get(f, "未登记的标记（须人工判断）")}
                 for f in flags]
    eligibility = facts.get("eligibility") if isinstance(facts.get("eligibility"), dict) else {}
    assert isinstance(eligibility, dict)
    reasons = [{"code": str(r.get("code")), "severity": str(r.get("severity")),
                "message_zh": str(r.get("message_zh")), "basis_zh": str(r.get("basis_zh") or ""),
                "detail": str(r.get("detail") or "")}
               for r in eligibility.get("reasons", []) if isinstance(r, dict)]
    penalty = facts.get("penalty") if isinstance(facts.get("penalty"), dict) else {}
    limit = facts.get("limit") if isinstance(facts.get("limit"), dict) else {}
    assert isinstance(penalty, dict) and isinstance(limit, dict)
    loads = [_num(v) for v in vehicle.get("axle_loads_kg") or []]
    spacings = [_num(v) for v in vehicle.get("axle_spacings_m") or []]
    wheels = vehicle.get("wheel_loads_kg") or []
    axle_rows = []
    for i, load in enumerate(loads):
        wheel = wheels[i] if i < len(wheels) and isinstance(wheels[i], list) else []
        axle_rows.append({"n": i + 1, "load_kg": load,
                          "left_kg": _num(wheel[0]) if len(wheel) > 0 else None,
                          "right_kg": _num(wheel[1]) if len(wheel) > 1 else None,
                          "spacing_m": spacings[i] if i < len(spacings) else None})
    axle_figure = None
    if loads and all(v is not None for v in loads) and all(v is not None for v in spacings):
        try:
            axle_figure = svg.axle_svg([s for s in spacings if s is not None],
                                       [v for v in loads if v is not None],
                                       vehicle.get("axle_groups"))
        except ValueError as exc:
            problems.append(f"轴型图无法绘制：{exc}")
    gross = _num(vehicle.get("gross_weight_kg"))
    limit_kg = _num(vehicle.get("limit_kg"))
    load_figure = None if gross is None else svg.load_bar_svg(
        gross, limit_kg, _num(vehicle.get("allowance_kg")))
    waveform_figure, note = None, None
    wave = next((f for f in files if f.get("role") == "waveform"), None)
    if wave is None:
        note = "证据包中没有原始波形文件"
    else:
        try:
            _media, data = owners.package_file(case, str(wave.get("path")))
            samples, meta = svg.load_waveform(data)
            first, last = vehicle.get("first_sample"), vehicle.get("last_sample")
            window = (int(first), int(last)) if isinstance(first, int) and isinstance(
                last, int) and last < samples.shape[0] else None
            waveform_figure = svg.waveform_svg(samples, meta, window=window,
                                               max_points=waveform_max_points)
            note = (f"{samples.shape[1]} 个通道，{samples.shape[0]} 个采样点" +
                    ("" if window else "；记录中的过车区间不在本文件范围内，未标出"))
        except (NotFoundError, svg.WaveformError) as exc:
            note = f"原始波形无法读取：{exc}"
            problems.append(note)
    videos = [{"path": str(f.get("path")), "camera_id": str(f.get("camera_id") or "—"),
               "start_utc": str(f.get("start_utc") or "—"),
               "end_utc": str(f.get("end_utc") or "—"),
               "frames": str(f.get("frame_count") or "—"),
               "duration_s": str(f.get("duration_s") or "—")}
              for f in files if f.get("role") == "video"]
    missing = [{"camera_id": str(m.get("camera_id")), "reason": _clip_missing_zh(m.get("reason"))}
               for m in facts.get("videos_missing") or [] if isinstance(m, dict)]
    return EvidenceView(manifest=manifest, photos=photos, plate_crop=plate_crop,
                        vehicle=vehicle, flags=flag_rows, reasons=reasons,
                        eligibility_zh=str(eligibility.get("status_zh") or
                                           eligibility.get("status") or "—"),
                        penalty=penalty, limit=limit, axle_rows=axle_rows,
                        axle_figure=axle_figure, load_figure=load_figure,
                        waveform_figure=waveform_figure, waveform_note_zh=note,
                        problems_zh=problems, videos=videos, videos_missing=missing,
                        plate_reads=plate_reads(manifest))
