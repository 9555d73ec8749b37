"""The body limit middleware in process: per-route tables of the service and the center,
malformed lengths, and the app's own answers below the limit. (Chunked, slow and huge
bodies against a real server: test_hardening_http.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from zhichao.evidence.signing import generate_key
from zhichao.service.body_limit import (
    CENTER_DEFAULT_MAX_BYTES,
    BodyLimit,
    RouteLimit,
    center_limits,
    service_limits,
)
from zhichao.service.settings import Settings


def _echo_app() -> FastAPI:
    app = FastAPI()

    @app.post("/{path:path}")
    async def echo(request: Request) -> dict[str, int]:
        return {"read_bytes": len(await request.body())}

    return app


@pytest.fixture
def echo() -> TestClient:
    guarded = BodyLimit(_echo_app(), default_bytes=100, routes=[
        RouteLimit(r"/upload/", 1000, "upload"), RouteLimit(r"/upload/small", 10, "never")])
    return TestClient(guarded)


def test_limits_per_route_first_match_wins(echo: TestClient) -> None:
    assert echo.post("/query", content=b"x" * 100).json() == {"read_bytes": 100}
    r = echo.post("/query", content=b"x" * 101)
    assert r.status_code == 413 and r.json()["message_zh"] == "请求内容过大"
    assert r.headers["connection"] == "close"
    assert echo.post("/upload/small", content=b"x" * 1000).json() == {"read_bytes": 1000}
    assert echo.post("/upload/big", content=b"x" * 1001).status_code == 413


def test_streamed_bodies_are_counted(echo: TestClient) -> None:
    def pieces(count: int) -> Iterator[bytes]:
        for _ in range(count):
            yield b"y" * 30

    assert echo.post("/query", content=pieces(3)).json() == {"read_bytes": 90}
    r = echo.post("/query", content=pieces(4))  # chunked: no Content-Length to refuse
    assert r.status_code == 413 and "100 bytes" in r.json()["message"]


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "9" * 30])
def test_malformed_lengths_are_refused(echo: TestClient, length: str) -> None:
    r = echo.post("/query", content=b"", headers={"Content-Length": length})
    assert r.status_code in (400, 413) and r.json()["message_zh"], r.text


def test_the_service_table_allows_uploads_more() -> None:
    settings = Settings(attachment_max_bytes=1000, attachment_max_count=2)
    guarded = BodyLimit(_echo_app(), default_bytes=settings.max_json_request_bytes,
                        routes=service_limits(settings))
    assert guarded.limit_for("/api/v1/owner/query") == 64 * 1024
    assert guarded.limit_for("/api/v1/owner/records/7/statements") == 2000 + 256 * 1024
    assert guarded.limit_for("/portal/records/7/statements") == 2000 + 256 * 1024
    assert guarded.limit_for("/api/v1/owner/records/7/statements/x") == 64 * 1024


def test_the_center_keeps_its_protocol_refusal_for_packages(tmp_path: Path) -> None:
    from zhichao.service.center.server import create_center_app

    max_package_bytes = 1024 * 1024
    app = create_center_app(f"sqlite:///{tmp_path / 'center.db'}", tmp_path / "store",
                            generate_key(), max_package_bytes=max_package_bytes)
    client = TestClient(BodyLimit(app, default_bytes=CENTER_DEFAULT_MAX_BYTES,
                                  routes=center_limits(max_package_bytes)))
    url = "/sync/v1/packages/" + "a" * 64
    r = client.put(url, content=b"z" * (max_package_bytes + 10))
    assert r.status_code == 413 and r.json()["code"] == "package.too_large"  # the route's
    r = client.put(url, content=b"z" * (max_package_bytes + 2 * 1024 * 1024))
    # the backstop answers too with the protocol's permanent refusal (a bare http_413 was
    # retried by the station for ever)
    assert r.status_code == 413 and r.json()["code"] == "package.too_large"
    assert r.json()["permanent"] is True
    r = client.post("/sync/v1/stations/S001/checkpoints", content=b"c" * (200 * 1024))
    assert r.status_code == 413
    assert client.get("/sync/v1/health").status_code == 200


def test_rate_limiter_and_throttle_memory_stay_bounded() -> None:
    from zhichao.service import login_throttle, owners

    now = [0.0]
    limiter = owners.RateLimiter(clock=lambda: now[0])
    for i in range(owners._MAX_KEYS + 5):
        limiter.hit(f"client:{i}", limit=5, window_s=60)
        now[0] += 0.001  # all within the hour: nothing is idle
    assert len(limiter._hits) <= owners._MAX_KEYS
    limiter.hit(f"client:{owners._MAX_KEYS + 4}", limit=5, window_s=60)  # recent ones kept
    assert len(limiter._hits[f"client:{owners._MAX_KEYS + 4}"]) == 2
    throttle = login_throttle.LoginThrottle(clock=lambda: now[0])
    for i in range(login_throttle._MAX_KEYS // 2 + 5):
        throttle.failed(f"name{i}", f"2001:db8:{i % 65536:x}:{i // 65536:x}::1")
    assert len(throttle._failures) <= login_throttle._MAX_KEYS


def test_ipv6_clients_count_by_their_64() -> None:
    from zhichao.service.login_throttle import LoginThrottle, client_key

    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    throttle = LoginThrottle(free_failures=1, max_delay_per_client_s=50)
    throttle.failed("a", client_key("2001:db8:1:2::1"))
    assert throttle.wait_s("b", client_key("2001:db8:1:2::fffe")) > 0
