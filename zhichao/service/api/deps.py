"""FastAPI dependencies of the JSON API: settings, the database session, the signed-in
staff user, "staff with one of these roles" (from ``duties``) and the owner's grant.

``SessionDep`` is one transaction per request: it commits when the route returns and
before the answer is sent (``scope="function"``), so a lost optimistic-lock race becomes a
409 answer, never a 200 for a change that was rolled back. Every dependency of a request
shares that one session (FastAPI caches it per request).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from zhichao.service import accounts, duties, owners, workflow
from zhichao.service.db import transaction
from zhichao.service.errors import AuthenticationError, PermissionDeniedError
from zhichao.service.login_throttle import client_key
from zhichao.service.models import Case, User
from zhichao.service.ratelimit import Limiter
from zhichao.service.settings import Settings

API = "/api/v1"
CaseId = Annotated[int, Path(ge=1, le=2**31 - 1, description="案件编号")]


# The accessors below only read app.state: ``async def`` so FastAPI calls them on the event
# loop (a plain ``def`` dependency is run in the worker thread pool, a hop per dependency
# per request: a third of an owner query's server CPU, docs/service.md)
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    return factory


async def get_limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.limiter
    return limiter


def get_session(factory: Annotated[sessionmaker[Session], Depends(get_factory)]
                ) -> Iterator[Session]:
    with transaction(factory) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
FactoryDep = Annotated[sessionmaker[Session], Depends(get_factory)]
LimiterDep = Annotated[Limiter, Depends(get_limiter)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="工作人员登录令牌")
_owner_header = APIKeyHeader(name="X-Owner-Token", auto_error=False,
                             description="车主查询凭证")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def client_id(request: Request) -> str:
    """The client the rate limits count: the peer address, by its /64 for IPv6. A proxy's
    ``X-Forwarded-For`` counts only through uvicorn's proxy headers, which ``zhichao serve``
    turns on for the addresses in ``Settings.forwarded_allow_ips`` alone (none by default)."""
    return client_key(request.client.host if request.client else None)


def current_staff(session: SessionDep, creds: BearerDep) -> User:
    """The signed-in staff user (401 without a valid, unexpired bearer token)."""
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise AuthenticationError("no bearer token", "请先登录")
    return accounts.user_for_token(session, creds.credentials)


StaffDep = Annotated[User, Depends(current_staff)]


def staff_with(*roles: str) -> Callable[[User], User]:
    """A dependency: the signed-in user, refused (403, zh-CN) without one of ``roles``."""
    def dependency(user: StaffDep) -> User:
        accounts.require_role(user, *roles)
        return user
    dependency.__name__ = "staff_with_" + "_or_".join(roles)
    return dependency


def staff_for(action: str) -> Callable[[User], User]:
    """The roles of a case action, read from ``duties.DUTIES`` (the workflow checks the
    separation of duties on the case itself)."""
    return staff_with(*duties.duty(action).roles)


CaseReader = Annotated[User, Depends(staff_with(*duties.CASE_READ))]
EvidenceReader = Annotated[User, Depends(staff_with(*duties.EVIDENCE_READ))]
StatisticsReader = Annotated[User, Depends(staff_with(*duties.STATISTICS_READ))]
Auditor = Annotated[User, Depends(staff_with(*duties.AUDIT_READ))]
UserAdmin = Annotated[User, Depends(staff_with(*duties.USER_ADMIN))]


def visible_case(session: Session, user: User, case_id: int) -> Case:
    """The case, if ``user`` may see it (a station operator: own station only)."""
    case = workflow.get_case(session, case_id)
    if user.role_set == {"station_operator"} and case.station_id != user.station_id:
        raise PermissionDeniedError("case of another station", "只能查看本站点的案件")
    return case


def owner_grant(settings: SettingsDep,
                token: Annotated[str | None, Depends(_owner_header)]) -> owners.OwnerGrant:
    """The owner's grant from ``X-Owner-Token`` (401 when missing, forged or expired)."""
    return owners.read_owner_token(settings, token)


OwnerGrantDep = Annotated[owners.OwnerGrant, Depends(owner_grant)]


def owner_actor(grant: owners.OwnerGrant) -> str:
    return f"owner:vin:{grant.holder}"
