"""Separation of duties in the console: the case page reads the duties table (no form for
a barred step, the reason shown instead) and the step itself is refused (both backends)."""

from __future__ import annotations

import uuid

from tests.service.conftest import PASSWORD
from tests.service.test_web_common import Web, csrf_of, version_of
from tests.service.test_web_pages import act, case_state, login, web
from zhichao.service import accounts
from zhichao.service.db import transaction

__all__ = ["web"]  # the module-scoped fixture of the console tests, one app per backend


def test_reviewer_with_decision_role_is_not_offered_and_refused_notify(web: Web) -> None:
    with transaction(web.sessions) as s:
        web.users["dual"] = accounts.create_user(
            s, username=f"dual{uuid.uuid4().hex[:8]}", password=PASSWORD,
            display_name_zh="技术审核兼决定", roles=["technical_reviewer", "decision_maker"])
    case_id = web.cases[1].id
    dual = login(web, "dual")
    r = act(dual, case_id, "technical-review", verdict="approve")
    assert getattr(r, "status_code", None) == 303
    r = act(login(web, "legal_reviewer"), case_id, "legal-review", verdict="approve")
    assert getattr(r, "status_code", None) == 303
    assert case_state(web, case_id)[0] == "approved"

    page = dual.get(f"/console/cases/{case_id}")
    assert page.status_code == 200
    assert 'id="form-notify"' not in page.text
    assert 'id="barred-notify"' in page.text and "您是本案的技术审核人" in page.text
    state = case_state(web, case_id)
    r = dual.post(f"/console/cases/{case_id}/notify", follow_redirects=False, data={
        "csrf_token": csrf_of(page.text), "expected_version": str(state[1]),
        "channel": "sms"})
    assert r.status_code == 403 and "职责分离" in r.text and "第五十七条" in r.text
    assert case_state(web, case_id) == state

    boss = login(web, "decision_maker")
    page = boss.get(f"/console/cases/{case_id}")
    assert 'id="form-notify"' in page.text and 'id="barred-notify"' not in page.text
    r = boss.post(f"/console/cases/{case_id}/notify", follow_redirects=False, data={
        "csrf_token": csrf_of(page.text), "expected_version": str(version_of(page.text)),
        "channel": "sms", "hearing_right": "no"})
    assert r.status_code == 303, r.text
    assert case_state(web, case_id)[0] == "notified"
