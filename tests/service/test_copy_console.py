"""The console's 抄告 page (62号令 Art. 44; issue 17 item 6), on SQLite and PostgreSQL: the
menu and the page for the roles of ``duties.COPY_NOTICES`` only; the list by state, overdue
first, with case, plate, kind, authority, due date, times in 北京时间, overdue and referral
marks; the JSON download equal to the API's export and the PDF; recording sent (channel and
reference, audited, escaped) and acknowledged through ``copy_notices.mark``, refused twice,
out of order, cancelled, without CSRF or with bad input (zh-CN, never 5xx); a revoked case's
cancelled copy and a withdrawal (撤回抄告); the case page links to its copy notices; the
API's optional channel and reference; migration 0009 keeps old rows (channel null)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from tests.service.conftest import PASSWORD, PG_URL, Sealed, new_case, require_postgresql
from tests.service.test_web_common import INJECT, Web, csrf_of, make_web, shared_lane
from tests.service.test_web_pages import login
from zhichao.service import procedure, workflow
from zhichao.service.db import (
    alembic_config,
    drop_schema,
    session_factory,
    transaction,
    upgrade,
)
from zhichao.service.errors import WorkflowError
from zhichao.service.models import AuditEntry, Case, CopyNotice, User

OUTBOX = "/console/copy-notices"


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    lane = shared_lane(tmp_path_factory)
    tmp = tmp_path_factory.mktemp(f"copy-web-{request.param}")
    if request.param == "sqlite":
        made = make_web(tmp, lane)
    else:
        require_postgresql()
        made = make_web(tmp, lane, url=PG_URL, schema=f"zc_{secrets.token_hex(6)}")
    yield made
    if request.param == "postgresql":
        drop_schema(made.app.state.engine)
    made.app.state.engine.dispose()


def _step(web: Web, case_id: int, role: str, fn: object, **kw: object) -> None:
    with transaction(web.sessions) as s:
        case = s.get(Case, case_id)
        user = s.get(User, web.users[role].id)
        assert case is not None and user is not None and callable(fn)
        fn(s, case, user, **kw)


def served_penalty(web: Web, case_id: int, fine_yuan: int = 200) -> int:
    """Walk a case to a served fine through the workflow functions (the console's own
    forms are tested elsewhere); returns its queued copy notice's id."""
    policy = web.settings.deadlines
    with transaction(web.sessions) as s:  # the lane's lighter overloads propose less
        case = s.get(Case, case_id)
        assert case is not None
        case.proposed_outcome, case.proposed_fine_yuan = "fine", fine_yuan
    _step(web, case_id, "technical_reviewer", workflow.technical_review, approve=True)
    _step(web, case_id, "legal_reviewer", workflow.legal_review, approve=True)
    _step(web, case_id, "decision_maker", workflow.open_and_notify, channel="post",
          policy=policy, hearing_right=False)
    _step(web, case_id, "decision_maker", procedure.serve_notice,
          delivered_utc=datetime.now(UTC), proof="EMS 1", policy=policy)
    _step(web, case_id, "legal_reviewer", procedure.waive, scope="statement", record="放弃声明",
          document_ref="F-1")
    _step(web, case_id, "legal_reviewer", workflow.close_statements)
    _step(web, case_id, "decision_maker", workflow.decide, outcome="fine",
          fine_yuan=fine_yuan, reasons="超限运输事实清楚。", policy=policy)
    _step(web, case_id, "decision_maker", workflow.serve, channel="post", policy=policy)
    with transaction(web.sessions) as s:
        return s.scalars(select(CopyNotice.id).where(CopyNotice.case_id == case_id,
                                                     CopyNotice.kind == "copy")).one()


def row_of(html: str, copy_id: int) -> str:
    match = re.search(rf'<tr id="copy-{copy_id}".*?</tr>', html, re.S)
    assert match, f"copy notice {copy_id} not listed"
    return match.group(0)


def listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="copy-(\d+)"', html)]


def record(client: TestClient, copy_id: int, what: str, **data: str) -> httpx.Response:
    page = client.get(OUTBOX)
    answer: httpx.Response = client.post(f"{OUTBOX}/{copy_id}/{what}", follow_redirects=False,
                                         data={"csrf_token": csrf_of(page.text), **data})
    return answer


def api_token(web: Web, client: TestClient, role: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"username": web.users[role].username,
                                                 "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_menu_and_page_only_for_the_roles_of_the_duties_table(web: Web) -> None:
    assert TestClient(web.app).get(OUTBOX, follow_redirects=False).headers[
        "location"].startswith("/console/login")
    boss = login(web, "decision_maker")
    page = boss.get("/console/")
    assert 'href="/console/copy-notices"' in page.text
    page = boss.get(OUTBOX)
    assert page.status_code == 200 and "<h1>抄告</h1>" in page.text
    for role in ("auditor", "technical_reviewer", "legal_reviewer", "supervisor"):
        client = login(web, role)
        assert 'href="/console/copy-notices"' not in client.get("/console/dashboard").text
        for path in (OUTBOX, f"{OUTBOX}/1/json", f"{OUTBOX}/1/pdf"):
            r = client.get(path)
            assert r.status_code == 403 and "需要以下角色之一" in r.text, (role, path)
        r = client.post(f"{OUTBOX}/1/sent", data={
            "csrf_token": csrf_of(client.get("/console/dashboard").text), "channel": "post"})
        assert r.status_code == 403, role


def test_bad_input_gets_a_zh_page_never_5xx(web: Web) -> None:
    boss = login(web, "decision_maker")
    for path, status, message in (
            (f"{OUTBOX}?state=lost", 422, "抄告状态无效"),
            (f"{OUTBOX}?case_id=abc", 422, "案件编号应为正整数"),
            (f"{OUTBOX}?case_id=9999999999", 422, "案件编号应为正整数"),
            (f"{OUTBOX}?offset=-1", 422, "输入有误"),
            (f"{OUTBOX}/0/json", 422, "输入有误"),
            (f"{OUTBOX}/999999/json", 404, "抄告不存在"),
            (f"{OUTBOX}/999999/pdf", 404, "抄告不存在")):
        r = boss.get(path)
        assert r.status_code == status and message in r.text, (path, r.status_code)
    assert "没有符合条件的抄告" in boss.get(f"{OUTBOX}?case_id=424242").text
    r = boss.post(f"{OUTBOX}/999999/sent", data={"channel": "post"})
    assert r.status_code == 403 and "表单已失效" in r.text  # no CSRF token
    r = record(boss, 999999, "sent", channel="post")
    assert r.status_code == 404 and "抄告不存在" in r.text


def test_outbox_walk(web: Web) -> None:
    boss = login(web, "decision_maker")
    first, late, recalled = (web.cases[0].id, web.cases[1].id, web.cases[2].id)
    first_copy = served_penalty(web, first)
    late_copy = served_penalty(web, late)
    recalled_copy = served_penalty(web, recalled)
    with transaction(web.sessions) as s:  # the only way a test lets 7 working days pass
        overdue = s.get(CopyNotice, late_copy)
        assert overdue is not None
        overdue.due = date.today() - timedelta(days=3)
        overdue.referral = True  # as if the vehicle had three more served penalties this year

    # the list: overdue first, every column, 北京时间 labelled
    page = boss.get(OUTBOX)
    assert listed(page.text)[0] == late_copy
    assert {first_copy, late_copy, recalled_copy} <= set(listed(page.text))
    row = row_of(page.text, first_copy)
    with transaction(web.sessions) as s:
        case = s.get(Case, first)
        copy = s.get(CopyNotice, first_copy)
        assert case is not None and copy is not None
        plate, due = case.plate or "", copy.due.isoformat()
    assert f'href="/console/cases/{first}"' in row and f"{plate}（黄）" in row
    assert ">抄告<" in row and "浙江省浙J号牌车籍地道路运输管理机构" in row and due in row
    assert "待发送" in row and "（北京时间）" in row and "逾期" not in row
    assert 'class="late"' in row_of(page.text, late_copy)
    assert "逾期未发送" in row_of(page.text, late_copy)
    assert "移送建议" in row_of(page.text, late_copy) and "移送建议" not in row
    assert "UTC）" not in page.text.split("<footer>")[0]

    # the case page links to its copy notices
    case_page = boss.get(f"/console/cases/{first}").text
    assert f'href="/console/copy-notices?case_id={first}"' in case_page
    assert listed(boss.get(f"{OUTBOX}?case_id={first}").text) == [first_copy]
    assert "在抄告页办理" not in login(web, "auditor").get(f"/console/cases/{first}").text

    # downloads: the API's JSON export and the PDF
    got = boss.get(f"{OUTBOX}/{first_copy}/json")
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    assert f'filename="copy-notice-{first_copy}.json"' in got.headers["content-disposition"]
    api = TestClient(web.app)
    answer = api.get(f"/api/v1/copy-notices/{first_copy}",
                     headers=api_token(web, api, "decision_maker"))
    assert got.json() == answer.json() and got.json()["state"] == "pending"
    pdf = boss.get(f"{OUTBOX}/{first_copy}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    # record sent: channel required and checked, reference escaped and kept
    r = record(boss, first_copy, "sent", channel="", reference="x")
    assert r.status_code == 422 and "请选择发送方式" in r.text
    r = record(boss, first_copy, "sent", channel="pigeon")
    assert r.status_code == 422 and "发送方式无效" in r.text
    r = record(boss, first_copy, "sent", channel="post", reference="EMS\x01")
    assert r.status_code == 422 and "控制字符" in r.text
    r = record(boss, first_copy, "acknowledged")
    assert r.status_code == 409 and "尚未发送" in r.text
    r = record(boss, first_copy, "sent", channel="post", reference=f"EMS 9 {INJECT}")
    assert r.status_code == 303, r.text
    page = boss.get(r.headers["location"])
    assert "已记录发送" in page.text and INJECT not in page.text
    row = row_of(page.text, first_copy)
    assert "已发送" in row and "发送：" in row and "（北京时间）（邮寄，EMS 9 &lt;script&gt;" in row
    r = record(boss, first_copy, "sent", channel="post")
    assert r.status_code == 409 and "该抄告已记录发送" in r.text
    assert got.json() != boss.get(f"{OUTBOX}/{first_copy}/json").json()
    sent = boss.get(f"{OUTBOX}/{first_copy}/json").json()
    assert (sent["state"], sent["sent_channel"], sent["sent_channel_zh"]) == ("sent", "post",
                                                                             "邮寄")
    assert sent["sent_reference"] == f"EMS 9 {INJECT}"
    assert listed(boss.get(f"{OUTBOX}?state=sent").text) == [first_copy]
    assert first_copy not in listed(boss.get(f"{OUTBOX}?state=pending").text)

    # record acknowledged
    r = record(boss, first_copy, "acknowledged")
    assert r.status_code == 303, r.text
    row = row_of(boss.get(OUTBOX).text, first_copy)
    assert "已获回执" in row and "确认收到：" in row and "form-" not in row
    assert record(boss, first_copy, "acknowledged").status_code == 409
    assert listed(boss.get(f"{OUTBOX}?state=acknowledged").text) == [first_copy]
    with transaction(web.sessions) as s:
        audit = {a.action: a for a in s.scalars(select(AuditEntry).where(
            AuditEntry.object_id == str(first), AuditEntry.action.like("copy_notice.%")))}
        assert audit["copy_notice.sent"].detail["channel"] == "post"
        assert audit["copy_notice.sent"].actor.startswith("user:")
        assert "copy_notice.acknowledged" in audit

    # a revoked decision: the unsent copy is cancelled (no PDF, no forms), a sent one is
    # withdrawn (撤回抄告, pending, its own PDF)
    # the API takes the same channel and reference (optional body), checked the same way
    clerk = api_token(web, api, "decision_maker")
    url = f"/api/v1/copy-notices/{recalled_copy}/sent"
    r = api.post(url, headers=clerk, json={"channel": "pigeon"})
    assert r.status_code == 422 and r.json()["message_zh"] == "发送方式无效"
    assert api.post(url, headers=clerk, json={"channel": "post", "x": 1}).status_code == 422
    r = api.post(url, headers=clerk, json={"channel": "electronic",
                                           "reference": "浙交抄〔2026〕1号"})
    assert r.status_code == 200 and r.json()["sent_channel_zh"] == "电子公文系统"
    for case_id in (late, recalled):
        _step(web, case_id, "decision_maker", procedure.revoke, kind="revoked",
              reason="行政复议撤销", policy=web.settings.deadlines)
    page = boss.get(OUTBOX).text
    row = row_of(page, late_copy)
    assert "已作废" in row and "作废：" in row and "行政复议撤销" in row
    assert "/pdf" not in row and "form-" not in row and "逾期" not in row
    r = boss.get(f"{OUTBOX}/{late_copy}/pdf")
    assert r.status_code == 409 and "已作废" in r.text
    assert record(boss, late_copy, "sent", channel="post").status_code == 409
    with transaction(web.sessions) as s:
        withdrawal = s.scalars(select(CopyNotice).where(
            CopyNotice.case_id == recalled, CopyNotice.kind == "withdrawal")).one().id
    row = row_of(page, withdrawal)
    assert "撤回抄告" in row and f"撤回第 {recalled_copy} 号" in row and "待发送" in row
    assert "form-sent" in row
    assert "电子公文系统，浙交抄〔2026〕1号" in row_of(page, recalled_copy)
    assert boss.get(f"{OUTBOX}/{withdrawal}/pdf").content.startswith(b"%PDF")
    data = json.loads(boss.get(f"{OUTBOX}/{withdrawal}/json").content)
    assert data["kind"] == "withdrawal" and data["withdraws_copy_notice_id"] == recalled_copy
    assert listed(boss.get(f"{OUTBOX}?state=cancelled").text) == [late_copy]

    # a withdrawal of referral suggestions only (the revoked case's own copy never left,
    # as copy_notices.follow_revocation writes it): it names the copies it corrects, not
    # the cancelled one
    with transaction(web.sessions) as s:
        only = CopyNotice(case_id=first, kind="withdrawal", withdraws_id=None,
                          authority_zh="浙江省", due=date.today(), referral=False,
                          payload={"referrals_withdrawn": [{"copy_notice_id": first_copy},
                                                           {"copy_notice_id": recalled_copy}]},
                          created_utc=datetime.now(UTC))
        s.add(only)
        s.flush()
        only_id = only.id
    row = row_of(boss.get(OUTBOX).text, only_id)
    assert f"（撤回第 {first_copy}、{recalled_copy} 号的移送建议）" in row, row
    assert f"撤回第 {first_copy} 号）" not in row



def _newest() -> str:
    from alembic.script import ScriptDirectory

    from zhichao.service.db import make_engine
    head = ScriptDirectory.from_config(alembic_config(make_engine("sqlite://"))).get_current_head()
    assert head is not None
    return head


def _head(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def test_migration_0009_keeps_old_copies_without_a_channel(fresh_db: Engine,
                                                           sealed: Sealed) -> None:
    sessions = session_factory(fresh_db)
    case = new_case(sessions, sealed, plate="浙J9M001")
    command.downgrade(alembic_config(fresh_db), "0008_copy_notice_withdrawal")
    with fresh_db.begin() as conn:
        conn.execute(text(
            "INSERT INTO copy_notices (case_id, kind, authority_zh, due, referral, payload, "
            "created_utc, sent_utc) VALUES (:c, 'copy', '浙江省', '2026-07-13', false, '{}', "
            "'2026-07-02 02:00:00', '2026-07-03 02:00:00')"), {"c": case.id})
    upgrade(fresh_db)
    with transaction(sessions) as s:
        old = s.scalars(select(CopyNotice).where(CopyNotice.case_id == case.id)).one()
        assert (old.sent_channel, old.sent_reference) == (None, None)
        assert old.sent_utc is not None
        old.sent_channel, old.sent_reference = "post", "EMS 1"
    # how a letter was sent is a record: the downgrade that would drop it is refused
    with pytest.raises(WorkflowError, match="0009 downgrade refused: 1 ") as refused:
        command.downgrade(alembic_config(fresh_db), "0008_copy_notice_withdrawal")
    assert "拒绝降级" in refused.value.message_zh
    # PostgreSQL rolls back the whole downgrade (one transaction): still at the newest
    # revision; SQLite keeps the later revisions' own steps down
    assert _head(fresh_db) == (_newest() if fresh_db.dialect.name == "postgresql"
                               else "0009_copy_notice_channel")
    with transaction(sessions) as s:  # only the reference left: still refused
        s.scalars(select(CopyNotice).where(CopyNotice.case_id == case.id)).one() \
            .sent_channel = None
    with pytest.raises(WorkflowError, match="0009 downgrade refused"):
        command.downgrade(alembic_config(fresh_db), "0008_copy_notice_withdrawal")
    with transaction(sessions) as s:  # none recorded: the downgrade runs
        s.scalars(select(CopyNotice).where(CopyNotice.case_id == case.id)).one() \
            .sent_reference = None
    command.downgrade(alembic_config(fresh_db), "0008_copy_notice_withdrawal")
    assert _head(fresh_db) == "0008_copy_notice_withdrawal"
    with fresh_db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM copy_notices WHERE case_id = :c"),
                            {"c": case.id}).scalar_one() == 1
    upgrade(fresh_db)
