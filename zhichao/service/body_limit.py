"""Bounded request bodies whatever the framing: a pure ASGI middleware.

Starlette reads a body whole (``request.body()``, ``request.json()``, form parsing) and a
``Content-Length`` check alone misses ``Transfer-Encoding: chunked``, so a body is
bounded here, below the app, by counting the bytes of every ``http.request`` message as
they stream in:

* a declared ``Content-Length`` over the route's limit is answered 413 before the app
  runs and before a byte of the body is read;
* a body without one (chunked) is counted as the app reads it; the message that passes
  the limit is never handed over — the app's ``receive`` raises instead — and the client
  gets 413 with ``Connection: close`` (whatever the app made of the interrupted read is
  dropped), so at most ``limit + one message`` (uvicorn: 64 KiB) is ever held.

Limits are per route (:class:`RouteLimit`, first match wins; anything else gets the
default): uploads are allowed more than JSON queries. :func:`service_limits` is the
service's table, from :class:`~zhichao.service.settings.Settings`; :func:`center_limits`
the center ingest server's (``zhichao center serve``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from zhichao.service.settings import Settings
from zhichao.sync.wire import REFUSALS, refusal_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class RouteLimit:
    """Bodies of requests whose path matches ``path_pattern`` may have ``limit_bytes``."""

    path_pattern: str  # a regular expression, matched from the start of the path
    limit_bytes: int
    what: str  # what the route takes, for the docs and the English message
    # a sync protocol refusal code (zhichao.sync.wire.REFUSALS) to answer with instead of
    # the generic 413, so a station's uploader sees it as its protocol says (permanent)
    refusal_code: str | None = None


def service_limits(settings: Settings) -> list[RouteLimit]:
    """The service's per-route body limits (everything else: ``max_json_request_bytes``).

    Owner statements carry attachments (API and portal form): ``max_request_bytes`` (the
    attachments at their limit plus room for the text and the multipart framing).
    """
    upload = settings.max_request_bytes
    return [
        RouteLimit(r"/api/v1/owner/records/[^/]+/statements$", upload, "statement upload"),
        RouteLimit(r"/portal/records/[^/]+/statements$", upload, "statement upload (portal)"),
    ]


PASSAGE_BATCH_MAX_BYTES = 16 * 1024 * 1024  # guess: a station sends 200 passages a batch
CENTER_DEFAULT_MAX_BYTES = 128 * 1024  # checkpoints (the route refuses over 64 KiB itself)


def center_limits(max_package_bytes: int) -> list[RouteLimit]:
    """The center ingest server's per-route limits (everything else:
    :data:`CENTER_DEFAULT_MAX_BYTES`).

    Packages: the route streams and refuses over ``max_package_bytes`` itself (with the
    sync protocol's permanent ``package.too_large``), so this bound sits 1 MiB above it,
    a backstop only; it answers ``package.too_large`` too. Passage batches (read whole by
    the route): up to :data:`PASSAGE_BATCH_MAX_BYTES`, answered ``passage.too_large`` (the
    uploader splits a batch so refused until one record is left, which it marks refused).
    """
    return [
        RouteLimit(r"/sync/v1/packages/", max_package_bytes + 1024 * 1024, "evidence package",
                   "package.too_large"),
        RouteLimit(r"/sync/v1/passages$", PASSAGE_BATCH_MAX_BYTES, "passage batch",
                   "passage.too_large"),
    ]


class BodyTooLargeError(Exception):
    """Raised into the app's ``receive`` when the body passes its limit (the middleware
    answers 413 whatever the app does with it)."""


def _too_large_body(limit_bytes: int, refusal_code: str | None = None) -> bytes:
    if refusal_code is not None:  # the sync protocol's refusal (``permanent``, a code)
        return json.dumps({"refused": True, **refusal_body(
            refusal_code, f"请求内容超过 {limit_bytes} 字节 / request body over "
            f"{limit_bytes} bytes")}, ensure_ascii=False).encode("utf-8")
    return json.dumps({"error": "http_413", "message_zh": "请求内容过大",
                       "message": f"request body over {limit_bytes} bytes"},
                      ensure_ascii=False).encode("utf-8")


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length; -1 when it is not one plain non-negative number."""
    values = [v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"]
    if not values:
        return None
    if len(set(values)) != 1 or not values[0].isdigit() or len(values[0]) > 18:
        return -1
    return int(values[0])


class BodyLimit:
    """ASGI middleware: 413 as soon as a request body passes its route's limit."""

    def __init__(self, app: ASGIApp, *, default_bytes: int,
                 routes: Sequence[RouteLimit] = ()) -> None:
        if default_bytes < 0 or any(r.limit_bytes < 0 for r in routes):
            raise ValueError("body limits must be non-negative")
        if any(r.refusal_code is not None and REFUSALS[r.refusal_code][0] != 413
               for r in routes):
            raise ValueError("a route's refusal code must be a 413 one")
        self.app = app
        self.default_bytes = default_bytes
        self.routes = [(re.compile(r.path_pattern), r) for r in routes]

    def route_for(self, path: str) -> tuple[int, str | None]:
        """(limit [bytes], sync refusal code or None) of the route ``path`` is on."""
        for pattern, route in self.routes:
            if pattern.match(path):
                return route.limit_bytes, route.refusal_code
        return self.default_bytes, None

    def limit_for(self, path: str) -> int:
        return self.route_for(path)[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit_bytes, refusal_code = self.route_for(scope.get("path", ""))
        declared = _declared_length(scope)
        if declared == -1:
            await _answer(send, 400, json.dumps(
                {"error": "http_400", "message_zh": "请求头 Content-Length 无效",
                 "message": "malformed Content-Length"}, ensure_ascii=False).encode())
            return
        if declared is not None and declared > limit_bytes:
            await _answer(send, 413, _too_large_body(limit_bytes, refusal_code))
            return
        await _Guarded(self.app, limit_bytes, refusal_code).run(scope, receive, send)


class _Guarded:
    """One request under a limit: counts what the app receives, swaps its answer for 413
    once the limit has been passed."""

    def __init__(self, app: ASGIApp, limit_bytes: int, refusal_code: str | None = None
                 ) -> None:
        self.app = app
        self.limit_bytes = limit_bytes
        self.refusal_code = refusal_code
        self.received_bytes = 0
        self.exceeded = False
        self.started = False  # a response of the app's own went out

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            if self.exceeded:
                raise BodyTooLargeError(f"request body over {self.limit_bytes} bytes")
            message = await receive()
            if message["type"] == "http.request":
                self.received_bytes += len(message.get("body", b""))
                if self.received_bytes > self.limit_bytes:
                    self.exceeded = True
                    raise BodyTooLargeError(f"request body over {self.limit_bytes} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            if self.exceeded and not self.started:
                return  # the app's answer to a cut-off body is replaced by the 413
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLargeError:
            pass  # answered below
        except Exception:
            if not self.exceeded:
                raise
        if self.exceeded and not self.started:
            await _answer(send, 413, _too_large_body(self.limit_bytes, self.refusal_code))
