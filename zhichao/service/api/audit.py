"""The audit log and the check of its hash chain (auditors only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from zhichao.service import access_log, duties
from zhichao.service.api.deps import API, Auditor, SessionDep
from zhichao.service.api.schemas import (
    STAFF_ERRORS,
    AccessLogOut,
    AuditEntryOut,
    AuditOut,
    AuditVerifyOut,
    ChainProblemOut,
)
from zhichao.service.models import AuditEntry

router = APIRouter(prefix=API, tags=["audit"], responses=STAFF_ERRORS)


@router.get("/audit", summary="审计日志",
            openapi_extra=duties.openapi_extra(roles=duties.AUDIT_READ))
def audit_log(session: SessionDep, user: Auditor,
              after_id: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # int4 id
              limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> AuditOut:
    del user
    rows = session.scalars(select(AuditEntry).where(AuditEntry.id > after_id)
                           .order_by(AuditEntry.id).limit(limit)).all()
    return AuditOut(entries=[
        AuditEntryOut(id=e.id, time_utc=e.time_utc.isoformat(), actor=e.actor,
                      action=e.action, object_type=e.object_type, object_id=e.object_id,
                      detail=e.detail, prev_sha256=e.prev_sha256,
                      entry_sha256=e.entry_sha256) for e in rows])


@router.get("/audit/verify", summary="审计日志链校验",
            openapi_extra=duties.openapi_extra(roles=duties.AUDIT_READ))
def audit_verify(session: SessionDep, user: Auditor) -> AuditVerifyOut:
    """The chain, and the owner access log against its seals (``access_log.py``); a
    problem names its table (``table``; an access row's also in its text). Rows not yet
    sealed are no problem; ``access_log`` and the message say how many there are."""
    del user
    check = access_log.verify_all(session)
    problems = check.problems
    unsealed = f"（车主查询记录 {check.access.unsealed} 条尚未封存）" if check.access.unsealed \
        else ""
    return AuditVerifyOut(
        ok=not problems,
        message_zh=("审计日志链完整" if not problems else "审计日志链校验失败") + unsealed,
        problems=[ChainProblemOut(entry_id=p.entry_id,
                                  problem=p.problem if p.table == "audit_log"
                                  else f"{p.table}: {p.problem}", table=p.table)
                  for p in problems],
        access_log=AccessLogOut(entries=check.access.entries, seals=check.access.seals,
                                unsealed=check.access.unsealed))
