"""Server-rendered zh-CN pages: the staff console (``/console``) and the owner portal (``/portal``).

:func:`create_console_app` builds the JSON API with
:func:`zhichao.service.app.create_app` and adds the pages, their static files
(``/assets``) and HTML error pages for non-API paths. Routes are thin, as in the API:
authenticate from the cookie, check the role (the same role sets as the API), check the
CSRF token on every POST, call one service function in a transaction, render or redirect.
Every view of evidence (case page, photo, waveform, package) goes through
``owners.log_evidence_view``. Jinja2 autoescaping is on for every template.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape
from sqlalchemy import Integer, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhichao.common import utc_now
from zhichao.evidence import documents
from zhichao.service import accounts, audit, owners, workflow
from zhichao.service.app import create_app
from zhichao.service.db import transaction
from zhichao.service.duties import CASE_READ as STAFF_READ
from zhichao.service.duties import EVIDENCE_READ, REGISTRY_READ
from zhichao.service.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
)
from zhichao.service.ingest import PLATE_COLOURS_ZH
from zhichao.service.models import (
    AuditEntry,
    Case,
    Decision,
    Device,
    Lane,
    Notice,
    Passage,
    Site,
    Statement,
    User,
)
from zhichao.service.settings import Settings
from zhichao.service.web import security
from zhichao.service.web.evidence_view import evidence_view, integrity, unavailable_view
from zhichao.service.web.security import WebSettings
from zhichao.service.workdays import china_date

HERE = Path(__file__).parent
CONSOLE = "/console"
PORTAL = "/portal"
PAGE_CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; font-src 'self'; "
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
    if not isinstance(value, datetime):
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_kg(value: Any) -> str:
    if value is None or isinstance(value, Undefined):
        return "—"
    try:
        return f"{float(value):,.0f} kg"
    except (TypeError, ValueError):
        return "—"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"], default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["utc"] = _fmt_utc
    env.filters["kg"] = _fmt_kg
    env.filters["urlpath"] = lambda s: quote(str(s), safe="/")
    env.globals.update(states_zh=workflow.STATES_ZH, roles_zh=accounts.ROLES_ZH,
                       colours_zh=PLATE_COLOURS_ZH, outcomes_zh=OUTCOMES_ZH,
                       channels_zh=CHANNELS_ZH, health_zh=HEALTH_ZH)
    return env


def _parse_date(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f"{field}: {value!r} is not YYYY-MM-DD",
                                f"{field}：日期格式应为 YYYY-MM-DD") from exc


def create_console_app(settings: Settings | None = None, *,
                       web: WebSettings | None = None) -> FastAPI:
    """The JSON API of ``create_app(settings)`` plus the console and portal pages."""
    settings = settings or Settings.from_env()
    web = web or WebSettings.from_env()
    app = create_app(settings)
    factory: sessionmaker[Session] = app.state.sessions
    limiter: owners.RateLimiter = app.state.limiter
    env = _environment()
    app.state.web_settings = web
    secret = settings.secret_key

    # ---- responses --------------------------------------------------------------------
    def render(request: Request, template: str, status: int = 200,
               **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(request_path=request.url.path, **context)
        return HTMLResponse(html, status_code=status)

    def error_page(request: Request, exc: ServiceError, *, user: object = None,
                   back: str | None = None) -> Response:
        # the ORM user is expired by the rollback: show the snapshot taken at login check
        viewer = getattr(request.state, "viewer", None)
        if isinstance(exc, AuthenticationError) and request.method == "GET" \
                and request.url.path.startswith(CONSOLE):
            target = quote(request.url.path, safe="/")
            return RedirectResponse(f"{CONSOLE}/login?next={target}", status_code=303)
        return render(request, "error.html", status=exc.http_status, user=viewer,
                      message_zh=exc.message_zh, back=back,
                      portal=request.url.path.startswith(PORTAL))

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

    api_http_handler = app.exception_handlers[StarletteHTTPException]
    api_validation_handler = app.exception_handlers[RequestValidationError]

    async def _delegate(handler: Callable[..., Any], request: Request,
                        exc: Exception) -> Response:
        result = handler(request, exc)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, Response)
        return result

    def _is_page(request: Request) -> bool:
        return request.url.path.startswith((CONSOLE, PORTAL, "/assets", "/fonts"))

    async def _http_error(request: Request, exc: Exception) -> Response:
        if not _is_page(request) or not isinstance(exc, StarletteHTTPException):
            return await _delegate(api_http_handler, request, exc)
        texts = {404: "页面不存在", 405: "不支持该请求方法", 413: "提交的内容过大"}
        return render(request, "error.html", status=exc.status_code, user=None,
                      message_zh=texts.get(exc.status_code, "请求无法处理"), back=None,
                      portal=request.url.path.startswith(PORTAL))

    async def _validation_error(request: Request, exc: Exception) -> Response:
        if not _is_page(request) or not isinstance(exc, RequestValidationError):
            return await _delegate(api_validation_handler, request, exc)
        fields = [str(err.get("loc", ("?",))[-1]) for err in exc.errors()]
        return render(request, "error.html", status=422, user=None,
                      message_zh="输入有误，请检查：" + "、".join(fields[:10]), back=None,
                      portal=request.url.path.startswith(PORTAL))

    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.mount("/assets", StaticFiles(directory=HERE / "static"), name="assets")

    @app.get("/fonts/{name}", include_in_schema=False)
    def font(name: Annotated[str, PathParam(max_length=32)]) -> Response:
        if name not in FONTS:
            raise StarletteHTTPException(404, "no such font")
        return Response((FONTS_DIR / FONTS[name]).read_bytes(), media_type="font/ttf",
                        headers={"Cache-Control": "public, max-age=86400"})

    # ---- sessions ---------------------------------------------------------------------
    def client_id(request: Request) -> str:
        if settings.trust_forwarded_for and (fwd := request.headers.get("x-forwarded-for")):
            return fwd.split(",")[0].strip()[:64]
        return request.client.host if request.client else "unknown"

    def staff_user(session: Session, request: Request, *roles: str) -> User:
        token = request.cookies.get(security.SESSION_COOKIE)
        if not token:
            raise AuthenticationError("no session cookie", "请先登录")
        user = accounts.user_for_token(session, token)
        request.state.viewer = Viewer(user.display_name_zh, user.role_set)
        if roles:
            accounts.require_role(user, *roles)
        return user

    def staff_csrf(request: Request) -> str:
        return security.csrf_token(secret, "staff", request.cookies.get(
            security.SESSION_COOKIE, ""))

    def check_staff_csrf(request: Request, given: str | None) -> None:
        security.check_csrf(secret, "staff", request.cookies.get(security.SESSION_COOKIE),
                            given)

    def pre_nonce(request: Request) -> tuple[str, bool]:
        nonce = request.cookies.get(security.PRE_COOKIE)
        return (nonce, False) if nonce and len(nonce) <= 64 else (security.new_nonce(), True)

    def with_pre(response: Response, nonce: str, fresh: bool) -> Response:
        if fresh:
            security.set_cookie(response, web, security.PRE_COOKIE, nonce)
        return response

    @contextmanager
    def staff_tx(request: Request, *roles: str) -> Iterator[tuple[Session, User]]:
        with transaction(factory) as session:
            yield session, staff_user(session, request, *roles)

    def visible_case(session: Session, user: User, case_id: int) -> Case:
        case = workflow.get_case(session, case_id)
        if user.role_set == {"station_operator"} and case.station_id != user.station_id:
            raise PermissionDeniedError("case of another station", "只能查看本站点的案件")
        return case

    # ---- login ------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse(f"{CONSOLE}/", status_code=303)

    def _safe_next(target: str | None) -> str:
        if target and target.startswith(CONSOLE + "/") and "//" not in target \
                and "\\" not in target and len(target) < 300:
            return target
        return f"{CONSOLE}/"

    @app.get(f"{CONSOLE}/login", include_in_schema=False)
    def login_page(request: Request, next: Annotated[str | None, Query(max_length=300)] = None
                   ) -> Response:
        nonce, fresh = pre_nonce(request)
        page = render(request, "login.html", user=None, next=_safe_next(next),
                      csrf=security.csrf_token(secret, "pre", nonce), error=None)
        return with_pre(page, nonce, fresh)

    @app.post(f"{CONSOLE}/login", include_in_schema=False)
    def login(request: Request, username: Annotated[str, Form(max_length=64)],
              password: Annotated[str, Form(max_length=256)],
              csrf_token: Annotated[str | None, Form(max_length=100)] = None,
              next: Annotated[str | None, Form(max_length=300)] = None) -> Response:
        nonce, fresh = pre_nonce(request)
        try:
            security.check_csrf(secret, "pre", request.cookies.get(security.PRE_COOKIE),
                                csrf_token)
            limiter.hit(f"login:{client_id(request)}",
                        limit=settings.login_per_client_per_minute, window_s=60)
            with transaction(factory) as session:
                user = accounts.authenticate(session, username=username, password=password)
                token, _expires = accounts.issue_token(session, user,
                                                       ttl_s=settings.session_ttl_s)
                roles = user.role_set
        except AuthenticationError as exc:
            with transaction(factory) as session:
                accounts.record_failed_login(session, username=username[:64],
                                             client_id=client_id(request))
            page = render(request, "login.html", status=401, user=None, next=_safe_next(next),
                          csrf=security.csrf_token(secret, "pre", nonce), error=exc.message_zh)
            return with_pre(page, nonce, fresh)
        except ServiceError as exc:
            return with_pre(error_page(request, exc, back=f"{CONSOLE}/login"), nonce, fresh)
        landing = _safe_next(next)
        if roles == {"administrator"} and landing == f"{CONSOLE}/":
            landing = f"{CONSOLE}/devices"
        response = RedirectResponse(landing, status_code=303)
        security.set_cookie(response, web, security.SESSION_COOKIE, token,
                            max_age_s=settings.session_ttl_s)
        return response

    @app.post(f"{CONSOLE}/logout", include_in_schema=False)
    def logout(request: Request,
               csrf_token: Annotated[str | None, Form(max_length=100)] = None) -> Response:
        try:
            check_staff_csrf(request, csrf_token)
            with transaction(factory) as session:
                token = request.cookies.get(security.SESSION_COOKIE, "")
                user = accounts.user_for_token(session, token)
                accounts.revoke_token(session, token)
                audit.append(session, actor=accounts.user_label(user),
                                      action="auth.logout", object_type="user",
                                      object_id=str(user.id), detail={})
        except ServiceError as exc:
            return error_page(request, exc)
        response = RedirectResponse(f"{CONSOLE}/login", status_code=303)
        security.clear_cookie(response, web, security.SESSION_COOKIE)
        return response

    # ---- review queue -----------------------------------------------------------------
    @app.get(f"{CONSOLE}/", include_in_schema=False)
    def queue(request: Request,
              state: Annotated[str | None, Query(max_length=32)] = None,
              site_id: Annotated[str | None, Query(max_length=64)] = None,
              lane: Annotated[str | None, Query(max_length=16)] = None,
              date_from: Annotated[str | None, Query(max_length=10)] = None,
              date_to: Annotated[str | None, Query(max_length=10)] = None,
              overdue: Annotated[str | None, Query(max_length=1)] = None,
              offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
        user: User | None = None
        try:
            with staff_tx(request, *STAFF_READ) as (session, user):
                if state and state not in workflow.STATES_ZH:
                    raise InvalidInputError(f"state {state!r} unknown", "案件状态无效")
                start, end = (_parse_date(date_from, "起始日期"),
                              _parse_date(date_to, "截止日期"))
                stmt = (select(Case, Passage.lane_code)
                        .join(Passage, Passage.id == Case.passage_id)
                        .order_by(Case.time_utc, Case.id))
                if state:
                    stmt = stmt.where(Case.state == state)
                if site_id:
                    stmt = stmt.where(Case.site_id == site_id)
                if lane:
                    stmt = stmt.where(Passage.lane_code == lane)
                if start is not None:
                    stmt = stmt.where(Case.time_utc >= datetime(start.year, start.month,
                                                                start.day, tzinfo=UTC))
                if end is not None:
                    stmt = stmt.where(Case.time_utc < datetime(end.year, end.month, end.day,
                                                               tzinfo=UTC) + timedelta(days=1))
                if user.role_set == {"station_operator"}:
                    stmt = stmt.where(Case.station_id == user.station_id)
                late = {o.case_id: o for o in workflow.overdue_cases(session)}
                if overdue == "1":
                    stmt = stmt.where(Case.id.in_(list(late) or [-1]))
                rows = session.execute(stmt.limit(web.queue_page_size + 1)
                                       .offset(offset)).all()
                sites = session.scalars(select(Site.site_id).order_by(Site.site_id)).all()
                more = len(rows) > web.queue_page_size
                page = render(request, "queue.html", user=user, csrf=staff_csrf(request),
                              rows=rows[:web.queue_page_size], late=late, sites=sites,
                              more=more, offset=offset, page_size=web.queue_page_size,
                              f={"state": state or "", "site_id": site_id or "",
                                 "lane": lane or "", "date_from": date_from or "",
                                 "date_to": date_to or "", "overdue": overdue == "1"})
            return page
        except ServiceError as exc:
            return error_page(request, exc, user=user)

    # ---- case page --------------------------------------------------------------------
    def case_context(session: Session, user: User, case: Case) -> dict[str, Any]:
        passage = session.get(Passage, case.passage_id)
        site = session.get(Site, case.site_id)
        device = None if passage is None or passage.device_id is None else session.get(
            Device, passage.device_id)
        try:
            evidence = evidence_view(case, waveform_max_points=web.waveform_max_points)
        except NotFoundError as exc:  # package missing or unreadable: show the rest
            evidence = unavailable_view(f"证据包无法读取：{exc.message_zh}（须人工核查）")
        statements = session.scalars(select(Statement).where(Statement.case_id == case.id)
                                     .order_by(Statement.id)).all()
        decision = session.scalars(select(Decision).where(Decision.case_id == case.id)).first()
        notices = session.scalars(select(Notice).where(Notice.case_id == case.id)
                                  .order_by(Notice.id)).all()
        history = session.scalars(select(AuditEntry).where(
            AuditEntry.object_type == "case", AuditEntry.object_id == str(case.id))
            .order_by(AuditEntry.id)).all()
        names = {u.id: u.display_name_zh for u in session.scalars(select(User).where(
            User.id.in_([i for i in (case.technical_reviewer_id, case.legal_reviewer_id,
                                     case.manual_override_by,
                                     None if decision is None else decision.decided_by)
                         if i is not None])))}
        late = [o for o in workflow.overdue_cases(session) if o.case_id == case.id]
        return {"case": case, "passage": passage, "site": site, "device": device,
                "ev": evidence, "integrity": integrity(case), "statements": statements,
                "decision": decision, "notices": notices, "history": history,
                "events": case.events, "names": names, "late": late,
                "can": {r: r in user.role_set for r in accounts.ROLES_ZH},
                "evidence_read": bool(user.role_set.intersection(EVIDENCE_READ)),
                "today": date.today().isoformat()}

    @app.get(f"{CONSOLE}/cases/{{case_id}}", include_in_schema=False)
    def case_page(request: Request, case_id: CaseId,
                  done: Annotated[str | None, Query(max_length=32)] = None) -> Response:
        user: User | None = None
        try:
            with staff_tx(request, *STAFF_READ) as (session, user):
                case = visible_case(session, user, case_id)
                owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                                         what="case_page")
                page = render(request, "case.html", user=user, csrf=staff_csrf(request),
                              done_zh=DONE_ZH.get(done or ""),
                              **case_context(session, user, case))
            return page
        except ServiceError as exc:
            return error_page(request, exc, user=user, back=f"{CONSOLE}/")

    @app.get(f"{CONSOLE}/cases/{{case_id}}/files/{{name:path}}", include_in_schema=False)
    def case_file(request: Request, case_id: CaseId,
                  name: Annotated[str, PathParam(max_length=200)]) -> Response:
        try:
            with staff_tx(request, *STAFF_READ) as (session, user):
                case = visible_case(session, user, case_id)
                media_type, data = owners.package_file(case, name)
                if not media_type.startswith("image/"):
                    raise NotFoundError(f"{name}: not an image", "文件不存在")
                owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                                         what=name)
            return Response(data, media_type=media_type,
                            headers={"Cache-Control": "no-store"})
        except ServiceError as exc:
            return error_page(request, exc)

    @app.get(f"{CONSOLE}/cases/{{case_id}}/package", include_in_schema=False)
    def case_package(request: Request, case_id: CaseId) -> Response:
        try:
            with staff_tx(request, *EVIDENCE_READ) as (session, user):
                case = workflow.get_case(session, case_id)
                filename, data = owners.package_zip(case)
                owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                                         what="package")
            return Response(data, media_type="application/zip", headers={
                "Content-Disposition": f'attachment; filename="{quote(filename)}"'})
        except ServiceError as exc:
            return error_page(request, exc)

    # ---- case actions -----------------------------------------------------------------
    def act(request: Request, case_id: int, action: str, csrf_given: str | None,
            roles: tuple[str, ...], do: Callable[[Session, Case, User], Any]) -> Response:
        user: User | None = None
        back = f"{CONSOLE}/cases/{case_id}"
        try:
            check_staff_csrf(request, csrf_given)
            with staff_tx(request, *roles) as (session, user):
                case = workflow.get_case(session, case_id)
                do(session, case, user)
        except ServiceError as exc:
            return error_page(request, exc, user=user, back=back)
        return RedirectResponse(f"{back}?done={action}", status_code=303)

    def decision_bool(value: str) -> bool:
        if value not in ("approve", "reject"):
            raise InvalidInputError(f"decision {value!r}", "请选择“通过”或“不通过”")
        return value == "approve"

    @app.post(f"{CONSOLE}/cases/{{case_id}}/technical-review", include_in_schema=False)
    def technical_review(request: Request, case_id: CaseId, expected_version: Ver,
                         verdict: Annotated[str, Form(max_length=10)],
                         reason: Text2000 = None, csrf_token: Csrf = None) -> Response:
        return act(request, case_id, "technical-review", csrf_token, ("technical_reviewer",),
                   lambda s, c, u: workflow.technical_review(
                       s, c, u, approve=decision_bool(verdict), reason=reason,
                       expected_version=expected_version))

    @app.post(f"{CONSOLE}/cases/{{case_id}}/legal-review", include_in_schema=False)
    def legal_review(request: Request, case_id: CaseId, expected_version: Ver,
                     verdict: Annotated[str, Form(max_length=10)],
                     reason: Text2000 = None, csrf_token: Csrf = None) -> Response:
        return act(request, case_id, "legal-review", csrf_token, ("legal_reviewer",),
                   lambda s, c, u: workflow.legal_review(
                       s, c, u, approve=decision_bool(verdict), reason=reason,
                       expected_version=expected_version))

    @app.post(f"{CONSOLE}/cases/{{case_id}}/manual-override", include_in_schema=False)
    def manual_override(request: Request, case_id: CaseId, expected_version: Ver,
                        reason: Annotated[str, Form(max_length=2000)],
                        csrf_token: Csrf = None) -> Response:
        return act(request, case_id, "manual-override", csrf_token, ("station_operator",),
                   lambda s, c, u: workflow.mark_manual_override(
                       s, c, u, reason=reason, expected_version=expected_version))

    @app.post(f"{CONSOLE}/cases/{{case_id}}/notify", include_in_schema=False)
    def notify(request: Request, case_id: CaseId, expected_version: Ver,
               channel: Annotated[str, Form(max_length=32)],
               hearing_right: Annotated[str | None, Form(max_length=3)] = None,
               csrf_token: Csrf = None) -> Response:
        right = {"yes": True, "no": False}.get(hearing_right or "")
        return act(request, case_id, "notify", csrf_token, ("decision_maker",),
                   lambda s, c, u: workflow.open_and_notify(
                       s, c, u, channel=channel, policy=settings.deadlines,
                       hearing_right=right, expected_version=expected_version))

    @app.post(f"{CONSOLE}/cases/{{case_id}}/statements/{{statement_id}}/answer",
              include_in_schema=False)
    def answer(request: Request, case_id: CaseId,
               statement_id: StatementId,
               response: Annotated[str, Form(max_length=2000)],
               csrf_token: Csrf = None) -> Response:
        return act(request, case_id, "answer", csrf_token, ("legal_reviewer",),
                   lambda s, c, u: workflow.answer_statement(
                       s, c, u, statement_id=statement_id, response=response))

    @app.post(f"{CONSOLE}/cases/{{case_id}}/hearing", include_in_schema=False)
    def hearing(request: Request, case_id: CaseId,
                held_utc: Annotated[str, Form(max_length=32)],
                summary: Annotated[str, Form(max_length=2000)],
                csrf_token: Csrf = None) -> Response:
        def do(s: Session, c: Case, u: User) -> Any:
            try:
                held = datetime.fromisoformat(held_utc.strip().replace("Z", "+00:00"))
            except ValueError as exc:
                raise InvalidInputError(f"held_utc {held_utc!r}",
                                        "听证时间格式应为 YYYY-MM-DDTHH:MM（UTC）") from exc
            held = held if held.tzinfo else held.replace(tzinfo=UTC)
            return workflow.record_hearing(s, c, u, held_utc=held, summary=summary)
        return act(request, case_id, "hearing", csrf_token, ("legal_reviewer",), do)

    @app.post(f"{CONSOLE}/cases/{{case_id}}/close-statements", include_in_schema=False)
    def close_statements(request: Request, case_id: CaseId, expected_version: Ver,
                         csrf_token: Csrf = None) -> Response:
        return act(request, case_id, "close-statements", csrf_token, ("legal_reviewer",),
                   lambda s, c, u: workflow.close_statements(
                       s, c, u, expected_version=expected_version))

    @app.post(f"{CONSOLE}/cases/{{case_id}}/decision", include_in_schema=False)
    def decision(request: Request, case_id: CaseId, expected_version: Ver,
                 outcome: Annotated[str, Form(max_length=16)],
                 fine_yuan: Annotated[int, Form(ge=0, le=10_000_000)],
                 reasons: Annotated[str, Form(max_length=2000)],
                 csrf_token: Csrf = None) -> Response:
        return act(request, case_id, "decision", csrf_token, ("decision_maker",),
                   lambda s, c, u: workflow.decide(
                       s, c, u, outcome=outcome, fine_yuan=fine_yuan, reasons=reasons,
                       expected_version=expected_version, policy=settings.deadlines))

    @app.post(f"{CONSOLE}/cases/{{case_id}}/serve", include_in_schema=False)
    def serve(request: Request, case_id: CaseId, expected_version: Ver,
              channel: Annotated[str, Form(max_length=32)],
              csrf_token: Csrf = None) -> Response:
        return act(request, case_id, "serve", csrf_token, ("decision_maker",),
                   lambda s, c, u: workflow.serve(s, c, u, channel=channel,
                                                  expected_version=expected_version))

    @app.post(f"{CONSOLE}/cases/{{case_id}}/publish", include_in_schema=False)
    def publish(request: Request, case_id: CaseId, expected_version: Ver,
                csrf_token: Csrf = None) -> Response:
        return act(request, case_id, "publish", csrf_token, ("decision_maker",),
                   lambda s, c, u: workflow.publish(s, c, u,
                                                    expected_version=expected_version))

    @app.post(f"{CONSOLE}/cases/{{case_id}}/archive", include_in_schema=False)
    def archive(request: Request, case_id: CaseId, expected_version: Ver,
                csrf_token: Csrf = None) -> Response:
        return act(request, case_id, "archive", csrf_token,
                   ("decision_maker", "legal_reviewer"),
                   lambda s, c, u: workflow.archive(s, c, u,
                                                    expected_version=expected_version))

    # ---- registry and dashboard -------------------------------------------------------
    @app.get(f"{CONSOLE}/devices", include_in_schema=False)
    def devices(request: Request) -> Response:
        user: User | None = None
        try:
            with staff_tx(request, *REGISTRY_READ) as (session, user):
                rows = session.execute(select(Device, Lane).outerjoin(
                    Lane, Lane.id == Device.lane_id).order_by(Device.device_id)).all()
                now = utc_now()
                page = render(request, "devices.html", user=user, csrf=staff_csrf(request),
                              rows=rows, now=now)
            return page
        except ServiceError as exc:
            return error_page(request, exc, user=user)

    @app.get(f"{CONSOLE}/dashboard", include_in_schema=False)
    def dashboard(request: Request) -> Response:
        user: User | None = None
        try:
            with staff_tx(request, *REGISTRY_READ) as (session, user):
                now = utc_now()
                since = now - timedelta(hours=24)
                stmt = (select(Passage.site_id, Passage.lane_code, func.count(),
                               func.sum(func.cast(Passage.overloaded, type_=Integer())),
                               func.min(Passage.time_utc), func.max(Passage.time_utc))
                        .group_by(Passage.site_id, Passage.lane_code)
                        .order_by(Passage.site_id, Passage.lane_code))
                if user.role_set == {"station_operator"}:
                    stmt = stmt.where(Passage.station_id == user.station_id)
                recent = dict(((s, ln), n) for s, ln, n in session.execute(
                    select(Passage.site_id, Passage.lane_code, func.count())
                    .where(Passage.time_utc >= since)
                    .group_by(Passage.site_id, Passage.lane_code)).all())
                lanes = []
                for site_id, lane_code, count, over, first, last in session.execute(stmt):
                    hours = max((last - first).total_seconds() / 3600, 0) if first and last \
                        else 0
                    lanes.append({
                        "site_id": site_id, "lane_code": lane_code, "count": int(count),
                        "overloaded": int(over or 0),
                        "rate": (over or 0) / count if count else None,
                        "per_hour": count / hours if hours >= 1 else None,
                        "last_24h": int(recent.get((site_id, lane_code), 0)),
                        "first": first, "last": last})
                device_rows = session.execute(select(Device, Lane).outerjoin(
                    Lane, Lane.id == Device.lane_id).order_by(Device.device_id)).all()
                page = render(request, "dashboard.html", user=user, csrf=staff_csrf(request),
                              lanes=lanes, devices=device_rows, now=now)
            return page
        except ServiceError as exc:
            return error_page(request, exc, user=user)

    _register_portal(app, settings, web, factory, limiter, render, error_page,
                     client_id, pre_nonce, with_pre)
    return app


def _register_portal(app: FastAPI, settings: Settings, web: WebSettings,
                     factory: sessionmaker[Session], limiter: owners.RateLimiter,
                     render: Callable[..., HTMLResponse],
                     error_page: Callable[..., Response],
                     client_id: Callable[[Request], str],
                     pre_nonce: Callable[[Request], tuple[str, bool]],
                     with_pre: Callable[[Response, str, bool], Response]) -> None:
    """The owner portal (``/portal``) and the public disclosure page."""
    secret = settings.secret_key
    def grant_of(request: Request) -> tuple[owners.OwnerGrant, str]:
        token = request.cookies.get(security.OWNER_COOKIE)
        return owners.read_owner_token(settings, token), token or ""

    def owner_csrf(token: str) -> str:
        return security.csrf_token(secret, "owner", token)

    def actor(grant: owners.OwnerGrant) -> str:
        return f"owner:vehicle:{grant.vehicle_id}"

    @app.get(f"{PORTAL}/", include_in_schema=False)
    def portal_home(request: Request) -> Response:
        nonce, fresh = pre_nonce(request)
        page = render(request, "owner_query.html", csrf=security.csrf_token(secret, "pre", nonce),
                      message_zh=None, form={})
        return with_pre(page, nonce, fresh)

    @app.post(f"{PORTAL}/query", include_in_schema=False)
    def portal_query(request: Request, plate: Annotated[str, Form(max_length=16)],
                     plate_colour: Annotated[str, Form(max_length=16)],
                     id_kind: Annotated[str, Form(pattern="^(vin|file)$")],
                     secret_value: Annotated[str, Form(max_length=20)],
                     csrf_token: Annotated[str | None, Form(max_length=100)] = None
                     ) -> Response:
        nonce, fresh = pre_nonce(request)
        form = {"plate": plate, "plate_colour": plate_colour, "id_kind": id_kind}
        try:
            security.check_csrf(secret, "pre", request.cookies.get(security.PRE_COOKIE),
                                csrf_token)
            with transaction(factory) as session:
                answer = owners.owner_query(
                    session, settings, limiter, client_id=client_id(request), plate=plate,
                    plate_colour=plate_colour,
                    vin_last6=secret_value if id_kind == "vin" else None,
                    licence_file_number=secret_value if id_kind == "file" else None)
        except ServiceError as exc:
            page = render(request, "owner_query.html", status=exc.http_status,
                          csrf=security.csrf_token(secret, "pre", nonce),
                          message_zh=exc.message_zh, form=form)
            return with_pre(page, nonce, fresh)
        if not answer.get("owner_token"):
            page = render(request, "owner_query.html", status=200,
                          csrf=security.csrf_token(secret, "pre", nonce),
                          message_zh=answer["message_zh"], form=form)
            return with_pre(page, nonce, fresh)
        response = RedirectResponse(f"{PORTAL}/records", status_code=303)
        security.set_cookie(response, web, security.OWNER_COOKIE, answer["owner_token"],
                            max_age_s=settings.owner_token_ttl_s, path=PORTAL)
        return response

    @app.get(f"{PORTAL}/records", include_in_schema=False)
    def portal_records(request: Request) -> Response:
        try:
            grant, token = grant_of(request)
            with transaction(factory) as session:
                records = []
                for case_id in sorted(grant.case_ids):
                    case = owners.owner_case(session, grant, case_id)
                    records.append(owners.owner_record_json(session, case))
                    owners.log_evidence_view(session, actor=actor(grant), case=case,
                                             what="portal_list")
            return render(request, "owner_results.html", records=records,
                          csrf=owner_csrf(token))
        except ServiceError as exc:
            return error_page(request, exc, back=f"{PORTAL}/")

    @app.get(f"{PORTAL}/records/{{case_id}}", include_in_schema=False)
    def portal_record(request: Request, case_id: CaseId,
                      done: Annotated[str | None, Query(max_length=32)] = None) -> Response:
        try:
            grant, token = grant_of(request)
            with transaction(factory) as session:
                case = owners.owner_case(session, grant, case_id)
                record = owners.owner_record_json(session, case)
                owners.log_evidence_view(session, actor=actor(grant), case=case,
                                         what="portal_record")
                today = china_date(utc_now())
                can_state = case.state == "notified" and case.statement_due is not None \
                    and today <= case.statement_due
                can_hearing = case.state == "notified" and case.hearing_right == "yes" \
                    and case.hearing_request_due is not None \
                    and today <= case.hearing_request_due
            return render(request, "owner_record.html", r=record, csrf=owner_csrf(token),
                          can_state=can_state, can_hearing=can_hearing,
                          done_zh=DONE_ZH.get(done or ""),
                          max_files=settings.attachment_max_count,
                          max_mb=settings.attachment_max_bytes // (1024 * 1024),
                          max_chars=settings.statement_max_chars)
        except ServiceError as exc:
            return error_page(request, exc, back=f"{PORTAL}/records")

    @app.get(f"{PORTAL}/records/{{case_id}}/files/{{name:path}}", include_in_schema=False)
    def portal_file(request: Request, case_id: CaseId,
                    name: Annotated[str, PathParam(max_length=200)]) -> Response:
        try:
            grant, _token = grant_of(request)
            with transaction(factory) as session:
                case = owners.owner_case(session, grant, case_id)
                media_type, data = owners.package_file(case, name)
                if not media_type.startswith("image/"):
                    raise NotFoundError(f"{name}: not an image", "文件不存在")
                owners.log_evidence_view(session, actor=actor(grant), case=case, what=name)
            return Response(data, media_type=media_type, headers={"Cache-Control": "no-store"})
        except ServiceError as exc:
            return error_page(request, exc)

    @app.get(f"{PORTAL}/records/{{case_id}}/package", include_in_schema=False)
    def portal_package(request: Request, case_id: CaseId) -> Response:
        try:
            grant, _token = grant_of(request)
            with transaction(factory) as session:
                case = owners.owner_case(session, grant, case_id)
                filename, data = owners.package_zip(case)
                owners.log_evidence_view(session, actor=actor(grant), case=case,
                                         what="package")
            return Response(data, media_type="application/zip", headers={
                "Content-Disposition": f'attachment; filename="{quote(filename)}"'})
        except ServiceError as exc:
            return error_page(request, exc)

    @app.post(f"{PORTAL}/records/{{case_id}}/statements", include_in_schema=False)
    def portal_statement(request: Request, case_id: CaseId,
                         text: Annotated[str, Form(max_length=20_000)],
                         kind: Annotated[str, Form(pattern="^(statement|hearing_request)$")] =
                         "statement",
                         contact: Annotated[str | None, Form(max_length=100)] = None,
                         files: Annotated[list[UploadFile] | None, File()] = None,
                         csrf_token: Annotated[str | None, Form(max_length=100)] = None
                         ) -> Response:
        back = f"{PORTAL}/records/{case_id}"
        try:
            grant, token = grant_of(request)
            security.check_csrf(secret, "owner", token, csrf_token)
            uploads = [u for u in files or [] if u.filename]  # an empty file input sends one
            if len(uploads) > settings.attachment_max_count:
                raise InvalidInputError(f"at most {settings.attachment_max_count} attachments",
                                        f"附件最多 {settings.attachment_max_count} 个")
            blobs = [(u.filename or "attachment", u.file.read(settings.attachment_max_bytes + 1))
                     for u in uploads]
            if any(ord(c) < 32 and c not in "\n\r\t" for c in text):
                raise InvalidInputError("text: control characters", "内容含有非法控制字符")
            with transaction(factory) as session:
                owners.file_statement(session, settings, grant, case_id=case_id, kind=kind,
                                      text=text, contact=contact or None, files=blobs)
        except ServiceError as exc:
            return error_page(request, exc, back=back)
        return RedirectResponse(f"{back}?done=statement", status_code=303)

    @app.post(f"{PORTAL}/logout", include_in_schema=False)
    def portal_logout(request: Request,
                      csrf_token: Annotated[str | None, Form(max_length=100)] = None
                      ) -> Response:
        try:
            security.check_csrf(secret, "owner", request.cookies.get(security.OWNER_COOKIE),
                                csrf_token)
        except ServiceError as exc:
            return error_page(request, exc)
        response = RedirectResponse(f"{PORTAL}/", status_code=303)
        security.clear_cookie(response, web, security.OWNER_COOKIE, path=PORTAL)
        return response

    @app.get(f"{PORTAL}/disclosures", include_in_schema=False)
    def portal_disclosures(request: Request,
                           year: Annotated[int | None, Query(ge=2000, le=2100)] = None
                           ) -> Response:
        with transaction(factory) as session:
            rows = owners.public_disclosures(session, year=year)
        return render(request, "disclosures.html", rows=rows, year=year)

