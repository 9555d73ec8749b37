"""The console's procedure forms (issue 17): record service of the notice in 北京时间,
the party's waiver (行政处罚法 Art. 62), and a revoked decision withdrawn from 公示 (Art. 48)
with its unsent 抄告 cancelled;
every time on the page in 北京时间. SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from tests.service.conftest import PG_URL, require_postgresql
from tests.service.test_web_common import Web, make_web, shared_lane
from tests.service.test_web_pages import act, case_state, login, served_now
from zhichao.service.db import drop_schema, session_factory
from zhichao.service.models import CopyNotice


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    lane = shared_lane(tmp_path_factory)
    tmp = tmp_path_factory.mktemp(f"procedure-web-{request.param}")
    if request.param == "sqlite":
        made = make_web(tmp, lane)
    else:
        require_postgresql()
        made = make_web(tmp, lane, url=PG_URL, schema=f"zp_{secrets.token_hex(6)}")
    yield made
    if request.param == "postgresql":
        drop_schema(made.app.state.engine)
    made.app.state.engine.dispose()


def test_console_walk_with_service_waiver_and_revocation(web: Web) -> None:
    case_id = web.cases[2].id  # a fine proposed, the hearing right for a person to decide
    assert act(login(web, "technical_reviewer"), case_id, "technical-review",
               verdict="approve").status_code == 303  # type: ignore[attr-defined]
    legal = login(web, "legal_reviewer")
    assert act(legal, case_id, "legal-review",
               verdict="approve").status_code == 303  # type: ignore[attr-defined]
    boss = login(web, "decision_maker")
    r = act(boss, case_id, "notify", channel="post", hearing_right="yes")
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    page = boss.get(f"/console/cases/{case_id}").text
    assert "告知书尚未记录送达" in page and 'id="form-serve-notice"' in page
    assert "（北京时间）" in page and "UTC）" not in page.split("<footer>")[0]
    r = act(legal, case_id, "close-statements")
    assert r.status_code == 409 and "尚未送达" in r.text  # type: ignore[attr-defined]
    r = act(boss, case_id, "serve-notice", delivered="2020-01-01T08:00", proof="EMS 1")
    assert r.status_code == 422  # type: ignore[attr-defined]  # before the notice was issued
    r = act(boss, case_id, "serve-notice", delivered=served_now(), proof="EMS 2", channel="")
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    page = boss.get(f"/console/cases/{case_id}").text
    assert "送达日期" in page and "EMS 2" in page and 'id="form-serve-notice"' not in page
    r = act(legal, case_id, "waive", scope="all", record="当事人签署放弃声明",
            document_ref="F-7")
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    assert "明确放弃" in legal.get(f"/console/cases/{case_id}").text
    assert act(legal, case_id, "close-statements").status_code == 303  # type: ignore[attr-defined]
    r = act(boss, case_id, "decision", outcome="reduced", fine_yuan=100, reasons="依法减轻")
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    assert "公示期限" in boss.get(f"/console/cases/{case_id}").text
    assert act(boss, case_id, "serve", channel="post").status_code == 303  # type: ignore[attr-defined]
    assert act(boss, case_id, "publish").status_code == 303  # type: ignore[attr-defined]
    r = act(boss, case_id, "revoke", kind="changed", reason="复议变更原决定")
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    assert case_state(web, case_id)[0] == "revoked"
    page = boss.get(f"/console/cases/{case_id}").text
    assert "公示已撤回" in page and "复议变更原决定" in page
    assert "复议变更原决定" not in boss.get("/portal/disclosures").text
    with session_factory(web.app.state.engine)() as s:  # a 变更 keeps its unsent 抄告 pending
        copy = s.scalars(select(CopyNotice).where(CopyNotice.case_id == case_id)).one()
        assert copy.cancelled_utc is None and copy.sent_utc is None
        assert copy.cancel_reason_zh is None
