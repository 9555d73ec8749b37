"""Staff accounts: the administrators' tasks (list, add, disable, enable, reset a password,
end a user's sessions) and each user's own password change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from zhichao.service import accounts, duties
from zhichao.service.api.auth import user_out
from zhichao.service.api.deps import API, BearerDep, SessionDep, StaffDep, UserAdmin
from zhichao.service.api.schemas import (
    STAFF_ERRORS,
    MessageOut,
    SafeStr,
    UserIn,
    UserOut,
    UsersOut,
)
from zhichao.service.models import User

router = APIRouter(prefix=API, tags=["users"], responses=STAFF_ERRORS)
UserId = Annotated[int, Path(ge=1, le=2**31 - 1, description="用户编号")]
ADMIN = duties.openapi_extra(roles=duties.USER_ADMIN)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PasswordResetIn(_In):
    password: SafeStr = Field(max_length=256, description="新密码（须符合密码规则）")


class PasswordChangeIn(_In):
    current_password: SafeStr = Field(max_length=256, description="当前密码")
    new_password: SafeStr = Field(max_length=256, description="新密码（须符合密码规则）")


@router.get("/users", summary="用户列表", openapi_extra=ADMIN)
def list_users(session: SessionDep, admin: UserAdmin) -> UsersOut:
    del admin
    return UsersOut(users=[user_out(u) for u in session.scalars(select(User).order_by(User.id))])


@router.post("/users", summary="新增用户", openapi_extra=ADMIN)
def add_user(body: UserIn, session: SessionDep, admin: UserAdmin) -> UserOut:
    user = accounts.create_user(session, username=body.username, password=body.password,
                                display_name_zh=body.display_name_zh, roles=body.roles,
                                station_id=body.station_id, actor=accounts.user_label(admin))
    return user_out(user)


@router.post("/users/{user_id}/disable", summary="停用用户（其全部登录随即失效）",
             openapi_extra=ADMIN)
def disable_user(user_id: UserId, session: SessionDep, admin: UserAdmin) -> UserOut:
    user = accounts.get_user(session, user_id)
    accounts.set_active(session, user, active=False, by=admin)
    return user_out(user)


@router.post("/users/{user_id}/enable", summary="启用用户（停用前的登录不会恢复）",
             openapi_extra=ADMIN)
def enable_user(user_id: UserId, session: SessionDep, admin: UserAdmin) -> UserOut:
    user = accounts.get_user(session, user_id)
    accounts.set_active(session, user, active=True, by=admin)
    return user_out(user)


@router.post("/users/{user_id}/password", summary="重置用户密码（其全部登录随即失效）",
             openapi_extra=ADMIN)
def reset_password(user_id: UserId, body: PasswordResetIn, session: SessionDep,
                   admin: UserAdmin) -> MessageOut:
    user = accounts.get_user(session, user_id)
    ended = accounts.set_password(session, user, password=body.password, by=admin)
    return MessageOut(message_zh=f"密码已重置，已结束该用户的 {ended} 个登录")


@router.post("/users/{user_id}/end-sessions", summary="结束用户的全部登录",
             openapi_extra=ADMIN)
def end_sessions(user_id: UserId, session: SessionDep, admin: UserAdmin) -> MessageOut:
    user = accounts.get_user(session, user_id)
    ended = accounts.end_sessions(session, user, by=admin)
    return MessageOut(message_zh=f"已结束该用户的 {ended} 个登录")


@router.post("/me/password", summary="修改本人密码（本人其他登录随即失效）",
             openapi_extra=duties.openapi_extra())
def change_own_password(body: PasswordChangeIn, session: SessionDep, creds: BearerDep,
                        user: StaffDep) -> MessageOut:
    assert creds is not None  # signed in: checked by StaffDep
    ended = accounts.change_own_password(session, user, current_password=body.current_password,
                                         new_password=body.new_password,
                                         token=creds.credentials)
    return MessageOut(message_zh=f"密码已修改，已结束您的其他 {ended} 个登录")
