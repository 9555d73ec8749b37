"""The plate model's training renders (``training/plates/render.py``): CJK faces, provinces.

No torch needed: the renderer uses numpy, OpenCV and PIL only.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from training.plates import render
from zhichao.vision.grammar import PROVINCES, plate_kind
from zhichao.vision.plate_lines import LINE_HEIGHT_PX, LINE_WIDTH_PX


@pytest.fixture
def faces() -> Iterator[None]:
    """Restore the renderer's face list and its caches after a test changes them."""
    saved = render.CJK_FONTS
    render.available_cjk_fonts.cache_clear()
    render._glyph.cache_clear()
    yield
    render.CJK_FONTS = saved
    render.available_cjk_fonts.cache_clear()
    render._glyph.cache_clear()


def test_renders_with_the_shipped_font_alone(faces: None, tmp_path: Path) -> None:
    shipped = render.CJK_FONTS[0]
    assert shipped.path == render.CJK_FONT
    render.CJK_FONTS = (shipped, replace(shipped, path=tmp_path / "absent.ttc"))
    assert render.available_cjk_fonts() == (shipped,)
    line, text, _ = render.render_sample(random.Random(3))
    assert line.shape == (LINE_HEIGHT_PX, LINE_WIDTH_PX)
    assert plate_kind(text) is not None


def test_a_face_without_the_plate_characters_is_skipped(faces: None) -> None:
    shipped = render.CJK_FONTS[0]
    latin_only = replace(shipped, path=render.LATIN_FONTS[0])
    render.CJK_FONTS = (latin_only, shipped)
    assert render.available_cjk_fonts() == (shipped,)


def test_province_glyphs_differ_between_faces_and_strokes(faces: None) -> None:
    if len(render.available_cjk_fonts()) < 2:
        pytest.skip("only the shipped CJK font here (install the fonts in the recipe)")
    a = render._glyph("浙", 0, 45, 90, 0).astype(float)
    b = render._glyph("浙", 1, 45, 90, 0).astype(float)
    thick = render._glyph("浙", 0, 45, 90, 6).astype(float)
    assert np.abs(a - b).mean() > 10
    assert (thick > 127).sum() > (a > 127).sum() * 1.1


def test_provinces_are_balanced() -> None:
    rng = random.Random(7)
    n = 62_000
    counts = collections.Counter(render.random_spec(rng).text[0] for _ in range(n))
    shares = np.array([counts[p] / n for p in PROVINCES])
    # 31 provinces; the rest is 使 (about 1.4 %); each ≈ 3.2 %, binomial σ ≈ 0.07 %
    assert shares.min() > 0.029 and shares.max() < 0.0345, dict(counts)


@pytest.fixture
def ga36_q(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """GA 36's Q and a Q share switched on (restored afterwards), with a fresh glyph cache."""
    monkeypatch.setattr(render, "GA36_Q", True)
    monkeypatch.setattr(render, "SERIAL_Q_SHARE", 0.5)
    render._glyph.cache_clear()
    yield
    render._glyph.cache_clear()


def test_ga36_q_is_the_ring_of_o_with_a_short_tail_inside_its_box(ga36_q: None) -> None:
    ring = render._glyph("O", 0, 45, 90).astype(int)
    q = render._glyph("Q", 0, 45, 90, ga36_q=True).astype(int)
    assert q.shape == (90, 45)
    added = (q > 127) & (ring <= 127)
    assert 40 < added.sum() < 0.25 * 45 * 90  # a tail, not a blot
    ys, xs = np.nonzero(added)
    assert ys.min() >= 0.6 * 90 and xs.min() >= 0.35 * 45  # only at the lower right
    assert ((ring > 127) & (q <= 127)).sum() == 0  # the ring itself is untouched
    # the font's own Q, squeezed into the box, is another shape (its long tail); the
    # cache keys on the switch, so both stay available
    font_q = render._glyph("Q", 0, 45, 90).astype(int)
    assert np.abs(font_q - q).mean() > 5
    assert np.array_equal(render._glyph("Q", 0, 45, 90, ga36_q=True), q)


# what random_spec drew for seeds 0-7 at 401ca4f, before the Q share existed
DRAWS_BEFORE_THE_Q_SHARE = ["闽O04876F", "青ZQ6160", "粤ZX49X港", "鄂M79190", "渝NA40T2",
                            "吉X8073学", "贵QFC0297", "冀V103P3"]


def test_serial_q_share_draws_q_and_zero_keeps_the_old_draws(
    ga36_q: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_q = [render.random_spec(random.Random(i)).text for i in range(400)]
    letters = sum(sum(c.isascii() and c.isalpha() for c in t[2:]) for t in with_q)
    share = sum(t[2:].count("Q") for t in with_q) / letters
    assert share > 0.3  # about half the serial letters (fixed tails and marks are not)
    monkeypatch.setattr(render, "SERIAL_Q_SHARE", 0.0)
    assert [render.random_spec(random.Random(i)).text for i in range(8)] == (
        DRAWS_BEFORE_THE_Q_SHARE)
    without = [render.random_spec(random.Random(i)).text for i in range(400)]
    assert sum(t[2:].count("Q") for t in without) < sum(t[2:].count("Q") for t in with_q) / 4
