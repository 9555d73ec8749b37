"""The service's request guards, installed on the app by :func:`install_guards`:

* :class:`~zhichao.service.body_limit.BodyLimit` — bodies bounded per route as they stream;
* :class:`~zhichao.service.login_throttle.LoginContext` — the login throttle per account
  and per client (``app.state.login_throttle``);
* answers for errors no route turned into a ``ServiceError``: a ``pydantic.ValidationError``
  raised while a route runs (a model built from input inside the route, not by FastAPI's
  request parsing) is bad input, 422 with the zh-CN message and the fields, the shape of
  a request validation error; anything else is a fault of ours, 500 with a zh-CN message
  and nothing of the exception in the answer (the server logs it with its traceback).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from zhichao.service.body_limit import BodyLimit, service_limits
from zhichao.service.login_throttle import LoginContext, LoginThrottle
from zhichao.service.settings import Settings

log = logging.getLogger(__name__)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    fields = [".".join(str(p) for p in err.get("loc", ())) for err in exc.errors()]
    return JSONResponse(status_code=422, content={
        "error": "invalid_input", "message_zh": "输入有误：" + "、".join(fields[:10]),
        "message": "validation failed", "fields": fields[:50]})


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return JSONResponse(status_code=500, content={
        "error": "internal", "message_zh": "服务内部错误，已记录，请稍后再试",
        "message": "internal server error"})


def install_guards(app: FastAPI, settings: Settings) -> None:
    """Body limits, login throttling and the error answers above, on ``app``."""
    app.state.login_throttle = LoginThrottle.from_settings(settings)
    app.add_middleware(LoginContext, throttle=app.state.login_throttle)
    app.add_middleware(BodyLimit, default_bytes=settings.max_json_request_bytes,
                       routes=service_limits(settings))
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
