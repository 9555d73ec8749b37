"""Separation of duties over HTTP, and an OpenAPI schema that describes every answer and
carries the duties table (both backends)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.service.conftest import PASSWORD, Api, new_case, new_user, versioned
from zhichao.common import utc_now
from zhichao.service import duties
from zhichao.service.api import routes_markdown
from zhichao.service.db import transaction
from zhichao.service.models import Case

DOCS = Path(__file__).resolve().parents[2] / "docs" / "service.md"


def _login(api: Api, *roles: str) -> dict[str, str]:
    user = new_user(api.sessions, *roles)
    r = api.client.post("/api/v1/auth/login", json={"username": user.username,
                                                     "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _refused(api: Api, headers: dict[str, str], case_id: int, action: str,
             body: dict[str, object], prior_zh: str) -> None:
    r = api.client.post(f"/api/v1/cases/{case_id}/{action}", headers=headers,
                        json=versioned(api, case_id, body))
    assert r.status_code == 403, (action, r.status_code, r.text)
    answer = r.json()
    assert answer["error"] == "permission_denied"
    assert prior_zh in answer["message_zh"] and "职责分离" in answer["message_zh"], answer
    assert "four eyes" in answer["message"]


def _ok(api: Api, role: str, case_id: int, action: str, body: dict[str, object]) -> None:
    r = api.client.post(f"/api/v1/cases/{case_id}/{action}", headers=api.auth(role),
                        json=versioned(api, case_id, body))
    assert r.status_code == 200, (action, r.text)


def test_reviewer_with_decision_role_cannot_carry_the_case_forward(api: Api) -> None:
    """Issue 18: technical reviewer + decision maker in one account. After reviewing a case
    they may not open/notify, decide, serve or publish it; the API answers 403 in zh-CN and
    leaves the case as it was; another decision maker does each step."""
    dual = _login(api, "technical_reviewer", "decision_maker")
    case = new_case(api.sessions, api.sealed)
    r = api.client.post(f"/api/v1/cases/{case.id}/technical-review", headers=dual,
                        json={"approve": True, "expected_version": case.version})
    assert r.status_code == 200, r.text
    _ok(api, "legal_reviewer", case.id, "legal-review", {"approve": True})
    steps: list[tuple[str, dict[str, object], str]] = [
        ("notify", {"channel": "sms", "hearing_right": False}, "legal_reviewer"),
        ("serve-notice", {"delivered_utc": utc_now().isoformat(), "proof": "回执"}, ""),
        ("decision", {"outcome": "reduced", "fine_yuan": 100, "reasons": "依法裁量"}, ""),
        ("serve", {"channel": "post"}, ""),
        ("publish", {}, ""),
    ]
    for action, body, _ in steps:
        if action == "decision":
            with transaction(api.sessions) as s:  # as if the periods had run
                row = s.get(Case, case.id)
                assert row is not None
                row.statement_due = utc_now().date() - timedelta(days=30)
                row.hearing_request_due = None
            _ok(api, "legal_reviewer", case.id, "close-statements", {})
        version = api.client.get(f"/api/v1/cases/{case.id}",
                                 headers=api.auth("auditor")).json()["version"]
        _refused(api, dual, case.id, action, body, "技术审核人")
        after = api.client.get(f"/api/v1/cases/{case.id}", headers=api.auth("auditor")).json()
        assert after["version"] == version
        _ok(api, "decision_maker", case.id, action, body)
    final = api.client.get(f"/api/v1/cases/{case.id}", headers=api.auth("auditor")).json()
    assert final["state"] == "published"


def test_legal_reviewer_with_decision_role_cannot_notify(api: Api) -> None:
    dual = _login(api, "legal_reviewer", "decision_maker")
    case = new_case(api.sessions, api.sealed)
    _ok(api, "technical_reviewer", case.id, "technical-review", {"approve": True})
    r = api.client.post(f"/api/v1/cases/{case.id}/legal-review", headers=dual,
                        json=versioned(api, case.id, {"approve": True}))
    assert r.status_code == 200, r.text
    _refused(api, dual, case.id, "notify", {"channel": "sms", "hearing_right": False},
             "法制审核人")


def test_openapi_describes_every_answer_and_the_duties(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    seen_actions = set()
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            ok = op["responses"]["200"]
            content = ok.get("content", {})
            assert content, (method, path)
            for media_type, body in content.items():
                if "schema" in body:  # JSON: a named model, never {} or a bare object
                    assert "$ref" in body["schema"], (method, path, body)
                else:  # a file: zip, image, package JSON, CSV, PDF
                    assert media_type in {"application/zip", "image/jpeg", "image/png",
                                          "application/json", "text/csv",
                                          "application/pdf"}, (path, media_type)
            if op.get("x-roles"):
                assert {"401", "403"} <= set(op["responses"]), (method, path)
            action = path.rsplit("/", 1)[-1]
            if method == "post" and path.startswith("/api/v1/cases/{case_id}/"):
                row = duties.duty(action)
                assert op["x-roles"] == list(row.roles), path
                assert op["x-separation"] == list(row.barred), path
                assert op["x-legal-source"] == row.source_zh, path
                assert op["summary"] == row.label_zh
                seen_actions.add(action)
    assert seen_actions == set(duties.DUTIES)
    case_model = schema["components"]["schemas"]["CaseOut"]
    assert {"id", "version", "state", "state_zh", "statement_due"} <= set(
        case_model["properties"])


def test_docs_carry_the_duties_table() -> None:
    assert duties.markdown_table() in DOCS.read_text(encoding="utf-8")


def test_docs_route_table_is_the_apps(api: Api) -> None:
    table = routes_markdown(api.client.get("/openapi.json").json())
    assert table in DOCS.read_text(encoding="utf-8")
