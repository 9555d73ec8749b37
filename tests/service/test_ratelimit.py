"""Request limits shared in Redis (the local server at 127.0.0.1:6379): one limit in total
across processes and across app replicas, login waits that follow a client from one
replica to another, and Redis down → every guarded request refused with 503 (fail closed).

Each test uses its own keys (random client addresses, plates, user names), so runs do not
see each other's counts.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import PASSWORD, TEST_POLICY
from zhichao.service import accounts
from zhichao.service.app import create_app
from zhichao.service.db import transaction
from zhichao.service.errors import RateLimitedError
from zhichao.service.ratelimit import (
    LimitBackendError,
    RedisLoginThrottle,
    RedisRateLimiter,
    redis_client,
)
from zhichao.service.settings import Settings
from zhichao.testing.sync import ROOT, free_port

REDIS_URL = os.environ.get("ZHICHAO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def redis_url() -> str:
    import redis

    try:
        redis_client(REDIS_URL).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so Redis is required: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return REDIS_URL


def _ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def _plate() -> str:
    return f"浙A{random.randrange(10**5):05d}"


_HITS = """
import sys
from zhichao.service.ratelimit import RedisRateLimiter, redis_client
from zhichao.service.errors import RateLimitedError
limiter = RedisRateLimiter(redis_client(sys.argv[1]))
allowed = 0
for _ in range(int(sys.argv[3])):
    try:
        limiter.hit(sys.argv[2], limit=int(sys.argv[4]), window_s=60)
        allowed += 1
    except RateLimitedError:
        pass
print(allowed)
"""


def test_a_limit_holds_in_total_across_two_processes(redis_url: str) -> None:
    key = f"test:{uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _HITS, redis_url, key, "40", "50"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
             for _ in range(2)]
    allowed = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(allowed) == 50  # 80 hits, 50 allowed in total, whoever came first
    with pytest.raises(RateLimitedError):  # and a third process is refused too
        RedisRateLimiter(redis_client(redis_url)).hit(key, limit=50, window_s=60)


def test_the_window_slides(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_client(redis_url))
    key = f"test:{uuid.uuid4().hex}"
    for _ in range(3):
        limiter.hit(key, limit=3, window_s=0.5)
    with pytest.raises(RateLimitedError):
        limiter.hit(key, limit=3, window_s=0.5)
    import time
    time.sleep(0.6)
    limiter.hit(key, limit=3, window_s=0.5)  # the old hits left the window


def _replicas(tmp_path: Path, redis_url: str, **extra: Any) -> list[Any]:
    """Two apps on one database and one Redis, as two replicas behind a balancer."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'svc.db'}", deadlines=TEST_POLICY,
                        redis_url=redis_url, owner_query_min_duration_ms=0,
                        owner_query_per_client_per_minute=5, **extra)
    return [create_app(settings), create_app(settings)]


def _query(client: TestClient, plate: str) -> int:
    return client.post("/api/v1/owner/query", json={
        "plate": plate, "plate_colour": "蓝", "vin_last6": "111111"}).status_code


def test_owner_queries_are_limited_in_total_across_replicas(tmp_path: Path,
                                                           redis_url: str) -> None:
    apps = _replicas(tmp_path, redis_url)
    host = _ip()
    clients = [TestClient(app, client=(host, 40000)) for app in apps]
    codes = [_query(clients[i % 2], _plate()) for i in range(8)]  # alternating replicas
    assert codes == [200] * 5 + [429] * 3
    other = TestClient(apps[1], client=(_ip(), 40000))
    assert _query(other, _plate()) == 200  # another client has its own count
    assert other.get("/api/v1/health").json()["status"] == "ok"


def test_login_waits_follow_the_client_to_another_replica(tmp_path: Path,
                                                          redis_url: str) -> None:
    apps = _replicas(tmp_path, redis_url, login_free_failures=2, login_delay_base_s=30.0)
    name = f"u{uuid.uuid4().hex[:10]}"
    with transaction(apps[0].state.sessions) as session:
        accounts.create_user(session, username=name, password=PASSWORD,
                             display_name_zh="测试", roles=["auditor"])
    host = _ip()
    a, b = (TestClient(app, client=(host, 40000)) for app in apps)
    body = {"username": name, "password": "wrong password here"}
    assert a.post("/api/v1/auth/login", json=body).status_code == 401
    assert b.post("/api/v1/auth/login", json=body).status_code == 401
    r = a.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 29, r.text
    r = b.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 429  # the other replica knows the wait too
    for app in apps:
        app.state.engine.dispose()


def test_redis_down_refuses_guarded_requests_loudly(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = _replicas(tmp_path, dead)[0]
    client = TestClient(app, client=(_ip(), 40000))
    r = client.post("/api/v1/owner/query", json={
        "plate": _plate(), "plate_colour": "蓝", "vin_last6": "111111"})
    assert r.status_code == 503 and r.json()["message_zh"] == "限流服务暂不可用，请稍后再试"
    r = client.post("/api/v1/auth/login", json={"username": "x", "password": "y"})
    assert r.status_code == 503 and r.json()["message_zh"] == "限流服务暂不可用，请稍后再试"
    assert "fail closed" in caplog.text
    assert client.get("/api/v1/health").json()["status"] == "degraded"
    throttle = RedisLoginThrottle(redis_client(dead))
    with pytest.raises(LimitBackendError):
        throttle.wait_s("x", "10.0.0.1")
    with pytest.raises(LimitBackendError):
        throttle.failed("x", "10.0.0.1")
    app.state.engine.dispose()
