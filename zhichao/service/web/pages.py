"""What every page route shares: templates, the signed-in staff user from the session
cookie, CSRF tokens, the pre-login nonce cookie and error pages.

One :class:`Pages` per app (``app.state.pages``, built by ``create_console_app``); routes
take it through ``PagesDep``. Page routes catch ``ServiceError`` themselves and answer an
HTML error page (``Pages.error_page``), so an officer or owner never sees JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape
from sqlalchemy.orm import Session, sessionmaker

from zhichao.evidence import documents, eligibility, verdict
from zhichao.service import accounts, duties, workflow
from zhichao.service.api.deps import client_id, visible_case
from zhichao.service.db import transaction
from zhichao.service.errors import (
    AuthenticationError,
    ServiceError,
)
from zhichao.service.ingest import PLATE_COLOURS_ZH
from zhichao.service.inputs import parse_date
from zhichao.service.models import User
from zhichao.service.ratelimit import Limiter
from zhichao.service.settings import Settings
from zhichao.service.web import security
from zhichao.service.web.security import WebSettings
from zhichao.service.workdays import CHINA_TZ

HERE = Path(__file__).parent
CONSOLE = "/console"
PORTAL = "/portal"
PAGE_CSP = ("default-src 'none'; img-src 'self'; media-src 'self'; style-src 'self'; "
            "font-src 'self'; "
            "form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
# The evidence stage's shipped fonts (its licences lie beside them), served to the pages so
# that zh-CN text renders on machines without CJK fonts; nothing comes from outside.
FONTS_DIR = Path(documents.__file__).parent / "fonts"
FONTS = {"latin.ttf": documents.LATIN_FONT_NAME, "cjk-gb2312.ttf": documents.FONT_NAME,
         "cjk-full.ttf": documents.FULL_FONT_NAME}
HEALTH_ZH = {"ok": "正常", "degraded": "降级运行", "fault": "故障", "offline": "离线",
             "drift_alarm": "漂移报警", "unknown": "未知"}
CHANNELS_ZH = {"app": "手机应用", "sms": "短信", "post": "邮寄", "in_person": "直接送达",
               "announcement": "公告"}
OUTCOMES_ZH = workflow.OUTCOMES_ZH
CaseId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
StatementId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
Csrf = Annotated[str | None, Form(max_length=100)]
Ver = Annotated[int, Form(ge=1, le=2**31 - 1)]
Text2000 = Annotated[str | None, Form(max_length=2000)]
DONE_ZH = {
    "technical-review": "技术审核意见已提交", "legal-review": "法制审核意见已提交",
    "notify": "已立案并告知当事人", "answer": "已答复陈述申辩", "hearing": "听证记录已保存",
    "close-statements": "陈述申辩、听证处理完毕", "decision": "处罚决定已作出",
    "serve": "决定书送达已记录", "publish": "已结案并公示", "archive": "已归档",
    "manual-override": "人工修正已记录", "statement": "陈述申辩已提交，执法机关将依法复核并答复",
}


@dataclass(frozen=True)
class Viewer:
    """What the page header shows of the signed-in user (safe after a rollback)."""

    display_name_zh: str
    role_set: frozenset[str]


def _fmt_utc(value: object) -> str:
    """A stored UTC time as people read it: 北京时间, labelled (storage stays UTC)."""
    if isinstance(value, str) and value:
        text = value
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
    if not isinstance(value, datetime) or value.tzinfo is None:
        return "—"
    return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S") + "（北京时间）"


def _fmt_kg(value: Any) -> str:
    if value is None or isinstance(value, Undefined):
        return "—"
    try:
        return f"{float(value):,.0f} kg"
    except (TypeError, ValueError):
        return "—"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"], default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["utc"] = _fmt_utc
    env.filters["kg"] = _fmt_kg
    env.filters["urlpath"] = lambda s: quote(str(s), safe="/")
    env.globals.update(states_zh=workflow.STATES_ZH, roles_zh=accounts.ROLES_ZH,
                       colours_zh=PLATE_COLOURS_ZH, outcomes_zh=OUTCOMES_ZH,
                       channels_zh=CHANNELS_ZH, health_zh=HEALTH_ZH,
                       copy_notice_roles=duties.COPY_NOTICES,
                       eligibility_zh={str(k): v for k, v in eligibility.STATUS_ZH.items()},
                       severity_zh={str(k): v for k, v in eligibility.SEVERITY_ZH.items()},
                       verdicts_zh=verdict.VERDICT_ZH)
    env.filters["reason_zh"] = eligibility.reason_zh
    # pages a host adds to the console's top menu, each {"href", "label_zh", "roles"}:
    # shown to a user with one of its roles (the station adds 静态复检, reweigh_console)
    env.globals["menu_extra"] = []
    return env


def safe_next(target: str | None) -> str:
    """A ``/console/…`` path to go to after login, never another site (no open redirect)."""
    if target and target.startswith(CONSOLE + "/") and "//" not in target \
            and "\\" not in target and len(target) < 300:
        return target
    return f"{CONSOLE}/"


@dataclass
class Pages:
    """Settings, templates and sessions of the page routes."""

    settings: Settings
    web: WebSettings
    factory: sessionmaker[Session]
    limiter: Limiter
    env: Environment

    @property
    def secret(self) -> str:
        return self.settings.secret_key

    def render(self, request: Request, template: str, status: int = 200,
               **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(request_path=request.url.path,
                                                      **context)
        return HTMLResponse(html, status_code=status)

    def error_page(self, request: Request, exc: ServiceError, *, user: object = None,
                   back: str | None = None) -> Response:
        del user  # the ORM user is expired by the rollback: show the login-time snapshot
        viewer = getattr(request.state, "viewer", None)
        if isinstance(exc, AuthenticationError) and request.method == "GET" \
                and request.url.path.startswith(CONSOLE):
            target = quote(request.url.path, safe="/")
            return RedirectResponse(f"{CONSOLE}/login?next={target}", status_code=303)
        return self.render(request, "error.html", status=exc.http_status, user=viewer,
                           message_zh=exc.message_zh, back=back,
                           portal=request.url.path.startswith(PORTAL))

    def client_id(self, request: Request) -> str:
        return client_id(request)

    def staff_user(self, session: Session, request: Request, *roles: str) -> User:
        token = request.cookies.get(security.SESSION_COOKIE)
        if not token:
            raise AuthenticationError("no session cookie", "请先登录")
        user = accounts.user_for_token(session, token)
        request.state.viewer = Viewer(user.display_name_zh, user.role_set)
        if roles:
            accounts.require_role(user, *roles)
        return user

    @contextmanager
    def staff_tx(self, request: Request, *roles: str) -> Iterator[tuple[Session, User]]:
        with transaction(self.factory) as session:
            yield session, self.staff_user(session, request, *roles)

    def staff_csrf(self, request: Request) -> str:
        return security.csrf_token(self.secret, "staff",
                                   request.cookies.get(security.SESSION_COOKIE, ""))

    def check_staff_csrf(self, request: Request, given: str | None) -> None:
        security.check_csrf(self.secret, "staff",
                            request.cookies.get(security.SESSION_COOKIE), given)

    def pre_nonce(self, request: Request) -> tuple[str, bool]:
        nonce = request.cookies.get(security.PRE_COOKIE)
        return (nonce, False) if nonce and len(nonce) <= 64 else (security.new_nonce(), True)

    def pre_csrf(self, nonce: str) -> str:
        return security.csrf_token(self.secret, "pre", nonce)

    def with_pre(self, response: Response, nonce: str, fresh: bool) -> Response:
        if fresh:
            security.set_cookie(response, self.web, security.PRE_COOKIE, nonce)
        return response


def get_pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


PagesDep = Annotated[Pages, Depends(get_pages)]
__all__ = ["CONSOLE", "PORTAL", "Pages", "PagesDep", "parse_date", "visible_case"]
