"""The supervision pages in a real headless Chromium (the fixtures of
``test_web_browser``): a supervisor opens a 案卷评查 campaign from the console, adds a case
on purpose, a legal reviewer scores every file (a failed item without its problem is
refused in zh-CN), the supervisor closes it and downloads the sealed report; the monthly
statistics and the 年报 show their charts; a decided case is marked typical and the
compilation shows no plate. Every action is in the audit log; times are 北京时间."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.service.conftest import Sealed
from tests.service.test_supervision import decide_case, many_cases, pdf_text
from tests.service.test_web_browser import browser, server, shot, staff, submit
from tests.service.test_web_common import Web
from zhichao.service.db import transaction
from zhichao.service.models import AuditEntry, CampaignCase, Case, ReviewCampaign

__all__ = ["browser", "server"]  # fixtures used by name


def _open_campaign(page: Any, base: str, web: Web) -> int:
    page.goto(f"{base}/console/")
    submit(page, 'header a[href="/console/supervision"]')
    assert "案卷评查活动" in page.content() and page.locator("#yearly").count() == 1
    form = "#form-open-campaign"
    page.fill(f"{form} input[name=title]", "浏览器评查")
    page.fill(f"{form} input[name=period_start]", "2020-01-01")
    page.fill(f"{form} input[name=period_end]", "2030-12-31")
    page.check(f'{form} input[name=reviewer_ids][value="{web.users["legal_reviewer"].id}"]')
    page.fill(f"{form} input[name=seed]", "browser-seed-01")
    submit(page, f"{form} button[type=submit]")
    assert "评查活动已发起" in page.content() and "北京时间" in page.content()
    return int(page.url.split("campaign_id=")[1].split("&")[0])


def test_supervision_in_the_browser(server: tuple[str, Web], browser: Any,
                                    sealed: Sealed) -> None:
    base, web = server
    ids = many_cases(web.sessions, sealed, 12)
    chief = staff(browser, base, web, "supervisor")
    campaign_id = _open_campaign(chief, base, web)
    with transaction(web.sessions) as s:
        drawn = set(s.scalars(select(CampaignCase.case_id).where(
            CampaignCase.campaign_id == campaign_id)))
        extra = next(i for i in s.scalars(select(Case.id).order_by(Case.id))
                     if i not in drawn)
    assert len(drawn) == 10
    chief.fill("#form-add-case input[name=case_id]", str(extra))
    submit(chief, "#form-add-case button[type=submit]")
    assert "已指定评查案卷" in chief.content() and "指定评查" in chief.content()
    shot(chief, "supervision-campaign")

    legal = staff(browser, base, web, "legal_reviewer")
    campaign_url = f"{base}/console/supervision/campaign?campaign_id={campaign_id}"
    legal.goto(campaign_url)
    submit(legal, "a.score-link")
    legal.check("#unmet-procedure-notice")
    submit(legal, "#form-score button[type=submit]")
    assert "发现的问题" in legal.content()  # refused: a failed item needs the problem
    legal.go_back()
    legal.check("#unmet-procedure-notice")
    legal.fill("#form-score textarea[name=problems]", "告知书未载明听证权利")
    legal.fill("#form-score textarea[name=correction]", "补充告知")
    shot(legal, "supervision-score")
    submit(legal, "#form-score button[type=submit]")
    assert "评分已保存" in legal.content()
    while legal.locator("a.score-link").count():
        submit(legal, "a.score-link")
        submit(legal, "#form-score button[type=submit]")
        assert "评分已保存" in legal.content(), legal.content()

    chief.goto(campaign_url)
    submit(chief, "#form-close button[type=submit]")
    assert "报告已封存" in chief.content()
    sha = chief.inner_text("#report-sha256")
    pdf = chief.request.get(f"{base}/console/supervision/campaign/report"
                            f"?campaign_id={campaign_id}&format=pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert "告知书未载明听证权利" in pdf_text(pdf.body())
    with transaction(web.sessions) as s:
        campaign = s.get(ReviewCampaign, campaign_id)
        assert campaign is not None and campaign.report_sha256 == sha
    shot(chief, "supervision-closed")

    chief.goto(f"{base}/console/supervision/statistics")
    chief.fill("#form-period input[name=year]", "2025")
    chief.fill("#form-period input[name=month]", "")
    submit(chief, "#form-period button[type=submit]")
    assert "2025年度治超非现场执法统计年报" in chief.content()
    assert chief.locator("svg.figure").count() == 3
    shot(chief, "supervision-annual")

    case_id = ids[0]
    decide_case(web.sessions, case_id, web.users["technical_reviewer"],
                web.users["legal_reviewer"], web.users["decision_maker"])
    chief.goto(f"{base}/console/supervision/typical")
    chief.fill("#form-typical input[name=case_id]", str(case_id))
    chief.fill("#form-typical input[name=title]", "六轴货车严重超限")
    chief.fill("#form-typical textarea[name=summary]", "六轴货车超限，依法处以罚款。")
    submit(chief, "#form-typical button[type=submit]")
    page = chief.content()
    assert "已列为典型案例" in page and "六轴货车超限，依法处以罚款。" in page
    with transaction(web.sessions) as s:
        plate = s.scalar(select(Case.plate).where(Case.id == case_id))
    assert plate and plate not in chief.inner_text("#typical")
    shot(chief, "supervision-typical")
    with transaction(web.sessions) as s:
        actions = set(s.scalars(select(AuditEntry.action).where(
            AuditEntry.action.like("supervision.%"))))
    assert actions == {"supervision.campaign_opened", "supervision.case_added",
                       "supervision.case_scored", "supervision.campaign_closed",
                       "supervision.typical_marked"}
