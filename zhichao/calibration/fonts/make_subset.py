"""Rebuild ``report-subset.ttf``: the characters the accuracy report's own texts use.

Source: Droid Sans Fallback (Apache-2.0, the copy zhichao ships for its PDFs; licence in
LICENSE-Apache-2.0.txt here). Needs ``fonttools`` (a build-time tool, not a dependency)::

    python3 zhichao/calibration/fonts/make_subset.py
"""

from __future__ import annotations

import string
from pathlib import Path

from fontTools import subset

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1] / "evidence" / "fonts" / "DroidSansFallback-GB2312.ttf"
TEXTS = ("report.py", "accuracy.py", "fit.py", "legal.py", "drift.py",
         "../weighing/vehicle.py")  # the core's flag texts appear in the report


def main() -> None:
    chars = set(string.printable) | set("°±×≤≥—–…·→↔σπδ（）：，。；、「」％")
    for name in TEXTS:
        chars |= {c for c in (HERE.parent / name).read_text(encoding="utf-8") if ord(c) > 0x2E7F}
    opts = subset.Options()
    opts.name_IDs = ["*"]
    opts.notdef_outline = True
    font = subset.load_font(str(SOURCE), opts)
    sub = subset.Subsetter(opts)
    sub.populate(text="".join(sorted(chars)))
    sub.subset(font)
    subset.save_font(font, str(HERE / "report-subset.ttf"), opts)
    size = (HERE / "report-subset.ttf").stat().st_size
    print(len(chars), "characters;", size, "bytes")  # noqa: T201


if __name__ == "__main__":
    main()
