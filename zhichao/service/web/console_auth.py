"""Console sign-in and sign-out (``/console/login``, ``/console/logout``) and ``/``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from zhichao.service import accounts, audit
from zhichao.service.db import transaction
from zhichao.service.errors import AuthenticationError, ServiceError
from zhichao.service.web import security
from zhichao.service.web.pages import CONSOLE, Csrf, PagesDep, safe_next

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> Response:
    return RedirectResponse(f"{CONSOLE}/", status_code=303)


@router.get(f"{CONSOLE}/login")
def login_page(request: Request, pages: PagesDep,
               next: Annotated[str | None, Query(max_length=300)] = None) -> Response:
    nonce, fresh = pages.pre_nonce(request)
    page = pages.render(request, "login.html", user=None, next=safe_next(next),
                        csrf=pages.pre_csrf(nonce), error=None)
    return pages.with_pre(page, nonce, fresh)


@router.post(f"{CONSOLE}/login")
def login(request: Request, pages: PagesDep, username: Annotated[str, Form(max_length=64)],
          password: Annotated[str, Form(max_length=256)], csrf_token: Csrf = None,
          next: Annotated[str | None, Form(max_length=300)] = None) -> Response:
    nonce, fresh = pages.pre_nonce(request)
    settings = pages.settings
    try:
        security.check_csrf(pages.secret, "pre", request.cookies.get(security.PRE_COOKIE),
                            csrf_token)
        pages.limiter.hit(f"login:{pages.client_id(request)}",
                          limit=settings.login_per_client_per_minute, window_s=60)
        with transaction(pages.factory) as session:
            user = accounts.authenticate(session, username=username, password=password)
            token, _expires = accounts.issue_token(session, user, ttl_s=settings.session_ttl_s)
            roles = user.role_set
    except AuthenticationError as exc:
        with transaction(pages.factory) as session:
            accounts.record_failed_login(session, username=username[:64],
                                         client_id=pages.client_id(request))
        page = pages.render(request, "login.html", status=401, user=None, next=safe_next(next),
                            csrf=pages.pre_csrf(nonce), error=exc.message_zh)
        return pages.with_pre(page, nonce, fresh)
    except ServiceError as exc:
        return pages.with_pre(pages.error_page(request, exc, back=f"{CONSOLE}/login"), nonce,
                              fresh)
    landing = safe_next(next)
    if roles == {"administrator"} and landing == f"{CONSOLE}/":
        landing = f"{CONSOLE}/devices"
    response = RedirectResponse(landing, status_code=303)
    security.set_cookie(response, pages.web, security.SESSION_COOKIE, token,
                        max_age_s=settings.session_ttl_s)
    return response


@router.post(f"{CONSOLE}/logout")
def logout(request: Request, pages: PagesDep, csrf_token: Csrf = None) -> Response:
    try:
        pages.check_staff_csrf(request, csrf_token)
        with transaction(pages.factory) as session:
            token = request.cookies.get(security.SESSION_COOKIE, "")
            user = accounts.user_for_token(session, token)
            accounts.revoke_token(session, token)
            audit.append(session, actor=accounts.user_label(user), action="auth.logout",
                         object_type="user", object_id=str(user.id), detail={})
    except ServiceError as exc:
        return pages.error_page(request, exc)
    response = RedirectResponse(f"{CONSOLE}/login", status_code=303)
    security.clear_cookie(response, pages.web, security.SESSION_COOKIE)
    return response
