"""A case walked through the HTTP API from outside the process (issue 17 item 7): review,
notify, serve the notice with its date, statement, waiver (行政处罚法 Art. 62), decide,
serve, publish (Art. 48), revoke and withdraw, the 抄告 outbox (62号令 Art. 44), the
served PDFs (Art. 44, 59) and retention (个人信息保护法 Art. 19); SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pypdfium2 as pdfium

from tests.service.conftest import Api, new_case, versioned
from tests.service.test_api import _vehicle, owner_login
from zhichao.common import utc_now


def post(api: Api, role: str, case_id: int, action: str, body: dict[str, Any],
         status: int = 200) -> dict[str, Any]:
    stateful = "/" not in action and action != "hearing"  # these send the version seen
    r = api.client.post(f"/api/v1/cases/{case_id}/{action}", headers=api.auth(role),
                        json=versioned(api, case_id, body) if stateful else body)
    assert r.status_code == status, (action, r.text)
    answer: dict[str, Any] = r.json()
    return answer


def pdf_text(data: bytes) -> str:
    document = pdfium.PdfDocument(data)
    try:
        return "".join(document[i].get_textpage().get_text_range()
                       for i in range(len(document)))
    finally:
        document.close()


def reviewed_and_notified(api: Api, plate: str) -> int:
    _vehicle(api, plate)
    case = new_case(api.sessions, api.sealed, plate=plate)
    post(api, "technical_reviewer", case.id, "technical-review", {"approve": True})
    post(api, "legal_reviewer", case.id, "legal-review", {"approve": True})
    notified = post(api, "decision_maker", case.id, "notify",
                    {"channel": "post", "hearing_right": True})
    assert notified["state"] == "notified" and notified["statement_due"] is None
    return case.id


def served_and_waived(api: Api, case_id: int) -> None:
    r = post(api, "legal_reviewer", case_id, "close-statements", {}, status=409)
    assert "尚未送达" in r["message_zh"]  # Art. 44: no period before service
    delivered = utc_now()  # the notice reached the party just now
    case = post(api, "decision_maker", case_id, "serve-notice",
                {"delivered_utc": delivered.isoformat(), "proof": "EMS 1234567890"})
    assert case["statement_due"] and case["hearing_request_due"]
    r = post(api, "legal_reviewer", case_id, "close-statements", {}, status=409)
    assert "期限" in r["message_zh"]  # the periods run
    case = post(api, "legal_reviewer", case_id, "waive",
                {"scope": "all", "record": "当事人签署放弃陈述申辩及听证声明",
                 "document_ref": "F-9"})
    assert case["statement_waived_utc"] and case["hearing_waived_utc"]
    post(api, "legal_reviewer", case_id, "close-statements", {})


def test_a_fine_walked_through_http(api: Api) -> None:
    plate = "浙J5H001"
    case_id = reviewed_and_notified(api, plate)
    owner = {"X-Owner-Token": owner_login(api, plate)["owner_token"]}
    r = api.client.post(f"/api/v1/owner/records/{case_id}/statements", headers=owner,
                        data={"text": "车辆为空载返程，请复核。", "kind": "statement"})
    assert r.status_code == 200, r.text  # before service: accepted
    detail = api.client.get(f"/api/v1/cases/{case_id}", headers=api.auth("legal_reviewer"))
    statement_id = detail.json()["statements"][0]["id"]
    post(api, "legal_reviewer", case_id, f"statements/{statement_id}/answer",
         {"response": "经复核，称重有效。"})
    served_and_waived(api, case_id)
    fine = detail.json()["proposed_fine_yuan"]
    case = post(api, "decision_maker", case_id, "decision",
                {"outcome": "fine", "fine_yuan": fine, "reasons": "事实清楚，证据确凿。"})
    assert case["publish_due"]

    for name in ("notice.pdf", "decision.pdf"):
        r = api.client.get(f"/api/v1/cases/{case_id}/{name}", headers=api.auth("auditor"))
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        text = pdf_text(r.content)
        for expected in ("北京时间", "六轴汽车列车", "62000", "限定标准", plate):
            assert expected in text, (name, expected)
        assert "combination_" not in text
    assert "行政复议" in text  # the decision: Art. 59 remedies

    post(api, "decision_maker", case_id, "serve", {"channel": "post"})
    outbox = api.client.get("/api/v1/copy-notices", headers=api.auth("decision_maker"))
    assert outbox.status_code == 200
    copy = next(c for c in outbox.json()["copy_notices"] if c["case_id"] == case_id)
    assert copy["format"] == "zhichao.copy-notice/1" and copy["sent_utc"] is None
    assert api.client.get("/api/v1/copy-notices", headers=api.auth("auditor")).status_code \
        == 403
    pdf = api.client.get(f"/api/v1/copy-notices/{copy['copy_notice_id']}/pdf",
                         headers=api.auth("decision_maker"))
    assert pdf.status_code == 200 and "抄告" in pdf_text(pdf.content)
    url = f"/api/v1/copy-notices/{copy['copy_notice_id']}"
    assert api.client.post(f"{url}/acknowledged",
                           headers=api.auth("decision_maker")).status_code == 409
    assert api.client.post(f"{url}/sent", headers=api.auth("decision_maker")).json()["sent_utc"]
    assert api.client.post(f"{url}/acknowledged",
                           headers=api.auth("decision_maker")).json()["acknowledged_utc"]

    post(api, "decision_maker", case_id, "publish", {})
    public = api.client.get("/api/v1/public/disclosures").json()["disclosures"]
    assert case_id in [d["case_id"] for d in public]
    post(api, "decision_maker", case_id, "revoke", {"kind": "void", "reason": ""}, status=422)
    case = post(api, "decision_maker", case_id, "revoke",
                {"kind": "revoked", "reason": "复议机关撤销原决定"})
    assert case["state"] == "revoked" and "复议机关" in case["withdrawal_reason_zh"]
    public = api.client.get("/api/v1/public/disclosures").json()["disclosures"]
    assert case_id not in [d["case_id"] for d in public]
    assert post(api, "decision_maker", case_id, "archive", {})["state"] == "archived"


def test_a_warning_is_not_published(api: Api) -> None:
    case_id = reviewed_and_notified(api, "浙J5H002")
    served_and_waived(api, case_id)
    case = post(api, "decision_maker", case_id, "decision",
                {"outcome": "warning", "fine_yuan": 0, "reasons": "首次违法，依法警告。"})
    assert case["publish_due"] is None
    post(api, "decision_maker", case_id, "serve", {"channel": "in_person"})
    r = post(api, "decision_maker", case_id, "publish", {}, status=409)
    assert "不予公示" in r["message_zh"]
    assert post(api, "decision_maker", case_id, "archive", {})["state"] == "archived"


def test_requests_are_documented_and_retention_is_an_admin_run(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    for path, model in (("serve-notice", "NoticeServiceIn"), ("waive", "WaiveIn"),
                        ("revoke", "RevokeIn")):
        op = schema["paths"][f"/api/v1/cases/{{case_id}}/{path}"]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith(model) and op["x-legal-source"] and op["x-roles"]
        assert schema["components"]["schemas"][model]["properties"]
    assert api.client.post("/api/v1/retention/run",
                           headers=api.auth("decision_maker")).status_code == 403
    r = api.client.post("/api/v1/retention/run", headers=api.auth("administrator"))
    assert r.status_code == 200 and r.json()["retention_days"] == 30
