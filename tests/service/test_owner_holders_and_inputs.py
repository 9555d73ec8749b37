"""Review fixes of the owner query, the portal and input checks, end to end (API, console
and portal pages on one app), on SQLite and PostgreSQL:

* a plate that passes to another vehicle: each holder sees only the cases registered
  under their own VIN, the former holder keeps theirs (``CaseHolder``);
* a plate typed in full-width characters or with another middle dot is found;
* times and dates of year 1 or 9999 give a zh-CN 422 (an HTML page on the console), no 500;
* a refused portal statement shows the record page again with the text kept; CRLF counts
  as one character;
* validation messages name fields in Chinese.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.service.conftest import (
    PASSWORD,
    Api,
    Sealed,
    drop_schema,
    make_api,
    new_case,
    versioned,
)
from tests.service.test_api import walk_to_notified
from tests.service.test_web_common import csrf_of
from zhichao.common import utc_now
from zhichao.service import ingest, owners
from zhichao.service.db import transaction
from zhichao.service.inputs import FIELDS_ZH
from zhichao.service.models import Case, CaseHolder

VIN_A, VIN_B = "LFWADRJF1J75H0A17", "LSGBL5334HF5H0B02"
FILE_A, FILE_B = "330100500001", "330100500002"
ID_NUMBER = "330102199001011234"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         sealed: Sealed) -> Iterator[Api]:
    made = make_api(request.param, tmp_path_factory.mktemp("site"), sealed, console=True,
                    statement_max_chars=40, owner_query_per_client_per_minute=10_000,
                    owner_query_per_plate_per_hour=10_000)
    yield made
    engine = made.client.app.state.engine
    if request.param == "postgresql":
        drop_schema(engine)
    engine.dispose()


def _register(site: Api, plate: str, vin: str, file_no: str) -> None:
    with transaction(site.sessions) as s:
        ingest.upsert_vehicle(s, plate=plate, plate_colour="黄", vin=vin,
                              licence_file_number=file_no)


def _notified(site: Api, plate: str) -> Case:
    case = new_case(site.sessions, site.sealed, plate=plate)
    walk_to_notified(site, case.id)
    return case


def _query(site: Api, plate: str, **secret: str) -> dict[str, Any]:
    r = site.client.post("/api/v1/owner/query",
                         json={"plate": plate, "plate_colour": "黄", **secret})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _ids(answer: dict[str, Any]) -> list[int]:
    return [r["case_id"] for r in answer["records"]]


# ---- 1. a plate passed to another vehicle ------------------------------------------------

def test_each_holder_of_a_plate_sees_only_the_cases_of_their_own_vehicle(site: Api) -> None:
    plate = "浙J5H001"
    _register(site, plate, VIN_A, FILE_A)
    old = _notified(site, plate)
    first = _query(site, plate, vin_last6=VIN_A[-6:])
    assert _ids(first) == [old.id]
    token_a = {"X-Owner-Token": first["owner_token"]}
    r = site.client.post(f"/api/v1/owner/records/{old.id}/statements", headers=token_a,
                         data={"text": f"身份证 {ID_NUMBER}", "kind": "statement"})
    assert r.status_code == 200, r.text

    _register(site, plate, VIN_B, FILE_B)  # the registry: the plate now on another vehicle
    new = _notified(site, plate)
    for secret in ({"vin_last6": VIN_B[-6:]}, {"licence_file_number": FILE_B}):
        answer = _query(site, plate, **secret)
        assert _ids(answer) == [new.id], secret  # not the former holder's case
        assert ID_NUMBER not in json.dumps(answer, ensure_ascii=False)
        token_b = {"X-Owner-Token": answer["owner_token"]}
        assert site.client.get(f"/api/v1/owner/records/{old.id}",
                               headers=token_b).status_code == 404
    # the former holder still finds their own case with their VIN (their 行驶证 file
    # number is no longer on record: the registry row holds the new holder's)
    again = _query(site, plate, vin_last6=VIN_A[-6:])
    assert _ids(again) == [old.id]
    assert again["records"][0]["statements"][0]["text_zh"] == f"身份证 {ID_NUMBER}"
    assert _query(site, plate, licence_file_number=FILE_A) == owners.NOTHING_FOUND
    r = site.client.get(f"/api/v1/owner/records/{old.id}", headers=token_a)
    assert r.status_code == 200, r.text  # the token from before the re-import still works

    # the portal: the new holder's list holds only their case
    portal = TestClient(site.client.app)
    page = portal.get("/portal/").text
    r = portal.post("/portal/query", follow_redirects=False, data={
        "plate": plate, "plate_colour": "黄", "id_kind": "vin", "secret_value": VIN_B[-6:],
        "csrf_token": csrf_of(page)})
    assert r.status_code == 303, r.text
    listing = portal.get("/portal/records").text
    assert f"/portal/records/{new.id}" in listing and f"/portal/records/{old.id}" not in listing
    assert portal.get(f"/portal/records/{old.id}").status_code == 404


def test_cases_registered_before_the_registry_knew_the_plate_are_bound_once(
        site: Api) -> None:
    plate = "浙J5H002"
    early = new_case(site.sessions, site.sealed, plate=plate)
    _register(site, plate, VIN_A, FILE_A)  # first import: the plate's cases are VIN A's
    _register(site, plate, VIN_B, FILE_B)  # re-import: they stay VIN A's
    late = new_case(site.sessions, site.sealed, plate=plate)
    with transaction(site.sessions) as s:
        vins = dict(s.execute(select(CaseHolder.case_id, CaseHolder.vin).where(
            CaseHolder.case_id.in_([early.id, late.id]))).tuples().all())
        assert vins == {early.id: VIN_A, late.id: VIN_B}


# ---- 8. plates typed in full width or with another middle dot ----------------------------

@pytest.mark.parametrize("typed", ["浙Ｊ５Ｈ００３", "浙J・5H003", "浙J·5H003", "浙J．5H003",
                                   "浙j 5h003", "浙Ｊ\u30005H003"])
def test_a_plate_typed_in_full_width_or_with_any_middle_dot_is_found(site: Api,
                                                                      typed: str) -> None:
    plate = "浙J5H003"
    with transaction(site.sessions) as s:
        known = s.scalars(select(Case.id).where(Case.plate == plate)).first()
    if known is None:
        _register(site, plate, VIN_A, FILE_A)
        known = _notified(site, plate).id
    assert ingest.normalise_plate(typed) == plate
    assert _ids(_query(site, typed, vin_last6=VIN_A[-6:])) == [known]


# ---- 2. times and dates out of any plausible range --------------------------------------

@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00"])
def test_far_times_in_the_api_are_a_zh_422_not_a_500(site: Api, when: str) -> None:
    plate = "浙J5H004"
    r = site.client.post("/api/v1/owner/query", json={
        "plate": plate, "plate_colour": "黄", "vin_last6": VIN_A[-6:], "after": f"{when}~1"})
    assert r.status_code == 422 and r.json()["message_zh"] == "翻页参数有误，请重新查询"
    for action, role, body, label in (
            ("hearing", "legal_reviewer", {"held_utc": when, "summary": "听证"}, "听证时间"),
            ("serve", "decision_maker", {"channel": "post", "served_utc": when}, "送达时间"),
            ("serve-notice", "decision_maker", {"delivered_utc": when, "proof": "回执"},
             "送达时间")):
        r = site.client.post(f"/api/v1/cases/1/{action}", json=body, headers=site.auth(role))
        assert r.status_code == 422, (action, r.text)
        assert f"{label}须在 2000 年至 2100 年之间" in r.json()["message_zh"], r.text
    r = site.client.post("/api/v1/supervision/campaigns", headers=site.auth("supervisor"),
                         json={"title": "评查", "period_start": "0001-01-01",
                               "period_end": "9999-12-31",
                               "reviewer_ids": [site.users["supervisor"].id]})
    assert r.status_code == 422, r.text
    assert "评查期间开始日期须在 2000 年至 2100 年之间" in r.json()["message_zh"]


def _staff_page_client(site: Api, role: str) -> TestClient:
    client = TestClient(site.client.app)
    page = client.get("/console/login").text
    r = client.post("/console/login", follow_redirects=False, data={
        "username": site.users[role].username, "password": PASSWORD,
        "csrf_token": csrf_of(page), "next": "/console/"})
    assert r.status_code == 303, r.text
    return client


def test_far_times_on_the_console_are_a_zh_page_not_a_500(site: Api) -> None:
    case = new_case(site.sessions, site.sealed, plate="浙J5H005")
    legal = _staff_page_client(site, "legal_reviewer")
    for role, path, data, text in (
            ("legal_reviewer", "hearing", {"held_utc": "0001-01-01T00:00", "summary": "听证"},
             "听证时间"),
            ("decision_maker", "serve-notice", {"delivered": "0001-01-01T00:00",
                                                "proof": "回执", "expected_version": "1"},
             "送达时间")):
        client = _staff_page_client(site, role)
        token = csrf_of(client.get(f"/console/cases/{case.id}").text)
        r = client.post(f"/console/cases/{case.id}/{path}", follow_redirects=False,
                        data={"csrf_token": token, **data})
        assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
        assert f"{text}须在 2000 年至 2100 年之间" in r.text, r.text
    for query, text in (({"date_from": "0001-01-01"}, "起始日期"),
                        ({"date_to": "9999-12-31"}, "截止日期")):
        r = legal.get("/console/", params=query)
        assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
        assert f"{text}须在 2000 年至 2100 年之间" in r.text
    boss = _staff_page_client(site, "supervisor")
    page = boss.get("/console/supervision").text
    r = boss.post("/console/supervision/campaigns", follow_redirects=False, data={
        "csrf_token": csrf_of(page), "title": "评查", "period_start": "0001-01-01",
        "period_end": "9999-12-31", "reviewer_ids": str(site.users["supervisor"].id)})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "评查期间开始日期须在 2000 年至 2100 年之间" in r.text


# ---- 6. a refused portal statement keeps what the owner typed -----------------------------

def _portal(site: Api, plate: str, vin: str) -> TestClient:
    portal = TestClient(site.client.app)
    page = portal.get("/portal/").text
    r = portal.post("/portal/query", follow_redirects=False, data={
        "plate": plate, "plate_colour": "黄", "id_kind": "vin", "secret_value": vin[-6:],
        "csrf_token": csrf_of(page)})
    assert r.status_code == 303, r.text
    return portal


def test_a_refused_portal_statement_keeps_the_text_beside_the_reason(site: Api) -> None:
    plate = "浙J5H006"
    _register(site, plate, VIN_A, FILE_A)
    case = _notified(site, plate)
    portal = _portal(site, plate, VIN_A)
    record = portal.get(f"/portal/records/{case.id}").text
    typed = "当日空载返程，" * 10  # 70 characters, the limit is 40
    r = portal.post(f"/portal/records/{case.id}/statements", follow_redirects=False,
                    data={"csrf_token": csrf_of(record), "text": typed, "contact": "138号",
                          "kind": "statement"},
                    files=[("files", ("发票.jpg", JPEG, "image/jpeg"))])
    assert r.status_code == 422 and 'id="form-statement"' in r.text  # the record page
    assert f">{typed}</textarea>" in r.text and 'value="138号"' in r.text
    assert 'id="statement-error"' in r.text and "陈述申辩内容不得超过 40 个字符" in r.text
    assert "重新选择" in r.text  # the chosen file could not be kept
    with transaction(site.sessions) as s:
        assert s.get(Case, case.id).state == "notified"  # type: ignore[union-attr]
    # CRLF from the browser counts as one character, as the textarea's maxlength does
    lines = "\r\n".join(["第一行"] * 10)  # 30 + 9 line breaks = 39 characters
    r = portal.post(f"/portal/records/{case.id}/statements", follow_redirects=False,
                    data={"csrf_token": csrf_of(record), "text": lines, "kind": "statement"})
    assert r.status_code == 303, r.text
    # an empty text: the zh-CN reason, no English field name
    r = portal.post(f"/portal/records/{case.id}/statements", follow_redirects=False,
                    data={"csrf_token": csrf_of(record), "text": "", "kind": "statement"})
    assert r.status_code == 422 and "请填写陈述申辩内容" in r.text and "text" not in \
        r.text.split('id="statement-error"')[1].split("</p>")[0]


def test_an_expired_owner_token_still_shows_the_typed_text(site: Api) -> None:
    portal = TestClient(site.client.app)
    r = portal.post("/portal/records/1/statements", follow_redirects=False,
                    data={"csrf_token": "0" * 64, "text": "请复核称重数据", "kind": "statement"})
    assert r.status_code == 401 and ">请复核称重数据</textarea>" in r.text


# ---- 7. fields named in Chinese ----------------------------------------------------------

def test_validation_messages_name_fields_in_chinese(site: Api) -> None:
    r = site.client.post("/api/v1/cases/1/statements/1/answer", json={},
                         headers=site.auth("legal_reviewer"))
    assert r.status_code == 422 and r.json()["message_zh"] == "输入有误：请填写答复内容"
    assert r.json()["fields"] == ["body.response"]
    legal = _staff_page_client(site, "legal_reviewer")
    case = new_case(site.sessions, site.sealed, plate="浙J5H007")
    token = csrf_of(legal.get(f"/console/cases/{case.id}").text)
    for path, data, text in (
            ("statements/1/answer", {}, "请填写答复内容"),
            ("waive", {"scope": "all", "expected_version": "1"}, "请填写当事人放弃权利的记录"),
            ("decision", {"outcome": "fine", "fine_yuan": "1", "reasons": "x"},
             "请填写案件版本号"),
            ("serve-notice", {"expected_version": "1", "delivered": "2026-12-01T10:00"},
             "请填写送达凭证")):
        r = legal.post(f"/console/cases/{case.id}/{path}", follow_redirects=False,
                       data={"csrf_token": token, **data})
        assert r.status_code == 422 and text in r.text, (path, r.text[-600:])
        message = r.text.split('id="error-message">')[1].split("</p>")[0]
        assert not any(ch.isascii() and ch.isalpha() for ch in message), message


def test_every_field_a_route_takes_has_a_chinese_label(site: Api) -> None:
    missing = set()
    for route in site.client.app.routes:
        if not isinstance(route, APIRoute):
            continue
        dependant = route.dependant
        params = [*dependant.body_params, *dependant.query_params]
        for dep in dependant.dependencies:
            params += [*dep.body_params, *dep.query_params]
        for param in params:
            annotation = getattr(param.field_info, "annotation", None)
            fields = getattr(annotation, "model_fields", None)
            names = list(fields) if fields else [param.name]
            missing |= {n for n in names if n not in FIELDS_ZH}
    assert missing == set()


def test_serving_a_decision_before_it_was_made_is_refused(site: Api) -> None:
    plate = "浙J5H008"
    _register(site, plate, VIN_A, FILE_A)
    case = _notified(site, plate)
    with transaction(site.sessions) as s:
        row = s.get(Case, case.id)
        assert row is not None
        row.statement_due = row.hearing_request_due = utc_now().date() - timedelta(days=30)
    c, boss = site.client, site.auth("decision_maker")
    r = c.post(f"/api/v1/cases/{case.id}/close-statements",
               headers=site.auth("legal_reviewer"), json=versioned(site, case.id, {}))
    assert r.status_code == 200, r.text
    r = c.post(f"/api/v1/cases/{case.id}/decision", headers=boss, json=versioned(site, case.id, {
        "outcome": "warning", "fine_yuan": 0, "reasons": "首次违法"}))
    assert r.status_code == 200, r.text
    for served, text in ((utc_now() - timedelta(days=1), "不得早于作出决定的时间"),
                         (utc_now() + timedelta(hours=1), "不得晚于当前时间")):
        r = c.post(f"/api/v1/cases/{case.id}/serve", headers=boss,
                   json=versioned(site, case.id,
                                  {"channel": "post", "served_utc": served.isoformat()}))
        assert r.status_code == 422 and text in r.json()["message_zh"], r.text
    r = c.post(f"/api/v1/cases/{case.id}/serve", headers=boss,
               json=versioned(site, case.id,
                              {"channel": "post", "served_utc": utc_now().isoformat()}))
    assert r.status_code == 200, r.text


def test_two_holders_whose_vins_end_alike_get_one_holders_cases_per_answer(
        site: Api) -> None:
    plate = "浙J5H009"
    vin_c = VIN_A[:-7] + "X" + VIN_A[-6:]  # another vehicle, the same last six
    assert vin_c != VIN_A and vin_c[-6:] == VIN_A[-6:]
    _register(site, plate, VIN_A, FILE_A)
    first = _notified(site, plate)
    _register(site, plate, vin_c, FILE_B)
    second = _notified(site, plate)
    answer = _query(site, plate, vin_last6=VIN_A[-6:])
    shown = _ids(answer)
    assert shown in ([first.id], [second.id])  # never both holders' cases at once
    token = {"X-Owner-Token": answer["owner_token"]}
    for case_id in shown:
        assert site.client.get(f"/api/v1/owner/records/{case_id}",
                               headers=token).status_code == 200
