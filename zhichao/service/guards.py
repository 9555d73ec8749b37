"""The service's request guards, installed on the app by :func:`install_guards`:

* :class:`NoControlInURL` — a path or query string with control characters (``%00``,
  ``%0A``, ``%7F`` …) is refused, 422 ``地址中含有非法控制字符``, before any route sees it
  (no route takes them, and PostgreSQL refuses NUL in text: a 500 otherwise);
* :class:`~zhichao.service.body_limit.BodyLimit` — bodies bounded per route as they stream;
* :class:`~zhichao.service.login_throttle.LoginContext` — the login throttle per account
  and per client (``app.state.login_throttle``);
* answers for errors no route turned into a ``ServiceError``: a ``pydantic.ValidationError``
  raised while a route runs (a model built from input inside the route, not by FastAPI's
  request parsing) is bad input, 422 with the zh-CN message and the fields, the shape of
  a request validation error; a ``sqlalchemy.exc.DataError`` (the database refuses a
  value: NUL in text, a number out of range) is bad input too, 422; anything else is a
  fault of ours, 500 with a zh-CN message and nothing of the exception in the answer (the
  server logs it with its traceback).
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DataError

from zhichao.service.body_limit import ASGIApp, BodyLimit, Receive, Scope, Send, service_limits
from zhichao.service.inputs import validation_message_zh
from zhichao.service.login_throttle import LoginContext
from zhichao.service.ratelimit import make_login_throttle
from zhichao.service.settings import Settings

log = logging.getLogger(__name__)
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")


class NoControlInURL:
    """ASGI middleware: 422 for a path or query string holding control characters."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
                _CONTROL_BYTES.search(unquote_to_bytes(scope.get("query_string", b"")))
                or _CONTROL_BYTES.search(str(scope.get("path", "")).encode("utf-8",
                                                                          "surrogatepass"))):
            body = json.dumps({"error": "invalid_input", "message_zh": "地址中含有非法控制字符",
                               "message": "control characters in the URL"},
                              ensure_ascii=False).encode("utf-8")
            await send({"type": "http.response.start", "status": 422, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    errors = exc.errors()
    fields = [".".join(str(p) for p in err.get("loc", ())) for err in errors]
    return JSONResponse(status_code=422, content={
        "error": "invalid_input", "message_zh": validation_message_zh(errors),
        "message": "validation failed", "fields": fields[:50]})


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database refused a value on %s %s: %s", request.method, request.url.path,
                str(exc).splitlines()[0][:200])
    return JSONResponse(status_code=422, content={
        "error": "invalid_input", "message_zh": "输入有误：含有无法保存的字符或超出范围的数值",
        "message": "the database refused a value"})


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return JSONResponse(status_code=500, content={
        "error": "internal", "message_zh": "服务内部错误，已记录，请稍后再试",
        "message": "internal server error"})


def install_guards(app: FastAPI, settings: Settings) -> None:
    """URL and body checks, login throttling and the error answers above, on ``app``."""
    app.state.login_throttle = make_login_throttle(settings)  # Redis if redis_url is set
    app.add_middleware(LoginContext, throttle=app.state.login_throttle)
    app.add_middleware(BodyLimit, default_bytes=settings.max_json_request_bytes,
                       routes=service_limits(settings))
    app.add_middleware(NoControlInURL)
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(Exception, _unexpected_error)
