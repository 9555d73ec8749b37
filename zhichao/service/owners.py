"""The owner portal's service functions: query, record view, package, statements, 公示.

Identification: plate + plate colour + the last 6 characters of the VIN (or the 行驶证
file number), never the plate alone. The answer to "no such vehicle", "wrong VIN" and
"right VIN but no case" is the same JSON (:data:`NOTHING_FOUND`), and every query —
found or not — does the same database work and is padded to at least
``Settings.owner_query_min_duration_ms``, so neither shape nor timing tells them apart.
Queries are rate-limited per client and per plate (in memory, or in Redis shared by the
replicas: ``ratelimit.py``).

A plate passes from vehicle to vehicle; a case belongs to the vehicle that held its plate
when the case was registered (``CaseHolder``, bound by ``ingest``), never to whoever holds
the plate now. So the VIN's last six find the cases registered under a VIN ending in them
(the plate's former holder still finds their own cases after the registry re-imports the
plate with another VIN), and the 行驶证 file number, which only the current registry row
holds, finds the cases of the current holder's VIN.

A successful query returns a short-lived owner token (HMAC-signed) naming the cases it
may open, the holder (a keyed digest of the cases' VIN) and a random token id, checked
again on every open (:func:`owner_case`); every view of a record or its evidence is
written to the audit log. 结束查询 (:func:`revoke_owner_token`) ends a token before its
expiry: its id goes into ``owner_token_revocations`` until then, and :func:`owner_case`
refuses it (401).
Every query is written to the owner access log (``access_log.py``), which is sealed into
the audit chain in batches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import secrets
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, tuple_
from sqlalchemy.orm import Session

from zhichao.common import utc_now as _utc_now
from zhichao.evidence.reader import PackageRefusedError, read_package
from zhichao.service import access_log, audit, workflow
from zhichao.service.errors import (
    AuthenticationError,
    IngestError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
)
from zhichao.service.ingest import (
    PLATE_COLOURS_ZH,
    normalise_colour,
    normalise_plate,
    read_package_manifest,
)
from zhichao.service.inputs import check_time
from zhichao.service.models import (
    Attachment,
    Case,
    CaseHolder,
    Decision,
    OwnerTokenRevocation,
    Passage,
    Site,
    Statement,
    Vehicle,
)
from zhichao.service.objectstore import local_package
from zhichao.service.ratelimit import Limiter
from zhichao.service.settings import Settings
from zhichao.service.workdays import china_date

OWNER_PAGE_SIZE = 20  # records per page of an owner query (keyset pagination)
OWNER_PAGE_MAX = 100
NOTHING_FOUND: dict[str, Any] = {
    "records": [], "owner_token": None, "next_after": None,
    "message_zh": "未查询到与所填信息相符的记录。请核对号牌、号牌颜色和车辆识别代号后六位"
                  "（或行驶证档案编号）。",
}
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"%PDF-", "application/pdf"),
)


_MAX_KEYS = 100_000
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab and line breaks pass
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RateLimiter:
    """Sliding-window counters per key, in this process's memory; thread-safe; ``clock``
    is injectable for tests. Replicas share limits through
    :class:`zhichao.service.ratelimit.RedisRateLimiter` instead (``Settings.redis_url``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, *, limit: int, window_s: float) -> None:
        now = self._clock()
        with self._lock:
            window = self._hits.setdefault(key, deque())
            while window and window[0] <= now - window_s:
                window.popleft()
            if len(window) >= limit:
                raise RateLimitedError(f"rate limit for {key.split(':', 1)[0]}")
            window.append(now)
            if len(self._hits) > _MAX_KEYS:
                self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop keys idle for an hour (the longest window); if that is not enough (many
        clients or plates within the hour), the least recent, down to 90 % of the bound,
        so memory stays bounded and this runs once per 10 000 new keys at most."""
        for k in [k for k, w in self._hits.items() if not w or w[-1] <= now - 3600]:
            del self._hits[k]
        if len(self._hits) > _MAX_KEYS:
            by_age = sorted(self._hits, key=lambda k: self._hits[k][-1])
            for k in by_age[:len(by_age) - _MAX_KEYS * 9 // 10]:
                del self._hits[k]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{16,32}")


def _new_token_id() -> str:
    return secrets.token_urlsafe(12)  # 16 characters


@dataclass(frozen=True)
class OwnerGrant:
    """What an owner token grants: the cases, of one holder (:func:`holder_key` of the VIN
    the cases were registered under), until the expiry; ``token_id`` names the token for
    :func:`revoke_owner_token`."""

    holder: str
    case_ids: frozenset[int]
    expires_epoch_s: int
    token_id: str = field(default_factory=_new_token_id)


def holder_key(settings: Settings, vin: str) -> str:
    """A VIN's holder key: keyed (the VIN cannot be read back from a token or the audit
    log's actor), stable (one holder's queries link up)."""
    return hmac.new(settings.secret_key.encode(), b"holder\n" + vin.encode(),
                    hashlib.sha256).hexdigest()[:16]


def make_owner_token(settings: Settings, grant: OwnerGrant) -> str:
    body = json.dumps({"h": grant.holder, "c": sorted(grant.case_ids),
                       "exp": grant.expires_epoch_s, "j": grant.token_id},
                      separators=(",", ":")).encode()
    mac = hmac.new(settings.secret_key.encode(), b"owner\n" + body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def read_owner_token(settings: Settings, token: str | None, *,
                     now: datetime | None = None) -> OwnerGrant:
    bad = AuthenticationError("owner token missing, forged or expired",
                              "查询凭证无效或已过期，请重新查询")
    if not token or token.count(".") != 1 or len(token) > 4096:
        raise bad
    body_b64, mac_b64 = token.split(".")
    try:
        body, mac = _unb64(body_b64), _unb64(mac_b64)
        expected = hmac.new(settings.secret_key.encode(), b"owner\n" + body,
                            hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise bad
        data = json.loads(body)
        grant = OwnerGrant(str(data["h"]), frozenset(int(c) for c in data["c"]),
                           int(data["exp"]), str(data["j"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise bad from exc
    if not _TOKEN_ID.fullmatch(grant.token_id):  # signed, but older than token ids
        raise bad
    if grant.expires_epoch_s <= (now or _utc_now()).timestamp():
        raise bad
    return grant


def _validate_query(plate: str, plate_colour: str, vin_last6: str | None,
                    licence_file_number: str | None) -> tuple[str, str, str, str]:
    norm_plate = normalise_plate(plate)
    if norm_plate is None or not 7 <= len(norm_plate) <= 8 or not all(
            ch.isalnum() for ch in norm_plate):
        raise InvalidInputError("plate: 7–8 characters", "号牌格式有误")
    colour = normalise_colour(plate_colour)
    if colour is None:
        raise InvalidInputError("plate_colour: unknown", "号牌颜色有误，可选："
                                + "、".join(PLATE_COLOURS_ZH.values()))
    if (vin_last6 is None) == (licence_file_number is None):
        raise InvalidInputError("give exactly one of vin_last6 or licence_file_number",
                                "请填写车辆识别代号后六位或行驶证档案编号（二选一）")
    if vin_last6 is not None:
        secret = vin_last6.strip().upper()
        if len(secret) != 6 or not secret.isascii() or not secret.isalnum():
            raise InvalidInputError("vin_last6: 6 letters/digits", "车辆识别代号后六位格式有误")
        return norm_plate, colour, "vin", secret
    assert licence_file_number is not None
    secret = licence_file_number.strip().upper()
    if not 6 <= len(secret) <= 20 or not secret.isascii() or not secret.isalnum():
        raise InvalidInputError("licence_file_number: 6–20 letters/digits",
                                "行驶证档案编号格式有误")
    return norm_plate, colour, "file", secret


def owner_query(session: Session, settings: Settings, limiter: Limiter, *, client_id: str,
                plate: str, plate_colour: str, vin_last6: str | None = None,
                licence_file_number: str | None = None, after: str | None = None,
                limit: int = OWNER_PAGE_SIZE, pad: bool = True,
                now: datetime | None = None) -> dict[str, Any]:
    """Find the owner's cases, newest first, ``limit`` per page from the keyset cursor
    ``after`` (the answer's ``next_after``); :data:`NOTHING_FOUND` unless every detail
    matches. Two index lookups (vehicle; cases by plate, colour, time, id), then the page's
    records in two statements, then the access-log entry (``access_log.py``: a shared
    lock, held only to commit; queries never wait for each other, nor for the audit chain).

    ``pad``: answer no sooner than ``Settings.owner_query_min_duration_ms`` after the
    start, sleeping *before* the access entry (so its lock is never held asleep: the
    sealer's barrier would wait for it, and new queries behind the barrier);
    callers that can wait outside the transaction pass ``pad=False`` and wait after the
    commit with :func:`floor_left_s` (the JSON route: an async sleep, no thread, no
    connection held)."""
    started = time.perf_counter()
    now = now or _utc_now()
    norm_plate, colour, kind, secret = _validate_query(plate, plate_colour, vin_last6,
                                                       licence_file_number)
    if not 1 <= limit <= OWNER_PAGE_MAX:
        raise InvalidInputError(f"limit: 1..{OWNER_PAGE_MAX}", f"每页条数须为 1–{OWNER_PAGE_MAX}")
    cursor = _parse_cursor(after)
    limiter.hit(f"client:{client_id}", limit=settings.owner_query_per_client_per_minute,
                window_s=60)
    limiter.hit(f"plate:{norm_plate}:{colour}", limit=settings.owner_query_per_plate_per_hour,
                window_s=3600)
    vehicle = session.execute(_VEHICLE, {"plate": norm_plate, "colour": colour}).first()
    if kind == "vin":  # the cases registered under a VIN ending in these six prove it
        proven, pattern = True, "_" * 11 + secret
    else:  # the file number is the current holder's: the cases of the current VIN
        known = (None if vehicle is None else vehicle.licence_file_number) or "\x00" * 32
        proven = hmac.compare_digest(known.upper().encode(), secret.encode()) \
            and vehicle is not None
        pattern = vehicle.vin if proven and vehicle is not None else _NO_VIN
    page = session.execute(_PAGE if cursor is None else _PAGE_AFTER, {
        "plate": norm_plate, "colour": colour, "vin": pattern, "n": limit + 1,
        **({} if cursor is None else {"after_time": cursor[0], "after_id": cursor[1]})}).all()
    more = len(page) > limit
    page = page[:limit]
    if page and any(row.vin != page[0].vin for row in page):
        # two holders of the plate whose VINs end alike: one holder's cases per answer
        # (the token names one VIN; the other's would be shown and then refused)
        page = [row for row in page if row.vin == page[0].vin]
    shown = proven and bool(page)
    records = owner_records(session, [row.id for row in page]) if shown else []
    holder = holder_key(settings, page[0].vin) if shown else ""
    if pad:
        time.sleep(floor_left_s(started, settings))
    # One access entry per query, found or not (same work either way); when records are
    # shown it names every case whose evidence the owner now sees. Sealed into the audit
    # chain in batches (access_log.py).
    access_log.record_owner_access(
        session, actor=f"owner:vin:{holder}" if shown else "owner",
        object_id=hashlib.sha256(f"{norm_plate}|{colour}".encode()).hexdigest()[:16],
        now=now, detail={"matched": shown, "by": kind,
                         "evidence_viewed_case_ids": [r["case_id"] for r in records]})
    if shown:
        grant = OwnerGrant(holder, frozenset(r["case_id"] for r in records),
                           int(now.timestamp()) + settings.owner_token_ttl_s)
        answer: dict[str, Any] = {
            "records": records, "owner_token": make_owner_token(settings, grant),
            "next_after": _cursor(page[-1].time_utc, page[-1].id) if more else None,
            "message_zh": f"查询到 {len(records)} 条记录" + ("（还有更早的记录）" if more else "")}
    else:
        answer = dict(NOTHING_FOUND)
    return answer


def _cursor(time_utc: datetime, case_id: int) -> str:
    return f"{time_utc.astimezone(UTC).isoformat(timespec='microseconds')}~{case_id}"


def _parse_cursor(after: str | None) -> tuple[datetime, int] | None:
    if after is None:
        return None
    try:
        when_text, id_text = after.split("~")
        when = datetime.fromisoformat(when_text)
        if when.tzinfo is None or len(id_text) > 18:
            raise ValueError("naive time or long id")
        return check_time(when, "after"), int(id_text)  # year 1 or 9999: refused, no 500
    except (ValueError, InvalidInputError) as exc:
        raise InvalidInputError(f"after: not a cursor ({exc})", "翻页参数有误，请重新查询") from exc


def floor_left_s(started: float, settings: Settings) -> float:
    """Seconds still to wait so that an owner query started at ``started``
    (``time.perf_counter()``) answers no sooner than the floor."""
    return max(0.0, settings.owner_query_min_duration_ms / 1000
               - (time.perf_counter() - started))


def read_manifest(package_path: str) -> dict[str, Any]:
    """The package's manifest for an owner's view; unreadable → "not available" (404)."""
    try:
        manifest, _ = read_package_manifest(package_path)
    except IngestError as exc:
        raise NotFoundError(str(exc), "证据包暂不可用") from exc
    return manifest


_RECORD_COLUMNS = (
    Case.id, Case.state, Case.time_utc, Case.plate, Case.plate_colour, Case.site_id,
    Case.legal_basis_zh, Case.proposed_outcome, Case.proposed_fine_yuan, Case.statement_due,
    Case.hearing_request_due, Case.package_id, Case.package_path, Case.manifest_sha256,
    Passage.lane_code, Passage.gross_weight_kg, Passage.limit_kg, Passage.excess_kg,
    Site.name_zh.label("site_name_zh"), Site.road_zh, Site.stake_zh,
    Decision.outcome, Decision.fine_yuan, Decision.reasons_zh, Decision.decided_utc)


# The owner query's statements, built once (building and keying a statement per query
# cost about a third of a query's CPU: docs/service.md, "Owner queries at provincial
# scale"); the values are bound at each execution.
_VEHICLE = select(Vehicle.id, Vehicle.vin, Vehicle.licence_file_number).where(
    Vehicle.plate == bindparam("plate"), Vehicle.plate_colour == bindparam("colour"))
# ``vin``: a LIKE pattern, 11 ``_`` and the last six (the VIN route) or the whole VIN (the
# file route); both are letters and digits only (checked), so nothing else is a wildcard.
_NO_VIN = "#" * 17  # matches no VIN: a failed file-number check does the same work
_PAGE = (select(Case.id, Case.time_utc, CaseHolder.vin)
         .join(CaseHolder, CaseHolder.case_id == Case.id).where(
    Case.plate == bindparam("plate"), Case.plate_colour == bindparam("colour"),
    CaseHolder.vin.like(bindparam("vin")),
    Case.state.in_(workflow.OWNER_VISIBLE_STATES), Case.opened_utc.is_not(None))
    .order_by(Case.time_utc.desc(), Case.id.desc()).limit(bindparam("n")))
_PAGE_AFTER = _PAGE.where(  # keyset: the page after (time, id), newest first
    tuple_(Case.time_utc, Case.id) < tuple_(bindparam("after_time", type_=Case.time_utc.type),
                                            bindparam("after_id", type_=Case.id.type)))
_RECORDS = (
    select(*_RECORD_COLUMNS).select_from(Case)
    .outerjoin(Passage, (Passage.id == Case.passage_id)
               & (Passage.time_utc == Case.time_utc))  # the partition: pruned
    .outerjoin(Site, Site.site_id == Case.site_id)
    .outerjoin(Decision, Decision.case_id == Case.id)
    .where(Case.id.in_(bindparam("ids", expanding=True))))
_STATEMENTS = (
    select(Statement.id, Statement.case_id, Statement.kind, Statement.filed_utc,
           Statement.text_zh, Statement.response_zh, Attachment.filename)
    .outerjoin(Attachment, Attachment.statement_id == Statement.id)
    .where(Statement.case_id.in_(bindparam("ids", expanding=True)))
    .order_by(Statement.id, Attachment.id))


def owner_records(session: Session, case_ids: Sequence[int]) -> list[dict[str, Any]]:
    """What the owner sees of these cases (no other person's data), in the order given:
    the columns shown in one statement (case, its passage, site, decision), the statements
    with their attachments' names in a second; the photos, axle loads and penalty steps
    from each package's manifest (the sealed evidence: not in the database)."""
    if not case_ids:
        return []
    ids = {"ids": list(case_ids)}
    rows = session.execute(_RECORDS, ids).all()
    statements: dict[int, list[dict[str, Any]]] = {}
    by_id: dict[int, dict[str, Any]] = {}
    for st in session.execute(_STATEMENTS, ids):
        if st.id not in by_id:
            by_id[st.id] = {"id": st.id, "kind": st.kind, "filed_utc": st.filed_utc.isoformat(),
                            "text_zh": st.text_zh, "response_zh": st.response_zh,
                            "attachments": []}
            statements.setdefault(st.case_id, []).append(by_id[st.id])
        if st.filename is not None:
            by_id[st.id]["attachments"].append(st.filename)
    order = {case_id: k for k, case_id in enumerate(case_ids)}
    return [_record(row, statements.get(row.id, []))
            for row in sorted(rows, key=lambda r: order[r.id])]


def _record(row: Any, statements: list[dict[str, Any]]) -> dict[str, Any]:
    manifest = read_manifest(row.package_path)
    facts = manifest.get("case") or {}
    vehicle = facts.get("vehicle") or {}
    penalty = facts.get("penalty") or {}
    photos = [f["path"] for f in manifest.get("files", [])
              if isinstance(f, dict) and str(f.get("role", "")).startswith("image_")]
    has_passage = row.lane_code is not None
    return {
        "case_id": row.id,
        "state": row.state,
        "state_zh": workflow.STATES_ZH[row.state],
        "time_utc": row.time_utc.isoformat(),
        "plate": row.plate,
        "plate_colour": row.plate_colour,
        "site": None if row.site_name_zh is None else {
            "site_id": row.site_id, "name_zh": row.site_name_zh, "road_zh": row.road_zh,
            "stake_zh": row.stake_zh},
        "lane": row.lane_code,
        "weights": {
            "gross_weight_kg": row.gross_weight_kg if has_passage else None,
            "limit_kg": row.limit_kg if has_passage else None,
            "excess_kg": row.excess_kg if has_passage else None,
            "axle_count": vehicle.get("axle_count"),
            "axle_loads_kg": vehicle.get("axle_loads_kg"),
            "limit_basis_zh": vehicle.get("limit_basis"),
        },
        "legal_basis_zh": row.legal_basis_zh,
        "penalty_steps": penalty.get("steps", []),
        "proposed_outcome": row.proposed_outcome,
        "proposed_fine_yuan": row.proposed_fine_yuan,
        "statement_due": None if row.statement_due is None else row.statement_due.isoformat(),
        "hearing_request_due": None if row.hearing_request_due is None
        else row.hearing_request_due.isoformat(),
        "photos": photos,
        "package_id": row.package_id,
        "manifest_sha256": row.manifest_sha256,
        "statements": statements,
        "decision": None if row.outcome is None else {
            "outcome": row.outcome, "outcome_zh": workflow.OUTCOMES_ZH[row.outcome],
            "fine_yuan": row.fine_yuan, "reasons_zh": row.reasons_zh,
            "decided_utc": row.decided_utc.isoformat()},
    }


def owner_record_json(session: Session, case: Case) -> dict[str, Any]:
    """What the owner sees of one of their own cases."""
    return owner_records(session, [case.id])[0]


def check_owner_token_live(session: Session, grant: OwnerGrant) -> None:
    """Refuse (401, zh-CN) a token ended by 结束查询 (:func:`revoke_owner_token`)."""
    if session.get(OwnerTokenRevocation, grant.token_id) is not None:
        raise AuthenticationError("owner token ended (revoked)",
                                  "本次查询已结束，查询凭证已失效，请重新查询")


def revoke_owner_token(session: Session, grant: OwnerGrant, *,
                       now: datetime | None = None) -> None:
    """结束查询: refuse the grant's token from now until its expiry (idempotent), and
    prune the revocations that have expired."""
    now = now or _utc_now()
    session.execute(delete(OwnerTokenRevocation).where(OwnerTokenRevocation.expires_utc <= now))
    values = {"token_id": grant.token_id, "revoked_utc": now,
              "expires_utc": datetime.fromtimestamp(grant.expires_epoch_s, UTC)}
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(OwnerTokenRevocation).values(values)
                        .on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(OwnerTokenRevocation).values(values)
                        .on_conflict_do_nothing())


def owner_case(session: Session, settings: Settings, grant: OwnerGrant, case_id: int) -> Case:
    """The case if the grant covers it and it was registered under the grant's holder's VIN
    (not whoever holds its plate now); else 404. A token ended by 结束查询: 401."""
    check_owner_token_live(session, grant)
    case = session.get(Case, case_id)
    holder = session.get(CaseHolder, case_id)
    if (case is None or holder is None or case_id not in grant.case_ids
            or not hmac.compare_digest(holder_key(settings, holder.vin), grant.holder)
            or not workflow.owner_visible(case)):
        raise NotFoundError(f"case {case_id} not covered by owner grant", "记录不存在")
    return case


_SERVED_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "application/pdf",
                                 "application/json", "video/mp4", "application/zip"})


def _download_name(package_id: str) -> str:
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_"
                   for ch in package_id)[:150]
    return f"{safe or 'package'}.zip"


def package_zip(case: Case) -> tuple[str, bytes]:
    """The sealed package as a ``.zip`` (a stored zip is returned byte for byte)."""
    path = local_package(case.package_path)
    name = _download_name(case.package_id)
    if path.is_file():
        return name, path.read_bytes()
    if not path.is_dir():
        raise NotFoundError(f"package {case.package_id} missing at {path}", "证据包暂不可用")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            zf.write(file, f"{case.package_id}/{file.relative_to(path).as_posix()}")
    return name, buf.getvalue()


def package_file(case: Case, name: str) -> tuple[str, bytes]:
    """One file listed in the manifest (e.g. a photo); anything else is 404."""
    manifest = read_manifest(case.package_path)
    listed = {f.get("path"): f for f in manifest.get("files", []) if isinstance(f, dict)}
    if name not in listed:
        raise NotFoundError(f"{name!r} not listed in package {case.package_id}", "文件不存在")
    try:  # the one strict reader (zhichao.evidence.reader), as verify and the center read it
        data = read_package(local_package(case.package_path)).read(name)
    except PackageRefusedError as exc:
        raise NotFoundError(f"{name} unreadable in {case.package_id}: {exc}",
                            "文件不存在") from exc
    if data is None:
        raise NotFoundError(f"{name} missing in {case.package_id}", "文件不存在")
    media_type = str(listed[name].get("media_type") or "")
    if media_type not in _SERVED_MEDIA_TYPES:  # never serve markup from a package
        media_type = "application/octet-stream"
    return media_type, data


def log_evidence_view(session: Session, *, actor: str, case: Case, what: str) -> None:
    audit.append(session, actor=actor, action="evidence.view", object_type="case",
                 object_id=str(case.id), detail={"what": what})


def sniff_media_type(data: bytes) -> str | None:
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    return None


def _safe_filename(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*')[:100]
    return base or "attachment"


def file_statement(session: Session, settings: Settings, grant: OwnerGrant, *, case_id: int,
                   kind: str, text: str, contact: str | None,
                   files: Sequence[tuple[str, bytes]] = (),
                   now: datetime | None = None) -> Statement:
    """陈述申辩 (or a hearing request) with attachments: JPEG, PNG or PDF by magic bytes."""
    case = owner_case(session, settings, grant, case_id)
    if _TEXT_CONTROL.search(text) or (contact is not None and _CONTROL.search(contact)):
        raise InvalidInputError("text or contact: control characters",
                                "陈述内容或联系方式含有非法控制字符")
    if len(files) > settings.attachment_max_count:
        raise InvalidInputError(f"at most {settings.attachment_max_count} attachments",
                                f"附件最多 {settings.attachment_max_count} 个")
    checked: list[tuple[str, str, bytes]] = []
    for index, (name, data) in enumerate(files):
        if not data:
            raise InvalidInputError(f"attachment {index}: empty", f"第 {index + 1} 个附件为空")
        if len(data) > settings.attachment_max_bytes:
            raise InvalidInputError(
                f"attachment {index}: {len(data)} bytes > {settings.attachment_max_bytes}",
                f"第 {index + 1} 个附件超过 {settings.attachment_max_bytes // (1024 * 1024)} MB")
        media_type = sniff_media_type(data)
        if media_type is None:
            raise InvalidInputError(f"attachment {index}: not JPEG, PNG or PDF",
                                    f"第 {index + 1} 个附件类型不支持（仅限 JPG、PNG、PDF）")
        checked.append((_safe_filename(name), media_type, data))
    statement = workflow.add_statement(
        session, case, kind=kind, text=text, contact=contact,
        actor_label=f"owner:vin:{grant.holder}", max_chars=settings.statement_max_chars,
        now=now)
    for name, media_type, data in checked:
        session.add(Attachment(statement_id=statement.id, filename=name, media_type=media_type,
                               size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                               content=data))
    session.flush()
    return statement


def mask_plate(plate: str | None) -> str:
    """浙A12345 → 浙A***45: province, letter and the last two characters stay."""
    if not plate:
        return "—"
    return plate[:2] + "*" * max(len(plate) - 4, 1) + plate[-2:]


def public_disclosures(session: Session, *, year: int | None = None) -> list[dict[str, Any]]:
    """公示 data of decided, published cases; no personal data, plates masked."""
    rows = session.execute(
        select(Case, Decision, Site).join(Decision, Decision.case_id == Case.id)
        .outerjoin(Site, Site.site_id == Case.site_id)
        .where(Case.state.in_(("published", "archived")), Case.published_utc.is_not(None),
               Case.publication_withdrawn_utc.is_(None))  # withdrawn: Art. 48
        .order_by(Case.published_utc)).all()
    out: list[dict[str, Any]] = []
    for case, decision, site in rows:
        decided = china_date(decision.decided_utc)
        if year is not None and decided.year != year:
            continue
        out.append({
            "case_id": case.id, "plate_masked": mask_plate(case.plate),
            "violation_date": china_date(case.time_utc).isoformat(),
            "site_zh": case.site_id if site is None else site.name_zh,
            "outcome": decision.outcome, "outcome_zh": workflow.OUTCOMES_ZH[decision.outcome],
            "fine_yuan": decision.fine_yuan, "legal_basis_zh": case.legal_basis_zh,
            "decided_date": decided.isoformat(),
            "published_utc": None if case.published_utc is None
            else case.published_utc.isoformat(),
        })
    return out
