"""Staff accounts (administrators only)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from zhichao.service import accounts, duties
from zhichao.service.api.auth import user_out
from zhichao.service.api.deps import API, SessionDep, UserAdmin
from zhichao.service.api.schemas import STAFF_ERRORS, UserIn, UserOut, UsersOut
from zhichao.service.models import User

router = APIRouter(prefix=API, tags=["users"], responses=STAFF_ERRORS)


@router.get("/users", summary="用户列表",
            openapi_extra=duties.openapi_extra(roles=duties.USER_ADMIN))
def list_users(session: SessionDep, admin: UserAdmin) -> UsersOut:
    del admin
    return UsersOut(users=[user_out(u) for u in session.scalars(select(User).order_by(User.id))])


@router.post("/users", summary="新增用户",
             openapi_extra=duties.openapi_extra(roles=duties.USER_ADMIN))
def add_user(body: UserIn, session: SessionDep, admin: UserAdmin) -> UserOut:
    user = accounts.create_user(session, username=body.username, password=body.password,
                                display_name_zh=body.display_name_zh, roles=body.roles,
                                station_id=body.station_id, actor=accounts.user_label(admin))
    return user_out(user)
