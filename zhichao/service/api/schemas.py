"""Pydantic models of the JSON API: what each route accepts (``*In``) and answers (``*Out``).

Inputs forbid unknown fields and control characters; outputs describe every answer in the
OpenAPI schema. Times are ISO 8601 text in UTC (``UtcText``), dates China dates
(``DateText``), exactly as the service functions write them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from zhichao.service.errors import InvalidInputError
from zhichao.service.inputs import PlausibleTime, label_zh

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def no_control(value: str) -> str:
    """Refuse C0 control characters other than tab, CR and LF (a validation error)."""
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


def clean_text(value: str, field: str) -> str:
    """``value`` when it has no control characters, else a 422 naming the field by its
    zh-CN label (``inputs.FIELDS_ZH``)."""
    if _CONTROL.search(value):
        raise InvalidInputError(f"{field}: control characters",
                                f"{label_zh(field)}含有非法控制字符")
    return value


SafeStr = Annotated[str, AfterValidator(no_control)]
# Every state-changing call sends the version it saw (CaseOut.version): a missing one is a
# 422 (请填写案件版本号), a stale one a 409, so nobody acts on a case they have not seen.
Version = Annotated[int, Field(ge=1, le=2**31 - 1, description=(
    "必填：办理前读取的案件版本号（CaseOut.version）；案件已被他人更新时返回 409"))]
UtcText = Annotated[str, Field(description="UTC, ISO 8601", json_schema_extra={
    "format": "date-time"})]
DateText = Annotated[str, Field(description="中国日期 YYYY-MM-DD（北京时间）",
                                json_schema_extra={"format": "date"})]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    username: SafeStr = Field(min_length=1, max_length=64)
    password: SafeStr = Field(min_length=1, max_length=256)


class ReviewIn(_In):
    approve: bool
    reason: SafeStr | None = Field(default=None, max_length=2000)
    expected_version: Version


class NotifyIn(_In):
    """立案并告知；陈述申辩、听证申请期限自记录送达（serve-notice）之日起算。"""

    channel: SafeStr = Field(max_length=32, description=(
        "告知方式：in_person（直接送达）| post（邮寄）| app、sms（电子送达，须当事人同意）"
        "| announcement（公告，经过三十日视为送达）"))
    hearing_right: bool | None = None
    limitation_note: SafeStr | None = Field(default=None, max_length=2000, description=(
        "违法行为发生二年后才被发现（登记）的（行政处罚法第三十六条），仍须立案时的依据"
        "（法制审核意见）；否则拒绝"))
    expected_version: Version


class AnswerIn(_In):
    response: SafeStr = Field(min_length=1, max_length=2000)


class HearingIn(_In):
    held_utc: PlausibleTime = Field(description=(
        "听证举行时间（ISO 8601，带时区）：不早于听证申请，不晚于当前时间"))
    summary: SafeStr = Field(min_length=1, max_length=2000)


class VersionIn(_In):
    expected_version: Version


class OverrideIn(_In):
    reason: SafeStr = Field(min_length=1, max_length=2000)
    expected_version: Version


class DecisionIn(_In):
    outcome: SafeStr = Field(max_length=16)
    fine_yuan: int = Field(ge=0, le=10_000_000)
    reasons: SafeStr = Field(min_length=1, max_length=2000)
    limitation_note: SafeStr | None = Field(default=None, max_length=2000, description=(
        "超过二年追责时效（行政处罚法第三十六条）仍作出处罚决定的依据；立案时已记录的不必重填"))
    extension_reference: SafeStr | None = Field(default=None, max_length=500, description=(
        "立案之日起九十日后作出决定时（行政处罚法第六十条）：延长期限的批准文号或依据"))
    expected_version: Version


class ServeIn(_In):
    channel: SafeStr = Field(max_length=32)
    served_utc: PlausibleTime | None = Field(default=None, description=(
        "送达时间（ISO 8601，带时区）：不早于作出决定，不晚于当前时间；省略为当前时间"))
    expected_version: Version


class NoticeServiceIn(_In):
    """送达 of the notice: when it reached the party, and the proof."""

    delivered_utc: PlausibleTime = Field(description=(
        "UTC 时间（ISO 8601，带时区）：直接送达为签收时间，邮寄为交付时间，电子送达为到达当事人"
        "同意的系统的时间，公告送达为公告发出时间（经过三十日视为送达）"))
    proof: SafeStr = Field(min_length=1, max_length=500,
                           description="送达凭证：送达回证编号、邮件单号、系统回执或公告网址")
    channel: SafeStr | None = Field(default=None, max_length=32, description=(
        "实际送达方式（与告知方式不同时填写，如邮寄被退回后公告送达）：in_person | post | app "
        "| sms | announcement"))
    expected_version: Version


class WaiveIn(_In):
    """当事人明确放弃陈述申辩（及听证）权利的记录（行政处罚法第六十二条）。"""

    scope: SafeStr = Field(max_length=16, description="statement | hearing | all")
    record: SafeStr = Field(min_length=1, max_length=1000,
                            description="当事人放弃的书面或系统记录（如声明编号、签署时间）")
    document_ref: SafeStr = Field(min_length=1, max_length=200, description=(
        "当事人本人的放弃记录的编号：签署的书面声明编号、附件编号或系统回执号（告知书送达后方可记录）"))
    expected_version: Version


class RevokeIn(_In):
    """决定被变更、撤销、确认违法或确认无效（行政处罚法第四十八条第二款）。"""

    kind: SafeStr = Field(max_length=16, description="changed | revoked | unlawful | void")
    reason: SafeStr = Field(min_length=1, max_length=2000,
                            description="理由（随撤回的公示一并公开说明）")
    expected_version: Version


class WithdrawIn(_In):
    """不予立案：审核通过后发现该记录不得作为处罚依据（行政处罚法第四十条）。"""

    reason: SafeStr = Field(min_length=1, max_length=2000, description=(
        "不予立案的理由（必填），如静态复检认定不予处罚、采集时计量检定证书失效、监测点未公布、"
        "超过追责时效；案件详情的 blockers_zh 列出当前发现的问题"))
    expected_version: Version


class CopyWithdrawnOut(BaseModel):
    """撤回抄告所撤回的原抄告。"""

    copy_notice_id: int
    format: str
    sent_utc: UtcText
    sent_zh: str = Field(description="发送时间（北京时间）")


class RevocationOut(BaseModel):
    """处理决定被变更、撤销、确认违法或确认无效。"""

    kind: str = Field(description="changed | revoked | unlawful | void")
    kind_zh: str = Field(description="变更 | 撤销 | 确认违法 | 确认无效")
    reason_zh: str
    time_utc: UtcText
    time_zh: str = Field(description="北京时间")


class ReferralWithdrawnOut(BaseModel):
    """一并撤回的移送建议（公路安全保护条例第六十六条）：已发送的抄告，其车辆一年内违法次数
    因本决定被撤销而不再超过三次。"""

    copy_notice_id: int
    case_id: int
    sent_utc: UtcText
    sent_zh: str = Field(description="发送时间（北京时间）")
    violations_in_year_before: int
    violations_in_year: int


class CopyNoticeOut(BaseModel):
    """抄告（62号令第四十四条）或撤回抄告：JSON 导出，与 PDF 内容一致。抄告
    （``kind = copy``，``zhichao.copy-notice/1``）另有案件事实字段；撤回抄告
    （``kind = withdrawal``，``zhichao.copy-notice-withdrawal/1``）另有 ``withdrawn``、
    ``revocation``、``referrals_withdrawn``。"""

    model_config = ConfigDict(extra="allow")
    copy_notice_id: int
    case_id: int
    kind: str = Field(description="copy（抄告） | withdrawal（撤回抄告）")
    format: str = Field(description="zhichao.copy-notice/1 | zhichao.copy-notice-withdrawal/1")
    authority_zh: str
    due: DateText
    referral: bool = Field(description=(
        "当前标记：一年内违法超过三次，建议依公路安全保护条例第六十六条处理（决定被撤销后重新计算）"))
    state: str = Field(description="pending | sent | acknowledged | cancelled")
    state_zh: str
    sent_utc: UtcText | None
    sent_channel: str | None = Field(default=None, description=(
        "发送方式：document_exchange（公文交换） | electronic（电子公文系统） | post（邮寄） | "
        "in_person（直接递交） | fax（传真）；未记录为空"))
    sent_channel_zh: str | None = None
    sent_reference: str | None = Field(default=None, description="文号、邮件单号或系统回执编号")
    acknowledged_utc: UtcText | None
    cancelled_utc: UtcText | None = Field(description="作废时间：决定被变更或撤销时尚未发送")
    cancel_reason_zh: str | None
    withdraws_copy_notice_id: int | None = Field(description="撤回抄告：所撤回的原抄告编号")
    withdrawn: CopyWithdrawnOut | None = Field(default=None, description=(
        "撤回抄告：已发送的原抄告（原抄告未发送时为空，仅撤回移送建议）"))
    revocation: RevocationOut | None = Field(default=None, description="撤回抄告：决定如何被改变")
    referrals_withdrawn: list[ReferralWithdrawnOut] | None = Field(
        default=None, description="撤回抄告：一并撤回的移送建议")


class CopySentIn(_In):
    """记录抄告已发送：发送方式与文号或单号（均可省略，省略即未记录）。"""

    channel: SafeStr | None = Field(default=None, max_length=32, description=(
        "document_exchange（公文交换） | electronic（电子公文系统） | post（邮寄） | "
        "in_person（直接递交） | fax（传真）"))
    reference: SafeStr | None = Field(default=None, max_length=200,
                                      description="文号、邮件单号或系统回执编号")


class CopyNoticesOut(BaseModel):
    copy_notices: list[CopyNoticeOut]


class RetentionOut(BaseModel):
    removed: int = Field(description="删除号牌的非案件过车记录数")
    retention_days: int


class UserIn(_In):
    username: SafeStr = Field(max_length=64)
    password: SafeStr = Field(max_length=256)
    display_name_zh: SafeStr = Field(max_length=100)
    roles: list[SafeStr] = Field(min_length=1, max_length=6)
    station_id: SafeStr | None = Field(default=None, max_length=64)


class OwnerQueryIn(_In):
    plate: SafeStr = Field(max_length=16, description="号牌，如 浙A12345")
    plate_colour: SafeStr = Field(max_length=16, description="号牌颜色：蓝/黄/绿/黄绿/白/黑")
    vin_last6: SafeStr | None = Field(default=None, max_length=6)
    licence_file_number: SafeStr | None = Field(default=None, max_length=20)
    after: SafeStr | None = Field(default=None, max_length=64,
                                  description="翻页：上一页答复中的 next_after")
    limit: int = Field(default=20, ge=1, le=100, description="每页条数（最新的在前）")


# ---- answers ---------------------------------------------------------------------------

class ErrorOut(BaseModel):
    error: str = Field(description="错误代码，如 permission_denied")
    message_zh: str
    message: str
    fields: list[str] | None = Field(default=None, description="输入有误的字段（仅 422）")


class MessageOut(BaseModel):
    message_zh: str


class HealthOut(BaseModel):
    status: str
    version: str
    problems_zh: list[str] = []


class UserOut(BaseModel):
    id: int
    username: str
    display_name_zh: str
    roles: list[str]
    station_id: str | None
    active: bool


class UsersOut(BaseModel):
    users: list[UserOut]


class LoginOut(BaseModel):
    token: str = Field(description="工作人员登录令牌（Authorization: Bearer）")
    expires_utc: UtcText
    user: UserOut


class CaseOut(BaseModel):
    id: int
    version: int = Field(description="乐观锁版本号；办理时作为 expected_version 回传")
    state: str
    state_zh: str
    package_id: str
    manifest_sha256: str
    station_id: str | None
    site_id: str
    time_utc: UtcText
    plate: str | None
    plate_colour: str | None
    eligibility_status: str
    proposed_outcome: str | None
    proposed_fine_yuan: int | None
    hearing_right: str | None
    legal_basis_zh: str | None
    manual_override: bool
    manual_override_reason: str | None
    technical_reviewer_id: int | None
    legal_reviewer_id: int | None
    hearing_requested: bool
    hearing_held_utc: UtcText | None
    opened_utc: UtcText | None
    statement_due: DateText | None
    hearing_request_due: DateText | None
    decision_due: DateText | None
    serve_due: DateText | None
    published_utc: UtcText | None
    publish_due: DateText | None = None
    statement_waived_utc: UtcText | None = None
    hearing_waived_utc: UtcText | None = None
    publication_withdrawn_utc: UtcText | None = None
    withdrawal_reason_zh: str | None = None


class CasesOut(BaseModel):
    cases: list[CaseOut]


class CaseEventOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_state: str | None = Field(alias="from")
    to: str
    actor: str
    time_utc: UtcText
    reason_zh: str | None


class ReviewOut(BaseModel):
    stage: str
    reviewer_id: int
    approved: bool
    reason_zh: str | None
    time_utc: UtcText


class AttachmentOut(BaseModel):
    filename: str
    media_type: str
    size_bytes: int
    sha256: str


class StatementOut(BaseModel):
    id: int
    kind: str
    text_zh: str
    filed_utc: UtcText
    response_zh: str | None
    attachments: list[AttachmentOut]


class DecisionOut(BaseModel):
    outcome: str
    fine_yuan: int
    reasons_zh: str
    decided_by: int
    decided_utc: UtcText
    served_utc: UtcText | None


class CaseDetailOut(CaseOut):
    blockers_zh: list[str] = Field(default_factory=list, description=(
        "当前阻止本案继续办理的问题：中心登记的设备检定证书、监测点公布，静态复检，"
        "二年追责时效和九十日办案期限"))
    events: list[CaseEventOut]
    reviews: list[ReviewOut]
    statements: list[StatementOut]
    decision: DecisionOut | None


class OverdueOut(BaseModel):
    case_id: int
    state: str
    due: DateText
    what_zh: str


class OverdueListOut(BaseModel):
    overdue: list[OverdueOut]


class StatisticsOut(BaseModel):
    format: str = Field(description="zhichao.stats/1")
    year: int
    time_zone: str
    figures: dict[str, int]
    labels_zh: dict[str, str]


class AuditEntryOut(BaseModel):
    id: int
    time_utc: UtcText
    actor: str
    action: str
    object_type: str
    object_id: str
    detail: dict[str, Any]
    prev_sha256: str
    entry_sha256: str


class AuditOut(BaseModel):
    entries: list[AuditEntryOut]


class ChainProblemOut(BaseModel):
    entry_id: int
    problem: str
    table: str = "audit_log"  # or owner_access_log (the row's id in entry_id)


class AccessLogOut(BaseModel):
    entries: int  # owner access rows
    seals: int  # owner.access_sealed entries in the chain
    unsealed: int  # rows after the last seal (sealed within a second or so; no problem)


class AuditVerifyOut(BaseModel):
    ok: bool
    message_zh: str
    problems: list[ChainProblemOut]
    access_log: AccessLogOut | None = None


class SiteOut(BaseModel):
    site_id: str
    name_zh: str
    road_zh: str | None
    stake_zh: str | None


class WeightsOut(BaseModel):
    gross_weight_kg: float | None
    limit_kg: float | None
    excess_kg: float | None
    axle_count: int | None
    axle_loads_kg: list[int | float | str] | None = Field(
        description="各轴轴荷（kg），按证据包记录")
    limit_basis_zh: str | None


class OwnerStatementOut(BaseModel):
    id: int
    kind: str
    filed_utc: UtcText
    text_zh: str
    response_zh: str | None
    attachments: list[str]


class OwnerDecisionOut(BaseModel):
    outcome: str
    outcome_zh: str
    fine_yuan: int
    reasons_zh: str
    decided_utc: UtcText


class OwnerRecordOut(BaseModel):
    case_id: int
    state: str
    state_zh: str
    time_utc: UtcText
    plate: str | None
    plate_colour: str | None
    site: SiteOut | None
    lane: str | None
    weights: WeightsOut
    legal_basis_zh: str | None
    penalty_steps: list[dict[str, Any]] = Field(
        description="处罚裁量步骤及其法律依据（证据包中的规则记录）")
    proposed_outcome: str | None
    proposed_fine_yuan: int | None
    statement_due: DateText | None
    hearing_request_due: DateText | None
    photos: list[str]
    package_id: str
    manifest_sha256: str
    statements: list[OwnerStatementOut]
    decision: OwnerDecisionOut | None


class OwnerQueryOut(BaseModel):
    records: list[OwnerRecordOut]
    owner_token: str | None = Field(description="车主查询凭证（X-Owner-Token），30 分钟有效；"
                                                "只含本页记录")
    next_after: str | None = Field(default=None,
                                   description="还有更早的记录时：下一页的 after 参数")
    message_zh: str


class StatementFiledOut(BaseModel):
    statement_id: int
    filed_utc: UtcText
    message_zh: str


class DisclosureOut(BaseModel):
    case_id: int
    plate_masked: str
    violation_date: DateText
    site_zh: str
    outcome: str
    outcome_zh: str
    fine_yuan: int
    legal_basis_zh: str | None
    decided_date: DateText
    published_utc: UtcText | None


class DisclosuresOut(BaseModel):
    disclosures: list[DisclosureOut]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {401: "未登录或登录已失效", 403: "角色不符或职责分离不允许（本案先前的审核人等）",
             404: "未找到", 409: "案件状态、版本或期限不允许", 413: "请求内容过大",
             422: "输入有误", 429: "请求过于频繁"}
    return {code: {"model": ErrorOut, "description": texts[code]} for code in codes}


STAFF_ERRORS = _errors(401, 403, 404, 409, 422)
OWNER_ERRORS = _errors(401, 404, 409, 413, 422, 429)


def media_answer(description: str, *media_types: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of a 200 answer that is a file, not JSON."""
    return {200: {"content": {t: {} for t in media_types}, "description": description}}
