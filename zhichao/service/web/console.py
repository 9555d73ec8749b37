"""Server-rendered zh-CN pages: the staff console (``/console``) and the owner portal (``/portal``).

:func:`create_console_app` builds the JSON API with :func:`zhichao.service.app.create_app`
and adds the pages (one ``APIRouter`` module per resource: ``console_auth``,
``console_cases``, ``console_actions``, ``console_copy_notices``, ``console_registry``,
``console_supervision``, ``portal``; shared machinery in ``pages``), their static files
(``/assets``) and HTML error pages for non-API paths. Routes are thin, as in the API:
authenticate from the cookie, check the role (the same ``duties`` table as the API), check
the CSRF token on every POST, call one service function in a transaction, render or
redirect. Every view of evidence (case page, photo, waveform, package) goes through
``owners.log_evidence_view``. Jinja2 autoescaping is on for every template.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhichao.service.app import create_app
from zhichao.service.inputs import validation_message_zh
from zhichao.service.settings import Settings
from zhichao.service.web import (
    console_actions,
    console_auth,
    console_cases,
    console_copy_notices,
    console_registry,
    console_supervision,
    portal,
)
from zhichao.service.web.pages import (
    CONSOLE,
    FONTS,
    FONTS_DIR,
    HERE,
    PAGE_CSP,
    PORTAL,
    Pages,
    environment,
)
from zhichao.service.web.security import WebSettings

PAGE_ROUTERS = (console_auth.router, console_cases.router, console_actions.router,
                console_copy_notices.router, console_registry.router,
                console_supervision.router, portal.router)


def create_console_app(settings: Settings | None = None, *,
                       web: WebSettings | None = None) -> FastAPI:
    """The JSON API of ``create_app(settings)`` plus the console and portal pages."""
    settings = settings or Settings.from_env()
    web = web or WebSettings.from_env()
    app = create_app(settings)
    pages = Pages(settings, web, app.state.sessions, app.state.limiter, environment())
    console_supervision.install(pages.env)
    app.state.web_settings = web
    app.state.pages = pages
    _install_page_headers(app)
    _install_page_errors(app, pages)
    app.mount("/assets", StaticFiles(directory=HERE / "static"), name="assets")

    @app.get("/fonts/{name}", include_in_schema=False)
    def font(name: Annotated[str, PathParam(max_length=32)]) -> Response:
        if name not in FONTS:
            raise StarletteHTTPException(404, "no such font")
        return Response((FONTS_DIR / FONTS[name]).read_bytes(), media_type="font/ttf",
                        headers={"Cache-Control": "public, max-age=86400"})

    for router in PAGE_ROUTERS:
        app.include_router(router)
    return app


def _install_page_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def _page_headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response: Response = await call_next(request)
        path = request.url.path
        if path.startswith((CONSOLE, PORTAL)) or path == "/":
            response.headers["Content-Security-Policy"] = PAGE_CSP
            response.headers["Cache-Control"] = "no-store"
            response.headers["Referrer-Policy"] = "same-origin"
            response.headers["X-Frame-Options"] = "DENY"
        return response


def _is_page(request: Request) -> bool:
    return request.url.path.startswith((CONSOLE, PORTAL, "/assets", "/fonts"))


async def _delegate(handler: Callable[..., Any], request: Request, exc: Exception) -> Response:
    result = handler(request, exc)
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, Response)
    return result


def _install_page_errors(app: FastAPI, pages: Pages) -> None:
    """HTML error pages for page paths; API paths keep the API's JSON errors."""
    api_http_handler = app.exception_handlers[StarletteHTTPException]
    api_validation_handler = app.exception_handlers[RequestValidationError]

    async def _http_error(request: Request, exc: Exception) -> Response:
        if not _is_page(request) or not isinstance(exc, StarletteHTTPException):
            return await _delegate(api_http_handler, request, exc)
        texts = {404: "页面不存在", 405: "不支持该请求方法", 413: "提交的内容过大"}
        return pages.render(request, "error.html", status=exc.status_code, user=None,
                            message_zh=texts.get(exc.status_code, "请求无法处理"), back=None,
                            portal=request.url.path.startswith(PORTAL))

    async def _validation_error(request: Request, exc: Exception) -> Response:
        if not _is_page(request) or not isinstance(exc, RequestValidationError):
            return await _delegate(api_validation_handler, request, exc)
        return pages.render(request, "error.html", status=422, user=None,
                            message_zh=validation_message_zh(exc.errors()), back=None,
                            portal=request.url.path.startswith(PORTAL))

    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
