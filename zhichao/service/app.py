"""The JSON API: ``create_app(settings)`` builds a FastAPI app on the service functions.

Routes are thin: they parse, authenticate, check the role (every staff route declares its
roles in ``openapi_extra["x-roles"]`` and checks them), call one service function inside a
transaction and shape the answer. Business rules live in ``workflow.py``, ``owners.py``,
``accounts.py``, ``stats.py``. Every message a person reads is zh-CN; errors are
``{"error": code, "message_zh": ..., "message": ...}``.

Authentication: staff send ``Authorization: Bearer <token>`` (``POST /api/v1/auth/login``);
owners send ``X-Owner-Token`` (from ``POST /api/v1/owner/query``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhichao import __version__
from zhichao.service import accounts, audit, events, owners, stats, workflow
from zhichao.service.db import make_engine, session_factory, transaction, upgrade
from zhichao.service.errors import (
    AuthenticationError,
    InvalidInputError,
    PermissionDeniedError,
    ServiceError,
)
from zhichao.service.guards import install_guards
from zhichao.service.models import AuditEntry, Case, Decision, Review, Statement, User
from zhichao.service.settings import Settings

API = "/api/v1"
STAFF_READ = ("technical_reviewer", "legal_reviewer", "decision_maker", "auditor",
              "station_operator")
EVIDENCE_READ = ("technical_reviewer", "legal_reviewer", "decision_maker", "auditor")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


SafeStr = Annotated[str, AfterValidator(_no_control)]
CaseId = Annotated[int, Path(ge=1, le=2**31 - 1, description="案件编号")]
Version = Annotated[int | None, Field(default=None, ge=1, le=2**31 - 1)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    username: SafeStr = Field(min_length=1, max_length=64)
    password: SafeStr = Field(min_length=1, max_length=256)


class ReviewIn(_In):
    approve: bool
    reason: SafeStr | None = Field(default=None, max_length=2000)
    expected_version: Version = None


class NotifyIn(_In):
    channel: SafeStr = Field(max_length=32)
    hearing_right: bool | None = None
    expected_version: Version = None


class AnswerIn(_In):
    response: SafeStr = Field(min_length=1, max_length=2000)


class HearingIn(_In):
    held_utc: datetime
    summary: SafeStr = Field(min_length=1, max_length=2000)


class VersionIn(_In):
    expected_version: Version = None


class OverrideIn(_In):
    reason: SafeStr = Field(min_length=1, max_length=2000)
    expected_version: Version = None


class DecisionIn(_In):
    outcome: SafeStr = Field(max_length=16)
    fine_yuan: int = Field(ge=0, le=10_000_000)
    reasons: SafeStr = Field(min_length=1, max_length=2000)
    expected_version: Version = None


class ServeIn(_In):
    channel: SafeStr = Field(max_length=32)
    served_utc: datetime | None = None
    expected_version: Version = None


class UserIn(_In):
    username: SafeStr = Field(max_length=64)
    password: SafeStr = Field(max_length=256)
    display_name_zh: SafeStr = Field(max_length=100)
    roles: list[SafeStr] = Field(min_length=1, max_length=6)
    station_id: SafeStr | None = Field(default=None, max_length=64)


class OwnerQueryIn(_In):
    plate: SafeStr = Field(max_length=16, description="号牌，如 浙A12345")
    plate_colour: SafeStr = Field(max_length=16, description="号牌颜色：蓝/黄/绿/黄绿/白/黑")
    vin_last6: SafeStr | None = Field(default=None, max_length=6)
    licence_file_number: SafeStr | None = Field(default=None, max_length=20)


_bearer = HTTPBearer(auto_error=False, description="工作人员登录令牌")
_owner_header = APIKeyHeader(name="X-Owner-Token", auto_error=False,
                             description="车主查询凭证")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
OwnerDep = Annotated[str | None, Depends(_owner_header)]


def _roles(*roles: str) -> dict[str, Any]:
    return {"x-roles": list(roles)}


def case_json(case: Case) -> dict[str, Any]:
    def d(value: Any) -> Any:
        return None if value is None else value.isoformat()
    return {
        "id": case.id, "version": case.version, "state": case.state,
        "state_zh": workflow.STATES_ZH[case.state], "package_id": case.package_id,
        "manifest_sha256": case.manifest_sha256, "station_id": case.station_id,
        "site_id": case.site_id, "time_utc": d(case.time_utc), "plate": case.plate,
        "plate_colour": case.plate_colour, "eligibility_status": case.eligibility_status,
        "proposed_outcome": case.proposed_outcome,
        "proposed_fine_yuan": case.proposed_fine_yuan, "hearing_right": case.hearing_right,
        "legal_basis_zh": case.legal_basis_zh, "manual_override": case.manual_override,
        "manual_override_reason": case.manual_override_reason,
        "technical_reviewer_id": case.technical_reviewer_id,
        "legal_reviewer_id": case.legal_reviewer_id,
        "hearing_requested": case.hearing_requested, "hearing_held_utc": d(case.hearing_held_utc),
        "opened_utc": d(case.opened_utc), "statement_due": d(case.statement_due),
        "hearing_request_due": d(case.hearing_request_due), "decision_due": d(case.decision_due),
        "serve_due": d(case.serve_due), "published_utc": d(case.published_utc),
    }


def case_detail_json(session: Session, case: Case) -> dict[str, Any]:
    out = case_json(case)
    out["events"] = [{"from": e.from_state, "to": e.to_state, "actor": e.actor_label,
                      "time_utc": e.time_utc.isoformat(), "reason_zh": e.reason_zh}
                     for e in case.events]
    out["reviews"] = [{"stage": r.stage, "reviewer_id": r.reviewer_id, "approved": r.approved,
                       "reason_zh": r.reason_zh, "time_utc": r.time_utc.isoformat()}
                      for r in session.scalars(select(Review).where(Review.case_id == case.id)
                                               .order_by(Review.id))]
    out["statements"] = [
        {"id": s.id, "kind": s.kind, "text_zh": s.text_zh, "filed_utc": s.filed_utc.isoformat(),
         "response_zh": s.response_zh,
         "attachments": [{"filename": a.filename, "media_type": a.media_type,
                          "size_bytes": a.size_bytes, "sha256": a.sha256}
                         for a in s.attachments]}
        for s in session.scalars(select(Statement).where(Statement.case_id == case.id)
                                 .order_by(Statement.id))]
    decision = session.scalars(select(Decision).where(Decision.case_id == case.id)).first()
    out["decision"] = None if decision is None else {
        "outcome": decision.outcome, "fine_yuan": decision.fine_yuan,
        "reasons_zh": decision.reasons_zh, "decided_by": decision.decided_by,
        "decided_utc": decision.decided_utc.isoformat(),
        "served_utc": None if decision.served_utc is None else decision.served_utc.isoformat()}
    return out


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "display_name_zh": user.display_name_zh,
            "roles": sorted(user.role_set), "station_id": user.station_id,
            "active": user.active}


def _error(exc: ServiceError) -> JSONResponse:
    code = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__.removesuffix("Error")).lower()
    return JSONResponse(status_code=exc.http_status,
                        content={"error": code or "service", "message_zh": exc.message_zh,
                                 "message": exc.message})


_HTTP_ZH = {404: "未找到该地址", 405: "不支持该请求方法", 413: "请求内容过大",
            401: "未登录或登录已过期", 403: "无权访问"}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service app on ``settings.database_url`` (migrated at start unless disabled)."""
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url, schema=settings.database_schema)
    if settings.migrate_on_start:
        upgrade(engine)
    factory = session_factory(engine)
    limiter = owners.RateLimiter()
    flusher = None
    if settings.events_flusher_enabled:
        assert settings.evidence_log_dir is not None
        assert settings.evidence_log_key_path is not None
        assert settings.evidence_log_key_name is not None
        flusher = events.EventFlusher(
            factory, FilePath(settings.evidence_log_dir),
            key_path=FilePath(settings.evidence_log_key_path),
            key_name=settings.evidence_log_key_name, origin=settings.evidence_log_origin,
            interval_s=settings.events_flush_interval_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = None if flusher is None else asyncio.create_task(flusher.run())
        try:
            yield
        finally:
            if flusher is not None and task is not None:
                flusher.stop()
                await task  # the event being appended finishes; nothing is cut in half

    app = FastAPI(title="治超非现场执法服务 API", version=__version__,
                  description="技术审核、法制审核、立案告知、陈述申辩、决定、送达、公示与车主查询。",
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = factory
    app.state.limiter = limiter
    app.state.event_flusher = flusher
    install_guards(app, settings)  # body limits, login throttle, error answers (#18)

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(p) for p in err.get("loc", ())) for err in exc.errors()]
        return JSONResponse(status_code=422, content={
            "error": "invalid_input", "message_zh": "输入有误：" + "、".join(fields[:10]),
            "message": "request validation failed", "fields": fields[:50]})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, headers=exc.headers, content={
            "error": f"http_{exc.status_code}",
            "message_zh": _HTTP_ZH.get(exc.status_code, "请求无法处理"),
            "message": str(exc.detail)})

    @app.middleware("http")
    async def _limits_and_headers(request: Request,
                                  call_next: Callable[[Request], Awaitable[Response]]
                                  ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit()
                                   or int(length) > settings.max_request_bytes):
            return JSONResponse(status_code=413, content={
                "error": "http_413", "message_zh": "请求内容过大",
                "message": f"body over {settings.max_request_bytes} bytes"})
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.url.path.startswith(API):
            response.headers["Cache-Control"] = "no-store"
            response.headers["Content-Security-Policy"] = "default-src 'none'; " \
                                                          "frame-ancestors 'none'"
        return response

    def client_id(request: Request) -> str:
        if settings.trust_forwarded_for and (fwd := request.headers.get("x-forwarded-for")):
            return fwd.split(",")[0].strip()[:64]
        return request.client.host if request.client else "unknown"

    @contextmanager
    def staff(creds: HTTPAuthorizationCredentials | None,
              *roles: str) -> Iterator[tuple[Session, User]]:
        if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
            raise AuthenticationError("no bearer token", "请先登录")
        with transaction(factory) as session:
            user = accounts.user_for_token(session, creds.credentials)
            if roles:
                accounts.require_role(user, *roles)
            yield session, user

    def visible_case(session: Session, user: User, case_id: int) -> Case:
        case = workflow.get_case(session, case_id)
        if user.role_set == {"station_operator"} and case.station_id != user.station_id:
            raise PermissionDeniedError("case of another station", "只能查看本站点的案件")
        return case

    router = APIRouter(prefix=API)

    @router.get("/health", summary="服务状态")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @router.post("/auth/login", summary="工作人员登录")
    def login(body: LoginIn, request: Request) -> dict[str, Any]:
        limiter.hit(f"login:{client_id(request)}", limit=settings.login_per_client_per_minute,
                    window_s=60)
        try:
            with transaction(factory) as session:
                user = accounts.authenticate(session, username=body.username,
                                             password=body.password)
                token, expires = accounts.issue_token(session, user,
                                                      ttl_s=settings.session_ttl_s)
                return {"token": token, "expires_utc": expires.isoformat(),
                        "user": user_json(user)}
        except AuthenticationError:
            with transaction(factory) as session:
                accounts.record_failed_login(session, username=body.username,
                                             client_id=client_id(request))
            raise

    @router.post("/auth/logout", summary="退出登录", openapi_extra=_roles())
    def logout(creds: BearerDep) -> dict[str, Any]:
        with staff(creds) as (session, _user):
            assert creds is not None
            accounts.revoke_token(session, creds.credentials)
        return {"message_zh": "已退出登录"}

    @router.get("/me", summary="当前用户", openapi_extra=_roles())
    def me(creds: BearerDep) -> dict[str, Any]:
        with staff(creds) as (_session, user):
            return user_json(user)

    @router.get("/cases", summary="案件列表（审核队列）", openapi_extra=_roles(*STAFF_READ))
    def list_cases(creds: BearerDep,
                   state: Annotated[str | None, Query(max_length=32)] = None,
                   site_id: Annotated[str | None, Query(max_length=64)] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100,
                   offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict[str, Any]:
        with staff(creds, *STAFF_READ) as (session, user):
            if state is not None and state not in workflow.STATES_ZH:
                raise InvalidInputError(f"state {state!r} unknown", "案件状态无效")
            stmt = select(Case).order_by(Case.id).limit(limit).offset(offset)
            if state is not None:
                stmt = stmt.where(Case.state == state)
            if site_id is not None:
                stmt = stmt.where(Case.site_id == _no_control_zh(site_id))
            if user.role_set == {"station_operator"}:
                stmt = stmt.where(Case.station_id == user.station_id)
            return {"cases": [case_json(c) for c in session.scalars(stmt)]}

    @router.get("/cases/overdue", summary="逾期案件", openapi_extra=_roles(*EVIDENCE_READ))
    def overdue(creds: BearerDep) -> dict[str, Any]:
        with staff(creds, *EVIDENCE_READ) as (session, _user):
            return {"overdue": [{"case_id": o.case_id, "state": o.state,
                                 "due": o.due.isoformat(), "what_zh": o.what_zh}
                                for o in workflow.overdue_cases(session)]}

    @router.get("/cases/{case_id}", summary="案件详情", openapi_extra=_roles(*STAFF_READ))
    def get_case(case_id: CaseId, creds: BearerDep) -> dict[str, Any]:
        with staff(creds, *STAFF_READ) as (session, user):
            case = visible_case(session, user, case_id)
            owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                                     what="case")
            return case_detail_json(session, case)

    @router.get("/cases/{case_id}/package", summary="下载证据包",
                openapi_extra=_roles(*EVIDENCE_READ), response_class=Response)
    def get_package(case_id: CaseId, creds: BearerDep) -> Response:
        with staff(creds, *EVIDENCE_READ) as (session, user):
            case = workflow.get_case(session, case_id)
            name, data = owners.package_zip(case)
            owners.log_evidence_view(session, actor=accounts.user_label(user), case=case,
                                     what="package")
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def _case_action(creds: HTTPAuthorizationCredentials | None, case_id: int,
                     roles: tuple[str, ...],
                     action: Callable[[Session, Case, User], Any]) -> dict[str, Any]:
        with staff(creds, *roles) as (session, user):
            case = workflow.get_case(session, case_id)
            action(session, case, user)
            session.flush()
            return case_json(case)

    @router.post("/cases/{case_id}/manual-override", summary="人工修正标记",
                 openapi_extra=_roles("station_operator"))
    def manual_override(case_id: CaseId, body: OverrideIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("station_operator",), lambda s, c, u:
                            workflow.mark_manual_override(
                                s, c, u, reason=body.reason,
                                expected_version=body.expected_version))

    @router.post("/cases/{case_id}/technical-review", summary="技术审核",
                 openapi_extra=_roles("technical_reviewer"))
    def technical_review(case_id: CaseId, body: ReviewIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("technical_reviewer",), lambda s, c, u:
                            workflow.technical_review(s, c, u, approve=body.approve,
                                                      reason=body.reason,
                                                      expected_version=body.expected_version))

    @router.post("/cases/{case_id}/legal-review", summary="法制审核",
                 openapi_extra=_roles("legal_reviewer"))
    def legal_review(case_id: CaseId, body: ReviewIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("legal_reviewer",), lambda s, c, u:
                            workflow.legal_review(s, c, u, approve=body.approve,
                                                  reason=body.reason,
                                                  expected_version=body.expected_version))

    @router.post("/cases/{case_id}/notify", summary="立案并告知",
                 openapi_extra=_roles("decision_maker"))
    def notify(case_id: CaseId, body: NotifyIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("decision_maker",), lambda s, c, u:
                            workflow.open_and_notify(s, c, u, channel=body.channel,
                                                     policy=settings.deadlines,
                                                     hearing_right=body.hearing_right,
                                                     expected_version=body.expected_version))

    @router.post("/cases/{case_id}/statements/{statement_id}/answer", summary="陈述申辩复核答复",
                 openapi_extra=_roles("legal_reviewer"))
    def answer(case_id: CaseId, statement_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
               body: AnswerIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("legal_reviewer",), lambda s, c, u:
                            workflow.answer_statement(s, c, u, statement_id=statement_id,
                                                      response=body.response))

    @router.post("/cases/{case_id}/hearing", summary="听证记录",
                 openapi_extra=_roles("legal_reviewer"))
    def hearing(case_id: CaseId, body: HearingIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("legal_reviewer",), lambda s, c, u:
                            workflow.record_hearing(s, c, u, held_utc=body.held_utc,
                                                    summary=body.summary))

    @router.post("/cases/{case_id}/close-statements", summary="陈述申辩、听证处理完毕",
                 openapi_extra=_roles("legal_reviewer"))
    def close_statements(case_id: CaseId, body: VersionIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("legal_reviewer",), lambda s, c, u:
                            workflow.close_statements(s, c, u,
                                                      expected_version=body.expected_version))

    @router.post("/cases/{case_id}/decision", summary="作出决定",
                 openapi_extra=_roles("decision_maker"))
    def decision(case_id: CaseId, body: DecisionIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("decision_maker",), lambda s, c, u:
                            workflow.decide(s, c, u, outcome=body.outcome,
                                            fine_yuan=body.fine_yuan, reasons=body.reasons,
                                            expected_version=body.expected_version,
                                            policy=settings.deadlines))

    @router.post("/cases/{case_id}/serve", summary="送达决定书",
                 openapi_extra=_roles("decision_maker"))
    def serve(case_id: CaseId, body: ServeIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("decision_maker",), lambda s, c, u:
                            workflow.serve(s, c, u, channel=body.channel,
                                           served_utc=body.served_utc,
                                           expected_version=body.expected_version))

    @router.post("/cases/{case_id}/publish", summary="结案公示",
                 openapi_extra=_roles("decision_maker"))
    def publish(case_id: CaseId, body: VersionIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("decision_maker",), lambda s, c, u:
                            workflow.publish(s, c, u, expected_version=body.expected_version))

    @router.post("/cases/{case_id}/archive", summary="归档",
                 openapi_extra=_roles("decision_maker", "legal_reviewer"))
    def archive(case_id: CaseId, body: VersionIn, creds: BearerDep) -> dict[str, Any]:
        return _case_action(creds, case_id, ("decision_maker", "legal_reviewer"),
                            lambda s, c, u: workflow.archive(
                                s, c, u, expected_version=body.expected_version))

    stats_roles = ("auditor", "decision_maker", "administrator")

    @router.get("/statistics/{year}", summary="年度行政执法统计（JSON 或 CSV）",
                openapi_extra=_roles(*stats_roles))
    def statistics(year: Annotated[int, Path(ge=2000, le=2100)], creds: BearerDep,
                   format: Annotated[str, Query(pattern="^(json|csv)$")] = "json") -> Any:
        with staff(creds, *stats_roles) as (session, _user):
            figures = stats.annual_statistics(session, year)
        if format == "csv":
            return Response(stats.statistics_csv(figures), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition":
                                     f'attachment; filename="statistics-{year}.csv"'})
        return figures

    @router.get("/audit", summary="审计日志", openapi_extra=_roles("auditor"))
    def audit_log(creds: BearerDep,
                  after_id: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # int4 id
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
        with staff(creds, "auditor") as (session, _user):
            rows = session.scalars(select(AuditEntry).where(AuditEntry.id > after_id)
                                   .order_by(AuditEntry.id).limit(limit)).all()
            return {"entries": [{"id": e.id, "time_utc": e.time_utc.isoformat(),
                                 "actor": e.actor, "action": e.action,
                                 "object_type": e.object_type, "object_id": e.object_id,
                                 "detail": e.detail, "prev_sha256": e.prev_sha256,
                                 "entry_sha256": e.entry_sha256} for e in rows]}

    @router.get("/audit/verify", summary="审计日志链校验", openapi_extra=_roles("auditor"))
    def audit_verify(creds: BearerDep) -> dict[str, Any]:
        with staff(creds, "auditor") as (session, _user):
            problems = audit.verify_chain(session)
            return {"ok": not problems,
                    "message_zh": "审计日志链完整" if not problems else "审计日志链校验失败",
                    "problems": [{"entry_id": p.entry_id, "problem": p.problem}
                                 for p in problems]}

    @router.get("/users", summary="用户列表", openapi_extra=_roles("administrator"))
    def list_users(creds: BearerDep) -> dict[str, Any]:
        with staff(creds, "administrator") as (session, _user):
            return {"users": [user_json(u) for u in session.scalars(
                select(User).order_by(User.id))]}

    @router.post("/users", summary="新增用户", openapi_extra=_roles("administrator"))
    def add_user(body: UserIn, creds: BearerDep) -> dict[str, Any]:
        with staff(creds, "administrator") as (session, admin):
            user = accounts.create_user(session, username=body.username,
                                        password=body.password,
                                        display_name_zh=body.display_name_zh, roles=body.roles,
                                        station_id=body.station_id,
                                        actor=accounts.user_label(admin))
            return user_json(user)

    @router.post("/owner/query",
                 summary="车主查询（号牌 + 颜色 + 车辆识别代号后六位或行驶证档案编号）")
    def owner_query(body: OwnerQueryIn, request: Request) -> dict[str, Any]:
        with transaction(factory) as session:
            return owners.owner_query(session, settings, limiter, client_id=client_id(request),
                                      plate=body.plate, plate_colour=body.plate_colour,
                                      vin_last6=body.vin_last6,
                                      licence_file_number=body.licence_file_number)

    @router.get("/owner/records/{case_id}", summary="车主查看本人记录")
    def owner_record(case_id: CaseId, token: OwnerDep) -> dict[str, Any]:
        grant = owners.read_owner_token(settings, token)
        with transaction(factory) as session:
            case = owners.owner_case(session, grant, case_id)
            owners.log_evidence_view(session, actor=f"owner:vehicle:{grant.vehicle_id}",
                                     case=case, what="record")
            return owners.owner_record_json(session, case)

    @router.get("/owner/records/{case_id}/package", summary="车主下载证据包",
                response_class=Response)
    def owner_package(case_id: CaseId, token: OwnerDep) -> Response:
        grant = owners.read_owner_token(settings, token)
        with transaction(factory) as session:
            case = owners.owner_case(session, grant, case_id)
            name, data = owners.package_zip(case)
            owners.log_evidence_view(session, actor=f"owner:vehicle:{grant.vehicle_id}",
                                     case=case, what="package")
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @router.get("/owner/records/{case_id}/files/{name:path}", summary="车主查看照片等文件",
                response_class=Response)
    def owner_file(case_id: CaseId, name: Annotated[str, Path(max_length=200)],
                   token: OwnerDep) -> Response:
        grant = owners.read_owner_token(settings, token)
        with transaction(factory) as session:
            case = owners.owner_case(session, grant, case_id)
            media_type, data = owners.package_file(case, name)
            owners.log_evidence_view(session, actor=f"owner:vehicle:{grant.vehicle_id}",
                                     case=case, what=name)
        return Response(data, media_type=media_type)

    @router.post("/owner/records/{case_id}/statements", summary="提交陈述申辩或听证申请")
    def owner_statement(case_id: CaseId, token: OwnerDep,
                        text: Annotated[str, Form(min_length=1, max_length=20_000)],
                        kind: Annotated[str, Form(pattern="^(statement|hearing_request)$")] =
                        "statement",
                        contact: Annotated[str | None, Form(max_length=100)] = None,
                        files: Annotated[list[UploadFile] | None, File()] = None
                        ) -> dict[str, Any]:
        grant = owners.read_owner_token(settings, token)
        uploads = files or []
        if len(uploads) > settings.attachment_max_count:
            raise InvalidInputError(f"at most {settings.attachment_max_count} attachments",
                                    f"附件最多 {settings.attachment_max_count} 个")
        blobs = [(u.filename or "attachment", u.file.read(settings.attachment_max_bytes + 1))
                 for u in uploads]
        with transaction(factory) as session:
            statement = owners.file_statement(session, settings, grant, case_id=case_id,
                                              kind=kind, text=_no_control_zh(text),
                                              contact=contact, files=blobs)
            return {"statement_id": statement.id, "filed_utc": statement.filed_utc.isoformat(),
                    "message_zh": "已提交，执法机关将依法复核并答复"}

    @router.get("/public/disclosures", summary="公示：已决定案件（个人信息已脱敏）")
    def disclosures(year: Annotated[int | None, Query(ge=2000, le=2100)] = None
                    ) -> dict[str, Any]:
        with transaction(factory) as session:
            return {"disclosures": owners.public_disclosures(session, year=year)}

    app.include_router(router)
    return app


def _no_control_zh(text: str) -> str:
    if _CONTROL.search(text):
        raise InvalidInputError("text: control characters", "内容含有非法控制字符")
    return text
