"""Health, staff login and logout, the current user."""

from __future__ import annotations

from fastapi import APIRouter, Request

from zhichao import __version__
from zhichao.service import accounts, duties
from zhichao.service.api.deps import (
    API,
    BearerDep,
    FactoryDep,
    LimiterDep,
    SessionDep,
    SettingsDep,
    StaffDep,
    client_id,
)
from zhichao.service.api.schemas import HealthOut, LoginIn, LoginOut, MessageOut, UserOut
from zhichao.service.background import background_workers
from zhichao.service.db import transaction
from zhichao.service.errors import AuthenticationError
from zhichao.service.models import User
from zhichao.service.ratelimit import limits_reachable

router = APIRouter(prefix=API, tags=["auth"])


def user_out(user: User) -> UserOut:
    return UserOut(id=user.id, username=user.username, display_name_zh=user.display_name_zh,
                   roles=sorted(user.role_set), station_id=user.station_id, active=user.active)


LIMITS_UNREACHABLE_ZH = "限流存储（Redis）无法访问，登录与车主查询暂停"


@router.get("/health", summary="服务状态")
def health(limiter: LimiterDep, request: Request) -> HealthOut:
    # degraded: the shared rate-limit store (Redis) does not answer (logins and owner
    # queries are refused meanwhile: fail closed, ratelimit.py), or a background worker
    # keeps failing (background.py: events not appended, owner access rows not sealed)
    problems = [] if limits_reachable(limiter) else [LIMITS_UNREACHABLE_ZH]
    problems += [p for w in background_workers(request.app) if (p := w.problem_zh())]
    return HealthOut(status="degraded" if problems else "ok", version=__version__,
                     problems_zh=problems)


@router.post("/auth/login", summary="工作人员登录")
def login(body: LoginIn, request: Request, settings: SettingsDep, factory: FactoryDep,
          limiter: LimiterDep) -> LoginOut:
    client = client_id(request)
    limiter.hit(f"login:{client}", limit=settings.login_per_client_per_minute, window_s=60)
    try:
        with transaction(factory) as session:
            user = accounts.authenticate(session, username=body.username,
                                         password=body.password)
            token, expires = accounts.issue_token(session, user, ttl_s=settings.session_ttl_s)
            return LoginOut(token=token, expires_utc=expires.isoformat(), user=user_out(user))
    except AuthenticationError:
        with transaction(factory) as session:  # the failed attempt is audited on its own
            accounts.record_failed_login(session, username=body.username, client_id=client)
        raise


@router.post("/auth/logout", summary="退出登录", openapi_extra=duties.openapi_extra())
def logout(session: SessionDep, creds: BearerDep, user: StaffDep) -> MessageOut:
    del user  # signed in: checked by the dependency
    assert creds is not None
    accounts.revoke_token(session, creds.credentials)
    return MessageOut(message_zh="已退出登录")


@router.get("/me", summary="当前用户", openapi_extra=duties.openapi_extra())
def me(user: StaffDep) -> UserOut:
    return user_out(user)
