"""The HTML accuracy report, opened in a real headless Chromium: its plots are visible."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.calibration.conftest import Session
from zhichao.calibration.accuracy import verify_accuracy
from zhichao.calibration.report import write_report
from zhichao.weighing.calibration_profile import parse_profile

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _colour_pixels(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> int:
    d = np.abs(img[:, :, :3].astype(int) - np.array(rgb)[None, None, :]).max(axis=2)
    return int((d <= tol).sum())


@pytest.fixture(scope="module")
def report(session4: Session, tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = verify_accuracy(session4.test, session4.test_ref,
                             parse_profile(session4.result.profile))
    return write_report(result, tmp_path_factory.mktemp("report") / "report.html")


def test_report_holds_tables_and_three_png_plots(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in text
    assert "@font-face" in text and "data:font/ttf;base64," in text  # zh-CN without CJK fonts
    for needle in ("首次检定", "使用中检验", "COST 323", "按车速分段", "按路面温度分段",
                   "逐车结果", "所用限值表", "置信水平"):
        assert needle in text
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(uris) == 3
    for u in uris:
        img = Image.open(io.BytesIO(base64.b64decode(u)))
        assert img.size[0] > 400 and img.size[1] > 250


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")
def test_report_plots_are_visible_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1400,1800", report.as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] >= 1700 and img.shape[1] >= 1300
    non_white = int((img.min(axis=2) < 200).sum())
    assert non_white > 0.02 * img.shape[0] * img.shape[1]  # not a blank page
    # the plots' own colours: scatter points (matplotlib blue/orange/green) and MPE lines
    assert _colour_pixels(img, (31, 119, 180)) > 2000  # blue points and histogram bars
    assert _colour_pixels(img, (255, 127, 14)) > 100  # orange points
    assert _colour_pixels(img, (192, 57, 43), tol=50) > 500  # red MPE lines
    # the plots sit in the upper part of the page, side by side: both halves hold points
    top = img[: img.shape[0] * 2 // 3]
    left, right = top[:, : img.shape[1] // 3], top[:, img.shape[1] // 3:]
    assert _colour_pixels(left, (31, 119, 180)) > 100
    assert _colour_pixels(right, (31, 119, 180)) > 100


def test_report_states_the_speed_range_each_class_is_supported_in(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert "各总重等级有本次数据支持的车速范围" in text
    assert re.search(r"\d+\.\d–\d+\.\d（\d+/\d+ 次）", text)


def test_embedded_font_covers_the_report_texts(report: Path) -> None:
    """Every CJK character the report writes (bar file names) is in the embedded subset."""
    from fontTools.ttLib import TTFont

    font = TTFont(str(Path(__file__).parents[2] / "zhichao" / "calibration" / "fonts"
                      / "report-subset.ttf"))
    cmap = font.getBestCmap()
    text = report.read_text(encoding="utf-8")
    missing = {c for c in text if ord(c) > 0x2E7F and ord(c) not in cmap}
    assert not missing, "".join(sorted(missing))
