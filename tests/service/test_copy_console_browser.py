"""The console's 抄告 page in a real headless Chromium (playwright) against a real uvicorn
server: the decision maker opens it from the top menu, filters it, downloads a copy's JSON
and PDF, records it sent (channel and reference) and acknowledged. Screenshots go to
test-artifacts/web/. Skips without chromium or playwright (fails when CI is set), as
``test_web_browser``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.service.test_copy_console import served_penalty
from tests.service.test_web_browser import browser, server, shot, staff, submit
from tests.service.test_web_common import Web
from zhichao.service.db import transaction
from zhichao.service.models import CopyNotice

__all__ = ["browser", "server"]  # the module-scoped fixtures: one server, one Chromium


def test_outbox_in_a_browser(server: tuple[str, Web], browser: Any, tmp_path: Path) -> None:
    base, web = server
    case_id = web.cases[0].id
    copy_id = served_penalty(web, case_id)

    boss = staff(browser, base, web, "decision_maker")
    submit(boss, "#menu-copy-notices")
    assert boss.url.endswith("/console/copy-notices")
    row = f"#copy-{copy_id}"
    assert boss.inner_text(f"{row} .state") == "待发送"
    assert boss.inner_text(f"{row} .kind") == "抄告"
    assert "（北京时间）" in boss.inner_text(f"{row} .times")
    shot(boss, "11-copy-notices-pending")

    boss.select_option("form.filters select[name=state]", "sent")
    submit(boss, "form.filters button[type=submit]")
    assert "state=sent" in boss.url and boss.locator(row).count() == 0
    boss.select_option("form.filters select[name=state]", "pending")
    submit(boss, "form.filters button[type=submit]")
    assert boss.locator(row).count() == 1

    with boss.expect_download() as download:
        boss.click(f"{row} a.json")
    saved = tmp_path / "copy.json"
    download.value.save_as(saved)
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert (data["copy_notice_id"], data["case_id"], data["state"]) == (copy_id, case_id,
                                                                       "pending")
    assert data["format"] == "zhichao.copy-notice/1"
    with boss.expect_download() as download:
        boss.click(f"{row} a.pdf")
    assert download.value.suggested_filename == f"copy-notice-{copy_id}.pdf"
    pdf = tmp_path / "copy.pdf"
    download.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")

    boss.select_option(f"{row} select[name=channel]", "document_exchange")
    boss.fill(f"{row} input[name=reference]", "浙交抄〔2026〕7号")
    submit(boss, f"{row} .form-sent button[type=submit]")
    assert boss.inner_text("#flash") == "已记录发送"
    assert boss.inner_text(f"{row} .state") == "已发送"
    assert "公文交换（机要），浙交抄〔2026〕7号" in boss.inner_text(f"{row} .times")
    shot(boss, "12-copy-notices-sent")
    submit(boss, f"{row} .form-acknowledged button[type=submit]")
    assert boss.inner_text("#flash").startswith("已记录对方确认收到")
    assert boss.inner_text(f"{row} .state") == "已获回执"
    assert "确认收到：" in boss.inner_text(f"{row} .times")
    assert boss.locator(f"{row} form").count() == 0
    shot(boss, "13-copy-notices-acknowledged")

    boss.goto(f"{base}/console/cases/{case_id}")
    submit(boss, "#copy-notices-link")
    assert boss.locator("#copy-notices tbody tr").count() == 1

    with transaction(web.sessions) as s:
        copy = s.scalars(select(CopyNotice).where(CopyNotice.id == copy_id)).one()
        assert copy.sent_channel == "document_exchange"
        assert copy.sent_reference == "浙交抄〔2026〕7号"
        assert copy.acknowledged_utc is not None and copy.sent_utc is not None
