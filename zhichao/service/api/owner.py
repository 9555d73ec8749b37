"""The owner portal's JSON (query, own records, photos, package, statements, 结束查询) and
the public 公示 list. Owners authenticate with ``X-Owner-Token`` from ``POST /owner/query``;
a token names its cases, and every other case answers 404; ``POST /owner/logout`` ends
the token (401 afterwards)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from zhichao.service import owners
from zhichao.service.api.cases import ZIP, zip_response
from zhichao.service.api.deps import (
    API,
    CaseId,
    FactoryDep,
    LimiterDep,
    OwnerGrantDep,
    SessionDep,
    SettingsDep,
    client_id,
    owner_actor,
)
from zhichao.service.api.schemas import (
    OWNER_ERRORS,
    DisclosuresOut,
    MessageOut,
    OwnerQueryIn,
    OwnerQueryOut,
    OwnerRecordOut,
    StatementFiledOut,
    clean_text,
    media_answer,
)
from zhichao.service.db import transaction
from zhichao.service.errors import InvalidInputError

router = APIRouter(prefix=API, tags=["owner"], responses=OWNER_ERRORS)
FILE = media_answer("证据包中列明的文件", "image/jpeg", "image/png", "application/json")


@router.post("/owner/query",
             summary="车主查询（号牌 + 颜色 + 车辆识别代号后六位或行驶证档案编号）")
async def owner_query(body: OwnerQueryIn, request: Request, factory: FactoryDep,
                      settings: SettingsDep, limiter: LimiterDep) -> OwnerQueryOut:
    """The query in its own transaction on a worker thread; the response-time floor is
    then waited out here, after the commit, holding neither a thread nor a connection."""
    started = time.perf_counter()
    who = client_id(request)

    def query() -> dict[str, Any]:
        with transaction(factory) as session:
            return owners.owner_query(session, settings, limiter, client_id=who,
                                      plate=body.plate, plate_colour=body.plate_colour,
                                      vin_last6=body.vin_last6,
                                      licence_file_number=body.licence_file_number,
                                      after=body.after, limit=body.limit, pad=False)

    answer = await run_in_threadpool(query)
    await asyncio.sleep(owners.floor_left_s(started, settings))
    return OwnerQueryOut.model_validate(answer)


@router.get("/owner/records/{case_id}", summary="车主查看本人记录")
def owner_record(case_id: CaseId, grant: OwnerGrantDep, session: SessionDep,
                 settings: SettingsDep) -> OwnerRecordOut:
    case = owners.owner_case(session, settings, grant, case_id)
    owners.log_evidence_view(session, actor=owner_actor(grant), case=case, what="record")
    return OwnerRecordOut.model_validate(owners.owner_record_json(session, case))


@router.get("/owner/records/{case_id}/package", summary="车主下载证据包",
            response_class=Response, responses=ZIP)
def owner_package(case_id: CaseId, grant: OwnerGrantDep, session: SessionDep,
                  settings: SettingsDep) -> Response:
    case = owners.owner_case(session, settings, grant, case_id)
    name, data = owners.package_zip(case)
    owners.log_evidence_view(session, actor=owner_actor(grant), case=case, what="package")
    return zip_response(name, data)


@router.get("/owner/records/{case_id}/files/{name:path}", summary="车主查看照片等文件",
            response_class=Response, responses=FILE)
def owner_file(case_id: CaseId, name: Annotated[str, Path(max_length=200)],
               grant: OwnerGrantDep, session: SessionDep, settings: SettingsDep) -> Response:
    case = owners.owner_case(session, settings, grant, case_id)
    media_type, data = owners.package_file(case, name)
    owners.log_evidence_view(session, actor=owner_actor(grant), case=case, what=name)
    return Response(data, media_type=media_type)


@router.post("/owner/records/{case_id}/statements", summary="提交陈述申辩或听证申请")
def owner_statement(case_id: CaseId, grant: OwnerGrantDep, session: SessionDep,
                    settings: SettingsDep,
                    text: Annotated[str, Form(min_length=1, max_length=20_000)],
                    kind: Annotated[str, Form(pattern="^(statement|hearing_request)$")] =
                    "statement",
                    contact: Annotated[str | None, Form(max_length=100)] = None,
                    files: Annotated[list[UploadFile] | None, File()] = None
                    ) -> StatementFiledOut:
    uploads = files or []
    if len(uploads) > settings.attachment_max_count:
        raise InvalidInputError(f"at most {settings.attachment_max_count} attachments",
                                f"附件最多 {settings.attachment_max_count} 个")
    blobs = [(u.filename or "attachment", u.file.read(settings.attachment_max_bytes + 1))
             for u in uploads]
    statement = owners.file_statement(session, settings, grant, case_id=case_id, kind=kind,
                                      text=clean_text(text, "text"), contact=contact,
                                      files=blobs)
    return StatementFiledOut(statement_id=statement.id,
                             filed_utc=statement.filed_utc.isoformat(),
                             message_zh="已提交，执法机关将依法复核并答复")


@router.post("/owner/logout", summary="结束查询（查询凭证立即失效）")
def owner_logout(grant: OwnerGrantDep, session: SessionDep) -> MessageOut:
    owners.check_owner_token_live(session, grant)
    owners.revoke_owner_token(session, grant)
    return MessageOut(message_zh="已结束查询，查询凭证已失效")


@router.get("/public/disclosures", summary="公示：已决定案件（个人信息已脱敏）")
def disclosures(session: SessionDep,
                year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> DisclosuresOut:
    return DisclosuresOut.model_validate(
        {"disclosures": owners.public_disclosures(session, year=year)})

