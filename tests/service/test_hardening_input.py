"""Issue #18: no 5xx from input. Every route of the service (API and console/portal pages,
in the schema or not) is walked with control characters, overlong strings, wrong types
and bytes that are not UTF-8 — in the path, the query, JSON and form bodies — signed in
as a user holding every role, and must answer below 500; JSON answers to a refusal carry
a zh-CN ``message_zh``. (schemathesis, in test_schemathesis.py, fuzzes the schema's
routes with valid and invalid data besides.)"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.service.conftest import PASSWORD, TEST_POLICY, Sealed, new_case, new_user
from zhichao.service import accounts
from zhichao.service.db import drop_schema
from zhichao.service.settings import Settings

# Raw (already percent-encoded where needed) values for paths and query strings.
BAD_URL_VALUES = ["%00", "a%01b", "%7F", "%FF", "%C3%28", "%ED%A0%80", "x" * 5000,
                  "-1", "99999999999999999999999", "1.5", "NaN", "..%2F..%2Fetc%2Fpasswd",
                  "%E6%B5%99A%00", "%0D%0ASet-Cookie:%20x=1"]
# Values for JSON and form fields.
BAD_FIELD_VALUES: list[Any] = ["\x00", "a\x01b\x7f", "x" * 100_000, "\ud800", "", " ",
                               -1, 2**70, 1.5e308, True, None, [], {}, ["\x00"],
                               {"$gt": ""}, "浙A\x00", "\u202e\u0000"]
BAD_HEADERS: list[dict[str, Any]] = [
    {"Authorization": b"Bearer \xff\xfe\x00"}, {"Authorization": "Bearer " + "x" * 8000},
    {"Authorization": "Basic \x01"}, {"X-Owner-Token": b"\xff.\xfe"},
    {"X-Owner-Token": "a" * 5000 + "." + "b" * 5000}, {"Cookie": b"zc_session=\xff\x00"},
    {"Cookie": "zc_session=" + "x" * 4000}, {"X-Forwarded-For": "\x7f, ::1, 999.1.1.1"}]
RAW_BODIES = [b"\xff\xfe\xfd", b'{"username": "\xff\xfe"}', b"\x00" * 64, b"{" * 5000,
              b'{"a": ' * 2000, b"[]", b"null", b'"\\ud800"', b"\xef\xbb\xbf{}",
              b"username=%FF&password=%00", b"a=" + b"%" * 3000]


class Client:
    """The app in process, in this thread's own event loop (httpx's ASGI transport): the
    same requests and answers as Starlette's TestClient, without its hop to a portal thread
    for every message (which made the walk twice as slow). An exception escaping the app
    answers 500, as with ``TestClient(raise_server_exceptions=False)``."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.loop = asyncio.Runner()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self.cookies = self.http.cookies

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.loop.run(self.http.request(method, url, **kw))

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def close(self) -> None:
        self.loop.run(self.http.aclose())
        self.loop.close()


class Walk:
    def __init__(self, client: Client, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}", "X-Owner-Token": "x.y"}
        self.client.cookies.set("zc_session", token)
        self.seen: list[tuple[str, str, int]] = []
        self.failures: list[str] = []

    def send(self, method: str, url: str, **kw: Any) -> None:
        headers = {**self.headers, **kw.pop("headers", {})}
        r = self.client.request(method, url, headers=headers, follow_redirects=False, **kw)
        self.seen.append((method, url[:80], r.status_code))
        if r.status_code >= 500:
            self.failures.append(f"{method} {url[:120]} {str(kw)[:120]} → {r.status_code} "
                                 f"{r.text[:200]}")
        elif r.status_code >= 400 and r.headers.get("content-type", "").startswith(
                "application/json"):
            answer = r.json()
            message = answer.get("message_zh") if isinstance(answer, dict) else None
            if not message or not re.search(r"[\u4e00-\u9fff]", message):
                self.failures.append(f"{method} {url[:120]} → {r.status_code} without a "
                                     f"zh-CN message: {r.text[:200]}")


def _fill(path: str, value: str | None = None, which: int = -1) -> str:
    names = re.findall(r"\{[^}]+\}", path)
    for i, name in enumerate(names):
        plain = "2026" if "year" in name else "1"
        path = path.replace(name, value if value is not None and i == which else plain, 1)
    return path


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):  # an included router (FastAPI ≥ 0.16x)
            yield from _api_routes(route.original_router.routes,
                                   prefix + route.include_context.prefix)


def _routes(client: Client) -> list[tuple[str, str, APIRoute]]:
    out = []
    for path, route in _api_routes(client.app.routes):
        if path.endswith("/logout"):
            continue  # would end the walker's session; tested elsewhere
        out.extend((method, path, route) for method in sorted(route.methods))
    return out


def _plausible(annotation: Any) -> Any:
    """A value of the field's type, so that one bad field at a time reaches the route."""
    text = str(annotation)
    for marker, value in (("bool", True), ("datetime", "2026-06-01T08:00:00Z"),
                          ("list", ["auditor"]), ("int", 1), ("str", "正常内容")):
        if marker in text or annotation is (bool if marker == "bool" else None):
            return value
    return "正常内容"


def _body_fields(route: APIRoute) -> tuple[dict[str, Any], bool]:
    """A plausible body (field → value) and whether it is a form."""
    fields: dict[str, Any] = {}
    is_form = False
    for param in route.dependant.body_params:
        info = param.field_info
        model_fields = getattr(info.annotation, "model_fields", None)
        if model_fields:
            fields.update({name: _plausible(f.annotation) for name, f in model_fields.items()})
        else:
            fields[param.alias] = _plausible(info.annotation)
        is_form = is_form or type(info).__name__ in ("Form", "File")
    return fields, is_form


def walk_route(walk: Walk, method: str, path: str, route: APIRoute) -> None:
    path_names = re.findall(r"\{[^}]+\}", path)
    for which in range(len(path_names)):
        for value in BAD_URL_VALUES:
            walk.send(method, _fill(path, value, which))
    url = _fill(path)
    for headers in BAD_HEADERS:
        walk.send(method, url, headers=headers)
    for param in route.dependant.query_params:
        for value in BAD_URL_VALUES:
            walk.send(method, f"{url}?{param.alias}={value}")
        walk.send(method, f"{url}?{param.alias}=1&{param.alias}=2")
    fields, is_form = _body_fields(route)
    if method in ("GET", "HEAD"):
        return
    for raw in RAW_BODIES:
        for content_type in ("application/json", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=xx", "text/plain; charset=utf-8"):
            walk.send(method, url, content=raw, headers={"Content-Type": content_type})
    for field in fields:
        for value in BAD_FIELD_VALUES:
            body = dict(fields)
            body[field] = value
            if is_form:
                form = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in body.items()}
                encoded = "&".join(f"{quote(k)}={quote(v, errors='surrogatepass')}"
                                   for k, v in form.items())
                walk.send(method, url, content=encoded.encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
            else:
                walk.send(method, url, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def walk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         sealed: Sealed) -> Iterator[Walk]:
    import secrets

    from tests.service.conftest import PG_URL, require_postgresql
    from zhichao.service.web.console import create_console_app

    tmp: Path = tmp_path_factory.mktemp("walk")
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp / 'walk.db'}", None
    else:
        require_postgresql()
        url, schema = PG_URL, f"zt_{secrets.token_hex(6)}"
    settings = Settings(database_url=url, database_schema=schema, deadlines=TEST_POLICY,
                        owner_query_min_duration_ms=0, owner_query_per_client_per_minute=10**6,
                        owner_query_per_plate_per_hour=10**6, login_per_client_per_minute=10**6,
                        login_free_failures=10**6)
    app = create_console_app(settings)
    everyone = new_user(app.state.sessions, *accounts.ROLES_ZH, station_id="S001")
    for _ in range(2):
        new_case(app.state.sessions, sealed)
    client = Client(app)
    r = client.post("/api/v1/auth/login", json={"username": everyone.username,
                                                 "password": PASSWORD})
    assert r.status_code == 200, r.text
    yield Walk(client, r.json()["token"])
    client.close()
    if schema is not None:
        drop_schema(app.state.engine)
    app.state.engine.dispose()


def test_no_route_answers_5xx_to_bad_input(walk: Walk) -> None:
    routes = _routes(walk.client)
    assert len(routes) >= 50
    for method, path, route in routes:
        walk_route(walk, method, path, route)
    assert len(walk.seen) > 2000
    assert not walk.failures, "\n".join(walk.failures[:40])


def test_errors_no_route_handled_still_answer_in_chinese(tmp_path: Path) -> None:
    from pydantic import BaseModel
    from sqlalchemy.exc import DataError

    from zhichao.service.app import create_app

    class Strict(BaseModel):
        count: int

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}"))

    @app.get("/api/v1/test-model")
    def build_model(value: str) -> dict[str, int]:
        return {"count": Strict.model_validate({"count": value}).count}

    @app.get("/api/v1/test-fault")
    def fault() -> None:
        raise RuntimeError("secret detail")

    @app.get("/api/v1/test-data")
    def refused_by_the_database() -> None:
        raise DataError("INSERT …", {}, ValueError("text fields cannot contain NUL bytes"))

    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/api/v1/test-model", params={"value": "many"})
    assert r.status_code == 422 and r.json()["message_zh"] == "输入有误：某项输入格式有误", r.text
    assert r.json()["fields"] == ["count"]  # the field's name stays for developers
    assert client.get("/api/v1/test-model", params={"value": "3"}).json() == {"count": 3}
    r = client.get("/api/v1/test-fault")
    assert r.status_code == 500 and "服务内部错误" in r.json()["message_zh"]
    assert "secret detail" not in r.text
    r = client.get("/api/v1/test-data")
    assert r.status_code == 422 and "无法保存" in r.json()["message_zh"], r.text
    assert "NUL" not in r.text
    app.state.engine.dispose()
