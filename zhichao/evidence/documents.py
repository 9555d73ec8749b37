"""zh-CN evidence documents, made from the package alone: 取证单 and 违法行为通知书 of a case
package, and the 复检记录 of a static re-weighing's supplement (:func:`render_reweigh`).

Both are derived files (HTML, self-contained with embedded photos and SVG plots; and PDF
with the bundled fonts of ``fonts/``: DejaVu Sans for Latin, a GB 2312 subset of Droid
Sans Fallback, and, loaded only when a text needs them, Droid Sans Fallback Full for hanzi
up to Extension A and a Noto Sans CJK SC supplement for Extension B and beyond). Their
input is the manifest's facts and the original files, so ``zhichao render PACKAGE``
re-makes them from a package. They never replace the originals: the footer says so.

A character that no bundled font covers is never drawn as a silent box (.notdef): the
PDF shows it as a visible ``[U+XXXXX]`` marker, a red warning line lists every such
character, and a warning is logged (logger ``zhichao.evidence.documents``).
:func:`uncovered_characters` tells a caller beforehand.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import unicodedata
from collections.abc import Callable, Iterable
from datetime import datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from zhichao.common import BEIJING
from zhichao.evidence import notice_text
from zhichao.evidence.errors import DocumentError
from zhichao.evidence.inputs import TIME_SOURCE_ZH
from zhichao.evidence.notice_text import law_figures as _law
from zhichao.evidence.static_reading import FLAG_ZH, STABLE_BY_ZH
from zhichao.evidence.verdict import VERDICT_ZH
from zhichao.vision.plate_image import PLATE_COLOURS_ZH

LOGGER = logging.getLogger(__name__)
LATIN_FONT_NAME = "DejaVuSans-Latin.ttf"
FONT_NAME = "DroidSansFallback-GB2312.ttf"
FULL_FONT_NAME = "DroidSansFallbackFull.ttf"
SUPPLEMENT_FONT_NAME = "NotoSansCJKsc-Supplement.otf"
# (fpdf2 family, file), in fallback order after the Latin font. The GB 2312 subset is
# loaded for every PDF; the full fonts (5 MB, ~0.4 s to load) only when a text needs a
# character outside it.
BASE_PDF_FONTS = (("latin", LATIN_FONT_NAME), ("han", FONT_NAME))
EXTRA_PDF_FONTS = (("hanfull", FULL_FONT_NAME), ("hanx", SUPPLEMENT_FONT_NAME))
PDF_FONTS = BASE_PDF_FONTS + EXTRA_PDF_FONTS
ROLE_ZH = {"image_front": "车辆前部", "image_side": "车辆侧面（全部车轴）",
           "image_rear": "车辆尾部", "image_plate": "号牌特写"}
NOTICE_FOOTER = ("本文书为证据包派生文件，由系统依签名清单及原始文件自动生成；"
                 "内容以原始文件和已签名清单为准，未经技术审核和法制审核不得作为处罚依据。")

Reader = Callable[[str], bytes | None]


_bj = notice_text.beijing_time_zh


def _v(value: Any, unit: str = "") -> str:
    if value is None or value == "":
        return "—"
    return f"{value}{unit}"


_READER_MODELS_ZH = (("detector", "号牌检测"), ("recogniser", "通用文字识别"),
                     ("plate_model", "号牌识别"))


def _plate_reader_zh(reader: Any) -> str:
    """Which software, models (SHA-256, first 16 hex digits; the manifest has them whole),
    runtime and accept thresholds decided the plate."""
    if not isinstance(reader, dict):
        return "未记录"
    models = reader.get("models_sha256") or {}
    policy = reader.get("policy") or {}
    hashes = "，".join(f"{zh} {str(models.get(key) or '未加载')[:16]}"
                      for key, zh in _READER_MODELS_ZH)
    return (f"zhichao {_v(reader.get('software_version'))}，运行 {_v(reader.get('runtime'))}；"
            f"模型 SHA-256：{hashes}；自动采信阈值：字符 {_v(policy.get('min_char_confidence'))}"
            f"，省份 {_v(policy.get('min_province_confidence'))}，省份判别 "
            f"{_v(policy.get('min_province_head_confidence'))}，号牌宽度不小于 "
            f"{_v(policy.get('min_plate_width_px'), ' px')}")


#: reads and other plate strings listed on the sheet; the manifest keeps every one
SHEET_PLATE_READS = 6
SHEET_PLATE_ALTERNATIVES = 10


def lowest_probability(values: Any) -> str:
    """The lowest of a read's per-character probabilities, two decimals (``—`` without
    any); the sheet's and the console's 最低."""
    numbers = [float(v) for v in values or []
               if isinstance(v, int | float) and not isinstance(v, bool)]
    return f"{min(numbers):.2f}" if numbers else "—"


def _plate_reads_rows(plate: dict[str, Any]) -> list[tuple[str, str]]:
    """One row per read of the plate (each recogniser's text and its least sure character,
    the province head, where in the frame), then the other strings seen."""
    reads = [r for r in plate.get("reads") or [] if isinstance(r, dict)]
    rows = []
    for i, r in enumerate(reads[:SHEET_PLATE_READS], 1):
        second = r.get("plate_model") if isinstance(r.get("plate_model"), dict) else None
        box = ",".join(f"{float(v):.0f}" for v in r.get("box_px") or []
                       if isinstance(v, int | float))
        low = lowest_probability
        model = ("未运行" if second is None else
                 f"{_v(second.get('text'))}（最低字符置信度 {low(second.get('char_confidences'))}"
                 f"，省份判别 {_v(second.get('province'))} "
                 f"{_v(second.get('province_confidence'))}）")
        rows.append((f"号牌读数 {i}",
                     f"相机 {_v(r.get('camera'))}，{_bj(r.get('captured_utc'))}；通用文字识别 "
                     f"{_ppocr_text_zh(r)}；"
                     f"号牌识别模型 {model}；颜色 {colour_zh(r.get('colour'))}；"
                     f"画面位置 {box or '—'} px"))
    if len(reads) > SHEET_PLATE_READS:
        rows.append(("号牌读数", f"另有 {len(reads) - SHEET_PLATE_READS} 次读数，见签名清单"))
    others = [a for a in plate.get("alternatives") or [] if isinstance(a, dict)]
    if others:
        more = len(others) - SHEET_PLATE_ALTERNATIVES
        rows.append(("其他号牌读数", "；".join(
            f"{_v(a.get('text'))}（支持度 {_v(a.get('support'))}）"
            for a in others[:SHEET_PLATE_ALTERNATIVES])
            + (f"；另有 {more} 个，见签名清单" if more > 0 else "")))
    return rows


def _ppocr_text_zh(read: dict[str, Any]) -> str:
    """PP-OCRv4's text of a read and its least sure character; where PP-OCRv4 and the plate
    model's province head together find another province most probable, that plate too,
    with the province's probability under both."""
    low = lowest_probability(read.get("char_confidences"))
    text = f"{_v(read.get('text'))}（最低字符置信度 {low}）"
    joint = read.get("joint_text")
    if joint:
        text += (f"；综合两个识别模型的概率，省份简称最可能为“{str(joint)[:1]}”（号牌 {_v(joint)}，"
                 f"综合概率 {joint_province_probability(read)}），需人工核对")
    return text


def joint_province_probability(read: dict[str, Any]) -> str:
    """The probability both recognisers together give the joint plate's province (the first
    of ``joint_char_confidences``), two decimals; ``—`` without one."""
    values = read.get("joint_char_confidences") or []
    return lowest_probability(values[:1]) if isinstance(values, list) else "—"


def colour_zh(colour: Any) -> str:
    """A plate colour as officers name it (蓝, 黄 …; ``unknown`` → 未识别); a name the table
    lacks as it is."""
    if colour == "unknown":
        return "未识别"
    return PLATE_COLOURS_ZH.get(str(colour), _v(colour))


def _cite(source: dict[str, Any]) -> str:
    law = str(source.get("law_zh", ""))
    art = str(source.get("article_zh", ""))
    return f"{law}{art}" if law.startswith("（") else f"《{law}》{art}"


def _waveform(data: bytes | None) -> list[list[float]] | None:
    """Per-channel samples of a zhichao.raw/1 ``.npz`` (decimated), or None if unreadable."""
    if not data:
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            samples = np.asarray(npz["samples"], dtype=float)
    except Exception:  # any damage → no plot, the document says so
        return None
    if samples.ndim != 2 or samples.shape[0] < 2:
        return None
    step = max(1, samples.shape[0] // 400)
    return [samples[::step, c].tolist() for c in range(min(samples.shape[1], 8))]


def _facts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    c = doc["case"]
    law = _law(c)
    v = c["vehicle"]
    site = c.get("site") or {}
    dev = c.get("device") or {}
    plate = c.get("plate") or {}
    pen = c.get("penalty") or {}
    elig = c.get("eligibility") or {}
    reg = c.get("registration") or {}
    rows = [
        ("证据包编号", doc["package_id"]),
        ("检测时间", _bj(c.get("time_utc")) + f"  [{c.get('time_utc')}]"),
        ("监测点", " ".join(x for x in (site.get("name_zh"), site.get("road_zh"),
                                        site.get("stake_zh")) if x) or c.get("site_id", "—")),
        ("车道", _v(c.get("lane_id"))),
        ("号牌", f"{_v(plate.get('text'))}（{colour_zh(plate.get('colour'))}，"
                 f"识别置信度 {_v(plate.get('confidence'))}）"),
        ("号牌识别依据", _plate_reader_zh(plate.get("reader"))),
        *_plate_reads_rows(plate),
        ("车辆所有人（登记）", f"{_v(reg.get('owner_name_zh'))}，"
                             f"地址 {_v(reg.get('owner_address_zh'))}"),
        ("车型", notice_text.vehicle_class_zh(c)),
        ("轴数 / 车速", f"{_v(v.get('axle_count'))} 轴 / {_v(v.get('speed_kmh'))} km/h"),
        ("车货总质量", _v(v.get("gross_weight_kg"), " kg")
         + ("（动态检测）" if c.get("static_reweigh") else "")),
        *([("静态复检总质量（证据重量）",
            f"{_v(c['static_reweigh'].get('weight_kg'), ' kg')}，"
            f"{_bj(c['static_reweigh'].get('reading_utc'))}，检定证书 "
            f"{_v((c['static_reweigh'].get('certificate') or {}).get('certificate_number'))}")]
          if c.get("static_reweigh") else []),
        ("限定标准", f"{_v(law.get('limit_kg'), ' kg')}（{_v(law.get('limit_basis'))}）"
         + "".join(f"；{s}" for s in law.get("stricter_limits_zh") or [])),
        ("计量允差", _v(law.get("tolerance_kg"), " kg")
         + (f"（{law['tolerance_basis_zh']}）" if law.get("tolerance_basis_zh") else "")),
        ("待确认的数值", "；".join(law.get("unconfirmed_zh") or []) or "无"),
        ("超限量（扣除允差后）", _v(pen.get("excess_kg") or c.get("excess_after_allowance_kg"),
                                  " kg")),
        ("检测设备", f"{_v(dev.get('device_id'))}，准确度等级 {_v(dev.get('accuracy_class'))}"),
        ("计量检定证书", f"{_v(dev.get('certificate_number'))}"
                         f"（{_v(dev.get('certificate_issuer'))}，"
                         f"有效期 {_bj(dev.get('certificate_valid_from'))} 至 "
                         f"{_bj(dev.get('certificate_valid_to'))}）"),
        ("监测点公布", f"{_bj(site.get('published_utc'))} {_v(site.get('announcement_zh'))}"),
        ("拟处理意见", f"{_v(pen.get('outcome_zh'))}，拟罚款 {_v(pen.get('fine_yuan'))} 元"
         if pen else "—（未超限或限值无法确定）"),
        ("处罚依据", f"《{pen['basis']['law_zh']}》{pen['basis']['article_zh']}" if pen else "—"),
        ("时钟核验", _clock_zh(c)),
        ("证据资格审查", f"{elig.get('status_zh', '—')}（{elig.get('status', '—')}）"),
        ("异常标记", "、".join(c.get("flags") or []) or "无"),
        ("称重软件 / 标定参数", f"{_v(c.get('weighing_software_version'))} / "
                              f"{_v(c.get('calibration_profile'))}"),
    ]
    return rows


def _clock_zh(c: dict[str, Any]) -> str:
    """The clock record: whether the station verified its reference time source."""
    clocks = c.get("clocks")
    if not clocks:
        return "时钟同步记录缺失"
    check = clocks.get("reference_check")
    if check is None:
        return f"{_v(clocks.get('reference_zh'))}（未记录授时核验）"
    if not check.get("verified"):
        return f"时钟未核验：{_v(check.get('reason_zh'))}"
    source = TIME_SOURCE_ZH.get(check.get("source") or "", _v(check.get("source")))
    return (f"站内参考时钟（{source}，已核验）：核验时间 {_bj(check.get('checked_utc'))}，"
            f"偏差 {_v(check.get('offset_ms'), ' ms')}（误差界 "
            f"{_v(check.get('error_bound_ms'), ' ms')}，容限 "
            f"{_v(check.get('max_offset_ms'), ' ms')}），授时源 {_v(check.get('server'))}")


def _images(doc: dict[str, Any], read: Reader) -> list[tuple[str, str, bytes]]:
    out = []
    for f in doc["files"]:
        role = f.get("role", "")
        if f.get("kind") == "original" and role.startswith("image_"):
            data = read(f["path"])
            if data:
                out.append((ROLE_ZH.get(role, role), f.get("media_type") or "image/jpeg", data))
    return out


def _waveform_data(doc: dict[str, Any], read: Reader) -> list[list[float]] | None:
    for f in doc["files"]:
        if f.get("role") == "waveform":
            return _waveform(read(f["path"]))
    return None


def _svg_axles(loads: list[float], limit_kg: float | None, gross: float) -> str:
    w, h = 520, 180
    top = max([*loads, 1.0]) * 1.15
    bw = (w - 60) / max(1, len(loads))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">',
             f'<line x1="40" y1="{h - 20}" x2="{w}" y2="{h - 20}" stroke="#000"/>']
    for i, load in enumerate(loads):
        bh = (h - 40) * load / top
        x = 50 + i * bw
        parts.append(f'<rect x="{x:.1f}" y="{h - 20 - bh:.1f}" width="{bw * 0.6:.1f}" '
                     f'height="{bh:.1f}" fill="#4a7ab0"/>')
        parts.append(f'<text x="{x:.1f}" y="{h - 24 - bh:.1f}" font-size="11">{load:.0f}</text>')
        parts.append(f'<text x="{x:.1f}" y="{h - 5}" font-size="11">第{i + 1}轴</text>')
    lim = f"，限值 {limit_kg:.0f} kg" if limit_kg else ""
    caption = f"轴载（kg），总质量 {gross:.0f} kg{lim}"
    parts.append(f'<text x="45" y="14" font-size="12">{caption}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_wave(channels: list[list[float]] | None) -> str:
    if not channels:
        return "<p>波形文件缺失或无法解析。</p>"
    w, h = 520, 160
    lo = min(min(c) for c in channels)
    hi = max(max(c) for c in channels)
    span = (hi - lo) or 1.0
    colours = ["#c0392b", "#2980b9", "#27ae60", "#8e44ad",
               "#d35400", "#16a085", "#2c3e50", "#7f8c8d"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">'
             f'<rect width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for k, ch in enumerate(channels):
        n = max(1, len(ch) - 1)
        pts = " ".join(f"{i * (w - 10) / n + 5:.1f},{h - 5 - (y - lo) / span * (h - 10):.1f}"
                       for i, y in enumerate(ch))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colours[k % 8]}" '
                     'stroke-width="1"/>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = ("body{font-family:'Noto Sans SC','Droid Sans Fallback',sans-serif;max-width:800px;"
        "margin:auto}table{border-collapse:collapse;width:100%}td{border:1px solid #888;"
        "padding:4px;font-size:14px}td.k{width:28%;background:#f2f2f2}img{max-width:380px;"
        "margin:4px;border:1px solid #ccc}.foot{font-size:12px;color:#555}")


def _html_page(title: str, body: str) -> bytes:
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{body}<p class='foot'>{NOTICE_FOOTER}</p>"
            "</body></html>").encode()


def _table_html(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(
        f"<tr><td class='k'>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
        for k, v in rows) + "</table>"


def sheet_html(doc: dict[str, Any], read: Reader) -> bytes:
    c = doc["case"]
    v = c["vehicle"]
    imgs = "".join(
        f"<figure style='display:inline-block'><img alt='{html.escape(r)}' src='data:{m};base64,"
        f"{base64.b64encode(d).decode()}'><figcaption>{html.escape(r)}</figcaption></figure>"
        for r, m, d in _images(doc, read))
    pen = c.get("penalty") or {}
    steps = "".join(
        f"<tr><td class='k'>{html.escape(s['label_zh'])}</td><td>{html.escape(s['value'])} "
        f"{html.escape(s['unit'])}（{html.escape(_cite(s['source']))}）</td></tr>"
        for s in pen.get("steps", []))
    reasons = "".join(f"<li>{html.escape(r['message_zh'])} {html.escape(r.get('detail', ''))}"
                      f"（{html.escape(r['basis_zh'])}）</li>"
                      for r in (c.get("eligibility") or {}).get("reasons", []))
    loads = [float(x) for x in v.get("axle_loads_kg") or []]
    limit = _law(c).get("limit_kg")
    body = (_table_html(_facts(doc)) + "<h2>现场照片</h2>" + (imgs or "<p>无照片。</p>")
            + "<h2>轴载图</h2>" + _svg_axles(loads, float(limit) if limit else None,
                                             float(v.get("gross_weight_kg") or 0))
            + "<h2>称重波形</h2>" + _svg_wave(_waveform_data(doc, read))
            + "<h2>计算过程及依据</h2><table>" + steps + "</table>"
            + "<h2>证据资格审查理由</h2><ul>" + (reasons or "<li>无</li>") + "</ul>"
            + "<h2>待法制审核确认的规则参数</h2><table>"
            + "".join(f"<tr><td class='k'>{html.escape(k)}</td><td>{html.escape(t)}</td></tr>"
                      for k, t in _pending_rows(doc)) + "</table>")
    return _html_page("超限运输车辆非现场检测取证单", body)


def _pending_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Rule parameters applied as configured but not confirmed by legal review."""
    c = doc["case"]
    items = (c.get("penalty") or {}).get("pending_legal_review")
    if items is None:
        items = (c.get("rule_set") or {}).get("pending_legal_review") or []
    rows = [(str(i.get("parameter")), f"{i.get('note_zh')}；当前取值：{i.get('value')}"
             f"（{_cite(i.get('source') or {})}）") for i in items]
    return rows or [("—", "无")]


def _notice_paragraphs(doc: dict[str, Any]) -> list[str]:
    return notice_text.notice_paragraphs(doc)


def notice_html(doc: dict[str, Any]) -> bytes:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in _notice_paragraphs(doc))
    return _html_page("违法行为通知书（拟处理，须经审核后送达）", body)


# ---------------------------------------------------------------------------- PDF


def _font_path(name: str) -> str:
    res = resources.files("zhichao.evidence").joinpath("fonts", name)
    with resources.as_file(res) as path:
        return str(path)


@lru_cache(maxsize=16)
def _cmap_points(names: tuple[str, ...]) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    points: set[int] = set()
    for name in names:
        font = TTFont(_font_path(name), lazy=True)
        try:
            points.update(font.getBestCmap())
        finally:
            font.close()
    return frozenset(points)


def covered_code_points() -> frozenset[int]:
    """Every code point that one of the bundled PDF fonts has a glyph for."""
    return _cmap_points(tuple(name for _f, name in PDF_FONTS))


def _needs_glyph(ch: str) -> bool:
    return not (ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf"))


def uncovered_characters(texts: Iterable[str]) -> list[str]:
    """Characters of ``texts`` that no bundled font can draw (sorted, unique)."""
    covered = covered_code_points()
    found = {ch for text in texts for ch in text if _needs_glyph(ch) and ord(ch) not in covered}
    return sorted(found)


def _marker(ch: str) -> str:
    return f"[U+{ord(ch):04X}]"


def _set_font(pdf: Any, size: float) -> None:
    """Select the Latin font with the CJK fallback.

    fpdf2 2.8 keeps the fallback font selected after a CJK run and ignores a set_font to
    the same family and size, which hides the next Latin text; switching family first
    forces the reset.
    """
    pdf.set_font("han", size=size)
    pdf.set_font("latin", size=size)


def _pdf(title: str) -> Any:
    try:
        from fpdf import FPDF
    except ImportError as exc:  # pragma: no cover - fpdf2 is a dependency
        raise DocumentError("fpdf2 is not installed; cannot make PDF documents") from exc

    class _MarkingPdf(FPDF):
        """Replaces characters no bundled font covers by a visible [U+XXXX] marker."""

        uncovered: set[str]
        loaded: list[tuple[str, str]]

        def _load_fonts_for(self, text: str) -> None:
            """Load each extra font (in fallback order) the first time a text needs it."""
            have = _cmap_points(tuple(name for _f, name in self.loaded))
            missing = {ord(ch) for ch in text if _needs_glyph(ch) and ord(ch) not in have}
            if not missing:
                return
            for family, name in EXTRA_PDF_FONTS:
                if (family, name) in self.loaded:
                    continue
                if missing & _cmap_points((name,)):
                    self.add_font(family, "", _font_path(name))
                    self.loaded.append((family, name))
                    missing -= _cmap_points((name,))
            order = [f for f, _ in PDF_FONTS[1:] if any(f == g for g, _ in self.loaded)]
            self.set_fallback_fonts(order, exact_match=False)

        def normalize_text(self, text: str) -> str:
            self._load_fonts_for(text)
            covered = covered_code_points()
            if any(_needs_glyph(ch) and ord(ch) not in covered for ch in text):
                out = []
                for ch in text:
                    if _needs_glyph(ch) and ord(ch) not in covered:
                        self.uncovered.add(ch)
                        out.append(_marker(ch))
                    else:
                        out.append(ch)
                text = "".join(out)
            return str(super().normalize_text(text))

    pdf = _MarkingPdf(format="A4")
    pdf.uncovered = set()
    pdf.loaded = list(BASE_PDF_FONTS)
    pdf.set_title(title)
    pdf.set_auto_page_break(auto=True, margin=15)
    for family, name in BASE_PDF_FONTS:
        pdf.add_font(family, "", _font_path(name))
    pdf.set_fallback_fonts([f for f, _ in BASE_PDF_FONTS[1:]], exact_match=False)
    _set_font(pdf, 10)
    pdf.add_page()
    return pdf


def _finish(pdf: Any, title: str) -> bytes:
    """Append the visible list of characters that could not be drawn; log it."""
    missing = sorted(pdf.uncovered)
    if missing:
        LOGGER.warning("%s: %d character(s) not covered by any bundled font, shown as "
                       "[U+XXXX] markers: %s", title, len(missing),
                       ", ".join(f"U+{ord(ch):04X}" for ch in missing))
        pdf.ln(3)
        pdf.set_text_color(200, 0, 0)
        _set_font(pdf, 10)
        pdf.multi_cell(0, 6, f"【字符无法显示】以下字符本文书字体不能显示，已以 Unicode 编码标出，"
                             f"请核对原始数据：{' '.join(_marker(ch) for ch in missing)}",
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    return bytes(pdf.output())


def _caption(pdf: Any, x: float, y: float, text: str) -> None:
    """Text at (x, y) through a cell, so that the CJK fallback font applies."""
    size = pdf.font_size_pt
    _set_font(pdf, size)
    pdf.set_xy(x, y)
    pdf.cell(0, 4, text)


def _pdf_title(pdf: Any, title: str) -> None:
    _set_font(pdf, 16)
    pdf.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT", align="C")
    _set_font(pdf, 9)


def _pdf_table(pdf: Any, rows: list[tuple[str, str]]) -> None:
    size = pdf.font_size_pt
    for key, value in rows:
        if pdf.get_y() > pdf.h - 40:
            pdf.add_page()
        y = pdf.get_y()
        _set_font(pdf, size)
        pdf.multi_cell(55, 6, key, border=1, new_x="LMARGIN", new_y="NEXT")
        y_key = pdf.get_y()
        _set_font(pdf, size)
        pdf.set_xy(pdf.l_margin + 55, y)
        pdf.multi_cell(pdf.epw - 55, 6, value, border=1, new_x="LMARGIN", new_y="NEXT")
        pdf.set_y(max(y_key, pdf.get_y()))


def _pdf_footer(pdf: Any) -> None:
    pdf.ln(4)
    _set_font(pdf, 8)
    pdf.multi_cell(0, 5, NOTICE_FOOTER)


def sheet_pdf(doc: dict[str, Any], read: Reader) -> bytes:
    c = doc["case"]
    v = c["vehicle"]
    pdf = _pdf("超限运输车辆非现场检测取证单")
    _pdf_title(pdf, "超限运输车辆非现场检测取证单")
    _pdf_table(pdf, _facts(doc))
    images = _images(doc, read)
    if images:
        pdf.add_page()
        _set_font(pdf, 12)
        pdf.cell(0, 8, "现场照片", new_x="LMARGIN", new_y="NEXT")
        _set_font(pdf, 9)
        x0, y0 = pdf.l_margin, pdf.get_y()
        for i, (role, _mime, data) in enumerate(images):
            x = x0 + (i % 2) * 95
            y = y0 + (i // 2) * 72
            try:
                pdf.image(io.BytesIO(data), x=x, y=y, w=90, h=60, keep_aspect_ratio=True)
            except Exception:
                pdf.rect(x, y, 90, 60)
            _caption(pdf, x, y + 61, role)
        pdf.set_y(y0 + ((len(images) + 1) // 2) * 72 + 2)
    pdf.add_page()
    _set_font(pdf, 12)
    loads = [float(x) for x in v.get("axle_loads_kg") or []]
    limit = _law(c).get("limit_kg")
    pdf.cell(0, 8, f"轴载图（kg）  总质量 {_v(v.get('gross_weight_kg'))} kg，"
             f"限值 {_v(limit)} kg", new_x="LMARGIN", new_y="NEXT")
    _set_font(pdf, 8)
    x0, y0, height = pdf.l_margin + 5, pdf.get_y() + 5, 50.0
    top = max([*loads, 1.0]) * 1.15
    bw = 170 / max(1, len(loads))
    pdf.line(x0, y0 + height, x0 + 175, y0 + height)
    pdf.set_fill_color(74, 122, 176)
    for i, load in enumerate(loads):
        bh = height * load / top
        pdf.rect(x0 + i * bw, y0 + height - bh, bw * 0.6, bh, style="F")
        _caption(pdf, x0 + i * bw, y0 + height - bh - 5, f"{load:.0f}")
        _caption(pdf, x0 + i * bw, y0 + height + 1, f"第{i + 1}轴")
    pdf.set_y(y0 + height + 10)
    _set_font(pdf, 12)
    pdf.cell(0, 8, "称重波形（原始采样，按通道）", new_x="LMARGIN", new_y="NEXT")
    wave = _waveform_data(doc, read)
    x0, y0, width, height = pdf.l_margin, pdf.get_y() + 2, 180.0, 45.0
    pdf.rect(x0, y0, width, height)
    if wave:
        lo = min(min(ch) for ch in wave)
        span = (max(max(ch) for ch in wave) - lo) or 1.0
        colours = [(192, 57, 43), (41, 128, 185), (39, 174, 96), (142, 68, 173)]
        for k, ch in enumerate(wave):
            pdf.set_draw_color(*colours[k % 4])
            n = max(1, len(ch) - 1)
            pts = [(x0 + i * width / n, y0 + height - (y - lo) / span * height)
                   for i, y in enumerate(ch)]
            pdf.polyline(pts)
        pdf.set_draw_color(0, 0, 0)
    else:
        _caption(pdf, x0 + 5, y0 + 20, "波形文件缺失或无法解析。")
    pdf.set_y(y0 + height + 5)
    pen = c.get("penalty") or {}
    _set_font(pdf, 12)
    pdf.cell(0, 8, "计算过程及依据", new_x="LMARGIN", new_y="NEXT")
    _set_font(pdf, 9)
    step_rows = [(s["label_zh"], f"{s['value']} {s['unit']}（{_cite(s['source'])}）")
                 for s in pen.get("steps", [])]
    _pdf_table(pdf, step_rows or [("—", "未超限或限值无法确定，无拟处罚")])
    _set_font(pdf, 12)
    pdf.cell(0, 8, "证据资格审查理由", new_x="LMARGIN", new_y="NEXT")
    _set_font(pdf, 9)
    reasons = (c.get("eligibility") or {}).get("reasons", [])
    _pdf_table(pdf, [(r["code"], f"{r['message_zh']} {r.get('detail', '')}（{r['basis_zh']}）")
                     for r in reasons] or [("—", "无")])
    _set_font(pdf, 12)
    pdf.cell(0, 8, "待法制审核确认的规则参数", new_x="LMARGIN", new_y="NEXT")
    _set_font(pdf, 9)
    _pdf_table(pdf, _pending_rows(doc))
    _pdf_footer(pdf)
    return _finish(pdf, "evidence_sheet.pdf")


def paragraphs_pdf(title: str, paragraphs: list[str], subtitle: str | None = None,
                   filename: str = "notice.pdf", footer: str = NOTICE_FOOTER) -> bytes:
    """A document of paragraphs (the notice, the decision, a copy notice) as a PDF."""
    pdf = _pdf(title)
    _pdf_title(pdf, title)
    if subtitle:
        _set_font(pdf, 9)
        pdf.cell(0, 6, subtitle, new_x="LMARGIN", new_y="NEXT", align="C")
    _set_font(pdf, 11)
    for para in paragraphs:
        pdf.multi_cell(0, 7, para, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.ln(4)
    _set_font(pdf, 8)
    pdf.multi_cell(0, 5, footer)
    return _finish(pdf, filename)


def notice_pdf(doc: dict[str, Any]) -> bytes:
    return paragraphs_pdf("违法行为通知书", _notice_paragraphs(doc),
                          "（拟处理意见，须经技术审核和法制审核后方可送达）")


# ----------------------------------------------------------- 复检记录 (supplements)

REWEIGH_TITLE = "超限运输车辆静态复检记录"
REWEIGH_FILES = ("derived/reweigh_record.html", "derived/reweigh_record.pdf")
#: why a supplement's decision proposes no penalty, by the verdict with the static weight
NO_PROPOSAL_ZH = {"within_limit": "不予处罚：以静态复检重量认定未超限",
                  "depends_on_facts": "暂无拟处理意见：是否超限取决于待核实的登记事实",
                  "undecidable": "暂无拟处理意见：限值无法确定，需人工核定",
                  "": "暂无拟处理意见（见证据资格审查理由）"}
INDICATOR_ZH = {"toledo": "托利多连续输出", "xk3190": "XK3190 连续输出", "modbus": "Modbus TCP"}


def _kg(value: Any) -> str:
    """A weight as printed: ``—`` when missing; exact, without trailing zeros."""
    if value is None or value == "":
        return "—"
    try:
        d = Decimal(str(value))
    except ArithmeticError:
        return f"{value} kg"
    text = format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f")
    return f"{text} kg"


def _bj_date(text: str | None) -> str:
    """A UTC time as its 北京时间 date, labelled (``—`` when missing)."""
    if not text:
        return "—"
    return _bj(text)[:11] + "（北京时间）"


def _bj_last_day(text: str | None) -> str:
    """The last 北京时间 day an exclusive end time ``valid_until`` still covers (an end
    at 北京时间 midnight covers the day before); a time too where it is not midnight."""
    if not text:
        return "—"
    end = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(BEIJING)
    if end.time() == time(0):
        return (end - timedelta(days=1)).strftime("%Y年%m月%d日") + "（北京时间，含当日）"
    return end.strftime("%Y年%m月%d日 %H:%M:%S") + "（北京时间）前"


def _cert_zh(cert: dict[str, Any]) -> str:
    valid_from = cert.get("valid_from")
    until = _bj_last_day(cert.get("valid_until"))
    validity = (f"有效期 {_bj_date(valid_from)} 至 {until}" if valid_from
                else f"有效期至 {until}")
    return (f"{_v(cert.get('certificate_number'))}（{_v(cert.get('issuer_zh'))}，"
            f"衡器 {_v(cert.get('scale_id'))}，{_v(cert.get('accuracy_class'))} 级，"
            f"检定分度值 e = {_kg(cert.get('division_kg'))}，最大秤量 "
            f"{_kg(cert.get('max_capacity_kg'))}，{validity}）")


def reweigh_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The 复检记录's facts from a supplement's manifest (``zhichao.reweigh/1``): the passage,
    the reading, the scale's certificate, the officer, both weights, the limit, the
    tolerance and the decision the rule gives with the static weight — in zh-CN, times in
    北京时间 (labelled)."""
    c = doc["case"]
    p = c.get("passage") or {}
    r = c.get("reading") or {}
    cert = r.get("certificate") or {}
    site = c.get("site") or {}
    original = c.get("original") or {}
    decision = c.get("decision") or {}
    elig = decision.get("eligibility") or {}
    a = elig.get("assessment") or {}
    pen = decision.get("penalty") or {}
    flags = r.get("flags") or []
    static_kg = a.get("gross_kg") if a.get("weight_source") == "static" else None
    evidence = (f"静态复检重量 {_kg(static_kg or r.get('weight_kg'))}（经检定的静态衡器，"
                "车辆静止称重）；动态称重重量仅用于筛选，列于上栏备查")
    place = " ".join(x for x in (site.get("name_zh"), site.get("road_zh"),
                                 site.get("stake_zh")) if x)
    if original.get("package_id"):
        orig = (f"证据包 {original['package_id']}（清单 SHA-256 "
                f"{_v(original.get('manifest_sha256'))}）")
    else:
        orig = f"通行记录 {_v(original.get('passage_key'))}（无证据包，未经动态称重认定超限）"
    unconfirmed = [*(a.get("unconfirmed_zh") or []),
                   *(x for x in cert.get("unconfirmed_zh") or []
                     if x not in (a.get("unconfirmed_zh") or []))]
    if pen:
        proposal = f"{_v(pen.get('outcome_zh'))}，拟罚款 {_v(pen.get('fine_yuan'))} 元"
        basis = _cite(pen["basis"]) if pen.get("basis") else "—"
    else:
        proposal, basis = NO_PROPOSAL_ZH.get(str(a.get("verdict")), NO_PROPOSAL_ZH[""]), "—"
    return [
        ("复检补充包编号", doc["package_id"]),
        ("所补充的原始证据", orig),
        ("通行时间", _bj(p.get("time_utc"))),
        ("监测点", place or f"监测点编号 {_v(p.get('site_id'))}（名称未载入本补充包）"),
        ("车道", _v(p.get("lane_id"))),
        ("号牌", _v(p.get("plate"))),
        ("车型", str(a.get("vehicle_class_zh") or p.get("vehicle_class_zh")
                    or notice_text.CLASS_UNKNOWN_ZH)
         + (f"，{p['axle_count']} 轴" if p.get("axle_count") else "")),
        ("复检时间", _bj(r.get("reading_utc"))),
        ("关联时间", _bj(r.get("linked_utc"))),
        ("静态复检总质量", _kg(r.get("weight_kg"))),
        ("稳定判定", STABLE_BY_ZH.get(str(r.get("stable_by")), "未判定稳定")),
        ("仪表状态标志", "、".join(FLAG_ZH.get(f, "未知标志") for f in flags)
         or "无（非超载、非动态、非净重，数据有效）"),
        ("称重仪表", f"{INDICATOR_ZH.get(str(r.get('indicator')), _v(r.get('indicator')))}，"
                     f"读数编号 {_v(r.get('reading_id'))}，原始报文（十六进制）"
                     f"{_v(r.get('raw_hex'))}"),
        ("静态衡器检定证书", _cert_zh(cert)),
        ("复检执法人员", _v(c.get("officer"))),
        ("动态称重总质量（筛选）", _kg(p.get("wim_gross_kg"))
         + "（动态称重结论：" + (VERDICT_ZH.get(str(p["wim_verdict"]), "未识别的结论")
                               if p.get("wim_verdict") else "未记录") + "）"),
        ("证据重量", evidence),
        ("限定标准", f"{_kg(a.get('limit_kg'))}（{_v(a.get('limit_basis'))}）"
         + "".join(f"；{x}" for x in a.get("stricter_limits_zh") or [])),
        ("计量允差", _kg(a.get("tolerance_kg"))
         + (f"（{a['tolerance_basis_zh']}）" if a.get("tolerance_basis_zh") else "")),
        ("待确认的数值", "；".join(unconfirmed) or "无"),
        ("复检认定", VERDICT_ZH.get(str(a.get("verdict")), "无法认定")
         + (f"，扣除允差后超限 {_kg(a.get('excess_kg'))}"
            if a.get("verdict") == "overloaded" else "")),
        ("拟处理意见", proposal),
        ("处罚依据", basis),
        ("证据资格审查", _v(elig.get("status_zh"))),
    ]


def _reweigh_reasons(doc: dict[str, Any]) -> list[tuple[str, str]]:
    elig = (doc["case"].get("decision") or {}).get("eligibility") or {}
    return [(str(i), f"{r.get('message_zh')}（{r.get('basis_zh')}）")
            for i, r in enumerate(elig.get("reasons") or [], 1)] or [("—", "无")]


def _reweigh_pending(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The proposal's rule parameters not confirmed by legal review, numbered (the
    parameter's name is an identifier: its note says what it is)."""
    pen = (doc["case"].get("decision") or {}).get("penalty") or {}
    return [(str(i), f"{p.get('note_zh')}；当前取值：{_v(p.get('value'))}"
             f"（{_cite(p.get('source') or {})}）")
            for i, p in enumerate(pen.get("pending_legal_review") or [], 1)] or [("—", "无")]


def reweigh_html(doc: dict[str, Any]) -> bytes:
    body = (_table_html(reweigh_rows(doc)) + "<h2>证据资格审查理由</h2>"
            + _table_html(_reweigh_reasons(doc)) + "<h2>待法制审核确认的规则参数</h2>"
            + _table_html(_reweigh_pending(doc)))
    return _html_page(REWEIGH_TITLE, body)


def reweigh_pdf(doc: dict[str, Any]) -> bytes:
    pdf = _pdf(REWEIGH_TITLE)
    _pdf_title(pdf, REWEIGH_TITLE)
    _pdf_table(pdf, reweigh_rows(doc))
    for heading, rows in (("证据资格审查理由", _reweigh_reasons(doc)),
                          ("待法制审核确认的规则参数", _reweigh_pending(doc))):
        _set_font(pdf, 12)
        pdf.cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        _set_font(pdf, 9)
        _pdf_table(pdf, rows)
    _pdf_footer(pdf)
    return _finish(pdf, "reweigh_record.pdf")


def render_reweigh(doc: dict[str, Any], read: Reader | None = None) -> dict[str, bytes]:
    """The derived documents of a static re-weighing's supplement: 复检记录 in HTML and PDF.

    Raises
    ------
    DocumentError
        If a document cannot be rendered.
    """
    del read  # made from the manifest alone; the reading file is its copy
    try:
        html_path, pdf_path = REWEIGH_FILES
        return {html_path: reweigh_html(doc), pdf_path: reweigh_pdf(doc)}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DocumentError(f"cannot render the re-weighing record: {type(exc).__name__}: "
                            f"{exc}") from exc


def render_all(doc: dict[str, Any], read: Reader) -> dict[str, bytes]:
    """All derived documents of a package: {package path: bytes}.

    Raises
    ------
    DocumentError
        If a document cannot be rendered.
    """
    try:
        out = {
            "derived/evidence_sheet.html": sheet_html(doc, read),
            "derived/evidence_sheet.pdf": sheet_pdf(doc, read),
        }
        if doc["case"].get("penalty") and doc["case"]["penalty"].get("outcome") != "none":
            out["derived/notice.html"] = notice_html(doc)
            out["derived/notice.pdf"] = notice_pdf(doc)
    except DocumentError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DocumentError(f"cannot render documents: {type(exc).__name__}: {exc}") from exc
    return out
