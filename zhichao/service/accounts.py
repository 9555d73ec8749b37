"""Accounts, roles, argon2 password hashes and expiring bearer tokens.

Passwords must pass :mod:`zhichao.service.passwords`; logins are throttled per account and
per client by :mod:`zhichao.service.login_throttle` when they come through the app.

Disabling an account, resetting its password (:func:`set_active`, :func:`set_password`)
and :func:`end_sessions` revoke every token of the account, so re-enabling it never
brings an old session back; :func:`change_own_password` keeps only the caller's own
session. Each is audited (``user.disabled``, ``user.enabled``, ``user.password_reset``,
``user.password_changed``, ``user.sessions_ended``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.service import audit
from zhichao.service.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from zhichao.service.login_throttle import current_attempt
from zhichao.service.models import AuthToken, User
from zhichao.service.passwords import check_password

ROLES_ZH: dict[str, str] = {
    "station_operator": "治超站操作员",
    "technical_reviewer": "技术审核员",
    "legal_reviewer": "法制审核员",
    "decision_maker": "处罚决定人",
    "auditor": "审计员",
    "administrator": "系统管理员",
    "supervisor": "执法监督员",  # 案卷评查、统计与典型案例 (docs/service.md "Supervision")
}
_USERNAME = re.compile(r"^[a-z0-9_.-]{3,64}$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_hasher = PasswordHasher()  # argon2id, argon2-cffi defaults (RFC 9106 low-memory profile)
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def use_password_hasher(hasher: PasswordHasher) -> None:
    """Replace the argon2 parameters (tests use cheap ones; old hashes still verify)."""
    global _hasher, _DUMMY_HASH
    _hasher = hasher
    _DUMMY_HASH = hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def user_label(user: User) -> str:
    return f"user:{user.id}:{user.username}"


def create_user(session: Session, *, username: str, password: str, display_name_zh: str,
                roles: Iterable[str], station_id: str | None = None,
                actor: str = "system") -> User:
    """Add an account; refuses unknown roles, weak passwords and duplicate names."""
    role_list = sorted(set(roles))
    if not _USERNAME.fullmatch(username):
        raise InvalidInputError(f"username {username!r}: 3–64 of a-z 0-9 _ . -",
                                "用户名须为 3–64 位小写字母、数字或 _ . -")
    unknown = [r for r in role_list if r not in ROLES_ZH]
    if not role_list or unknown:
        raise InvalidInputError(f"roles: unknown or empty {unknown or role_list}",
                                "角色无效：" + "、".join(unknown or ["(空)"]))
    check_password(password, username=username)
    if not display_name_zh.strip() or len(display_name_zh) > 100:
        raise InvalidInputError("display_name_zh: 1–100 characters", "姓名须为 1–100 个字符")
    if "station_operator" in role_list and not station_id:
        raise InvalidInputError("station_id: required for a station operator",
                                "治超站操作员须指定所属站点")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise InvalidInputError(f"username {username!r} exists", "用户名已存在")
    user = User(username=username, display_name_zh=display_name_zh.strip(),
                roles=",".join(role_list), station_id=station_id,
                password_hash=hash_password(password), active=True)
    session.add(user)
    session.flush()
    audit.append(session, actor=actor, action="user.create", object_type="user",
                 object_id=str(user.id), detail={"username": username, "roles": role_list,
                                                 "station_id": station_id})
    return user


def _login_failed() -> AuthenticationError:
    return AuthenticationError("login failed: unknown user or wrong password", "用户名或密码错误")


def authenticate(session: Session, *, username: str, password: str) -> User:
    """The active user with this password; one error for unknown user and wrong password.

    An unknown user costs one argon2 verification too, so timing does not tell them apart.
    A name no account can have (:func:`create_user`'s rule: control characters, capitals,
    too long) fails the same way before any database query.
    Inside a request the attempt is reserved with the login throttle before the password
    is checked (counted as a failure of the account at once, cleared when the password is
    right; the client's count takes the failure in :func:`record_failed_login`); an
    attempt while a login wait runs is refused
    (:class:`~zhichao.service.login_throttle.LoginThrottledError`, 429).
    """
    attempt = current_attempt()
    if attempt is not None:
        attempt.reserve(username[:64])
    try:
        if not _USERNAME.fullmatch(username):
            raise _login_failed()
        user = session.scalars(select(User).where(User.username == username)).first()
        try:
            _hasher.verify(user.password_hash if user is not None else _DUMMY_HASH, password)
            ok = user is not None and user.active
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or user is None:
            raise _login_failed()
    except AuthenticationError:
        raise  # a failed login: record_failed_login completes the attempt
    except BaseException:
        if attempt is not None:  # an error in between (the database): taken back
            attempt.release(username[:64])
        raise
    if attempt is not None:
        attempt.succeeded(username[:64])
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    audit.append(session, actor=user_label(user), action="auth.login", object_type="user",
                 object_id=str(user.id), detail={})
    return user


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x00``), fit for the audit log."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def record_failed_login(session: Session, *, username: str, client_id: str) -> None:
    """Audit a failed login (in its own transaction: the failing one is rolled back).

    Inside a request it also counts for the login throttle (unless :func:`authenticate`
    reserved the attempt, which counted it already): a wrong password is
    ``auth.login_failed`` (detail: the wait it now imposes, ``delay_s``); an attempt
    refused because a wait was running is ``auth.login_throttled`` (``retry_after_s``)
    and does not lengthen the wait. The name tried is logged with control characters
    escaped (PostgreSQL text cannot hold NUL).
    """
    attempt = current_attempt()
    detail: dict[str, float] = {}
    action = "auth.login_failed"
    if attempt is not None and attempt.throttled_for_s > 0:
        action = "auth.login_throttled"
        detail["retry_after_s"] = round(attempt.throttled_for_s, 3)
    elif attempt is not None:
        detail["delay_s"] = round(attempt.failed(username[:64]), 3)
    audit.append(session, actor=f"anonymous:{printable(client_id[:64])}", action=action,
                 object_type="user", object_id=printable(username[:64])[:200], detail=detail)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(session: Session, user: User, *, ttl_s: int,
                now: datetime | None = None) -> tuple[str, datetime]:
    now = now or utc_now()
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=ttl_s)
    session.add(AuthToken(token_sha256=_digest(token), user_id=user.id, created_utc=now,
                          expires_utc=expires, revoked=False))
    session.flush()
    return token, expires


def user_for_token(session: Session, token: str, *, now: datetime | None = None) -> User:
    now = now or utc_now()
    row = session.get(AuthToken, _digest(token))
    if row is None or row.revoked or row.expires_utc <= now:
        raise AuthenticationError("token unknown, revoked or expired", "登录已失效，请重新登录")
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        raise AuthenticationError("account disabled", "账号已停用")
    return user


def revoke_token(session: Session, token: str) -> None:
    row = session.get(AuthToken, _digest(token))
    if row is not None:
        row.revoked = True


def require_role(user: User, *roles: str) -> None:
    if not user.role_set.intersection(roles):
        names = "、".join(ROLES_ZH[r] for r in roles)
        raise PermissionDeniedError(f"user {user.username} lacks role {'|'.join(roles)}",
                                    f"需要以下角色之一：{names}")


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"user {user_id} not found", "用户不存在")
    return user


def user_by_name(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFoundError(f"user {username!r} not found", "用户不存在")
    return user


def _actor(by: User | None) -> str:
    return "cli" if by is None else user_label(by)


def _revoke_all(session: Session, user: User, *, keep_token: str | None = None,
                now: datetime | None = None) -> int:
    """Revoke every token of ``user`` (but ``keep_token``); returns how many were live."""
    now = now or utc_now()
    conditions = [AuthToken.user_id == user.id, AuthToken.revoked.is_(False)]
    if keep_token is not None:
        conditions.append(AuthToken.token_sha256 != _digest(keep_token))
    live = len(session.scalars(select(AuthToken.token_sha256).where(
        *conditions, AuthToken.expires_utc > now)).all())
    session.execute(update(AuthToken).where(*conditions).values(revoked=True)
                    .execution_options(synchronize_session="fetch"))
    return live


def set_active(session: Session, user: User, *, active: bool, by: User | None,
               now: datetime | None = None) -> int:
    """Enable or disable an account (``by``: the administrator; None: the CLI). Disabling
    revokes every token of the account; an administrator cannot disable their own
    account. Returns the sessions ended."""
    if not active and by is not None and by.id == user.id:
        raise InvalidInputError("an administrator cannot disable their own account",
                                "不能停用自己的账号")
    ended = 0 if active else _revoke_all(session, user, now=now)
    user.active = active
    audit.append(session, actor=_actor(by), action="user.enabled" if active else
                 "user.disabled", object_type="user", object_id=str(user.id), now=now,
                 detail={"username": user.username, "sessions_ended": ended})
    return ended


def set_password(session: Session, user: User, *, password: str, by: User | None,
                 now: datetime | None = None) -> int:
    """Reset ``user``'s password (by an administrator or the CLI); every token of the
    account is revoked. Returns the sessions ended."""
    check_password(password, username=user.username)
    user.password_hash = hash_password(password)
    ended = _revoke_all(session, user, now=now)
    audit.append(session, actor=_actor(by), action="user.password_reset",
                 object_type="user", object_id=str(user.id), now=now,
                 detail={"username": user.username, "sessions_ended": ended})
    return ended


def change_own_password(session: Session, user: User, *, current_password: str,
                        new_password: str, token: str, now: datetime | None = None) -> int:
    """The signed-in user changes their password: the current one must be right (a wrong
    one counts for the login throttle like a failed login), the new one must pass
    :func:`~zhichao.service.passwords.check_password`; every other session of the
    account ends, the one of ``token`` stays. Returns the sessions ended."""
    attempt = current_attempt()
    if attempt is not None:
        attempt.reserve(user.username)
    try:
        _hasher.verify(user.password_hash, current_password)
    except (VerificationError, InvalidHashError):
        if attempt is not None:
            attempt.failed(user.username)  # the client's count too, as a failed login
        raise PermissionDeniedError("current password wrong", "当前密码错误") from None
    if attempt is not None:
        attempt.succeeded(user.username)
    if new_password == current_password:
        raise InvalidInputError("new password equals the current one",
                                "新密码不能与当前密码相同")
    check_password(new_password, username=user.username)
    user.password_hash = hash_password(new_password)
    ended = _revoke_all(session, user, keep_token=token, now=now)
    audit.append(session, actor=user_label(user), action="user.password_changed",
                 object_type="user", object_id=str(user.id), now=now,
                 detail={"sessions_ended": ended})
    return ended


def end_sessions(session: Session, user: User, *, by: User | None,
                 now: datetime | None = None) -> int:
    """Sign ``user`` out everywhere (revoke every token); returns the sessions ended."""
    ended = _revoke_all(session, user, now=now)
    audit.append(session, actor=_actor(by), action="user.sessions_ended",
                 object_type="user", object_id=str(user.id), now=now,
                 detail={"username": user.username, "sessions_ended": ended})
    return ended
