"""The supervision routes of the JSON API: roles from the duties table, a campaign through
the API (open, add, score, refusals in zh-CN, close, report as JSON/CSV/PDF), statistics
refused for an unfinished month, typical cases exported masked; every action audited."""

from __future__ import annotations

from sqlalchemy import select

from tests.service.conftest import Api, new_case
from tests.service.test_supervision import ALL_MET, decide_case, pdf_text
from zhichao.service import duties, supervision
from zhichao.service.db import transaction
from zhichao.service.models import AuditEntry

BASE = "/api/v1/supervision"


def test_supervision_routes_carry_their_duties(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    ops = {(m, p): op for p, o in schema["paths"].items() for m, op in o.items()
           if p.startswith(BASE)}
    assert ops[("post", BASE + "/campaigns")]["x-roles"] == ["supervisor"]
    score = ops[("post", BASE + "/campaigns/{campaign_id}/scores")]
    assert score["x-separation"] == ["handled"]
    assert score["x-legal-source"] == duties.SUPERVISION_DUTIES["score"].source_zh
    r = api.client.post(BASE + "/campaigns", headers=api.auth("decision_maker"),
                        json={"title": "x", "period_start": "2025-01-01",
                              "period_end": "2025-12-31", "reviewer_ids": [1]})
    assert r.status_code == 403 and "角色" in r.json()["message_zh"]


def test_campaign_through_the_api(api: Api) -> None:
    for _ in range(11):
        new_case(api.sessions, api.sealed)
    chief, legal = api.auth("supervisor"), api.auth("legal_reviewer")
    legal_id = api.users["legal_reviewer"].id
    r = api.client.post(BASE + "/campaigns", headers=chief, json={
        "title": "接口评查", "period_start": "2025-01-01", "period_end": "2025-12-31",
        "reviewer_ids": [legal_id], "seed": "api-seed-0001"})
    assert r.status_code == 200, r.text
    campaign = r.json()
    assert len(campaign["sample"]) == 10 and campaign["seed"] == "api-seed-0001"
    cid = campaign["id"]
    r = api.client.post(f"{BASE}/campaigns/{cid}/scores", headers=legal, json={
        "case_id": campaign["sample"][0]["case_id"],
        "checklist": dict(ALL_MET, **{"law.basis": False})})
    assert r.status_code == 422 and "问题" in r.json()["message_zh"]
    r = api.client.post(f"{BASE}/campaigns/{cid}/close", headers=chief)
    assert r.status_code == 409 and "未经全部评查人员评分" in r.json()["message_zh"]
    for i, row in enumerate(campaign["sample"]):
        checklist = dict(ALL_MET, **{"law.basis": i != 0})
        r = api.client.post(f"{BASE}/campaigns/{cid}/scores", headers=legal, json={
            "case_id": row["case_id"], "checklist": checklist,
            "problems": "条款引用不全" if i == 0 else None,
            "correction": "补正决定书依据" if i == 0 else None})
        assert r.status_code == 200, r.text
    assert r.json()["total"] == 100 and r.json()["grade_zh"] == "优秀"
    r = api.client.post(f"{BASE}/campaigns/{cid}/close", headers=chief)
    assert r.status_code == 200 and r.json()["report_sha256"]
    report = api.client.get(f"{BASE}/campaigns/{cid}/report", headers=legal).json()
    assert report["draft"] is False and report["problems_by_kind"][0]["item"] == "law.basis"
    csv_text = api.client.get(f"{BASE}/campaigns/{cid}/report?format=csv", headers=legal).text
    assert "补正决定书依据" in csv_text
    pdf = api.client.get(f"{BASE}/campaigns/{cid}/report?format=pdf", headers=legal)
    assert pdf.headers["content-type"] == "application/pdf"
    assert "条款引用不全" in pdf_text(pdf.content)
    with transaction(api.sessions) as s:
        actions = set(s.scalars(select(AuditEntry.action).where(
            AuditEntry.object_id == str(cid), AuditEntry.object_type == "campaign")))
    assert actions == {"supervision.campaign_opened", "supervision.case_scored",
                       "supervision.campaign_closed"}


def test_statistics_and_typical_cases(api: Api) -> None:
    boss = api.auth("decision_maker")
    r = api.client.get(f"{BASE}/statistics/2100/12", headers=boss)
    assert r.status_code == 409 and "起提供" in r.json()["message_zh"]
    r = api.client.get(f"{BASE}/statistics/2025/6?format=csv", headers=boss)
    assert r.status_code == 200 and r.text.startswith("period,scope,metric")
    r = api.client.get(f"{BASE}/annual/2025", headers=api.auth("supervisor"))
    assert r.status_code == 200 and len(r.json()["months"]) == 12
    assert api.client.get(f"{BASE}/annual/2025", headers=api.auth(
        "technical_reviewer")).status_code == 403
    case = new_case(api.sessions, api.sealed, plate="浙C77777")
    decide_case(api.sessions, case.id, api.users["technical_reviewer"],
                api.users["legal_reviewer"], api.users["decision_maker"])
    chief = api.auth("supervisor")
    r = api.client.post(f"{BASE}/typical/{case.id}", headers=chief,
                        json={"title": "典型", "summary": "浙C77777 超限"})
    assert r.status_code == 422 and "号牌" in r.json()["message_zh"]
    r = api.client.post(f"{BASE}/typical/{case.id}", headers=chief,
                        json={"title": "六轴车超限", "summary": "六轴货车超限，依法处罚。"})
    assert r.status_code == 200, r.text
    listing = api.client.get(f"{BASE}/typical?format=csv", headers=chief).text
    assert "六轴货车超限" in listing and "77777" not in listing
    assert supervision.MIN_SAMPLE == 10
