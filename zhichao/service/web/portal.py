"""The owner portal (``/portal``): query by plate and VIN or 行驶证 file number, own records,
photos, the sealed package, statements and hearing requests, and the public 公示 page."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.service import owners
from zhichao.service.api.deps import owner_actor
from zhichao.service.api.schemas import clean_text
from zhichao.service.db import transaction
from zhichao.service.errors import InvalidInputError, NotFoundError, ServiceError
from zhichao.service.web import security
from zhichao.service.web.evidence_view import plate_read_crop, plate_reads
from zhichao.service.web.pages import DONE_ZH, PORTAL, CaseId, Csrf, Pages, PagesDep
from zhichao.service.workdays import china_date

router = APIRouter(include_in_schema=False)


def _grant(pages: Pages, request: Request) -> tuple[owners.OwnerGrant, str]:
    token = request.cookies.get(security.OWNER_COOKIE)
    return owners.read_owner_token(pages.settings, token), token or ""


def _owner_csrf(pages: Pages, token: str) -> str:
    return security.csrf_token(pages.secret, "owner", token)


@router.get(f"{PORTAL}/")
def portal_home(request: Request, pages: PagesDep) -> Response:
    nonce, fresh = pages.pre_nonce(request)
    page = pages.render(request, "owner_query.html", csrf=pages.pre_csrf(nonce),
                        message_zh=None, form={})
    return pages.with_pre(page, nonce, fresh)


@router.post(f"{PORTAL}/query")
def portal_query(request: Request, pages: PagesDep,
                 plate: Annotated[str, Form(max_length=16)],
                 plate_colour: Annotated[str, Form(max_length=16)],
                 id_kind: Annotated[str, Form(pattern="^(vin|file)$")],
                 secret_value: Annotated[str, Form(max_length=20)],
                 csrf_token: Csrf = None) -> Response:
    nonce, fresh = pages.pre_nonce(request)
    form = {"plate": plate, "plate_colour": plate_colour, "id_kind": id_kind}
    try:
        security.check_csrf(pages.secret, "pre", request.cookies.get(security.PRE_COOKIE),
                            csrf_token)
        started = time.perf_counter()
        with transaction(pages.factory) as session:
            answer = owners.owner_query(
                session, pages.settings, pages.limiter, client_id=pages.client_id(request),
                plate=plate, plate_colour=plate_colour,
                vin_last6=secret_value if id_kind == "vin" else None,
                licence_file_number=secret_value if id_kind == "file" else None,
                limit=owners.OWNER_PAGE_MAX,  # the portal lists the newest 100
                pad=False)
        time.sleep(owners.floor_left_s(started, pages.settings))  # after the commit
    except ServiceError as exc:
        page = pages.render(request, "owner_query.html", status=exc.http_status,
                            csrf=pages.pre_csrf(nonce), message_zh=exc.message_zh, form=form)
        return pages.with_pre(page, nonce, fresh)
    if not answer.get("owner_token"):
        page = pages.render(request, "owner_query.html", status=200,
                            csrf=pages.pre_csrf(nonce), message_zh=answer["message_zh"],
                            form=form)
        return pages.with_pre(page, nonce, fresh)
    response = RedirectResponse(f"{PORTAL}/records", status_code=303)
    security.set_cookie(response, pages.web, security.OWNER_COOKIE, answer["owner_token"],
                        max_age_s=pages.settings.owner_token_ttl_s, path=PORTAL)
    return response


@router.get(f"{PORTAL}/records")
def portal_records(request: Request, pages: PagesDep) -> Response:
    try:
        grant, token = _grant(pages, request)
        with transaction(pages.factory) as session:
            cases = [owners.owner_case(session, pages.settings, grant, case_id)
                     for case_id in sorted(grant.case_ids)]
            records = owners.owner_records(session, [c.id for c in cases])
            for case in cases:
                owners.log_evidence_view(session, actor=owner_actor(grant), case=case,
                                         what="portal_list")
        return pages.render(request, "owner_results.html", records=records,
                            csrf=_owner_csrf(pages, token))
    except ServiceError as exc:
        return pages.error_page(request, exc, back=f"{PORTAL}/")


@router.get(f"{PORTAL}/records/{{case_id}}")
def portal_record(request: Request, case_id: CaseId, pages: PagesDep,
                  done: Annotated[str | None, Query(max_length=32)] = None) -> Response:
    try:
        grant, token = _grant(pages, request)
        with transaction(pages.factory) as session:
            return _record_page(pages, request, session, grant, token, case_id,
                                done_zh=DONE_ZH.get(done or ""))
    except ServiceError as exc:
        return pages.error_page(request, exc, back=f"{PORTAL}/records")


def _record_page(pages: Pages, request: Request, session: Session, grant: owners.OwnerGrant,
                 token: str, case_id: int, *, status: int = 200, done_zh: str | None = None,
                 statement_error_zh: str | None = None,
                 kept: dict[str, str] | None = None) -> Response:
    """The record page; after a refused statement, with the refusal beside the form and
    what the owner typed still in it (``kept``)."""
    settings = pages.settings
    case = owners.owner_case(session, settings, grant, case_id)
    record = owners.owner_record_json(session, case)
    closeups = [r["n"] for r in plate_reads(owners.read_manifest(case.package_path))
                if r["image"] is not None]
    owners.log_evidence_view(session, actor=owner_actor(grant), case=case,
                             what="portal_record")
    today = china_date(utc_now())
    # before service the periods have not begun: filing is open (Art. 44, 64)
    can_state = case.state == "notified" and (
        case.statement_due is None or today <= case.statement_due)
    can_hearing = case.state == "notified" and case.hearing_right == "yes" and (
        case.hearing_request_due is None or today <= case.hearing_request_due)
    return pages.render(request, "owner_record.html", status=status, r=record,
                        closeups=closeups, csrf=_owner_csrf(pages, token),
                        can_state=can_state, can_hearing=can_hearing, done_zh=done_zh,
                        statement_error_zh=statement_error_zh,
                        kept=kept or {"text": "", "contact": "", "kind": "statement"},
                        max_files=settings.attachment_max_count,
                        max_mb=settings.attachment_max_bytes // (1024 * 1024),
                        max_chars=settings.statement_max_chars)


@router.get(f"{PORTAL}/records/{{case_id}}/files/{{name:path}}")
def portal_file(request: Request, case_id: CaseId, pages: PagesDep,
                name: Annotated[str, PathParam(max_length=200)]) -> Response:
    try:
        grant, _token = _grant(pages, request)
        with transaction(pages.factory) as session:
            case = owners.owner_case(session, pages.settings, grant, case_id)
            media_type, data = owners.package_file(case, name)
            if not media_type.startswith("image/"):
                raise NotFoundError(f"{name}: not an image", "文件不存在")
            owners.log_evidence_view(session, actor=owner_actor(grant), case=case, what=name)
        return Response(data, media_type=media_type, headers={"Cache-Control": "no-store"})
    except ServiceError as exc:
        return pages.error_page(request, exc)


@router.get(f"{PORTAL}/records/{{case_id}}/plate-reads/{{n}}")
def portal_plate_read(request: Request, case_id: CaseId, pages: PagesDep,
                      n: Annotated[int, PathParam(ge=0, le=999)]) -> Response:
    """A plate read's close-up, cut from the package photo it was read on (as the
    console's)."""
    try:
        grant, _token = _grant(pages, request)
        with transaction(pages.factory) as session:
            case = owners.owner_case(session, pages.settings, grant, case_id)
            data = plate_read_crop(case, n)
            owners.log_evidence_view(session, actor=owner_actor(grant), case=case,
                                     what=f"plate_read/{n}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
    except ServiceError as exc:
        return pages.error_page(request, exc)


@router.get(f"{PORTAL}/records/{{case_id}}/package")
def portal_package(request: Request, case_id: CaseId, pages: PagesDep) -> Response:
    try:
        grant, _token = _grant(pages, request)
        with transaction(pages.factory) as session:
            case = owners.owner_case(session, pages.settings, grant, case_id)
            filename, data = owners.package_zip(case)
            owners.log_evidence_view(session, actor=owner_actor(grant), case=case,
                                     what="package")
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{quote(filename)}"'})
    except ServiceError as exc:
        return pages.error_page(request, exc)


_NOT_FILED_ZH = "。您填写的内容尚未提交，请复制保存后重新查询"
_FILES_LOST_ZH = "。已选择的附件未能保留（浏览器不会保留已选文件），请重新选择后提交"


@router.post(f"{PORTAL}/records/{{case_id}}/statements")
def portal_statement(request: Request, case_id: CaseId, pages: PagesDep,
                     text: Annotated[str, Form()] = "",
                     kind: Annotated[str, Form(pattern="^(statement|hearing_request)$")] =
                     "statement",
                     contact: Annotated[str, Form()] = "",
                     files: Annotated[list[UploadFile] | None, File()] = None,
                     csrf_token: Csrf = None) -> Response:
    """File a statement. Text and contact are checked here, not by the form's declaration,
    so that any refusal shows the record page again with what the owner typed and the
    reason beside the form (a browser cannot keep chosen files: the message says so)."""
    settings = pages.settings
    back = f"{PORTAL}/records/{case_id}"
    kept = {"text": text, "contact": contact, "kind": kind}
    uploads = [u for u in files or [] if u.filename]  # an empty file input sends one
    try:
        grant, token = _grant(pages, request)
    except ServiceError as exc:  # token expired: the record cannot be shown, the text can
        return pages.render(request, "error.html", status=exc.http_status, user=None,
                            message_zh=exc.message_zh + _NOT_FILED_ZH,
                            back=f"{PORTAL}/", portal=True, kept_text=text)
    try:
        security.check_csrf(pages.secret, "owner", token, csrf_token)
        if len(uploads) > settings.attachment_max_count:
            raise InvalidInputError(f"at most {settings.attachment_max_count} attachments",
                                    f"附件最多 {settings.attachment_max_count} 个")
        blobs = [(u.filename or "attachment", u.file.read(settings.attachment_max_bytes + 1))
                 for u in uploads]
        with transaction(pages.factory) as session:
            owners.file_statement(session, settings, grant, case_id=case_id, kind=kind,
                                  text=clean_text(text, "text"),
                                  contact=contact or None, files=blobs)
    except ServiceError as exc:
        message = exc.message_zh + (_FILES_LOST_ZH if uploads else "")
        try:
            with transaction(pages.factory) as session:
                return _record_page(pages, request, session, grant, token, case_id,
                                    status=exc.http_status, statement_error_zh=message,
                                    kept=kept)
        except ServiceError as again:
            return pages.render(request, "error.html", status=again.http_status, user=None,
                                message_zh=again.message_zh, back=back, portal=True,
                                kept_text=text)
    return RedirectResponse(f"{back}?done=statement", status_code=303)


@router.post(f"{PORTAL}/logout")
def portal_logout(request: Request, pages: PagesDep, csrf_token: Csrf = None) -> Response:
    """结束查询: the owner token is revoked on the server (not only dropped from the
    browser), so a copy of the cookie no longer opens anything."""
    token = request.cookies.get(security.OWNER_COOKIE)
    try:
        security.check_csrf(pages.secret, "owner", token, csrf_token)
    except ServiceError as exc:
        return pages.error_page(request, exc)
    try:
        grant = owners.read_owner_token(pages.settings, token)
    except ServiceError:
        grant = None  # expired or forged: nothing to revoke, the cookie still goes
    if grant is not None:
        with transaction(pages.factory) as session:
            owners.revoke_owner_token(session, grant)
    response = RedirectResponse(f"{PORTAL}/", status_code=303)
    security.clear_cookie(response, pages.web, security.OWNER_COOKIE, path=PORTAL)
    return response


@router.get(f"{PORTAL}/disclosures")
def portal_disclosures(request: Request, pages: PagesDep,
                       year: Annotated[int | None, Query(ge=2000, le=2100)] = None
                       ) -> Response:
    with transaction(pages.factory) as session:
        rows = owners.public_disclosures(session, year=year)
    return pages.render(request, "disclosures.html", rows=rows, year=year)
