"""The console and portal pages through TestClient: sessions, roles, CSRF, optimistic
locking, escaping of injected HTML, evidence-view logging, the case page's content, the
owner portal and the masked 公示 page — on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import re
import secrets
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.service.conftest import PASSWORD, PG_URL, require_postgresql
from tests.service.test_web_common import (
    FILE_NO,
    FRONT_READ_BOX_PX,
    INJECT,
    PLATES,
    VIN,
    Web,
    csrf_of,
    make_web,
    past_statement_period,
    shared_lane,
    version_of,
)
from zhichao.evidence.eligibility import SEVERITY_ZH
from zhichao.service.db import drop_schema, transaction
from zhichao.service.models import AuditEntry, Case, User
from zhichao.service.web import svg
from zhichao.service.workdays import CHINA_TZ

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    lane = shared_lane(tmp_path_factory)
    tmp = tmp_path_factory.mktemp(f"web-{request.param}")
    if request.param == "sqlite":
        made = make_web(tmp, lane)
    else:
        require_postgresql()
        made = make_web(tmp, lane, url=PG_URL, schema=f"zw_{secrets.token_hex(6)}")
    yield made
    if request.param == "postgresql":
        drop_schema(made.app.state.engine)
    made.app.state.engine.dispose()


def login(web: Web, role: str) -> TestClient:
    client = TestClient(web.app)
    page = client.get("/console/login")
    assert page.status_code == 200 and "工作人员登录" in page.text
    r = client.post("/console/login", follow_redirects=False, data={
        "username": web.users[role].username, "password": PASSWORD,
        "csrf_token": csrf_of(page.text), "next": "/console/"})
    assert r.status_code == 303, r.text
    return client


def case_state(web: Web, case_id: int) -> tuple[str, int]:
    with transaction(web.sessions) as s:
        case = s.get(Case, case_id)
        assert case is not None
        return case.state, case.version


def served_now() -> str:
    """Now as a console user types it: 北京时间, no zone."""
    return (datetime.now(UTC) + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M")


def act(client: TestClient, case_id: int, action: str, **data: object) -> object:
    page = client.get(f"/console/cases/{case_id}")
    assert page.status_code == 200, page.text
    form = {"csrf_token": csrf_of(page.text), **{k: str(v) for k, v in data.items()}}
    if 'name="expected_version"' in page.text:
        form.setdefault("expected_version", str(version_of(page.text)))
    return client.post(f"/console/cases/{case_id}/{action}", data=form, follow_redirects=False)


def evidence_views(web: Web, case_id: int) -> int:
    with transaction(web.sessions) as s:
        return int(s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "evidence.view", AuditEntry.object_id == str(case_id))) or 0)


def test_pages_without_session(web: Web) -> None:
    client = TestClient(web.app)
    case_id = web.cases[0].id
    for path in ("/console/", f"/console/cases/{case_id}", "/console/devices",
                 "/console/dashboard", f"/console/cases/{case_id}/package",
                 f"/console/cases/{case_id}/files/original/image-front.jpg"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login"), path
    r = client.post(f"/console/cases/{case_id}/technical-review", follow_redirects=False,
                    data={"expected_version": "1", "verdict": "approve"})
    assert r.status_code == 403 and "表单已失效" in r.text
    for path in ("/portal/records", f"/portal/records/{case_id}",
                 f"/portal/records/{case_id}/package"):
        r = client.get(path)
        assert r.status_code == 401 and "查询凭证无效" in r.text, path
    assert case_state(web, case_id)[0] == "technical_review"
    # the public pages need nothing
    assert client.get("/portal/").status_code == 200
    assert client.get("/portal/disclosures").status_code == 200
    assert client.get("/assets/console.css").status_code == 200


def test_cookie_flags_and_page_headers(web: Web, tmp_path: Path) -> None:
    client = TestClient(web.app)
    page = client.get("/console/login")
    pre = page.headers["set-cookie"]
    assert "zc_pre=" in pre and "HttpOnly" in pre and "SameSite=strict" in pre
    assert "Secure" not in pre  # this test app runs on plain HTTP by choice
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    r = client.post("/console/login", follow_redirects=False, data={
        "username": web.users["auditor"].username, "password": PASSWORD,
        "csrf_token": csrf_of(page.text)})
    session = r.headers["set-cookie"]
    assert "zc_session=" in session and "HttpOnly" in session and "SameSite=strict" in session
    assert "<script" not in client.get("/console/").text  # no scripts at all

    from zhichao.service.web import WebSettings, create_console_app

    secure = create_console_app(web.settings, web=WebSettings(cookie_secure=True))
    cookie = TestClient(secure).get("/console/login").headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_login_failures(web: Web) -> None:
    client = TestClient(web.app)
    page = client.get("/console/login")
    r = client.post("/console/login", data={"username": web.users["auditor"].username,
                                            "password": "wrong password!!",
                                            "csrf_token": csrf_of(page.text)})
    assert r.status_code == 401 and "用户名或密码错误" in r.text
    assert "zc_session" not in r.headers.get("set-cookie", "")
    # no pre-session cookie: refused before the password is even looked at
    bare = TestClient(web.app)
    r = bare.post("/console/login", data={"username": web.users["auditor"].username,
                                          "password": PASSWORD, "csrf_token": "0" * 64})
    assert r.status_code == 403
    # an open redirect through ?next= is refused
    r = client.post("/console/login", follow_redirects=False, data={
        "username": web.users["auditor"].username, "password": PASSWORD,
        "csrf_token": csrf_of(client.get("/console/login").text),
        "next": "//evil.example/console/"})
    assert r.headers["location"] == "/console/"


def test_roles_on_pages(web: Web) -> None:
    case_id = web.cases[0].id
    allowed = {
        "/console/": {"technical_reviewer", "legal_reviewer", "decision_maker", "auditor",
                      "station_operator", "supervisor"},
        f"/console/cases/{case_id}": {"technical_reviewer", "legal_reviewer",
                                      "decision_maker", "auditor", "station_operator",
                                      "supervisor"},
        f"/console/cases/{case_id}/package": {"technical_reviewer", "legal_reviewer",
                                              "decision_maker", "auditor", "supervisor"},
        "/console/devices": {"technical_reviewer", "legal_reviewer", "decision_maker",
                             "auditor", "station_operator", "administrator", "supervisor"},
        "/console/dashboard": {"technical_reviewer", "legal_reviewer", "decision_maker",
                               "auditor", "station_operator", "administrator", "supervisor"},
    }
    for role in web.users:
        client = login(web, role)
        for path, roles in allowed.items():
            r = client.get(path, follow_redirects=False)
            expected = 200 if role in roles else 403
            assert r.status_code == expected, (role, path, r.status_code)
            if expected == 403:
                assert "需要以下角色之一" in r.text
    # a transition by the wrong role is refused and changes nothing
    for role in ("legal_reviewer", "decision_maker", "auditor", "station_operator",
                 "administrator"):
        client = login(web, role)
        page = client.get("/console/login")  # any page: the token comes from the session
        staff_token = csrf_of(client.get("/console/devices").text)
        r = client.post(f"/console/cases/{case_id}/technical-review", follow_redirects=False,
                        data={"csrf_token": staff_token, "expected_version": "1",
                              "verdict": "approve"})
        assert r.status_code == 403, (role, page.status_code)
    assert case_state(web, case_id) == ("technical_review", 1)


def test_operator_sees_only_own_station(web: Web) -> None:
    client = login(web, "station_operator")
    assert client.get(f"/console/cases/{web.cases[0].id}").status_code == 200  # S001 = own
    op_id = web.users["station_operator"].id

    def move(station: str) -> None:
        with transaction(web.sessions) as s:
            user = s.get(User, op_id)
            assert user is not None
            user.station_id = station

    move("S999")
    try:
        r = client.get(f"/console/cases/{web.cases[0].id}")
        assert r.status_code == 403 and "只能查看本站点" in r.text
        assert f'href="/console/cases/{web.cases[0].id}"' not in client.get("/console/").text
    finally:
        move("S001")


def test_csrf_required_on_every_form(web: Web) -> None:
    case_id = web.cases[1].id
    client = login(web, "technical_reviewer")
    for token in (None, "0" * 64, csrf_of(TestClient(web.app).get("/console/login").text)):
        data = {"expected_version": "1", "verdict": "approve", "reason": "ok"}
        if token is not None:
            data["csrf_token"] = token
        r = client.post(f"/console/cases/{case_id}/technical-review", data=data,
                        follow_redirects=False)
        assert r.status_code == 403 and "表单已失效" in r.text
    assert case_state(web, case_id) == ("technical_review", 1)
    page = client.get(f"/console/cases/{case_id}").text
    forms = page.count("<form ")
    assert forms >= 2 and page.count('name="csrf_token"') == forms  # logout + review


def test_case_page_shows_the_evidence(web: Web) -> None:
    case = web.cases[0]
    record = web.lane.records[0]
    client = login(web, "auditor")
    before = evidence_views(web, case.id)
    html = client.get(f"/console/cases/{case.id}").text
    assert "证据包完整性核验通过" in html and "清单哈希与登记时一致" in html
    # 4 photos and the close-up of the read made on the front photo (the other read's
    # camera has no photo in the package)
    assert html.count("<img ") == 5 and 'id="plate-crop"' in html and "号牌特写" in html
    reads = html[html.index('id="plate-reads"'):]
    assert reads.count('class="plate-read"') == 2 and "照片不在证据包中" in reads
    assert f"{case.plate}（最低 0.98）" in reads and "（北京时间）" in reads
    assert html.count("<svg ") == 3  # load bar, axle diagram, waveform
    assert "<title>原始称重波形</title>" in html and "本车过秤区间" in html
    assert f"{record['gross_weight_kg']:,.0f} kg" in html
    assert f"{record['limit_kg']:,.0f} kg" in html
    assert record["limit_basis"] in html and "浙江省公路条例" in html
    # reasons and their severity in Chinese, the codes only as a hover title
    flags = html[html.index('id="flags"'):html.index('id="penalty"')]
    assert not any(s in flags for s in (">MANUAL_REVIEW<", ">UNUSABLE<", "<code>"))
    rows = re.findall(r'<tr><td title="([a-z_]+)">[^<]+</td><td>([^<]+)</td>', flags)
    assert rows, flags  # the simulated records carry reasons (side_axles_not_shown …)
    assert {severity for _code, severity in rows} <= set(SEVERITY_ZH.values()), rows
    for n in range(1, record["axle_count"] + 1):
        assert f'fill="#fff">{n}</text>' in html
    assert "待技术审核" in html and "package.registered" in html
    assert "ZJJL-2025-0456" in html and "封存时记录：漂移报警无" in html
    assert evidence_views(web, case.id) == before + 1
    photo = client.get(f"/console/cases/{case.id}/files/original/image-plate.jpg")
    assert photo.status_code == 200 and photo.content.startswith(b"\xff\xd8")
    # a read's close-up: its box and a quarter of it on each side, cut from its photo
    crop = client.get(f"/console/cases/{case.id}/plate-reads/0")
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    from PIL import Image

    x0, y0, x1, y1 = FRONT_READ_BOX_PX
    with Image.open(io.BytesIO(crop.content)) as image:
        assert image.size == (int(x1 + 30 + 1) - int(x0 - 30), int(y1 + 7.5 + 1) - int(y0 - 7.5))
    for missing in (1, 2, 999):  # no photo, no such read
        page = client.get(f"/console/cases/{case.id}/plate-reads/{missing}")
        assert page.status_code == 404 and "号牌特写不存在" in page.text
    assert client.get(f"/console/cases/{case.id}/plate-reads/-1").status_code == 422
    with transaction(web.sessions) as s:  # the close-up was logged as an evidence view
        seen = s.scalars(select(AuditEntry.detail).where(
            AuditEntry.action == "evidence.view", AuditEntry.object_id == str(case.id))).all()
    assert {"what": "plate_read/0"} in seen
    assert client.get(f"/console/cases/{case.id}/files/manifest.json").status_code == 404
    assert client.get(f"/console/cases/{case.id}/files/../../etc/passwd").status_code == 404
    pkg = client.get(f"/console/cases/{case.id}/package")
    assert pkg.headers["content-type"] == "application/zip"
    assert any(n.endswith("manifest.json") for n in zipfile.ZipFile(io.BytesIO(pkg.content))
               .namelist())
    assert evidence_views(web, case.id) == before + 4  # page, photo, close-up, package


def test_tampered_package_is_shown_as_failed(web: Web) -> None:
    case = web.cases[2]
    photo = Path(case.package_path) / "original" / "image-rear.jpg"
    original = photo.read_bytes()
    photo.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        html = login(web, "technical_reviewer").get(f"/console/cases/{case.id}").text
        assert "证据包完整性核验失败" in html and "badbox" in html
    finally:
        photo.write_bytes(original)


def test_missing_package_still_shows_the_case(web: Web) -> None:
    case = web.cases[2]
    package = Path(case.package_path)
    moved = package.with_name(package.name + ".moved")
    package.rename(moved)
    try:
        r = login(web, "auditor").get(f"/console/cases/{case.id}")
        assert r.status_code == 200
        assert "证据包无法读取" in r.text and "证据包完整性核验失败" in r.text
        assert 'id="history"' in r.text and "package.registered" in r.text
    finally:
        moved.rename(package)


def test_malformed_forms_get_a_page(web: Web) -> None:
    client = login(web, "technical_reviewer")
    case_id = web.cases[1].id
    token = csrf_of(client.get(f"/console/cases/{case_id}").text)
    r = client.post(f"/console/cases/{case_id}/technical-review",
                    data={"csrf_token": token, "expected_version": "1"})  # no verdict
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "输入有误" in r.text and "请填写审核意见" in r.text and "verdict" not in r.text
    r = client.post(f"/console/cases/{case_id}/technical-review",
                    data={"csrf_token": token, "expected_version": "1", "verdict": "maybe"})
    assert r.status_code == 422 and "请选择" in r.text
    r = client.post(f"/console/cases/{case_id}/technical-review", data={
        "csrf_token": token, "expected_version": "1", "verdict": "reject"})
    assert r.status_code == 422 and "请填写理由" in r.text
    assert client.get("/console/no-such-page").status_code == 404
    assert client.get("/api/v1/no-such-route").headers["content-type"] == "application/json"
    assert case_state(web, case_id) == ("technical_review", 1)


def test_stale_version_is_refused(web: Web) -> None:
    case_id = web.cases[1].id
    client = login(web, "technical_reviewer")
    page = client.get(f"/console/cases/{case_id}").text
    r = client.post(f"/console/cases/{case_id}/technical-review", follow_redirects=False,
                    data={"csrf_token": csrf_of(page), "expected_version": "7",
                          "verdict": "approve"})
    assert r.status_code == 409 and "已被他人更新" in r.text
    assert case_state(web, case_id) == ("technical_review", 1)


def test_walk_with_injected_html_everywhere(web: Web) -> None:
    """Every text field a person can type into carries markup; no page renders it."""
    case_id = web.cases[2].id
    operator = login(web, "station_operator")
    assert act(operator, case_id, "manual-override", reason=INJECT).status_code == 303
    with transaction(web.sessions) as s:  # the operator's station is not the reviewers'
        s.get(Case, case_id).manual_override = False  # type: ignore[union-attr]
    tech = login(web, "technical_reviewer")
    r = act(tech, case_id, "technical-review", verdict="approve", reason=INJECT)
    assert r.status_code == 303, r.text
    legal = login(web, "legal_reviewer")
    assert act(legal, case_id, "legal-review", verdict="approve", reason=INJECT).status_code == 303
    boss = login(web, "decision_maker")
    r = act(boss, case_id, "notify", channel="sms", hearing_right="yes")
    assert r.status_code == 303, r.text
    r = act(boss, case_id, "serve-notice", delivered=served_now(), proof=INJECT[:400])
    assert r.status_code == 303, r.text
    # the owner files a statement and a hearing request, all fields injected
    owner = TestClient(web.app)
    page = owner.get("/portal/").text
    r = owner.post("/portal/query", follow_redirects=False, data={
        "plate": PLATES[2], "plate_colour": "黄", "id_kind": "vin", "secret_value": VIN[-6:],
        "csrf_token": csrf_of(page)})
    assert r.status_code == 303
    record = owner.get(f"/portal/records/{case_id}").text
    for kind in ("statement", "hearing_request"):
        r = owner.post(f"/portal/records/{case_id}/statements", follow_redirects=False,
                       data={"csrf_token": csrf_of(record), "text": INJECT, "contact": INJECT,
                             "kind": kind},
                       files=[("files", (INJECT + ".jpg", JPEG, "image/jpeg"))])
        assert r.status_code == 303, r.text
    html = legal.get(f"/console/cases/{case_id}").text
    sid = [int(x) for x in re.findall(r"/statements/(\d+)/answer", html)]
    assert len(sid) == 2
    for statement_id in sid:
        r = legal.post(f"/console/cases/{case_id}/statements/{statement_id}/answer",
                       follow_redirects=False,
                       data={"csrf_token": csrf_of(html), "response": INJECT})
        assert r.status_code == 303
    r = legal.post(f"/console/cases/{case_id}/hearing", follow_redirects=False, data={
        "csrf_token": csrf_of(html), "summary": INJECT,  # held now: after the request
        "held_utc": datetime.now(UTC).astimezone(CHINA_TZ).strftime("%Y-%m-%dT%H:%M")})
    assert r.status_code == 303, r.text
    past_statement_period(web.sessions, case_id)
    assert act(legal, case_id, "close-statements").status_code == 303
    r = act(boss, case_id, "decision", outcome="reduced", fine_yuan=100, reasons=INJECT)
    assert r.status_code == 303, r.text
    assert act(boss, case_id, "serve", channel="post").status_code == 303
    assert act(boss, case_id, "publish").status_code == 303
    assert case_state(web, case_id)[0] == "published"
    # injected text in query strings and the owner query form, echoed back
    pages = [
        boss.get(f"/console/cases/{case_id}").text,
        boss.get("/console/", params={"lane": INJECT[:16], "site_id": INJECT[:64]}).text,
        owner.get(f"/portal/records/{case_id}").text,
        TestClient(web.app).post("/portal/query", data={
            "plate": INJECT[:16], "plate_colour": "黄", "id_kind": "vin",
            "secret_value": "123456", "csrf_token": "x"}).text,
        TestClient(web.app).get("/portal/disclosures").text,
        boss.get(f"/console/cases/{case_id}/nothing-here").text,
    ]
    for html in pages:
        assert "<script>" not in html and "<img src=x" not in html
    assert pages[0].count("&lt;script&gt;") >= 8  # reasons, statements, answers, decision…
    assert "&lt;script&gt;" in pages[2]
    # the published case is disclosed masked (here: the walk is what publishes it, and the
    # suite's worker processes may run the tests of this module apart)
    _disclosure_is_masked(web)


def test_owner_portal(web: Web) -> None:
    case_id = web.cases[0].id
    boss = login(web, "decision_maker")
    act(login(web, "technical_reviewer"), case_id, "technical-review", verdict="approve")
    act(login(web, "legal_reviewer"), case_id, "legal-review", verdict="approve")
    assert act(boss, case_id, "notify", channel="sms", hearing_right="no").status_code == 303
    assert act(boss, case_id, "serve-notice", delivered=served_now(),
               proof="短信回执").status_code == 303

    def query(secret: str, kind: str = "vin", plate: str = PLATES[0]) -> object:
        client = TestClient(web.app)
        page = client.get("/portal/").text
        r = client.post("/portal/query", follow_redirects=False, data={
            "plate": plate, "plate_colour": "黄", "id_kind": kind, "secret_value": secret,
            "csrf_token": csrf_of(page)})
        return client, r

    _c, wrong = query("000000")
    _c, nobody = query(VIN[-6:], plate="浙J9Z999")
    assert wrong.status_code == nobody.status_code == 200  # type: ignore[attr-defined]
    def shape(text: str) -> str:  # the page less the echoed plate and the fresh CSRF token
        text = re.sub(r'name="csrf_token" value="[0-9a-f]+"', "", text)
        return re.sub(r'name="plate" required maxlength="16" value="[^"]*"', "", text)

    assert "未查询到" in wrong.text  # type: ignore[attr-defined]
    assert shape(wrong.text) == shape(nobody.text)  # type: ignore[attr-defined]
    assert "zc_owner" not in wrong.headers.get("set-cookie", "")  # type: ignore[attr-defined]
    client, ok = query(FILE_NO, kind="file")
    assert ok.status_code == 303  # type: ignore[attr-defined]
    listing = client.get("/portal/records").text  # type: ignore[attr-defined]
    assert f"/portal/records/{case_id}" in listing and "温岭某某物流" not in listing
    page = client.get(f"/portal/records/{case_id}").text  # type: ignore[attr-defined]
    assert "浙江省公路条例" in page and "陈述申辩期限" in page and 'id="form-statement"' in page
    assert "温岭某某物流" not in page and VIN not in page
    photo = client.get(f"/portal/records/{case_id}/files/original/image-front.jpg")  # type: ignore[attr-defined]
    assert photo.status_code == 200 and photo.content.startswith(b"\xff\xd8")
    # the plate close-up of the read made on a photo in the package (one of two reads)
    assert page.count('class="plate-closeup"') == 1 and "号牌特写 1" in page
    closeup = client.get(f"/portal/records/{case_id}/plate-reads/0")  # type: ignore[attr-defined]
    assert closeup.status_code == 200 and closeup.content.startswith(b"\xff\xd8")
    assert client.get(f"/portal/records/{case_id}/plate-reads/1").status_code == 404  # type: ignore[attr-defined]
    assert "最低" not in page  # the recognisers' scores are for reviewers
    assert client.get(f"/portal/records/{case_id}/package").status_code == 200  # type: ignore[attr-defined]
    # another vehicle's case is not reachable with this owner's cookie
    other = web.cases[2].id
    assert client.get(f"/portal/records/{other}").status_code == 404  # type: ignore[attr-defined]
    assert client.get(f"/portal/records/{other}/plate-reads/0").status_code == 404  # type: ignore[attr-defined]
    assert TestClient(web.app).get(f"/portal/records/{case_id}/plate-reads/0").status_code in (
        401, 403, 404)  # no owner session
    # attachments: wrong type and oversize are refused with a clear message
    token = csrf_of(page)
    r = client.post(f"/portal/records/{case_id}/statements",  # type: ignore[attr-defined]
                    data={"csrf_token": token, "text": "说明"},
                    files=[("files", ("a.exe", b"MZ\x90\x00", "application/octet-stream"))])
    assert r.status_code == 422 and "类型不支持" in r.text
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * web.settings.attachment_max_bytes
    r = client.post(f"/portal/records/{case_id}/statements",  # type: ignore[attr-defined]
                    data={"csrf_token": token, "text": "说明"},
                    files=[("files", ("big.png", big, "image/png"))])
    assert r.status_code == 422 and "超过" in r.text
    r = client.post(f"/portal/records/{case_id}/statements",  # type: ignore[attr-defined]
                    data={"csrf_token": "0" * 64, "text": "说明"})
    assert r.status_code == 403
    r = client.post(f"/portal/records/{case_id}/statements",  # type: ignore[attr-defined]
                    follow_redirects=False, data={"csrf_token": token, "text": "车辆空载返程。"},
                    files=[("files", ("证明.jpg", JPEG, "image/jpeg"))])
    assert r.status_code == 303
    page = client.get(f"/portal/records/{case_id}?done=statement").text  # type: ignore[attr-defined]
    assert "车辆空载返程" in page and "证明.jpg" in page and "已提交" in page


def _disclosure_is_masked(web: Web) -> None:
    html = TestClient(web.app).get("/portal/disclosures").text
    with transaction(web.sessions) as s:
        published = s.scalars(select(Case).where(Case.state == "published")).all()
        assert published, "the injection walk publishes one case"
        for case in published:
            assert case.plate is not None
            assert case.plate not in html and case.plate[:2] + "***" in html
    assert "温岭某某物流" not in html and VIN not in html and "13800000000" not in html


def test_registry_and_dashboard(web: Web) -> None:
    client = login(web, "administrator")
    html = client.get("/console/devices").text
    assert "WIM-ZJ-0007" in html and "ZJJL-2025-0456" in html and "有效" in html
    dash = client.get("/console/dashboard").text
    assert "ZJ-G60-K123" in dash and "%" in dash and "正常" in dash
    cases, others = len(web.cases), len(web.lane.others)
    assert others >= 1  # the simulated lane also carried a truck that is not a case
    row = re.search(r"<td>ZJ-G60-K123</td><td>2</td><td>(\d+)</td><td>\d+</td><td>[^<]*</td>"
                    r"<td>(\d+)</td><td>([0-9.]+) %</td>", dash)
    assert row, dash
    assert (int(row[1]), int(row[2])) == (cases + others, cases)
    assert float(row[3]) == pytest.approx(100 * cases / (cases + others), abs=0.05)


def test_queue_filters(web: Web) -> None:
    client = login(web, "auditor")
    all_ids = {c.id for c in web.cases}

    def ids(**params: str) -> set[int]:
        html = client.get("/console/", params=params).text
        return {int(x) for x in re.findall(r'href="/console/cases/(\d+)"', html)}

    assert ids() == all_ids
    assert ids(site_id="ZJ-G60-K123", lane="2") == all_ids
    assert ids(lane="9") == set()
    assert ids(date_from="2026-03-02", date_to="2026-03-02") == all_ids
    assert ids(date_from="2026-03-03") == set()
    state, _v = case_state(web, web.cases[2].id)
    assert web.cases[2].id in ids(state=state)
    assert ids(overdue="1") <= all_ids
    r = client.get("/console/", params={"date_from": "03/02/2026"})
    assert r.status_code == 422 and "起始日期的格式应为 YYYY-MM-DD" in r.text
    r = client.get("/console/", params={"state": "nonsense"})
    assert r.status_code == 422 and "案件状态无效" in r.text


def test_envelope_keeps_every_extreme() -> None:
    rng = np.random.default_rng(5)
    signal = rng.normal(size=10_007)
    signal[1234], signal[8888] = 50.0, -50.0
    xs, ys = svg.envelope(signal, 400)
    assert len(xs) <= 400 and np.all(np.diff(xs) >= 0)
    # reference: the plain per-bucket min and max
    edges = np.linspace(0, signal.size, 201).astype(int)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        inside = (xs >= a) & (xs < b)
        assert ys[inside].max() == signal[a:b].max() and ys[inside].min() == signal[a:b].min()
    short = np.arange(5.0)
    assert svg.envelope(short, 400)[1].tolist() == short.tolist()


def test_figures_refuse_bad_input_and_escape_text() -> None:
    with pytest.raises(ValueError, match="3 loads need 2 spacings"):
        svg.axle_svg([1.0], [1000.0, 2000.0, 3000.0])
    with pytest.raises(svg.WaveformError, match="not a readable npz"):
        svg.load_waveform(b"not an npz")
    buf = io.BytesIO()
    np.savez(buf, samples=np.array([[1.0, np.nan], [2.0, 3.0]]), meta=np.array("{}"))
    with pytest.raises(svg.WaveformError, match="NaN"):
        svg.load_waveform(buf.getvalue())
    samples = np.ones((10, 1))
    figure = svg.waveform_svg(samples, {"channels": [{"name": INJECT}]})
    assert "<script>" not in figure and "&lt;script&gt;" in figure


def test_page_queries_are_rate_limited(tmp_path: Path,
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    web = make_web(tmp_path, shared_lane(tmp_path_factory),
                   owner_query_per_client_per_minute=2, login_per_client_per_minute=2)
    try:
        client = TestClient(web.app)
        page = client.get("/portal/").text
        codes = [client.post("/portal/query", data={
            "plate": PLATES[0], "plate_colour": "黄", "id_kind": "vin",
            "secret_value": "000000", "csrf_token": csrf_of(page)}).status_code
            for _ in range(3)]
        assert codes == [200, 200, 429]
        login_page = client.get("/console/login").text
        codes = [client.post("/console/login", data={
            "username": "nobody", "password": "wrong password!!",
            "csrf_token": csrf_of(login_page)}).status_code for _ in range(3)]
        assert codes == [401, 401, 429]
    finally:
        web.app.state.engine.dispose()


def test_a_plate_whose_province_both_models_chose_is_shown_beside_ppocr_read() -> None:
    """号牌识别记录: where PP-OCRv4 and the plate model's province head chose another
    province together, the reviewer sees PP-OCRv4's read and that plate, marked for checking."""
    from zhichao.service.web.evidence_view import plate_reads
    from zhichao.service.web.pages import HERE, environment

    read = {"camera": "CAM-F", "captured_utc": "2025-06-01T02:03:04Z",
            "box_px": [1.0, 2.0, 30.0, 12.0], "text": "浙A71W58",
            "char_confidences": [0.97] + [0.99] * 6, "plate_model": None}
    joint = {**read, "text": "皖A71W58", "joint_text": "浙A71W58",
             "joint_char_confidences": [0.93] + [0.99] * 6}
    manifest = {"case": {"plate": {"reads": [read, joint]}}}
    rows = plate_reads(manifest)
    assert [r["joint_text"] for r in rows] == [None, "浙A71W58"]
    source = (HERE / "templates" / "case.html").read_text(encoding="utf-8")
    start = source.index("{% if ev.plate_reads %}")
    section = source[start:source.index("{% endif %}", source.index("</table>", start)) + 11]
    html = environment().from_string(section).render(ev={"plate_reads": rows}, case={"id": 1})
    first, second = html.split('class="plate-read"')[1:]
    assert "浙A71W58（最低 0.97）" in first and "综合两个识别模型" not in first
    assert "皖A71W58（最低 0.97）；" in second
    assert ("综合两个识别模型的概率，省份简称最可能为“浙”（号牌 浙A71W58，综合概率 0.93），"
            "需人工核对") in second
