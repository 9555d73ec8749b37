"""The login throttle holds under parallel attempts: an attempt is reserved (counted)
before its password is checked, atomically, so parallel wrong passwords from one client
get no more password checks than ``free_failures`` before the wait; a right password
releases its reservation. In-process and in Redis (the local server at 127.0.0.1:6379)."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tests.service.conftest import PASSWORD, TEST_POLICY, new_user
from zhichao.service import accounts
from zhichao.service.app import create_app
from zhichao.service.login_throttle import LoginThrottle
from zhichao.service.ratelimit import RedisLoginThrottle, redis_client
from zhichao.service.settings import Settings

REDIS_URL = os.environ.get("ZHICHAO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CHEAP = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


class _SlowHasher(PasswordHasher):
    """Cheap argon2 whose verification takes as long as production's (and longer)."""

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        time.sleep(0.3)
        return super().verify(hash, password)


@pytest.fixture
def slow_hashing() -> Iterator[None]:
    accounts.use_password_hasher(_SlowHasher(**CHEAP))
    yield
    accounts.use_password_hasher(PasswordHasher(**CHEAP))


def _redis_url() -> str:
    import redis

    try:
        redis_client(REDIS_URL).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so Redis is required: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture(params=["memory", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    extra = {"redis_url": _redis_url()} if request.param == "redis" else {}
    application = create_app(Settings(
        database_url=f"sqlite:///{tmp_path / 'race.db'}", deadlines=TEST_POLICY,
        login_free_failures=3, login_delay_base_s=30.0, login_per_client_per_minute=10**4,
        **extra))
    yield application
    application.state.engine.dispose()


def _host() -> str:  # a fresh client per test (Redis keeps counts between runs)
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def _login(app: Any, host: str, username: str, password: str) -> int:
    client = TestClient(app, client=(host, 40000))
    return int(client.post("/api/v1/auth/login", json={
        "username": username, "password": password}).status_code)


def test_parallel_wrong_passwords_get_only_the_free_checks(app: Any,
                                                           slow_hashing: None) -> None:
    user = new_user(app.state.sessions, "auditor")
    host, codes = _host(), []

    def attempt(i: int) -> None:
        codes.append(_login(app, host, user.username, f"wrong guess {i}"))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [401] * 3 + [429] * 9, codes


def test_a_right_password_releases_its_reservation(app: Any) -> None:
    user = new_user(app.state.sessions, "auditor")
    host = _host()
    assert [_login(app, host, user.username, "wrong guess") for _ in range(2)] == [401, 401]
    assert _login(app, host, user.username, PASSWORD) == 200  # counted, then released
    assert _login(app, host, user.username, "wrong guess") == 401  # the third failure
    assert _login(app, host, user.username, PASSWORD) == 429  # now the wait runs


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_reservations_are_atomic(kind: str) -> None:
    throttle: LoginThrottle = (RedisLoginThrottle(redis_client(_redis_url()), free_failures=3,
                                                  base_delay_s=30.0)
                               if kind == "redis" else LoginThrottle(base_delay_s=30.0))
    name, host, waits = f"u{uuid.uuid4().hex[:10]}", _host(), []
    barrier = threading.Barrier(16)

    def reserve() -> None:
        barrier.wait()
        waits.append(throttle.reserve(name, host))

    threads = [threading.Thread(target=reserve) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits)[:4] == [0.0, 0.0, 0.0, pytest.approx(30.0, abs=0.5)]
    assert all(w > 29 for w in sorted(waits)[3:])
    # reservations count the account only: the client (another account) waits for nothing
    assert throttle.wait_s(f"other{name}", host) == 0.0
    throttle.succeeded(name, host)
    assert throttle.wait_s(name, host) == 0.0


def test_colleagues_behind_one_address_log_in_at_once(app: Any, slow_hashing: None) -> None:
    """Six officers behind one office address log into their own accounts at the same
    instant: all get in (a first version counted the client in advance: three were told
    they had failed too often)."""
    users = [new_user(app.state.sessions, "auditor") for _ in range(6)]
    host, codes = _host(), []
    barrier = threading.Barrier(len(users))

    def attempt(username: str) -> None:
        barrier.wait()
        codes.append(_login(app, host, username, PASSWORD))

    threads = [threading.Thread(target=attempt, args=(u.username,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 6, codes


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_good_login_never_moves_the_clients_wait(kind: str) -> None:
    """Failures behind an address impose a wait; once it is over, a colleague's good login
    neither restarts it for the others nor keeps the failures from being forgotten."""
    now = [1000.0]
    throttle: LoginThrottle
    if kind == "redis":
        throttle = RedisLoginThrottle(redis_client(_redis_url()), free_failures=3,
                                      base_delay_s=30.0)
    else:
        throttle = LoginThrottle(base_delay_s=30.0, clock=lambda: now[0])
    typist, colleague, other = (f"u{uuid.uuid4().hex[:10]}" for _ in range(3))
    host = _host()
    for _ in range(3):
        wait, counted = throttle.reserve_attempt(typist, host)
        assert wait == 0.0
        throttle.failed(typist, host, reserved=True, client_held=counted)
    assert throttle.wait_s(other, host) > 29  # the client's wait runs
    if kind == "redis":  # no clock to move: the client's hash is aged as 31 s would
        key = throttle._key("client", host)  # type: ignore[attr-defined]
        last = int(throttle.client.hget(key, "last_ms"))  # type: ignore[attr-defined]
        throttle.client.hset(key, "last_ms", last - 31_000)  # type: ignore[attr-defined]
    else:
        now[0] += 31.0
    assert throttle.wait_s(other, host) == 0.0
    wait, counted = throttle.reserve_attempt(colleague, host)
    assert wait == 0.0 and counted  # the address has failures: counted in advance
    throttle.succeeded(colleague, host, client_held=counted)
    assert throttle.wait_s(other, host) == 0.0  # (it was 30 s again before)


@pytest.mark.parametrize("kind", ["memory", "redis"])
@pytest.mark.parametrize("failures", [3, 14])  # 14: the client's wait at its cap (900 s)
def test_a_client_with_failures_gets_no_burst_when_its_wait_ends(kind: str,
                                                                 failures: int) -> None:
    """A client with failures behind it, its wait just over, sends guesses at 16 accounts
    at once: one is checked (as for a sequential guesser), the others are held off while
    it is (counting the client only after each check let all 16 through every time the
    wait ended; counting it in advance lengthened nothing at the wait's cap); a good
    password then ends the hold and leaves the wait's time alone."""
    now = [1000.0]
    throttle: LoginThrottle
    if kind == "redis":
        throttle = RedisLoginThrottle(redis_client(_redis_url()), free_failures=3,
                                      base_delay_s=30.0)
    else:
        throttle = LoginThrottle(base_delay_s=30.0, clock=lambda: now[0])
    host = _host()
    for i in range(failures):  # sequential typos at several accounts
        now[0] += 1000.0
        if kind == "redis" and i:  # age the client's hash past its wait
            key = throttle._key("client", host)  # type: ignore[attr-defined]
            last = int(throttle.client.hget(key, "last_ms"))  # type: ignore[attr-defined]
            throttle.client.hset(key, "last_ms", last - 1_000_000)  # type: ignore[attr-defined]
        name = f"t{uuid.uuid4().hex[:10]}"
        wait, held = throttle.reserve_attempt(name, host)
        assert wait == 0.0, i
        throttle.failed(name, host, reserved=True, client_held=held)
    wait_s = min(900.0, 30.0 * 2 ** (failures - 3))
    assert throttle.wait_s("x-other", host) == pytest.approx(wait_s, abs=1.0)
    if kind == "redis":  # age the client's hash as the wait and a second would
        key = throttle._key("client", host)  # type: ignore[attr-defined]
        last = int(throttle.client.hget(key, "last_ms"))  # type: ignore[attr-defined]
        throttle.client.hset(key, "last_ms",  # type: ignore[attr-defined]
                             last - int((wait_s + 1) * 1000))
    else:
        now[0] += wait_s + 1.0
    names = [f"a{uuid.uuid4().hex[:10]}" for _ in range(16)]
    results: list[tuple[float, bool]] = []
    barrier = threading.Barrier(len(names))

    def reserve(name: str) -> None:
        barrier.wait()
        results.append(throttle.reserve_attempt(name, host))

    threads = [threading.Thread(target=reserve, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    passed = [r for r in results if r[0] == 0.0]
    assert len(passed) == 1 and passed[0][1] is True, results
    # that one was the right password: the hold ends, the wait is as it was (none)
    throttle.succeeded(names[0], host, client_held=True)
    assert throttle.wait_s("y-other", host) == 0.0
    assert throttle.reserve_attempt(names[1], host)[0] == 0.0


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_an_attempt_an_error_ended_is_taken_back(kind: str) -> None:
    """The database failed between the reservation and the verdict: the attempt is
    released — the account's advance count goes, the client's hold ends — so an outage
    leaves no count behind (it had added one per login tried, up to an office-wide wait)."""
    from zhichao.service.login_throttle import LoginAttempt, _current

    throttle: LoginThrottle = (RedisLoginThrottle(redis_client(_redis_url()), free_failures=3,
                                                  base_delay_s=30.0)
                               if kind == "redis" else LoginThrottle(base_delay_s=30.0))
    host, name = _host(), f"u{uuid.uuid4().hex[:10]}"
    wait, held = throttle.reserve_attempt(f"t{name}", host)
    throttle.failed(f"t{name}", host, reserved=True, client_held=held)  # one typo

    class _Broken:
        def scalars(self, *_a: Any, **_k: Any) -> Any:
            raise RuntimeError("database unavailable")

    attempt = LoginAttempt(throttle, host)
    token = _current.set(attempt)
    try:
        for _ in range(12):
            with pytest.raises(RuntimeError):
                accounts.authenticate(_Broken(), username=name,  # type: ignore[arg-type]
                                      password="irrelevant")
    finally:
        _current.reset(token)
    assert throttle.wait_s(name, host) == 0.0
    wait, held = throttle.reserve_attempt(name, host)  # not held off by a leaked hold
    assert wait == 0.0 and held
    throttle.failed(name, host, reserved=True, client_held=held)
    assert throttle.wait_s("x-other", host) == 0.0  # two typos in all: no wait yet
