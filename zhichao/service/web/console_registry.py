"""The device registry and the per-lane dashboard (staff and administrators)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Integer, func, select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.service import duties
from zhichao.service.errors import ServiceError
from zhichao.service.models import Device, Lane, Passage, User
from zhichao.service.web.pages import CONSOLE, PagesDep

router = APIRouter(include_in_schema=False)


def _devices(session: Session) -> Any:
    return session.execute(select(Device, Lane).outerjoin(Lane, Lane.id == Device.lane_id)
                           .order_by(Device.device_id)).all()


def lane_figures(session: Session, user: User, now: datetime) -> list[dict[str, Any]]:
    """Per site and lane: passages, last 24 h, mean per hour, overloaded count and rate."""
    stmt = (select(Passage.site_id, Passage.lane_code, func.count(),
                   func.sum(func.cast(Passage.overloaded, type_=Integer())),
                   func.min(Passage.time_utc), func.max(Passage.time_utc))
            .group_by(Passage.site_id, Passage.lane_code)
            .order_by(Passage.site_id, Passage.lane_code))
    if user.role_set == {"station_operator"}:
        stmt = stmt.where(Passage.station_id == user.station_id)
    recent = dict(((s, ln), n) for s, ln, n in session.execute(
        select(Passage.site_id, Passage.lane_code, func.count())
        .where(Passage.time_utc >= now - timedelta(hours=24))
        .group_by(Passage.site_id, Passage.lane_code)).all())
    lanes = []
    for site_id, lane_code, count, over, first, last in session.execute(stmt):
        hours = max((last - first).total_seconds() / 3600, 0) if first and last else 0
        lanes.append({
            "site_id": site_id, "lane_code": lane_code, "count": int(count),
            "overloaded": int(over or 0), "rate": (over or 0) / count if count else None,
            "per_hour": count / hours if hours >= 1 else None,
            "last_24h": int(recent.get((site_id, lane_code), 0)),
            "first": first, "last": last})
    return lanes


@router.get(f"{CONSOLE}/devices")
def devices(request: Request, pages: PagesDep) -> Response:
    user: User | None = None
    try:
        with pages.staff_tx(request, *duties.REGISTRY_READ) as (session, user):
            page = pages.render(request, "devices.html", user=user,
                                csrf=pages.staff_csrf(request), rows=_devices(session),
                                now=utc_now())
        return page
    except ServiceError as exc:
        return pages.error_page(request, exc, user=user)


@router.get(f"{CONSOLE}/dashboard")
def dashboard(request: Request, pages: PagesDep) -> Response:
    user: User | None = None
    try:
        with pages.staff_tx(request, *duties.REGISTRY_READ) as (session, user):
            now = utc_now()
            page = pages.render(request, "dashboard.html", user=user,
                                csrf=pages.staff_csrf(request),
                                lanes=lane_figures(session, user, now),
                                devices=_devices(session), now=now)
        return page
    except ServiceError as exc:
        return pages.error_page(request, exc, user=user)
