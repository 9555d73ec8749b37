"""Chinese plate grammar (GA 36-2018 and the 2016 new-energy rules) as per-position character sets.

A plate *template* is a sequence of allowed-character sets, one per position. The
constrained decoder (:mod:`zhichao.vision.ctc`) only ever produces strings that
match one template, so a read is either a well-formed plate or nothing.

Covered (``kind`` names are stable machine codes):

==============  ===========================================  ==============================
kind            pattern                                      example
==============  ===========================================  ==============================
ordinary        省 + letter + 5 × serial                      浙A0D384
trailer         省 + letter + 4 × serial + 挂                 鲁H1234挂 (semi-trailer's own)
coach           省 + letter + 4 × serial + 学                 京A1234学
police          省 + letter + 4 × serial + 警                 沪A1234警
hk_macao        粤Z + 4 × serial + 港|澳                      粤Z1234港
consulate       省 + letter + 4 × serial + 领                 沪A1234领
embassy         使 + 6 digits                                 使014578
nev_small       省 + letter + D|F + serial + 4 digits         粤BD12345 / 粤BFA1234
nev_large       省 + letter + 5 digits + D|F                  粤B12345D
==============  ===========================================  ==============================

Serial characters are A–Z without I and O, and digits. The issuing letter may be
any letter but I (O is the police-issued 粤O…). Not covered, so always sent to
review: military/armed-police (WJ…), 应急, 民航, temporary plates, and the 2021+
extension of NEV letters beyond D/F (unverified; see docs/vision.md).
"""

from __future__ import annotations

from dataclasses import dataclass

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"  # issuing-authority letter: no I
DIGITS = "0123456789"
SERIAL = "ABCDEFGHJKLMNPQRSTUVWXYZ" + DIGITS  # no I, no O
NEV_MARK = "DF"

_P = frozenset(PROVINCES)
_L = frozenset(LETTERS)
_S = frozenset(SERIAL)
_D = frozenset(DIGITS)
_NEV = frozenset(NEV_MARK)


@dataclass(frozen=True, slots=True)
class Template:
    """One plate pattern: ``kind`` and one allowed-character set per position."""

    kind: str
    positions: tuple[frozenset[str], ...]

    def __len__(self) -> int:
        return len(self.positions)

    def matches(self, text: str) -> bool:
        return len(text) == len(self.positions) and all(
            ch in allowed for ch, allowed in zip(text, self.positions, strict=True)
        )


TEMPLATES: tuple[Template, ...] = (
    Template("ordinary", (_P, _L, _S, _S, _S, _S, _S)),
    Template("trailer", (_P, _L, _S, _S, _S, _S, frozenset("挂"))),
    Template("coach", (_P, _L, _S, _S, _S, _S, frozenset("学"))),
    Template("police", (_P, _L, _S, _S, _S, _S, frozenset("警"))),
    Template("hk_macao", (frozenset("粤"), frozenset("Z"), _S, _S, _S, _S, frozenset("港澳"))),
    Template("consulate", (_P, _L, _S, _S, _S, _S, frozenset("领"))),
    Template("embassy", (frozenset("使"), _D, _D, _D, _D, _D, _D)),
    Template("nev_small", (_P, _L, _NEV, _S, _D, _D, _D, _D)),
    Template("nev_large", (_P, _L, _D, _D, _D, _D, _D, _NEV)),
)

ALPHABET: str = "".join(sorted({ch for t in TEMPLATES for pos in t.positions for ch in pos}))
"""Every character any template allows, in a fixed order."""

DOUBLE_ROW_TOP_LENGTH = 2
"""Characters on the top row of a double-row plate (province + issuing letter)."""


def plate_kind(text: str, templates: tuple[Template, ...] = TEMPLATES) -> str | None:
    """The ``kind`` of the first template ``text`` matches, or None if it is not a valid plate."""
    for template in templates:
        if template.matches(text):
            return template.kind
    return None


def is_valid_plate(text: str) -> bool:
    return plate_kind(text) is not None


def is_trailer_plate(text: str) -> bool:
    """A semi-trailer's own plate (…挂): it identifies the trailer, never the tractor."""
    return plate_kind(text) == "trailer"


def split_templates(
    templates: tuple[Template, ...], top_length: int = DOUBLE_ROW_TOP_LENGTH
) -> tuple[tuple[Template, ...], tuple[Template, ...]]:
    """Row templates of a double-row plate: the first ``top_length`` positions, and the rest.

    Only 7-character templates that start with a province are split; double-row
    plates (rear plates of trucks, trailers, coaches) are 7 characters.
    """
    tops: dict[tuple[frozenset[str], ...], Template] = {}
    bottoms: dict[tuple[frozenset[str], ...], Template] = {}
    for template in templates:
        if len(template) != 7 or template.kind in ("embassy", "hk_macao"):
            continue
        top, bottom = template.positions[:top_length], template.positions[top_length:]
        tops.setdefault(top, Template(template.kind, top))
        bottoms.setdefault(bottom, Template(template.kind, bottom))
    return tuple(tops.values()), tuple(bottoms.values())
