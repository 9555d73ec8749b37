"""Cookies and CSRF tokens of the web console and the owner portal.

* Staff session: cookie ``zc_session`` holds the bearer token issued by
  :func:`zhichao.service.accounts.issue_token` (only its SHA-256 is stored server-side).
* Owner session: cookie ``zc_owner`` holds the HMAC-signed owner token of
  :func:`zhichao.service.owners.owner_query` (no table), path ``/portal``.
* Before login: cookie ``zc_pre`` holds a random nonce that binds the CSRF token of the
  login and owner query forms.

Every cookie is ``HttpOnly`` and ``SameSite=Strict``; ``Secure`` is set unless
:attr:`WebSettings.cookie_secure` is off (plain-HTTP test servers only). Every POST form
carries ``csrf_token`` = HMAC-SHA256(secret key, purpose ‖ the cookie it is bound to),
compared in constant time; a form without a matching token is refused (403).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from starlette.responses import Response

from zhichao.service.errors import PermissionDeniedError

SESSION_COOKIE = "zc_session"
OWNER_COOKIE = "zc_owner"
PRE_COOKIE = "zc_pre"
OWNER_PATH = "/portal"


@dataclass(frozen=True)
class WebSettings:
    """Settings of the pages only (the service core's :class:`Settings` holds the rest)."""

    cookie_secure: bool = True  # off only for plain-HTTP test servers on loopback
    queue_page_size: int = 100  # guess: rows per review-queue page
    waveform_max_points: int = 600  # per channel in the SVG (min/max envelope)

    @classmethod
    def from_env(cls) -> WebSettings:
        """``ZHICHAO_COOKIE_SECURE=0`` turns the Secure flag off (anything else keeps it)."""
        secure = os.environ.get("ZHICHAO_COOKIE_SECURE", "1").strip().lower()
        return cls(cookie_secure=secure not in ("0", "false", "no", "off"))


def csrf_token(secret_key: str, purpose: str, binding: str) -> str:
    """The form token for ``purpose`` (``staff``, ``owner``, ``pre``) bound to a cookie."""
    mac = hmac.new(secret_key.encode(), f"csrf\n{purpose}\n{binding}".encode(), hashlib.sha256)
    return mac.hexdigest()


def check_csrf(secret_key: str, purpose: str, binding: str | None, given: str | None) -> None:
    """Refuse a POST whose token does not match its cookie (both must be present)."""
    if not binding or not given or len(given) != 64:
        raise PermissionDeniedError(f"CSRF token missing ({purpose})",
                                    "表单已失效或来源不明，请刷新页面后重试")
    expected = csrf_token(secret_key, purpose, binding)
    if not hmac.compare_digest(expected, given):
        raise PermissionDeniedError(f"CSRF token does not match ({purpose})",
                                    "表单已失效或来源不明，请刷新页面后重试")


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def set_cookie(response: Response, web: WebSettings, name: str, value: str, *,
               max_age_s: int | None = None, path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age_s, path=path, httponly=True,
                        samesite="strict", secure=web.cookie_secure)


def clear_cookie(response: Response, web: WebSettings, name: str, *, path: str = "/") -> None:
    response.delete_cookie(name, path=path, httponly=True, samesite="strict",
                           secure=web.cookie_secure)
