from __future__ import annotations

import pytest

from zhichao.vision.grammar import (
    ALPHABET,
    TEMPLATES,
    is_trailer_plate,
    is_valid_plate,
    plate_kind,
    split_templates,
)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("浙A0D384", "ordinary"),
        ("粤O12345", "ordinary"),  # O is legal as the issuing letter (police-issued)
        ("鲁H1234挂", "trailer"),
        ("京A1234学", "coach"),
        ("沪A1234警", "police"),
        ("粤Z1234港", "hk_macao"),
        ("粤Z1234澳", "hk_macao"),
        ("沪A1234领", "consulate"),
        ("使014578", "embassy"),
        ("皖AD11166", "nev_small"),
        ("粤BFA1234", "nev_small"),
        ("粤B12345D", "nev_large"),
    ],
)
def test_valid_plates_have_their_kind(text: str, kind: str) -> None:
    assert plate_kind(text) == kind


@pytest.mark.parametrize(
    "text",
    [
        "浙A0O384",  # O in the serial
        "浙A1I384",  # I in the serial
        "浙I12345",  # I as the issuing letter
        "AB12345",  # no province
        "浙A1234",  # too short
        "浙A123456",  # ordinary plate one too long
        "皖AX11166",  # 8 characters but not D/F
        "粤B1234FD",  # large NEV needs 5 digits
        "京Z1234港",  # 港 only on 粤Z
        "挂A12345",
        "",
    ],
)
def test_invalid_plates_are_rejected(text: str) -> None:
    assert not is_valid_plate(text)


def test_trailer_plate_is_recognised_as_the_trailers() -> None:
    assert is_trailer_plate("鲁H1234挂")
    assert not is_trailer_plate("鲁H12345")


def test_alphabet_covers_every_template_and_excludes_nothing_needed() -> None:
    assert "I" not in {c for t in TEMPLATES for c in t.positions[2]}
    for ch in "挂学警港澳领使DF0123456789":
        assert ch in ALPHABET


def test_double_row_split_keeps_province_letter_on_top() -> None:
    tops, bottoms = split_templates(TEMPLATES)
    assert all(len(t) == 2 for t in tops)
    assert all(len(b) == 5 for b in bottoms)
    assert any(b.matches("1234挂") for b in bottoms)
    assert any(t.matches("鲁H") for t in tops)
