"""Rare characters in the PDFs: drawn as their real glyphs, never as a silent .notdef box.

The check looks at pixels: the PDF page is rendered (pypdfium2), each rare character's box
is cut out and compared with the character's glyph and with the font's .notdef glyph,
both drawn independently from the bundled font file with FreeType (Pillow).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from tests.evidence.conftest import Env, case_dict
from zhichao.evidence.documents import (
    PDF_FONTS,
    _font_path,
    covered_code_points,
    uncovered_characters,
)
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.package import seal_package
from zhichao.evidence.verify import verify_package

pdfium = pytest.importorskip("pypdfium2")

RARE = "䶮㛃𠮷"  # U+4DAE and U+36C3 (Extension A), U+20BB7 (Extension B)
OWNER = "刘䶮㛃𠮷物流有限公司"
ADDRESS = "浙江省温岭市𠮷祥路㛃号"
NOT_COVERED = "\U00020000"  # an Extension B character none of the bundled fonts has
SIDE = 32


def _ink(img: Image.Image) -> np.ndarray:
    """The glyph's ink, cropped to its bounding box and scaled to SIDE × SIDE, as booleans."""
    dark = np.asarray(img.convert("L")) < 128
    ys, xs = np.nonzero(dark)
    if len(xs) == 0:
        return np.zeros((SIDE, SIDE), dtype=bool)
    crop = Image.fromarray((dark[ys.min():ys.max() + 1, xs.min():xs.max() + 1] * 255)
                           .astype(np.uint8))
    return np.asarray(crop.resize((SIDE, SIDE), Image.Resampling.BILINEAR)) >= 128


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _font_for(ch: str) -> str:
    for _family, name in PDF_FONTS:
        font = TTFont(_font_path(name), lazy=True)
        try:
            if ord(ch) in font.getBestCmap():
                return name
        finally:
            font.close()
    raise AssertionError(f"no bundled font covers U+{ord(ch):04X}")


def _template(name: str, ch: str) -> np.ndarray:
    font = ImageFont.truetype(_font_path(name), 96)
    img = Image.new("L", (160, 160), 255)
    ImageDraw.Draw(img).text((16, 8), ch, font=font, fill=0)
    return _ink(img)


def _seal_with_owner(env: Env, tmp_path: Path, owner: str, address: str) -> Path:
    base = tmp_path / "in-fonts"
    base.mkdir()
    raw = case_dict(base)
    raw["registration"]["owner_name_zh"] = owner
    raw["registration"]["owner_address_zh"] = address
    out = env.root / "pkg-fonts"
    seal_package(CaseInputs.from_json(raw), out, station=env.station, log=env.log,
                 base_dir=base)
    return out


def test_bundled_fonts_cover_rare_characters() -> None:
    assert uncovered_characters([OWNER, ADDRESS, "浙J12345 超限 第五十三条"]) == []
    covered = covered_code_points()
    assert all(ord(ch) in covered for ch in RARE)
    assert uncovered_characters([f"a{NOT_COVERED}b"]) == [NOT_COVERED]
    total = sum(Path(_font_path(name)).stat().st_size for _f, name in PDF_FONTS)
    assert total < 10_000_000


def test_rare_characters_are_real_glyphs_in_the_pdf(env: Env, tmp_path: Path) -> None:
    pkg = _seal_with_owner(env, tmp_path, OWNER, ADDRESS)
    assert verify_package(pkg, key=env.station.key.public_key()).ok
    notice = pdfium.PdfDocument(str(pkg / "derived/notice.pdf"))
    page = notice[0]
    text = page.get_textpage()
    content = text.get_text_range()
    assert OWNER in content and ADDRESS in content, content[:200]
    scale = 6.0
    bitmap = page.render(scale=scale).to_pil().convert("L")
    height_pt = page.get_height()
    for ch in RARE:
        name = _font_for(ch)
        glyph, notdef = _template(name, ch), _template(name, "\ue000")
        assert _iou(glyph, notdef) < 0.5, f"template of U+{ord(ch):04X} looks like .notdef"
        # Every occurrence on the page: the owner line and the address.
        start = 0
        seen = 0
        while (idx := content.find(ch, start)) >= 0:
            start = idx + 1
            char_index = len(content[:idx].encode("utf-16-le")) // 2
            left, bottom, right, top = text.get_charbox(char_index)
            box = (int(left * scale) - 2, int((height_pt - top) * scale) - 2,
                   int(right * scale) + 2, int((height_pt - bottom) * scale) + 2)
            drawn = _ink(bitmap.crop(box))
            as_glyph, as_notdef = _iou(drawn, glyph), _iou(drawn, notdef)
            assert drawn.sum() > 50, f"U+{ord(ch):04X} left no ink in the PDF"
            assert as_glyph > 0.5 and as_glyph > as_notdef + 0.2, (
                f"U+{ord(ch):04X} in the PDF: IoU with its glyph {as_glyph:.2f}, "
                f"with .notdef {as_notdef:.2f}")
            seen += 1
        assert seen >= 1, f"U+{ord(ch):04X} not found in the notice text"
    sheet = pdfium.PdfDocument(str(pkg / "derived/evidence_sheet.pdf"))
    assert OWNER in sheet[0].get_textpage().get_text_range()


def test_uncoverable_character_is_a_visible_logged_error(
        env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    owner = f"测试{NOT_COVERED}公司"
    with caplog.at_level(logging.WARNING, logger="zhichao.evidence.documents"):
        pkg = _seal_with_owner(env, tmp_path, owner, "温岭市")
    assert any("U+20000" in r.getMessage() for r in caplog.records)
    notice = pdfium.PdfDocument(str(pkg / "derived/notice.pdf"))
    content = "".join(notice[i].get_textpage().get_text_range() for i in range(len(notice)))
    assert "测试[U+20000]公司" in content
    assert "字符无法显示" in content
    # The original data keeps the real character; only the derived rendering marks it.
    manifest = json.loads((pkg / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["case"]["registration"]["owner_name_zh"] == owner
