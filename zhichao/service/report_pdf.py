"""zh-CN PDF reports of the supervision pages (campaign report, statistics, typical cases),
on the evidence stage's PDF machinery (fpdf2, its bundled fonts, the visible marker for any
character no font can draw). Tables, headed sections and simple bar charts; every time a
person reads is 北京时间, labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from zhichao.evidence.documents import _finish, _pdf, _pdf_title, _set_font
from zhichao.service.workdays import CHINA_TZ


def beijing(value: datetime | str | None) -> str:
    """``YYYY-MM-DD HH:MM（北京时间）`` of a UTC time (or its ISO text); "—" for none."""
    if value is None:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") + "（北京时间）"


class Report:
    """A PDF being written: title, paragraphs, tables and bars, then :meth:`finish`."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.pdf: Any = _pdf(title)
        _pdf_title(self.pdf, title)

    def heading(self, text: str) -> None:
        if self.pdf.get_y() > self.pdf.h - 40:
            self.pdf.add_page()
        self.pdf.ln(2)
        _set_font(self.pdf, 12)
        self.pdf.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
        _set_font(self.pdf, 9)

    def paragraph(self, text: str) -> None:
        _set_font(self.pdf, 9)
        self.pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]],
              widths: Sequence[float] | None = None) -> None:
        """A bordered table; long cells wrap; a new page repeats nothing but keeps going."""
        pdf = self.pdf
        widths = list(widths or [pdf.epw / len(header)] * len(header))
        for i, row in enumerate([header, *rows]):
            cells = ["—" if v is None else str(v) for v in row]
            lines = max(len(pdf.multi_cell(w, 5, c, dry_run=True, output="LINES"))
                        for w, c in zip(widths, cells, strict=True))
            height = 5 * max(lines, 1)
            if pdf.get_y() + height > pdf.h - 15:
                pdf.add_page()
            y, x = pdf.get_y(), pdf.l_margin
            for w, c in zip(widths, cells, strict=True):
                _set_font(pdf, 9 if i else 9.5)
                pdf.set_xy(x, y)
                pdf.multi_cell(w, 5, c, border=0)
                pdf.rect(x, y, w, height)
                x += w
            pdf.set_xy(pdf.l_margin, y + height)

    def bars(self, caption: str, items: Sequence[tuple[str, float]], unit: str = "") -> None:
        """A horizontal bar chart: one labelled bar per item, scaled to the largest."""
        pdf = self.pdf
        self.paragraph(caption)
        top = max((v for _l, v in items), default=0) or 1
        label_w, bar_w = 40.0, pdf.epw - 70.0
        for label, value in items:
            if pdf.get_y() > pdf.h - 20:
                pdf.add_page()
            y = pdf.get_y()
            _set_font(pdf, 8)
            pdf.set_xy(pdf.l_margin, y)
            pdf.cell(label_w, 5, label)
            pdf.set_fill_color(70, 110, 170)
            width = bar_w * value / top
            if width > 0:
                pdf.rect(pdf.l_margin + label_w, y + 1, width, 3.5, style="F")
            pdf.set_xy(pdf.l_margin + label_w + width + 2, y)
            pdf.cell(28, 5, f"{value:,.0f}{unit}")
            pdf.set_xy(pdf.l_margin, y + 5)
        pdf.ln(2)

    def finish(self) -> bytes:
        return _finish(self.pdf, self.title)
