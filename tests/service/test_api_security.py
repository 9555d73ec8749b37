"""Security tests against the real app: sessions, roles, other owners, enumeration, uploads,
injection. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.service.conftest import Api, Sealed, drop_schema, make_api, new_case, versioned
from tests.service.test_api import JPEG, walk_to_notified
from zhichao.common import utc_now
from zhichao.service import accounts, ingest, owners
from zhichao.service.db import transaction
from zhichao.service.errors import RateLimitedError
from zhichao.service.models import Case, CaseHolder, Statement, Vehicle

VIN_A, VIN_B, VIN_C = "LFWADRJF1J1111111", "LSGBL5334HF222222", "LSGBL5334HF333333"
PUBLIC = {"/api/v1/health", "/api/v1/auth/login", "/api/v1/owner/query",
          "/api/v1/public/disclosures"}
OWNER_TOKEN_ROUTES = ("/api/v1/owner/records", "/api/v1/owner/logout")  # X-Owner-Token
V1 = {"expected_version": 1}  # every state-changing call sends the version it saw
SAMPLE_BODIES: dict[str, dict[str, Any]] = {
    "technical-review": {"approve": True, **V1}, "legal-review": {"approve": True, **V1},
    "notify": {"channel": "sms", **V1}, "answer": {"response": "答复"},
    "hearing": {"held_utc": "2026-01-01T00:00:00Z", "summary": "记录"},
    "close-statements": V1, "decision": {"outcome": "warning", "fine_yuan": 0,
                                         "reasons": "理由", **V1},
    "serve": {"channel": "post", **V1}, "publish": V1, "archive": V1,
    "manual-override": {"reason": "人工修正", **V1}, "withdraw": {"reason": "不予立案", **V1},
    "users": {"username": "newuser", "password": "long enough password",
              "display_name_zh": "新用户", "roles": ["auditor"]},
}


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def sec(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        sealed: Sealed) -> Iterator[Api]:
    made = make_api(request.param, tmp_path_factory.mktemp("sec"), sealed,
                    attachment_max_bytes=2000, attachment_max_count=2,
                    owner_query_per_client_per_minute=1000, owner_query_min_duration_ms=60,
                    login_free_failures=1000)  # the login throttle has tests of its own
    with transaction(made.sessions) as s:
        ingest.upsert_vehicle(s, plate="浙A00001", plate_colour="blue", vin=VIN_A,
                              licence_file_number="330100000001", owner_name_zh="张三")
        ingest.upsert_vehicle(s, plate="浙A00002", plate_colour="blue", vin=VIN_B,
                              owner_name_zh="李四", owner_phone="13900000000")
        ingest.upsert_vehicle(s, plate="浙A00003", plate_colour="blue", vin=VIN_C)
    yield made
    if request.param == "postgresql":
        drop_schema(made.client.app.state.engine)
    made.client.app.state.engine.dispose()


def _cases_for(api: Api, plate: str) -> Case:
    case = new_case(api.sessions, api.sealed, plate=plate)
    with transaction(api.sessions) as s:  # stored colour: the sealed package says 黄
        row = s.get(Case, case.id)
        assert row is not None
        vin = s.scalars(select(Vehicle.vin).where(Vehicle.plate == plate,
                                                  Vehicle.plate_colour == "blue")).one()
        row.plate_colour = "blue"  # and the VIN registered under the blue plate (as ingest)
        s.add(CaseHolder(case_id=case.id, vin=vin, bound_utc=utc_now()))
    walk_to_notified(api, case.id, version=2)
    return case


def _routes(api: Api) -> list[tuple[str, str, dict[str, Any]]]:
    schema = api.client.get("/openapi.json").json()
    out = []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            out.append((method.upper(), path, op))
    return out


def _concrete(path: str) -> str:
    return re.sub(r"\{[a-z_]+(:path)?\}", "1", path.replace("{year}", "2026"))


def _body(path: str) -> dict[str, Any] | None:
    last = [p for p in path.split("/") if p and not p.startswith("{")][-1]
    return SAMPLE_BODIES.get(last)


def test_every_route_is_public_staff_or_owner(sec: Api) -> None:
    for _method, path, op in _routes(sec):
        assert path in PUBLIC or "x-roles" in op or path.startswith(OWNER_TOKEN_ROUTES), path


def test_every_staff_route_needs_a_session_and_the_right_role(sec: Api) -> None:
    checked = 0
    for method, path, op in _routes(sec):
        if "x-roles" not in op:
            continue
        url, body = _concrete(path), _body(path)
        for headers in ({}, {"Authorization": "Bearer not-a-token"},
                        {"Authorization": "Basic dXNlcjpwYXNz"}):
            r = sec.client.request(method, url, json=body, headers=headers)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.json()["message_zh"]
        allowed = set(op["x-roles"])
        if not allowed:
            continue
        for role in set(sec.tokens) - allowed:
            r = sec.client.request(method, url, json=body, headers=sec.auth(role))
            assert r.status_code == 403, (method, path, role, r.status_code, r.text)
            assert "角色" in r.json()["message_zh"]
        checked += 1
    assert checked >= 20


def test_owner_routes_need_a_valid_owner_token(sec: Api) -> None:
    case = _cases_for(sec, "浙A00001")
    forged = owners.make_owner_token(
        type(sec.settings)(secret_key="x" * 40),
        owners.OwnerGrant("0" * 16, frozenset({case.id}), int(time.time()) + 600))
    for headers in ({}, {"X-Owner-Token": "abc.def"}, {"X-Owner-Token": forged},
                    {"Authorization": f"Bearer {sec.tokens['decision_maker']}"}):
        for url in (f"/api/v1/owner/records/{case.id}", f"/api/v1/owner/records/{case.id}/package"):
            r = sec.client.get(url, headers=headers)
            assert r.status_code == 401, (url, headers, r.text)
        r = sec.client.post(f"/api/v1/owner/records/{case.id}/statements", headers=headers,
                            data={"text": "x"})
        assert r.status_code == 401
        assert sec.client.post("/api/v1/owner/logout", headers=headers).status_code == 401


def test_another_owners_vin_and_case_are_out_of_reach(sec: Api) -> None:
    case_a = _cases_for(sec, "浙A00001")
    case_b = _cases_for(sec, "浙A00002")
    wrong = sec.client.post("/api/v1/owner/query", json={
        "plate": "浙A00001", "plate_colour": "蓝", "vin_last6": VIN_B[-6:]}).json()
    assert wrong == owners.NOTHING_FOUND
    mine = sec.client.post("/api/v1/owner/query", json={
        "plate": "浙A00001", "plate_colour": "蓝", "vin_last6": VIN_A[-6:]}).json()
    ids = {r["case_id"] for r in mine["records"]}
    assert case_a.id in ids and case_b.id not in ids
    token = {"X-Owner-Token": mine["owner_token"]}
    for url in (f"/api/v1/owner/records/{case_b.id}", f"/api/v1/owner/records/{case_b.id}/package"):
        assert sec.client.get(url, headers=token).status_code == 404
    r = sec.client.post(f"/api/v1/owner/records/{case_b.id}/statements", headers=token,
                        data={"text": "冒充"})
    assert r.status_code == 404
    text = str(mine)
    assert "李四" not in text and "张三" not in text and VIN_B[-6:] not in text
    assert "13900000000" not in text
    by_file = sec.client.post("/api/v1/owner/query", json={
        "plate": "浙A00001", "plate_colour": "蓝", "licence_file_number": "330100000001"}).json()
    assert {r["case_id"] for r in by_file["records"]} == ids


def test_enumeration_answers_are_identical_in_shape_and_timing(sec: Api) -> None:
    _cases_for(sec, "浙A00001")
    queries = {
        "no such vehicle": {"plate": "浙A99999", "plate_colour": "蓝", "vin_last6": "123456"},
        "wrong VIN": {"plate": "浙A00001", "plate_colour": "蓝", "vin_last6": "123456"},
        "wrong colour": {"plate": "浙A00001", "plate_colour": "黄", "vin_last6": VIN_A[-6:]},
        "right VIN, no case": {"plate": "浙A00003", "plate_colour": "蓝",
                               "vin_last6": VIN_C[-6:].lower()},
    }
    bodies, durations = set(), []
    for body in queries.values():
        started = time.perf_counter()
        r = sec.client.post("/api/v1/owner/query", json=body)
        durations.append(time.perf_counter() - started)
        assert r.status_code == 200
        bodies.add((r.content, tuple(sorted((k.lower(), v) for k, v in r.headers.items()
                                            if k.lower() != "date"))))
    assert len(bodies) == 1
    assert min(durations) >= sec.settings.owner_query_min_duration_ms / 1000


def test_plate_alone_or_both_secrets_are_refused(sec: Api) -> None:
    for body in ({"plate": "浙A00001", "plate_colour": "蓝"},
                 {"plate": "浙A00001", "plate_colour": "蓝", "vin_last6": VIN_A[-6:],
                  "licence_file_number": "330100000001"},
                 {"plate": "浙A00001", "vin_last6": VIN_A[-6:]},
                 {"plate": "浙A00001", "plate_colour": "紫", "vin_last6": VIN_A[-6:]},
                 {"plate": "浙A00001", "plate_colour": "蓝", "vin_last6": "%%%%%%"}):
        r = sec.client.post("/api/v1/owner/query", json=body)
        assert r.status_code == 422, body
        assert r.json()["message_zh"].startswith(("输入有误", "请填写", "号牌", "车辆"))


def test_rate_limits_per_client_and_per_plate() -> None:
    ticks = [0.0]
    limiter = owners.RateLimiter(clock=lambda: ticks[0])
    for _ in range(3):
        limiter.hit("client:a", limit=3, window_s=60)
    with pytest.raises(RateLimitedError):
        limiter.hit("client:a", limit=3, window_s=60)
    limiter.hit("client:b", limit=3, window_s=60)
    ticks[0] = 60.5  # the window slides
    limiter.hit("client:a", limit=3, window_s=60)


def test_owner_queries_are_rate_limited_over_http(tmp_path: Any, sealed: Sealed) -> None:
    api = make_api("sqlite", tmp_path, sealed, owner_query_per_client_per_minute=3,
                   owner_query_min_duration_ms=0)
    body = {"plate": "浙A99999", "plate_colour": "蓝", "vin_last6": "123456"}
    codes = [api.client.post("/api/v1/owner/query", json=body).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    assert "频繁" in api.client.post("/api/v1/owner/query", json=body).json()["message_zh"]


def _owner(sec: Api) -> tuple[Case, dict[str, str]]:
    case = _cases_for(sec, "浙A00001")
    mine = sec.client.post("/api/v1/owner/query", json={
        "plate": "浙A00001", "plate_colour": "蓝", "vin_last6": VIN_A[-6:]}).json()
    return case, {"X-Owner-Token": mine["owner_token"]}


@pytest.mark.parametrize(("files", "what"), [
    ([("files", ("big.jpg", JPEG + b"\x00" * 3000, "image/jpeg"))], "超过"),
    ([("files", ("a.jpg", JPEG, "image/jpeg"))] * 3, "最多"),
    ([("files", ("x.jpg", b"<html><script>alert(1)</script>", "image/jpeg"))], "类型"),
    ([("files", ("x.pdf", b"MZ\x90\x00" + b"\x00" * 100, "application/pdf"))], "类型"),
    ([("files", ("empty.png", b"", "image/png"))], "为空"),
])
def test_bad_uploads_are_refused_and_nothing_is_stored(sec: Api, files: list[Any],
                                                       what: str) -> None:
    case, token = _owner(sec)
    r = sec.client.post(f"/api/v1/owner/records/{case.id}/statements", headers=token,
                        data={"text": "陈述"}, files=files)
    assert r.status_code == 422, r.text
    assert what in r.json()["message_zh"]
    with transaction(sec.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Statement)
                        .where(Statement.case_id == case.id)) == 0


def test_oversized_and_malformed_requests(sec: Api) -> None:
    case, token = _owner(sec)
    url = f"/api/v1/owner/records/{case.id}/statements"
    huge = b"\xff\xd8\xff" + b"\x00" * (sec.settings.max_request_bytes + 10)
    r = sec.client.post(url, headers=token, data={"text": "x"},
                        files=[("files", ("h.jpg", huge, "image/jpeg"))])
    assert r.status_code == 413 and r.json()["message_zh"] == "请求内容过大"
    r = sec.client.post(url, headers={**token, "Content-Type": "multipart/form-data; boundary=zz"},
                        content=b"--zz\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nx")
    assert r.status_code in (400, 422), r.text
    r = sec.client.post("/api/v1/owner/query", content=b"{not json",
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["message_zh"].startswith("输入有误")
    r = sec.client.post("/api/v1/auth/login", content=b"\x00\xff" * 10,
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert sec.client.get("/api/v1/cases/99999999999999999999",
                          headers=sec.auth("auditor")).status_code == 422


INJECTIONS = ["'; DROP TABLE cases; --", "\" OR 1=1 --", "<script>alert('x')</script>",
              "<img src=x onerror=alert(1)>", "浙A00001' OR '1'='1", "${7*7}{{7*7}}"]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_in_every_text_field(sec: Api, payload: str) -> None:
    c = sec.client
    with transaction(sec.sessions) as s:
        cases_before = s.scalar(select(func.count()).select_from(Case))
    # Public fields.
    assert c.post("/api/v1/auth/login", json={"username": payload, "password": payload}
                  ).status_code == 401
    for field in ("plate", "plate_colour", "vin_last6", "licence_file_number"):
        body = {"plate": "浙A00001", "plate_colour": "蓝", "vin_last6": VIN_A[-6:]}
        if field == "licence_file_number":
            body.pop("vin_last6")
        body[field] = payload[:16] if field != "vin_last6" else payload[:6]
        r = c.post("/api/v1/owner/query", json=body)
        assert r.status_code in (200, 422), r.text
        assert r.status_code == 422 or r.json() == owners.NOTHING_FOUND
    for params in ({"state": payload[:32]}, {"site_id": payload}):
        r = c.get("/api/v1/cases", params=params, headers=sec.auth("auditor"))
        assert r.status_code in (200, 422)
        assert r.status_code == 422 or r.json()["cases"] == []
    # Stored fields come back verbatim as JSON data, never as markup.
    case, token = _owner(sec)
    r = c.post(f"/api/v1/owner/records/{case.id}/statements", headers=token,
               data={"text": payload, "contact": payload[:100]},
               files=[("files", (payload + ".jpg", JPEG, "image/jpeg"))])
    assert r.status_code == 200, r.text
    detail = c.get(f"/api/v1/cases/{case.id}", headers=sec.auth("legal_reviewer"))
    assert detail.headers["content-type"] == "application/json"
    assert detail.headers["x-content-type-options"] == "nosniff"
    statement = detail.json()["statements"][-1]
    assert statement["text_zh"] == payload.strip()
    assert "/" not in statement["attachments"][0]["filename"]
    r = c.post(f"/api/v1/cases/{case.id}/statements/{statement['id']}/answer",
               headers=sec.auth("legal_reviewer"), json={"response": payload})
    assert r.status_code == 200
    other = new_case(sec.sessions, sec.sealed)
    for url, role, body in (
            (f"/api/v1/cases/{other.id}/manual-override", "station_operator",
             {"reason": payload}),
            (f"/api/v1/cases/{other.id}/technical-review", "technical_reviewer",
             {"approve": False, "reason": payload})):
        r = c.post(url, headers=sec.auth(role), json=versioned(sec, other.id, body))
        assert r.status_code == 200, r.text
    events = c.get(f"/api/v1/cases/{other.id}", headers=sec.auth("auditor")).json()["events"]
    assert events[-1]["reason_zh"] == payload.strip()
    r = c.post("/api/v1/users", headers=sec.auth("administrator"), json={
        "username": payload[:64], "password": "long enough password",
        "display_name_zh": payload[:100], "roles": ["auditor"]})
    assert r.status_code == 422  # usernames are a-z0-9_.- only
    with transaction(sec.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Case)) == cases_before + 2


def test_expired_session_is_refused(sec: Api) -> None:
    from zhichao.service import accounts
    from zhichao.service.models import User
    with transaction(sec.sessions) as s:
        user = s.get(User, sec.users["auditor"].id)
        assert user is not None
        token, _ = accounts.issue_token(s, user, ttl_s=60, now=utc_now() - timedelta(hours=1))
    r = sec.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "失效" in r.json()["message_zh"]


def test_station_operator_sees_only_own_station(sec: Api) -> None:
    own = new_case(sec.sessions, sec.sealed)  # sealed by station S001
    foreign = new_case(sec.sessions, sec.sealed)
    with transaction(sec.sessions) as s:
        row = s.get(Case, foreign.id)
        assert row is not None
        row.station_id = "S002"
    op = sec.auth("station_operator")  # an operator of S001
    listed = {c["id"] for c in sec.client.get("/api/v1/cases", params={"limit": 500},
                                              headers=op).json()["cases"]}
    assert own.id in listed and foreign.id not in listed
    assert sec.client.get(f"/api/v1/cases/{own.id}", headers=op).status_code == 200
    r = sec.client.get(f"/api/v1/cases/{foreign.id}", headers=op)
    assert r.status_code == 403 and "本站点" in r.json()["message_zh"]
    r = sec.client.post(f"/api/v1/cases/{foreign.id}/manual-override", headers=op,
                        json=versioned(sec, foreign.id, {"reason": "修正"}))
    assert r.status_code == 403
    assert sec.client.get(f"/api/v1/cases/{own.id}/package", headers=op).status_code == 403


def test_logins_are_rate_limited(tmp_path: Any, sealed: Sealed) -> None:
    roles = len(accounts.ROLES_ZH)
    api = make_api("sqlite", tmp_path, sealed, login_per_client_per_minute=roles + 2)
    # make_api itself logged in one user per role; two more attempts are allowed.
    codes = [api.client.post("/api/v1/auth/login", json={"username": "nobody",
                                                         "password": "wrong password"}
                             ).status_code for _ in range(4)]
    assert codes == [401, 401, 429, 429]


def test_package_downloads_never_serve_markup(sealed: Sealed, tmp_path: Any) -> None:
    import json
    import shutil

    copy_dir = tmp_path / "pkg"
    shutil.copytree(sealed.directory, copy_dir)
    manifest = json.loads((copy_dir / "manifest.json").read_bytes())
    photo = next(f for f in manifest["files"] if f["role"].startswith("image_"))
    photo["media_type"] = "text/html"  # a hostile or broken manifest
    (copy_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    case = Case(package_id='x"; <script>', package_path=str(copy_dir))
    assert owners.package_zip(case)[0] == "x____script_.zip"
    assert owners.package_file(case, photo["path"])[0] == "application/octet-stream"


def test_control_characters_in_stored_fields_are_refused(sec: Api) -> None:
    case, token = _owner(sec)
    url = f"/api/v1/owner/records/{case.id}/statements"
    for data in ({"text": "陈述", "contact": "138\x000000"}, {"text": "陈述\x00", "contact": "x"},
                 {"text": "陈述", "contact": "a\nb"}):
        r = sec.client.post(url, headers=token, data=data)
        assert r.status_code == 422 and "控制字符" in r.json()["message_zh"], (data, r.text)
    r = sec.client.post(url, headers=token, data={"text": "第一行\n第二行\t完", "contact": "138"})
    assert r.status_code == 200, r.text
    r = sec.client.get("/api/v1/cases", params={"site_id": "S\x00"}, headers=sec.auth("auditor"))
    assert r.status_code == 422 and r.json()["message_zh"] == "地址中含有非法控制字符"
