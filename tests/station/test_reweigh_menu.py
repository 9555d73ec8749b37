"""The station console's top menu (the shared ``base.html``) shows 静态复检 to the roles
that may link readings — station operators and administrators — on a station with a static
scale; not to other roles, and not on a station without one. Through TestClient on the
station's own console app (``LocalService``, SQLite)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.service.conftest import PASSWORD
from tests.service.test_web_common import csrf_of
from tests.station.test_reweigh import write_config
from zhichao.service import accounts
from zhichao.service.db import transaction

MENU_LINK = '<a href="/console/reweigh">静态复检</a>'
USERS = {"operator1": ["station_operator"], "admin1": ["administrator"],
         "reviewer1": ["technical_reviewer"], "deciding1": ["decision_maker", "auditor"]}


def _console(tmp_path: Path, url: str) -> Iterator[FastAPI]:
    from zhichao.service.web.console import create_console_app
    from zhichao.station.local_service import LocalService
    from zhichao.station.reweigh_console import mount

    cfg = write_config(tmp_path, url or "xk3190+serial:///dev/null")
    if not url:  # a station without a static scale
        cfg = dataclasses.replace(cfg, static_scale=dataclasses.replace(cfg.static_scale,
                                                                        url=""))
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    link = LocalService(cfg)
    with transaction(link.sessions) as s:
        for name, roles in USERS.items():
            accounts.create_user(s, username=name, password=PASSWORD,
                                 display_name_zh=f"用户 {name}", roles=roles,
                                 station_id=cfg.station.station_id)
    app = create_console_app(link.settings)
    mount(app, cfg)
    mount(app, cfg)  # mounted twice: one menu entry
    try:
        yield app
    finally:
        link.engine.dispose()


@pytest.fixture
def with_scale(tmp_path: Path) -> Iterator[FastAPI]:
    yield from _console(tmp_path, "xk3190+serial:///dev/null")


@pytest.fixture
def without_scale(tmp_path: Path) -> Iterator[FastAPI]:
    yield from _console(tmp_path, "")


def _page(app: FastAPI, username: str, path: str) -> str:
    client = TestClient(app, base_url="https://testserver")  # secure cookies
    login = client.get("/console/login")
    r = client.post("/console/login", follow_redirects=False, data={
        "username": username, "password": PASSWORD, "csrf_token": csrf_of(login.text),
        "next": "/console/"})
    assert r.status_code == 303, r.text
    page = client.get(path)
    assert "退出登录" in page.text  # a signed-in page with the top menu
    return page.text


@pytest.mark.parametrize("username", ["operator1", "admin1"])
def test_the_menu_shows_reweigh_to_who_may_link(with_scale: FastAPI, username: str) -> None:
    for path in ("/console/reweigh", "/console/"):
        text = _page(with_scale, username, path)
        assert text.count(MENU_LINK) == 1, path
    assert "关联并封存" in _page(with_scale, username, "/console/reweigh")


@pytest.mark.parametrize("username", ["reviewer1", "deciding1"])
def test_the_menu_hides_reweigh_from_other_roles(with_scale: FastAPI, username: str) -> None:
    assert MENU_LINK not in _page(with_scale, username, "/console/")
    page = _page(with_scale, username, "/console/reweigh")  # refused, with the menu
    assert MENU_LINK not in page and "关联并封存" not in page


def test_no_menu_entry_without_a_static_scale(without_scale: FastAPI) -> None:
    assert MENU_LINK not in _page(without_scale, "operator1", "/console/")
    assert MENU_LINK not in _page(without_scale, "admin1", "/console/")
