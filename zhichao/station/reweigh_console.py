"""The station console's 静态复检 page: the scale's readings and the officer's link form.

Mounted on the station's web console (``zhichao run`` with ``http.console_port`` and a
``[static_scale]``) by :func:`mount`. ``GET /console/reweigh`` lists the static scale's
readings (北京时间, weight, flags, how it was called stable, link and package state) and the
form; it is in the console's top menu for the roles that may link (station operators and
administrators). ``POST /console/reweigh/link`` (CSRF-checked, signed-in station operator
or administrator) links a reading to a passage found by plate and time (北京时间) or passage
key, with :func:`zhichao.station.reweigh_cli.link_reading` — the same checks and zh-CN
refusals as ``zhichao reweigh link``. The officer is the signed-in user. The running
station seals the link within about a second and uploads it (docs/station.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from zhichao.evidence.static_reading import FLAG_ZH, STABLE_BY_ZH
from zhichao.service.errors import InvalidInputError, ServiceError
from zhichao.service.models import User
from zhichao.service.web.pages import CONSOLE, PagesDep
from zhichao.station.config import StationConfig
from zhichao.station.reweigh_cli import RefusedError, link_reading
from zhichao.station.static_scale import ReadingStore

ROLES = ("station_operator", "administrator")

PAGE = Path(__file__).with_name("reweigh_console.html")  # extends the console base


def reweigh_router(cfg: StationConfig) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(f"{CONSOLE}/reweigh")
    def page(request: Request, pages: PagesDep,
             done: Annotated[int | None, Query()] = None) -> Response:
        user: User | None = None
        try:
            with pages.staff_tx(request, *ROLES) as (_session, user):
                store = ReadingStore(cfg.data_dir / "station.db")
                try:
                    rows = [{**r, "flag_list": json.loads(r["flags"])}
                            for r in store.recent(100)]
                finally:
                    store.close()
                html = pages.env.from_string(PAGE.read_text(encoding="utf-8")).render(
                    request_path=request.url.path, user=user, csrf=pages.staff_csrf(request),
                    rows=rows, done=done, scale_id=cfg.static_scale.scale_id,
                    flags_zh=FLAG_ZH, stable_by_zh=STABLE_BY_ZH,
                    certificate=cfg.static_scale.certificate_number)
            return HTMLResponse(html)
        except ServiceError as exc:
            return pages.error_page(request, exc, user=user)

    @router.post(f"{CONSOLE}/reweigh/link")
    def link(request: Request, pages: PagesDep,
             csrf_token: Annotated[str | None, Form(max_length=200)] = None,
             plate: Annotated[str, Form(max_length=16)] = "",
             time: Annotated[str, Form(max_length=40)] = "",
             passage: Annotated[str, Form(max_length=200)] = "",
             reading: Annotated[str, Form(max_length=12)] = "") -> Response:
        back = f"{CONSOLE}/reweigh"
        user: User | None = None
        try:
            pages.check_staff_csrf(request, csrf_token)
            with pages.staff_tx(request, *ROLES) as (_session, user):
                officer = user.display_name_zh
            reading_id = _reading_id(reading)
            try:
                row, _passage = link_reading(
                    cfg, officer, passage_key=passage.strip() or None,
                    plate=plate.strip() or None, time_text=time.strip() or None,
                    reading_id=reading_id)
            except RefusedError as exc:
                raise InvalidInputError(str(exc), str(exc)) from None
        except ServiceError as exc:
            return pages.error_page(request, exc, user=user, back=back)
        return RedirectResponse(f"{back}?done={row['id']}", status_code=303)

    return router


def _reading_id(text: str) -> int | None:
    text = text.strip().lstrip("#")
    if not text:
        return None
    if not text.isdigit():
        raise InvalidInputError(f"reading {text!r}", "读数编号应为数字")
    return int(text)


MENU_ITEM = {"href": f"{CONSOLE}/reweigh", "label_zh": "静态复检", "roles": ROLES}


def mount(app: FastAPI, cfg: StationConfig) -> None:
    """Add the page to the station's console app and its top menu, for the roles that may
    link readings (only with a static scale)."""
    if cfg.static_scale.url:
        app.include_router(reweigh_router(cfg))
        menu = app.state.pages.env.globals["menu_extra"]
        if MENU_ITEM not in menu:
            menu.append(MENU_ITEM)


__all__ = ["mount", "reweigh_router"]
