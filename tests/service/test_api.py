"""The JSON API end to end: staff walk a case through every step; an owner queries, views,
downloads and files a statement; 公示 and statistics."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta

from tests.service.conftest import Api, new_case, versioned
from zhichao.common import utc_now
from zhichao.service import ingest
from zhichao.service.db import transaction
from zhichao.service.models import Case

VIN = "LFWADRJF1J1234567"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200


def _vehicle(api: Api, plate: str = "浙J12345") -> None:
    with transaction(api.sessions) as s:
        ingest.upsert_vehicle(s, plate=plate, plate_colour="黄", vin=VIN,
                              licence_file_number="330100123456",
                              owner_name_zh="温岭某某物流有限公司",
                              owner_phone="13800000000")


def walk_to_notified(api: Api, case_id: int, version: int = 1) -> dict:
    c = api.client
    r = c.post(f"/api/v1/cases/{case_id}/technical-review", headers=api.auth("technical_reviewer"),
               json={"approve": True, "expected_version": version})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "legal_review" and r.json()["version"] == version + 1
    r = c.post(f"/api/v1/cases/{case_id}/legal-review", headers=api.auth("legal_reviewer"),
               json={"approve": True, "expected_version": version + 1})
    assert r.status_code == 200, r.text
    r = c.post(f"/api/v1/cases/{case_id}/notify", headers=api.auth("decision_maker"),
               json=versioned(api, case_id, {"channel": "sms", "hearing_right": True}))
    assert r.status_code == 200, r.text
    r = c.post(f"/api/v1/cases/{case_id}/serve-notice", headers=api.auth("decision_maker"),
               json=versioned(api, case_id, {"delivered_utc": utc_now().isoformat(),
                                             "proof": "短信回执"}))
    assert r.status_code == 200, r.text  # the periods run from service (Art. 44, 64)
    return r.json()


def owner_login(api: Api, plate: str = "浙J12345") -> dict:
    r = api.client.post("/api/v1/owner/query", json={"plate": plate, "plate_colour": "黄",
                                                      "vin_last6": VIN[-6:]})
    assert r.status_code == 200, r.text
    return r.json()


def test_staff_walk_and_owner_portal(api: Api) -> None:
    plate = "浙J1A001"
    _vehicle(api, plate)
    case = new_case(api.sessions, api.sealed, plate=plate)
    c = api.client
    queue = c.get("/api/v1/cases", params={"state": "technical_review"},
                  headers=api.auth("technical_reviewer")).json()["cases"]
    assert case.id in [q["id"] for q in queue]
    detail = c.get(f"/api/v1/cases/{case.id}", headers=api.auth("auditor")).json()
    assert detail["state_zh"] == "待技术审核" and detail["events"] == []
    notified = walk_to_notified(api, case.id)
    assert notified["state"] == "notified" and notified["statement_due"]

    # The owner: query, view, photos, package, statement with an attachment.
    answer = owner_login(api, plate)
    assert [r["case_id"] for r in answer["records"]] == [case.id]
    record = answer["records"][0]
    assert record["weights"]["gross_weight_kg"] == 62000.0
    assert record["legal_basis_zh"] and record["photos"]
    assert "温岭某某物流" not in json.dumps(answer, ensure_ascii=False)  # no personal data
    owner = {"X-Owner-Token": answer["owner_token"]}
    photo = c.get(f"/api/v1/owner/records/{case.id}/files/{record['photos'][0]}", headers=owner)
    assert photo.status_code == 200 and photo.content.startswith(b"\xff\xd8")
    pkg = c.get(f"/api/v1/owner/records/{case.id}/package", headers=owner)
    assert pkg.status_code == 200 and pkg.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(pkg.content)).namelist()
    assert any(n.endswith("manifest.json") for n in names)
    r = c.post(f"/api/v1/owner/records/{case.id}/statements", headers=owner,
               data={"text": "当日车辆为空载返程，请复核。", "kind": "statement"},
               files=[("files", ("发票.jpg", JPEG, "image/jpeg"))])
    assert r.status_code == 200, r.text
    r = c.post(f"/api/v1/owner/records/{case.id}/statements", headers=owner,
               data={"text": "申请听证", "kind": "hearing_request"})
    assert r.status_code == 200, r.text

    # Staff see the statement, answer it; the hearing is held; decide, serve, publish.
    detail = c.get(f"/api/v1/cases/{case.id}", headers=api.auth("legal_reviewer")).json()
    assert detail["statements"][0]["attachments"][0]["media_type"] == "image/jpeg"
    for st in detail["statements"]:
        r = c.post(f"/api/v1/cases/{case.id}/statements/{st['id']}/answer",
                   headers=api.auth("legal_reviewer"), json={"response": "已复核"})
        assert r.status_code == 200, r.text
    r = c.post(f"/api/v1/cases/{case.id}/close-statements", headers=api.auth("legal_reviewer"),
               json=versioned(api, case.id, {}))
    assert r.status_code == 409 and "期限" in r.json()["message_zh"]  # periods still running
    # Move the deadlines into the past (as if the periods had run) to continue the walk.
    with transaction(api.sessions) as s:
        row = s.get(Case, case.id)
        assert row is not None
        today = utc_now().date()
        row.statement_due = row.hearing_request_due = today - timedelta(days=30)
    r = c.post(f"/api/v1/cases/{case.id}/hearing", headers=api.auth("legal_reviewer"),
               json={"held_utc": utc_now().isoformat(),  # after the request, not before
                     "summary": "当事人到场"})
    assert r.status_code == 200, r.text
    r = c.post(f"/api/v1/cases/{case.id}/close-statements", headers=api.auth("legal_reviewer"),
               json=versioned(api, case.id, {}))
    assert r.status_code == 200, r.text
    v = r.json()["version"]
    r = c.post(f"/api/v1/cases/{case.id}/decision", headers=api.auth("decision_maker"),
               json={"outcome": "reduced", "fine_yuan": 300, "reasons": "首次违法，减轻处罚",
                     "expected_version": v})
    assert r.status_code == 200, r.text
    r = c.post(f"/api/v1/cases/{case.id}/decision", headers=api.auth("decision_maker"),
               json={"outcome": "fine", "fine_yuan": 300, "reasons": "再次决定",
                     "expected_version": v})
    assert r.status_code == 409  # stale version: nobody decides twice
    assert c.post(f"/api/v1/cases/{case.id}/serve", headers=api.auth("decision_maker"),
                  json=versioned(api, case.id, {"channel": "post"})).status_code == 200
    assert c.post(f"/api/v1/cases/{case.id}/publish", headers=api.auth("decision_maker"),
                  json=versioned(api, case.id, {})).status_code == 200
    public = c.get("/api/v1/public/disclosures").json()["disclosures"]
    mine = [p for p in public if p["case_id"] == case.id]
    assert mine and mine[0]["plate_masked"] == "浙J***01" and mine[0]["fine_yuan"] == 300
    assert "温岭某某" not in json.dumps(public, ensure_ascii=False)
    assert VIN[-6:] not in json.dumps(public)

    # Every view of evidence is in the audit log, and the chain verifies.
    entries = c.get("/api/v1/audit", params={"limit": 1000},
                    headers=api.auth("auditor")).json()["entries"]
    views = [e for e in entries
             if e["action"] == "evidence.view" and e["object_id"] == str(case.id)]
    assert {e["detail"].get("what") for e in views} >= {"case", "package", record["photos"][0]}
    assert any(e["actor"].startswith("owner:") for e in views)
    assert c.get("/api/v1/audit/verify", headers=api.auth("auditor")).json()["ok"] is True


def test_statistics_json_and_csv(api: Api) -> None:
    year = utc_now().year
    r = api.client.get(f"/api/v1/statistics/{year}", headers=api.auth("auditor"))
    assert r.status_code == 200
    figures = r.json()["figures"]
    assert set(figures) >= {"decisions", "fines_yuan", "technical_reviews", "legal_rejections",
                            "statements", "hearing_requests", "decisions_fine"}
    csv = api.client.get(f"/api/v1/statistics/{year}", params={"format": "csv"},
                         headers=api.auth("decision_maker"))
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0] == "year,metric,label_zh,value" and len(lines) == len(figures) + 1
    assert any(",罚款金额合计（元）," in line for line in lines)


def test_login_logout_and_expiry(api: Api) -> None:
    c = api.client
    user = api.users["auditor"]
    bad = c.post("/api/v1/auth/login", json={"username": user.username, "password": "x" * 12})
    unknown = c.post("/api/v1/auth/login", json={"username": "nobody", "password": "x" * 12})
    assert bad.status_code == unknown.status_code == 401
    assert bad.json() == unknown.json()  # no hint which one was wrong
    r = c.post("/api/v1/auth/login", json={"username": user.username,
                                           "password": "correct horse battery staple"})
    token = r.json()["token"]
    h = {"Authorization": f"Bearer {token}"}
    assert c.get("/api/v1/me", headers=h).json()["roles"] == ["auditor"]
    assert c.post("/api/v1/auth/logout", headers=h).status_code == 200
    assert c.get("/api/v1/me", headers=h).status_code == 401
