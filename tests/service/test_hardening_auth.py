"""Issue #18 items 3 and 5 with the real app: login throttling per account and per client
(a growing delay, never a lock, each attempt audited) on the API and the console, proxy
settings, and the password rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.service.conftest import PASSWORD, TEST_POLICY, Sealed, drop_schema, new_user
from tests.service.test_web_common import csrf_of
from zhichao.cli import main
from zhichao.service import passwords
from zhichao.service.db import transaction
from zhichao.service.errors import ConfigError, InvalidInputError
from zhichao.service.login_throttle import LoginThrottle, delay_s
from zhichao.service.models import AuditEntry
from zhichao.service.settings import Settings, uvicorn_proxy_options

# ---------------------------------------------------------------- passwords


@pytest.mark.parametrize(("password", "username", "why"), [
    ("short pass", "", "至少 12 位"),
    ("aaaaaaaaaaaa", "", "不同的字符"),
    ("abababababab", "", "不同的字符"),
    ("abc123abc123abc123", "", "重复"),
    ("qwertyuiop[]", "", "键盘"),
    ("123456789012", "", "键盘"),
    ("1qaz2wsx3edc4rfv", "", "键盘"),
    ("zyxwvutsrqpo", "", "键盘"),
    ("Qwertyuiop123", "", "常见"),
    ("!!asdfghjkl2025", "", "常见"),
    ("Password2024!", "", "常见"),
    ("P@ssw0rd12345", "", "常见"),
    ("iloveyou1314520", "", "常见"),
    ("WoAiNi 5201314", "", "常见"),
    ("  Baseball1990!!", "", "常见"),
    ("zhichao123456", "", "常见"),
    ("wang.reviewer-2026!", "wang.reviewer", "用户名"),
    ("my name is Li.Hua and more", "li.hua", "用户名"),
])
def test_weak_passwords_are_refused_in_chinese(password: str, username: str, why: str) -> None:
    problem = passwords.password_problem(password, username=username)
    assert problem is not None and why in problem[1], (password, problem)
    with pytest.raises(InvalidInputError) as raised:
        passwords.check_password(password, username=username)
    assert raised.value.http_status == 422 and why in raised.value.message_zh


@pytest.mark.parametrize("password", [
    PASSWORD, "Tr0ub4dor&3-horse", "9f3k-Qz7m-2LpX", "北京西站治超点的雨天午后",
    "a long enough password"])
def test_good_passwords_pass(password: str) -> None:
    assert passwords.password_problem(password, username="wang.reviewer") is None


def test_the_shipped_list_is_the_generated_one() -> None:
    lines = passwords.COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    entries = [line for line in lines if line and not line.startswith("# ")]
    assert entries == passwords.generate_common_passwords()
    assert len(entries) > 5000
    assert {"password", "woaini1314520", "qwertyuiop", "1qaz2wsx3edc"} <= set(entries)


def test_weak_passwords_are_refused_by_the_api_and_the_cli(
        tmp_path: Path, sealed: Sealed, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.service.conftest import make_api

    api = make_api("sqlite", tmp_path, sealed)
    try:
        r = api.client.post("/api/v1/users", headers=api.auth("administrator"), json={
            "username": "newuser", "password": "aaaaaaaaaaaa", "display_name_zh": "新用户",
            "roles": ["auditor"]})
        assert r.status_code == 422 and "不同的字符" in r.json()["message_zh"], r.text
        r = api.client.post("/api/v1/users", headers=api.auth("administrator"), json={
            "username": "newuser", "password": "Ju5t-an0ther-day", "display_name_zh": "新用户",
            "roles": ["auditor"]})
        assert r.status_code == 200, r.text
    finally:
        api.client.app.state.engine.dispose()
    monkeypatch.setenv("ZHICHAO_PASSWORD", "Password2024!")
    code = main(["users", "add", "lisi", "--role", "auditor", "--name", "李四",
                 "--db", f"sqlite:///{tmp_path / 'cli.db'}"])
    assert code == 1 and "常见" in capsys.readouterr().err


# ---------------------------------------------------------------- the throttle itself


def test_delays_grow_to_their_caps() -> None:
    waits = [delay_s(n, free_failures=3, base_delay_s=1.0, cap_s=60.0) for n in range(12)]
    assert waits == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_per_account_and_per_client_waits_never_lock() -> None:
    now = [1000.0]
    throttle = LoginThrottle(free_failures=2, base_delay_s=1.0, max_delay_per_account_s=8.0,
                             max_delay_per_client_s=100.0, clock=lambda: now[0])
    throttle.succeeded("alice", "10.0.0.5")  # alice's usual office
    # a stranger guesses alice's password from many addresses
    for i in range(10):
        throttle.failed("alice", f"203.0.113.{i}")
    assert throttle.wait_s("alice", "198.51.100.1") == 8.0  # a new client: the short cap
    assert throttle.wait_s("alice", "10.0.0.5") == 0.0  # alice's own client is not held up
    assert throttle.wait_s("bob", "198.51.100.1") == 0.0  # other accounts are untouched
    now[0] += 8.0
    assert throttle.wait_s("alice", "198.51.100.1") == 0.0  # a delay, not a lock
    # one client guessing many accounts is held back longer and longer
    for i in range(8):
        throttle.failed(f"user{i}", "192.0.2.9")
    assert throttle.wait_s("carol", "192.0.2.9") == 64.0
    throttle.failed("user9", "192.0.2.9")
    assert throttle.wait_s("carol", "192.0.2.9") == 100.0  # capped
    # a quiet hour forgets the counts; a success clears its account's
    now[0] += 3601
    assert throttle.failed("user0", "192.0.2.9") == 0.0
    throttle.failed("dave", "192.0.2.10")
    throttle.failed("dave", "192.0.2.11")
    assert throttle.wait_s("dave", "192.0.2.12") == 1.0
    throttle.succeeded("dave", "192.0.2.13")
    assert throttle.wait_s("dave", "192.0.2.12") == 0.0


# ---------------------------------------------------------------- the real app


class _Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture(params=["sqlite", "postgresql"])
def console_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    import secrets

    from tests.service.conftest import PG_URL, require_postgresql
    from zhichao.service.web.console import create_console_app
    from zhichao.service.web.security import WebSettings

    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'auth.db'}", None
    else:
        require_postgresql()
        url, schema = PG_URL, f"zt_{secrets.token_hex(6)}"
    app = create_console_app(Settings(
        database_url=url, database_schema=schema, deadlines=TEST_POLICY,
        login_free_failures=3, login_delay_base_s=0.4, login_delay_max_per_account_s=0.8,
        login_delay_max_per_client_s=30.0), web=WebSettings(cookie_secure=False))
    # the throttle's waits run on a clock the tests move (a request on a busy machine, e.g.
    # with another test process beside it, can take longer than the 0.4 s wait itself)
    clock = _Clock()
    assert isinstance(app.state.login_throttle, LoginThrottle)
    app.state.login_throttle._clock = clock
    app.state.test_clock = clock
    yield app
    if schema is not None:
        drop_schema(app.state.engine)
    app.state.engine.dispose()


def _audit(app: Any, *actions: str) -> list[AuditEntry]:
    with transaction(app.state.sessions) as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action.in_(actions))
                              .order_by(AuditEntry.id)))
        s.expunge_all()
        return rows


def _login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def test_api_logins_wait_after_failures_and_every_attempt_is_audited(console_app: Any) -> None:
    user = new_user(console_app.state.sessions, "auditor")

    def client(host: str) -> TestClient:
        return TestClient(console_app, client=(host, 40000))

    office, stranger, laptop = client("10.0.0.5"), client("203.0.113.66"), client("10.0.0.77")
    assert _login(office, user.username, PASSWORD).status_code == 200
    codes = [_login(stranger, user.username, "guess number one").status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    r = _login(stranger, user.username, PASSWORD)  # right password, inside the wait: no oracle
    assert r.status_code == 429 and "秒后再试" in r.json()["message_zh"], r.text
    assert r.json()["error"] == "login_throttled" and int(r.headers["retry-after"]) >= 1
    assert _login(laptop, user.username, PASSWORD).status_code == 429  # a new client waits
    # the account's owner, from the client they used before, is not held up
    assert _login(office, user.username, PASSWORD).status_code == 200
    # strangers again, from elsewhere: a new client waits the short per-account delay and
    # then gets in (a delay, not a lock)
    other = client("198.51.100.99")
    assert [_login(other, user.username, "guess number two").status_code
            for _ in range(3)] == [401, 401, 401]
    assert _login(laptop, user.username, PASSWORD).status_code == 429
    console_app.state.test_clock.advance(0.9)  # the per-account cap is 0.8 s here
    assert _login(laptop, user.username, PASSWORD).status_code == 200
    failed = _audit(console_app, "auth.login_failed")
    throttled = _audit(console_app, "auth.login_throttled")
    assert [e.actor for e in failed] == (["anonymous:203.0.113.66"] * 3
                                         + ["anonymous:198.51.100.99"] * 3)
    assert [e.detail["delay_s"] for e in failed][:2] == [0, 0] and failed[2].detail["delay_s"] > 0
    assert [e.actor for e in throttled] == ["anonymous:203.0.113.66", "anonymous:10.0.0.77",
                                            "anonymous:10.0.0.77"]
    assert all(e.object_id == user.username and e.detail["retry_after_s"] > 0 for e in throttled)


def test_console_logins_are_throttled_alike(console_app: Any) -> None:
    user = new_user(console_app.state.sessions, "legal_reviewer")
    client = TestClient(console_app, client=("198.51.100.23", 40000))
    token = csrf_of(client.get("/console/login").text)
    answers = [client.post("/console/login", follow_redirects=False, data={
        "username": user.username, "password": "not it at all", "csrf_token": token})
        for _ in range(4)]
    assert [r.status_code for r in answers[:3]] == [401, 401, 401]
    assert "秒后再试" in answers[3].text and "zc_session" not in answers[3].headers.get(
        "set-cookie", "")
    assert "retry-after" in answers[3].headers and "retry-after" not in answers[2].headers
    assert len(_audit(console_app, "auth.login_failed")) == 3
    assert len(_audit(console_app, "auth.login_throttled")) == 1


# ---------------------------------------------------------------- proxy settings


def test_proxies_are_trusted_only_when_named(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert Settings().forwarded_allow_ips == ()
    assert uvicorn_proxy_options(()) == {"proxy_headers": False, "forwarded_allow_ips": ""}
    assert Settings().trust_forwarded_for is False  # the app never reads the header itself
    monkeypatch.setenv("ZHICHAO_FORWARDED_ALLOW_IPS", " 10.0.0.5, 10.1.0.0/16 ")
    settings = Settings.from_env()
    assert settings.forwarded_allow_ips == ("10.0.0.5", "10.1.0.0/16")
    assert uvicorn_proxy_options(settings.forwarded_allow_ips) == {
        "proxy_headers": True, "forwarded_allow_ips": "10.0.0.5,10.1.0.0/16"}
    with pytest.raises(ConfigError) as raised:
        Settings(forwarded_allow_ips=("proxy.example",))
    assert "可信代理" in raised.value.message_zh
    monkeypatch.delenv("ZHICHAO_FORWARDED_ALLOW_IPS")
    code = main(["serve", "--db", "sqlite:///unused.db", "--forwarded-allow-ips", "nonsense"])
    assert code == 1 and "可信代理地址无效" in capsys.readouterr().err
    code = main(["center", "serve", "--db", "sqlite:///unused.db", "--store", "unused",
                 "--key", "unused.pem", "--forwarded-allow-ips", "10.0.0.1,not-an-ip"])
    assert code == 2 and "not-an-ip" in capsys.readouterr().err
