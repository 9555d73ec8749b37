"""The JSON API: ``create_app(settings)`` builds a FastAPI app on the service functions.

Routes live in ``zhichao/service/api/`` (one ``APIRouter`` module per resource), take the
database session, the signed-in user and "staff with role X" from ``api/deps.py`` and
answer Pydantic models (``api/schemas.py``), so the OpenAPI schema describes every answer.
Business rules live in ``workflow.py``, ``duties.py`` (who may do which step),
``owners.py``, ``accounts.py``, ``stats.py``. Every message a person reads is zh-CN;
errors are ``{"error": code, "message_zh": ..., "message": ...}``.

Authentication: staff send ``Authorization: Bearer <token>`` (``POST /api/v1/auth/login``);
owners send ``X-Owner-Token`` (from ``POST /api/v1/owner/query``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path as FilePath

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhichao import __version__
from zhichao.service import access_log, events
from zhichao.service.api import ROUTERS
from zhichao.service.api import supervision as supervision_api
from zhichao.service.api.deps import API
from zhichao.service.background import background_workers
from zhichao.service.body_limit import ASGIApp, Message, Receive, Scope, Send
from zhichao.service.db import make_engine, session_factory, upgrade
from zhichao.service.errors import ServiceError
from zhichao.service.guards import install_guards
from zhichao.service.inputs import validation_message_zh
from zhichao.service.ratelimit import make_limiter
from zhichao.service.settings import Settings

__all__ = ["API", "create_app"]

_HTTP_ZH = {404: "未找到该地址", 405: "不支持该请求方法", 413: "请求内容过大",
            401: "未登录或登录已过期", 403: "无权访问"}


def _error(exc: ServiceError) -> JSONResponse:
    code = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__.removesuffix("Error")).lower()
    return JSONResponse(status_code=exc.http_status,
                        content={"error": code or "service", "message_zh": exc.message_zh,
                                 "message": exc.message})


def _event_flusher(settings: Settings, app: FastAPI) -> events.EventFlusher | None:
    if not settings.events_flusher_enabled:
        return None
    assert settings.evidence_log_dir is not None
    assert settings.evidence_log_key_path is not None
    assert settings.evidence_log_key_name is not None
    return events.EventFlusher(
        app.state.sessions, FilePath(settings.evidence_log_dir),
        key_path=FilePath(settings.evidence_log_key_path),
        key_name=settings.evidence_log_key_name, origin=settings.evidence_log_origin,
        interval_s=settings.events_flush_interval_s)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Background work while the app serves: the review-event flusher (when configured)
    and the owner access log's sealer (``Settings.owner_access_seal_interval_s``)."""
    workers = background_workers(app)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for worker in workers:
            worker.stop()
        for task in tasks:
            await task  # the round in progress finishes; nothing is cut in half


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service app on ``settings.database_url`` (migrated at start unless disabled)."""
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url, schema=settings.database_schema)
    if settings.migrate_on_start:
        upgrade(engine)
    app = FastAPI(title="治超非现场执法服务 API", version=__version__,
                  description="技术审核、法制审核、立案告知、陈述申辩、决定、送达、公示与车主查询。"
                  "每个办理步骤的角色、职责分离规则与法律依据见各接口的 x-roles、"
                  "x-separation、x-legal-source。",
                  lifespan=_lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.limiter = make_limiter(settings)  # in Redis when settings.redis_url is set
    app.state.event_flusher = _event_flusher(settings, app)
    app.state.access_sealer = None if settings.owner_access_seal_interval_s == 0 else \
        access_log.AccessSealer(app.state.sessions,
                                interval_s=settings.owner_access_seal_interval_s)
    install_guards(app, settings)  # body limits, login throttle, error answers (#18)
    _install_error_handlers(app)
    _install_middleware(app, settings)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(supervision_api.router)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error", "message_zh", "message"}`` (validation errors add
    ``fields``)."""

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        fields = [".".join(str(p) for p in err.get("loc", ())) for err in errors]
        return JSONResponse(status_code=422, content={
            "error": "invalid_input", "message_zh": validation_message_zh(errors),
            "message": "request validation failed", "fields": fields[:50]})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, headers=exc.headers, content={
            "error": f"http_{exc.status_code}",
            "message_zh": _HTTP_ZH.get(exc.status_code, "请求无法处理"),
            "message": str(exc.detail)})


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Request limits and security headers (the one place middleware is added)."""
    app.add_middleware(LimitsAndHeaders, max_request_bytes=settings.max_request_bytes)


_API_HEADERS = {"Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}


class LimitsAndHeaders:
    """ASGI middleware: 413 for a declared body over ``max_request_bytes`` (or a malformed
    Content-Length); ``X-Content-Type-Options: nosniff`` on every answer, and no caching
    and no framing on the API's. Plain ASGI, not ``@app.middleware("http")`` (which wraps
    every request in an extra task and memory streams)."""

    def __init__(self, app: ASGIApp, *, max_request_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit()
                                   or int(length) > self.max_request_bytes):
            await JSONResponse(status_code=413, content={
                "error": "http_413", "message_zh": "请求内容过大",
                "message": f"body over {self.max_request_bytes} bytes"})(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith(API)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if api:
                    for name, value in _API_HEADERS.items():
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
