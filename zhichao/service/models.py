"""SQLAlchemy 2 ORM models (typed ``Mapped[...]``) of the service database.

Every timestamp column is tz-aware UTC (:class:`UTCDateTime`); SQLite, which has no time
zones, stores naive UTC and gets ``tzinfo=UTC`` back on read. Legal dates (deadlines) are
plain :class:`datetime.date` values in China time (UTC+8), see ``calendar.py``.

The schema is created only by the Alembic migrations in ``migrations/`` (a test checks
that the migrated schema equals this metadata). ``audit_log`` (and
``owner_access_log``, 0007) is append-only and ``cases`` rows are never deleted: database
triggers refuse it (migration 0001).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from zhichao.common import utc_now


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always tz-aware UTC in Python, whatever the backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON,
    }


class Site(Base):
    """A published enforcement site (行政处罚法 Art. 41: locations must be published)."""

    __tablename__ = "sites"
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    road_zh: Mapped[str | None] = mapped_column(String(200))
    stake_zh: Mapped[str | None] = mapped_column(String(100))
    jurisdiction: Mapped[str] = mapped_column(String(16))
    announcement_zh: Mapped[str | None] = mapped_column(Text)
    announcement_url: Mapped[str | None] = mapped_column(String(500))
    announced_utc: Mapped[datetime | None]
    authority_zh: Mapped[str | None] = mapped_column(String(200))
    handling_place_zh: Mapped[str | None] = mapped_column(String(300))
    created_utc: Mapped[datetime] = mapped_column(default=utc_now)


class Lane(Base):
    __tablename__ = "lanes"
    __table_args__ = (UniqueConstraint("site_id", "lane_code", name="uq_lanes_site_lane"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.site_id"))
    lane_code: Mapped[str] = mapped_column(String(16))
    direction_zh: Mapped[str | None] = mapped_column(String(100))


class Device(Base):
    """A WIM device with its approvals, verification certificate, calibration and health."""

    __tablename__ = "devices"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    lane_id: Mapped[int | None] = mapped_column(ForeignKey("lanes.id"))
    accuracy_class: Mapped[str | None] = mapped_column(String(16))
    technical_review_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    technical_review_date: Mapped[date | None] = mapped_column(Date)
    legal_review_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    legal_review_date: Mapped[date | None] = mapped_column(Date)
    certificate_number: Mapped[str | None] = mapped_column(String(100))
    certificate_issuer: Mapped[str | None] = mapped_column(String(200))
    certificate_valid_from: Mapped[datetime | None]
    certificate_valid_to: Mapped[datetime | None]
    calibration_profile_id: Mapped[str | None] = mapped_column(String(100))
    health: Mapped[str] = mapped_column(String(32), default="unknown")
    health_detail: Mapped[str | None] = mapped_column(Text)
    health_updated_utc: Mapped[datetime | None]


class Vehicle(Base):
    """Registration data (行驶证) imported from the vehicle registry; owners prove with it."""

    __tablename__ = "vehicles"
    __table_args__ = (UniqueConstraint("plate", "plate_colour", name="uq_vehicles_plate"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plate: Mapped[str] = mapped_column(String(16))
    plate_colour: Mapped[str] = mapped_column(String(16))
    vin: Mapped[str] = mapped_column(String(17))
    licence_file_number: Mapped[str | None] = mapped_column(String(32))
    owner_name_zh: Mapped[str | None] = mapped_column(String(200))
    owner_phone: Mapped[str | None] = mapped_column(String(32))
    updated_utc: Mapped[datetime] = mapped_column(default=utc_now)


class Passage(Base):
    """Every weighed vehicle (overloaded or not): statistics and drift need all of them.

    On PostgreSQL the table is partitioned by month of ``time_utc`` (migration 0006): there
    the primary key is ``(id, time_utc)`` and ``source_key`` is unique with ``time_utc``;
    see ``partitions.py`` for why the ORM keeps the one-column key.
    """

    __tablename__ = "passages"
    __table_args__ = (
        Index("ix_passages_plate", "plate", "plate_colour"),
        Index("ix_passages_site_time", "site_id", "time_utc"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_key: Mapped[str] = mapped_column(String(100), unique=True)
    station_id: Mapped[str | None] = mapped_column(String(64))
    site_id: Mapped[str] = mapped_column(String(64))
    lane_code: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[str | None] = mapped_column(String(64))
    time_utc: Mapped[datetime]
    plate: Mapped[str | None] = mapped_column(String(16))
    plate_colour: Mapped[str | None] = mapped_column(String(16))
    speed_kmh: Mapped[float | None]
    axle_count: Mapped[int | None]
    gross_weight_kg: Mapped[float | None]
    vehicle_class: Mapped[str | None] = mapped_column(String(64))
    limit_kg: Mapped[float | None]
    excess_kg: Mapped[float | None]
    verdict: Mapped[str | None] = mapped_column(String(32))
    overloaded: Mapped[bool] = mapped_column(Boolean, default=False)
    flags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    eligibility_status: Mapped[str | None] = mapped_column(String(32))
    package_id: Mapped[str | None] = mapped_column(String(200))
    received_utc: Mapped[datetime] = mapped_column(default=utc_now)
    plate_removed_utc: Mapped[datetime | None]  # retention (个人信息保护法 Art. 19)


class Case(Base):
    """An enforcement case built on one sealed evidence package. Never deleted."""

    __tablename__ = "cases"
    __table_args__ = (
        # the owner query: its filter and its keyset order (newest first) in one index
        Index("ix_cases_owner", "plate", "plate_colour", "time_utc", "id"),
        Index("ix_cases_state", "state"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    passage_id: Mapped[int] = mapped_column(ForeignKey("passages.id"), unique=True)
    package_id: Mapped[str] = mapped_column(String(200), unique=True)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    package_path: Mapped[str] = mapped_column(String(1000))
    station_id: Mapped[str | None] = mapped_column(String(64))
    site_id: Mapped[str] = mapped_column(String(64))
    jurisdiction: Mapped[str | None] = mapped_column(String(16))
    time_utc: Mapped[datetime]
    plate: Mapped[str | None] = mapped_column(String(16))
    plate_colour: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(32))
    eligibility_status: Mapped[str] = mapped_column(String(32))
    proposed_outcome: Mapped[str | None] = mapped_column(String(32))
    proposed_fine_yuan: Mapped[int | None]
    hearing_right: Mapped[str | None] = mapped_column(String(16))
    legal_basis_zh: Mapped[str | None] = mapped_column(Text)
    manual_override: Mapped[bool] = mapped_column(Boolean, default=False)
    manual_override_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    manual_override_reason: Mapped[str | None] = mapped_column(Text)
    technical_reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    legal_reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    hearing_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    hearing_held_utc: Mapped[datetime | None]
    hearing_summary_zh: Mapped[str | None] = mapped_column(Text)
    opened_utc: Mapped[datetime | None]
    statement_due: Mapped[date | None] = mapped_column(Date)
    hearing_request_due: Mapped[date | None] = mapped_column(Date)
    decision_due: Mapped[date | None] = mapped_column(Date)
    serve_due: Mapped[date | None] = mapped_column(Date)
    published_utc: Mapped[datetime | None]
    # The procedure by the law (migration 0004): recorded waivers (Art. 62), the 公示
    # deadline and its withdrawal (Art. 48), and a revoked or changed decision.
    statement_waived_utc: Mapped[datetime | None]
    hearing_waived_utc: Mapped[datetime | None]
    waiver_record_zh: Mapped[str | None] = mapped_column(Text)
    publish_due: Mapped[date | None] = mapped_column(Date)
    publication_withdrawn_utc: Mapped[datetime | None]
    withdrawal_reason_zh: Mapped[str | None] = mapped_column(Text)
    created_utc: Mapped[datetime] = mapped_column(default=utc_now)
    updated_utc: Mapped[datetime] = mapped_column(default=utc_now)

    events: Mapped[list[CaseEvent]] = relationship(order_by="CaseEvent.id", viewonly=True)
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy reads it)


class CaseHolder(Base):
    """The VIN of the vehicle that held a case's plate when the case was registered
    (migration 0010; no row while the registry does not know the plate): the owner query
    shows the case only to that vehicle's holder, never to a later holder of the plate.
    Written once (``ingest``), never changed. A table of its own, not a column of
    ``cases``, so that the case rows (and the migrations' tests that write them at older
    revisions) stay as they were."""

    __tablename__ = "case_holders"
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True,
                                         autoincrement=False)
    vin: Mapped[str] = mapped_column(String(17))
    bound_utc: Mapped[datetime]


class CaseEvent(Base):
    """One state transition of a case: who, when, why."""

    __tablename__ = "case_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_label: Mapped[str] = mapped_column(String(200))
    time_utc: Mapped[datetime]
    reason_zh: Mapped[str | None] = mapped_column(Text)


class Review(Base):
    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16))  # technical | legal
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    approved: Mapped[bool] = mapped_column(Boolean)
    reason_zh: Mapped[str | None] = mapped_column(Text)
    time_utc: Mapped[datetime]


class Notice(Base):
    """告知 (before the decision) and 决定书 service records."""

    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # notification | decision
    issued_utc: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(32))
    statement_due: Mapped[date | None] = mapped_column(Date)
    hearing_request_due: Mapped[date | None] = mapped_column(Date)
    text_zh: Mapped[str] = mapped_column(Text)
    # Service of the notice (migration 0004): the moment the party got it (signed receipt,
    # postal delivery, arrival in the agreed electronic system, or publication of the
    # announcement), the legal service date derived from it, and the proof.
    delivered_utc: Mapped[datetime | None]
    served_on: Mapped[date | None] = mapped_column(Date)
    service_proof_zh: Mapped[str | None] = mapped_column(Text)


class Statement(Base):
    """陈述申辩 or a hearing request filed by the party."""

    __tablename__ = "statements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # statement | hearing_request
    text_zh: Mapped[str] = mapped_column(Text)
    contact: Mapped[str | None] = mapped_column(String(100))
    filed_utc: Mapped[datetime]
    handled_utc: Mapped[datetime | None]
    handled_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    response_zh: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list[Attachment]] = relationship(order_by="Attachment.id")


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("statements.id"), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)


class Decision(Base):
    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    outcome: Mapped[str] = mapped_column(String(16))  # warning | fine | reduced | no_penalty
    fine_yuan: Mapped[int] = mapped_column(Integer, default=0)
    reasons_zh: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decided_utc: Mapped[datetime]
    served_utc: Mapped[datetime | None]
    served_channel: Mapped[str | None] = mapped_column(String(32))
    text_zh: Mapped[str | None] = mapped_column(Text)  # the 决定书 as served (Art. 59)


class CopyNotice(Base):
    """抄告 outbox (62号令 Art. 44): one copy notice per closed case with a penalty, to the
    transport authority of the vehicle's registration place; sent and acknowledged times
    are recorded when the officer confirms them.

    When the decision is later changed or revoked (migration 0008) an unsent copy is
    cancelled (``cancelled_utc``, ``cancel_reason_zh``; never sent), and a sent one gets a
    second row of the same case, ``kind="withdrawal"`` (撤回抄告), naming it in
    ``withdraws_id``; one row of each kind per case at most. How it was sent
    (``sent_channel``, a key of ``copy_notices.SENT_CHANNELS_ZH``) and its reference
    (文号, 邮件单号) are recorded with the sent time (migration 0009)."""

    __tablename__ = "copy_notices"
    __table_args__ = (UniqueConstraint("case_id", "kind", name="uq_copy_notices_case_kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[str] = mapped_column(String(16), default="copy",
                                      server_default="copy")  # copy | withdrawal
    withdraws_id: Mapped[int | None] = mapped_column(
        ForeignKey("copy_notices.id", name="fk_copy_notices_withdraws_id"))
    authority_zh: Mapped[str] = mapped_column(String(200))
    due: Mapped[date] = mapped_column(Date)
    referral: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_utc: Mapped[datetime]
    sent_utc: Mapped[datetime | None]
    sent_channel: Mapped[str | None] = mapped_column(String(32))  # migration 0009
    sent_reference: Mapped[str | None] = mapped_column(String(200))  # 文号 or 邮件单号
    acknowledged_utc: Mapped[datetime | None]
    cancelled_utc: Mapped[datetime | None]
    cancel_reason_zh: Mapped[str | None] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name_zh: Mapped[str] = mapped_column(String(100))
    roles: Mapped[str] = mapped_column(String(200))  # comma-separated role names
    station_id: Mapped[str | None] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_utc: Mapped[datetime] = mapped_column(default=utc_now)

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r for r in self.roles.split(",") if r)


class AuthToken(Base):
    """A bearer session token; only its SHA-256 is stored."""

    __tablename__ = "auth_tokens"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_utc: Mapped[datetime]
    expires_utc: Mapped[datetime]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditEntry(Base):
    """Append-only, hash-chained audit log. The database refuses UPDATE and DELETE."""

    __tablename__ = "audit_log"
    # (action, id): "the newest entry of this action" is one index probe (the access-log
    # sealer's last seal, access_log.py); also serves plain look-ups by action (0007).
    # (object_type, object_id): an object's entries, e.g. who recorded anything on a case
    # (duties.handler_ids, the 回避 bar of 案卷评查; migration 0012).
    __table_args__ = (Index("ix_audit_log_action_id", "action", "id"),
                      Index("ix_audit_log_object", "object_type", "object_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time_utc: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_sha256: Mapped[str] = mapped_column(String(64))
    entry_sha256: Mapped[str] = mapped_column(String(64), unique=True)


class OwnerAccessEntry(Base):
    """One owner query (found or not), append-only: the database refuses UPDATE and DELETE
    (migration 0007). ``entry_sha256`` is SHA-256 of the RFC 8785 JSON of the other
    fields but ``id``; batches are sealed into the audit chain (``access_log.py``)."""

    __tablename__ = "owner_access_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time_utc: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    object_id: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    entry_sha256: Mapped[str] = mapped_column(String(64))


class OwnerTokenRevocation(Base):
    """An owner token ended before its expiry (结束查询, migration 0012): refused until
    ``expires_utc``, then pruned (owner tokens are HMAC-signed; this names their id)."""

    __tablename__ = "owner_token_revocations"
    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    expires_utc: Mapped[datetime] = mapped_column(index=True)
    revoked_utc: Mapped[datetime]


class EvidenceEvent(Base):
    """Outbox of review-workflow events for the evidence Merkle log (行政处罚法 Art. 47).

    Written in the same transaction as the transition; ``events.flush_to_log`` appends the
    pending ones (``log_index`` still null) with ``zhichao.evidence.events`` and marks them.
    """

    __tablename__ = "evidence_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str] = mapped_column(String(64))
    time_utc: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(48))
    reason_zh: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    log_origin: Mapped[str | None] = mapped_column(String(200))
    log_index: Mapped[int | None]
    appended_utc: Mapped[datetime | None]


# ---- supervision (issue 22): 案卷评查 campaigns and typical cases --------------------------

class ReviewCampaign(Base):
    """A 案卷评查 campaign: its period and scope, the recorded sample seed, its reviewers and,
    once closed, the frozen report (canonical JSON) with its SHA-256."""

    __tablename__ = "review_campaigns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title_zh: Mapped[str] = mapped_column(String(200))
    period_start: Mapped[date] = mapped_column(Date)  # China dates, inclusive
    period_end: Mapped[date] = mapped_column(Date)
    site_ids: Mapped[list[Any]] = mapped_column(JSON)  # empty: every site
    states: Mapped[list[Any]] = mapped_column(JSON)  # empty: every state
    seed: Mapped[str] = mapped_column(String(64))
    min_sample: Mapped[int] = mapped_column(Integer)
    reviewer_ids: Mapped[list[Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))  # open | closed
    opened_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    opened_utc: Mapped[datetime]
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_utc: Mapped[datetime | None]
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    report_sha256: Mapped[str | None] = mapped_column(String(64))


class CampaignCase(Base):
    """One case file in a campaign's sample: drawn at random (``rank`` in the draw) or
    added on purpose by the supervisor."""

    __tablename__ = "campaign_cases"
    __table_args__ = (UniqueConstraint("campaign_id", "case_id", name="uq_campaign_cases"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("review_campaigns.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    how: Mapped[str] = mapped_column(String(16))  # random | chosen
    rank: Mapped[int | None]


class CampaignScore(Base):
    """One reviewer's scoring of one case file: the checklist, the five dimension scores
    derived from it, the problems found and the correction asked for."""

    __tablename__ = "campaign_scores"
    __table_args__ = (UniqueConstraint("campaign_id", "case_id", "reviewer_id",
                                       name="uq_campaign_scores"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("review_campaigns.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    checklist: Mapped[dict[str, Any]] = mapped_column(JSON)  # item key -> true (met) / false
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)  # dimension key -> points
    total: Mapped[int] = mapped_column(Integer)
    problems_zh: Mapped[str | None] = mapped_column(Text)
    correction_zh: Mapped[str | None] = mapped_column(Text)
    time_utc: Mapped[datetime]


class TypicalCase(Base):
    """A decided case marked typical (典型案例) with a short zh-CN summary."""

    __tablename__ = "typical_cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    title_zh: Mapped[str] = mapped_column(String(100))
    summary_zh: Mapped[str] = mapped_column(Text)
    marked_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    marked_utc: Mapped[datetime]


# Registers the before-insert hook that makes a missing month's partition (PostgreSQL).
from zhichao.service import partitions as _partitions  # noqa: E402,F401
