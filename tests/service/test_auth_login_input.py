"""A user name no account can have (a NUL or another control character) is a normal
failed login, refused before any database query: the console shows its login page again
(401, HTML), and the attempt is audited (the name escaped) and throttled. SQLite and
PostgreSQL (whose text columns cannot hold NUL)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.service.conftest import PASSWORD, PG_URL, TEST_POLICY, new_user, require_postgresql
from tests.service.test_web_common import csrf_of
from zhichao.service import accounts
from zhichao.service.db import drop_schema, transaction
from zhichao.service.errors import AuthenticationError
from zhichao.service.models import AuditEntry
from zhichao.service.settings import Settings
from zhichao.service.web import WebSettings, create_console_app


@pytest.fixture(params=["sqlite", "postgresql"])
def console(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'login.db'}", None
    else:
        require_postgresql()
        url, schema = PG_URL, f"zt_{secrets.token_hex(6)}"
    app = create_console_app(Settings(database_url=url, database_schema=schema,
                                      deadlines=TEST_POLICY, login_free_failures=2,
                                      login_delay_base_s=30.0),
                             web=WebSettings(cookie_secure=False))
    yield app
    if schema is not None:
        drop_schema(app.state.engine)
    app.state.engine.dispose()


def test_a_control_character_in_the_name_is_a_failed_login(console: Any) -> None:
    browser = TestClient(console)
    messages = []
    for _ in range(3):
        token = csrf_of(browser.get("/console/login").text)
        r = browser.post("/console/login", follow_redirects=False, data={
            "username": "a\x00b", "password": "x\x00", "csrf_token": token})
        assert r.status_code == 401, r.text  # the login page again, with the reason
        assert r.headers["content-type"].startswith("text/html"), r.text
        messages.append("秒后再试" if "秒后再试" in r.text else "用户名或密码错误"
                        if "用户名或密码错误" in r.text else r.text)
    assert messages == ["用户名或密码错误"] * 2 + ["秒后再试"]  # 2 free failures, then a wait
    with transaction(console.state.sessions) as s:
        rows = list(s.execute(select(AuditEntry.action, AuditEntry.object_id).where(
            AuditEntry.action.like("auth.login%")).order_by(AuditEntry.id)))
    assert [tuple(r) for r in rows] == [("auth.login_failed", "a\\x00b")] * 2 + [
        ("auth.login_throttled", "a\\x00b")]


def test_impossible_names_fail_before_the_database(console: Any) -> None:
    user = new_user(console.state.sessions, "auditor")
    with transaction(console.state.sessions) as s:
        for name in (user.username + "\n", user.username.upper(), "a\x00b", "x" * 65):
            with pytest.raises(AuthenticationError, match="login failed"):
                accounts.authenticate(s, username=name, password=PASSWORD)
        assert accounts.authenticate(s, username=user.username, password=PASSWORD)
