"""Ending staff sessions: disabling an account, resetting or changing its password and
"end sessions" revoke its tokens, so re-enabling it never brings an old token back; the
administrators' API (``/api/v1/users/{id}/…``), the CLI (``zhichao users
disable|enable|set-password|end-sessions``) and the self-service ``/api/v1/me/password``
(which keeps the caller's own session). Every task is audited. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.service.conftest import PASSWORD, Api, Sealed, make_api, new_user
from zhichao.cli import main
from zhichao.service import accounts
from zhichao.service.db import make_engine, session_factory, transaction, upgrade
from zhichao.service.errors import AuthenticationError
from zhichao.service.models import AuditEntry, User

NEW_PASSWORD = "a brand new passphrase 123"


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path, sealed: Sealed) -> Iterator[Api]:
    site = make_api(request.param, tmp_path, sealed)
    yield site
    site.client.app.state.engine.dispose()


def _login(api: Api, user: User, password: str = PASSWORD) -> Any:
    return api.client.post("/api/v1/auth/login", json={"username": user.username,
                                                        "password": password})


def _bearer(api: Api, user: User, password: str = PASSWORD) -> dict[str, str]:
    r = _login(api, user, password)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _me(api: Api, headers: dict[str, str]) -> int:
    return int(api.client.get("/api/v1/me", headers=headers).status_code)


def _actions(api: Api, user: User) -> list[str]:
    with transaction(api.sessions) as s:
        return list(s.scalars(select(AuditEntry.action).where(
            AuditEntry.object_type == "user", AuditEntry.object_id == str(user.id),
            AuditEntry.action.like("user.%")).order_by(AuditEntry.id)))


def test_a_disabled_account_stays_signed_out_after_it_is_enabled(api: Api) -> None:
    user = new_user(api.sessions, "decision_maker")
    first, second = _bearer(api, user), _bearer(api, user)
    admin = api.auth("administrator")
    r = api.client.post(f"/api/v1/users/{user.id}/disable", headers=admin)
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    assert _me(api, first) == _me(api, second) == 401
    r = api.client.post(f"/api/v1/users/{user.id}/enable", headers=admin)
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    assert _me(api, first) == _me(api, second) == 401  # old sessions never come back
    assert _me(api, _bearer(api, user)) == 200
    assert _actions(api, user) == ["user.create", "user.disabled", "user.enabled"]


def test_a_password_reset_ends_every_session(api: Api) -> None:
    user = new_user(api.sessions, "auditor")
    old = _bearer(api, user)
    admin = api.auth("administrator")
    r = api.client.post(f"/api/v1/users/{user.id}/password", headers=admin,
                        json={"password": "aaaaaaaaaaaa"})
    assert r.status_code == 422, r.text  # the password rules hold
    assert _me(api, old) == 200
    r = api.client.post(f"/api/v1/users/{user.id}/password", headers=admin,
                        json={"password": NEW_PASSWORD})
    assert r.status_code == 200 and "1 个登录" in r.json()["message_zh"], r.text
    assert _me(api, old) == 401
    assert _login(api, user).status_code == 401
    assert _me(api, _bearer(api, user, NEW_PASSWORD)) == 200
    r = api.client.post(f"/api/v1/users/{user.id}/end-sessions", headers=admin)
    assert r.status_code == 200 and "1 个登录" in r.json()["message_zh"], r.text
    assert _actions(api, user)[1:] == ["user.password_reset", "user.sessions_ended"]


def test_only_administrators_manage_accounts(api: Api) -> None:
    user = new_user(api.sessions, "auditor")
    for path in ("disable", "enable", "end-sessions"):
        r = api.client.post(f"/api/v1/users/{user.id}/{path}", headers=api.auth("auditor"))
        assert r.status_code == 403, r.text
    admin = api.users["administrator"]
    r = api.client.post(f"/api/v1/users/{admin.id}/disable", headers=api.auth("administrator"))
    assert r.status_code == 422 and "自己" in r.json()["message_zh"], r.text
    r = api.client.post("/api/v1/users/999999/disable", headers=api.auth("administrator"))
    assert r.status_code == 404 and r.json()["message_zh"] == "用户不存在", r.text


def test_changing_ones_own_password_ends_the_other_sessions(api: Api) -> None:
    user = new_user(api.sessions, "legal_reviewer")
    here, elsewhere = _bearer(api, user), _bearer(api, user)
    r = api.client.post("/api/v1/me/password", headers=here, json={
        "current_password": "not my password", "new_password": NEW_PASSWORD})
    assert r.status_code == 403 and r.json()["message_zh"] == "当前密码错误", r.text
    r = api.client.post("/api/v1/me/password", headers=here, json={
        "current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert r.status_code == 200 and "其他 1 个登录" in r.json()["message_zh"], r.text
    assert _me(api, here) == 200
    assert _me(api, elsewhere) == 401
    assert _login(api, user).status_code == 401
    assert _login(api, user, NEW_PASSWORD).status_code == 200
    assert _actions(api, user)[-1] == "user.password_changed"


def test_the_cli_disables_enables_resets_and_ends_sessions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    user = new_user(sessions, "auditor")

    def token() -> str:
        with transaction(sessions) as s:
            return accounts.issue_token(s, s.get(User, user.id), ttl_s=600)[0]

    def alive(value: str) -> bool:
        with transaction(sessions) as s:
            try:
                accounts.user_for_token(s, value)
            except AuthenticationError:
                return False
            return True

    def run(*args: str) -> tuple[int, str]:
        code = main(["users", *args, user.username, "--db", url])
        out = capsys.readouterr()
        return code, out.out + out.err

    old = token()
    assert run("disable") == (0, f"已停用用户 {user.username}，结束登录 1 个\n")
    assert run("enable")[0] == 0 and not alive(old)
    old = token()
    monkeypatch.setenv("ZHICHAO_PASSWORD", NEW_PASSWORD)
    assert run("set-password")[0] == 0 and not alive(old)
    old = token()
    assert run("end-sessions")[0] == 0 and not alive(old)
    with transaction(sessions) as s:
        assert accounts.authenticate(s, username=user.username, password=NEW_PASSWORD)
        actions = list(s.scalars(select(AuditEntry.actor + " " + AuditEntry.action).where(
            AuditEntry.action.like("user.%")).order_by(AuditEntry.id)))
    assert actions[1:] == ["cli user.disabled", "cli user.enabled", "cli user.password_reset",
                           "cli user.sessions_ended"]
    code = main(["users", "disable", "nobody", "--db", url])
    assert code == 1 and "用户不存在" in capsys.readouterr().err
    engine.dispose()
