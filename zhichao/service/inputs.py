"""What every route checks of typed or sent input, in one place: the zh-CN label of each
field (every message that names a field names it in Chinese, never ``held_utc``), the
plausible range of times and dates, and the zh-CN text of a validation error.

Plausible times and dates: years :data:`EARLIEST_YEAR` to :data:`LATEST_YEAR`. A time of
year 1 or 9999 overflows when it is moved between 北京时间 and UTC or a day is added to it
(``OverflowError``, a 500); none is a real time of a case, a hearing or a campaign. The
JSON schemas use :data:`PlausibleTime` and :data:`PlausibleDate`; the pages and the owner
query's cursor use :func:`check_time`, :func:`check_date`, :func:`parse_date` and
:func:`parse_beijing_time`; all refuse with a 422 that names the field in zh-CN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator

from zhichao.service.errors import InvalidInputError
from zhichao.service.workdays import CHINA_TZ

EARLIEST_YEAR = 2000
LATEST_YEAR = 2100

# The zh-CN label of every field a person may type or an API client may send. One table:
# workflow._text, the validation pages and the API's validation answers all read it.
FIELDS_ZH: dict[str, str] = {
    # cases and their procedure
    "reason": "理由", "reasons": "决定理由", "response": "答复内容", "summary": "听证情况摘要",
    "proof": "送达凭证", "record": "当事人放弃权利的记录", "held_utc": "听证时间",
    "served_utc": "送达时间", "delivered_utc": "送达时间", "delivered": "送达时间",
    "expected_version": "案件版本号", "channel": "送达方式", "outcome": "处理结果",
    "fine_yuan": "罚款金额", "verdict": "审核意见", "approve": "审核意见", "kind": "类型",
    "scope": "放弃范围", "hearing_right": "听证权利", "statement_id": "陈述申辩编号",
    "case_id": "案件编号", "csrf_token": "表单安全令牌",
    "document_ref": "当事人书面放弃记录的编号（声明编号、附件或系统回执）",
    "limitation_note": "超过二年追责时效的处理依据（法制审核意见）",
    "extension_reference": "延长办案期限的批准文号或依据",
    # owners
    "text": "陈述申辩内容", "contact": "联系方式", "files": "附件", "plate": "号牌",
    "plate_colour": "号牌颜色", "vin_last6": "车辆识别代号后六位",
    "licence_file_number": "行驶证档案编号", "id_kind": "身份核验方式",
    "secret_value": "车辆识别代号后六位或行驶证档案编号", "after": "翻页参数", "limit": "每页条数",
    # queue, accounts, copy notices, statistics
    "state": "案件状态", "site_id": "站点", "lane": "车道", "date_from": "起始日期",
    "date_to": "截止日期", "overdue": "逾期筛选", "offset": "翻页位置", "year": "年份",
    "username": "用户名", "password": "密码", "display_name_zh": "姓名", "roles": "角色",
    "station_id": "站点编号", "reference": "文号或单号", "next": "跳转地址",
    # supervision
    "title": "名称", "period_start": "评查期间开始日期", "period_end": "评查期间结束日期",
    "site_ids": "站点范围", "states": "案件状态范围", "reviewer_ids": "评查人员",
    "min_sample": "抽查数量", "seed": "抽样种子", "checklist": "评查项目", "problems": "发现的问题",
    "correction": "整改要求", "summary_zh": "案例摘要", "title_zh": "案例标题",
}
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie", "form"})


def label_zh(field: str) -> str:
    """The zh-CN label of ``field`` (a generic one for a field not in the table)."""
    return FIELDS_ZH.get(field, "某项输入")


def _field_of(loc: Iterable[Any]) -> str:
    names = [p for p in loc if isinstance(p, str) and p not in _LOCATIONS]
    return names[0] if names else ""


def validation_message_zh(errors: Sequence[Mapping[str, Any]]) -> str:
    """One zh-CN sentence for a request's validation errors (pydantic's ``errors()``),
    each field by its label: 请填写X, X过长, or the check's own zh-CN message."""
    parts: list[str] = []
    for err in errors[:10]:
        label = label_zh(_field_of(err.get("loc", ())))
        cause = (err.get("ctx") or {}).get("error")
        kind = str(err.get("type", ""))
        if isinstance(cause, ZhValueError):
            text = cause.message_zh.replace("{label}", label)
        elif kind == "missing":
            text = f"请填写{label}"
        elif kind in ("string_too_long", "too_long"):
            limit = (err.get("ctx") or {}).get("max_length")
            text = f"{label}过长" + (f"（不超过 {limit} 个字符）" if limit else "")
        else:
            text = f"{label}格式有误"
        if text not in parts:
            parts.append(text)
    return "输入有误：" + "；".join(parts or ["请检查所填内容"])


class ZhValueError(ValueError):
    """A pydantic validator's refusal that carries its zh-CN message."""

    def __init__(self, message: str, message_zh: str) -> None:
        super().__init__(message)
        self.message_zh = message_zh


def _range_zh(label: str) -> str:
    return f"{label}须在 {EARLIEST_YEAR} 年至 {LATEST_YEAR} 年之间"


def _plausible_year(year: int) -> bool:
    return EARLIEST_YEAR <= year <= LATEST_YEAR


def check_date(value: date, field: str) -> date:
    """``value`` when its year is plausible, else a 422 naming the field."""
    if not _plausible_year(value.year):
        raise InvalidInputError(f"{field}: {value.isoformat()} outside "
                                f"{EARLIEST_YEAR}..{LATEST_YEAR}", _range_zh(label_zh(field)))
    return value


def check_time(value: datetime, field: str) -> datetime:
    """``value`` as UTC when it names its zone and its year is plausible, else a 422.
    The year is checked before the conversion (which overflows at year 1 or 9999)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(f"{field}: no UTC offset", f"{label_zh(field)}须注明时区")
    if not _plausible_year(value.year):
        raise InvalidInputError(f"{field}: {value.isoformat()} outside "
                                f"{EARLIEST_YEAR}..{LATEST_YEAR}", _range_zh(label_zh(field)))
    return value.astimezone(UTC)


def parse_date(text: str | None, field: str) -> date | None:
    """A China date typed as YYYY-MM-DD (None when empty), plausible."""
    if not text or not text.strip():
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidInputError(f"{field}: {text!r} is not YYYY-MM-DD",
                                f"{label_zh(field)}的格式应为 YYYY-MM-DD") from exc
    return check_date(day, field)


def parse_beijing_time(text: str, field: str) -> datetime:
    """A time typed on a form: 北京时间 unless it names its zone; plausible; as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInputError(
            f"{field} {text!r}",
            f"{label_zh(field)}的格式应为 YYYY-MM-DDTHH:MM（北京时间）") from exc
    return check_time(moment if moment.tzinfo else moment.replace(tzinfo=CHINA_TZ), field)


def beijing_minute_zh(moment: datetime) -> str:
    """``2027-01-05 09:30（北京时间）`` for a message."""
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") + "（北京时间）"


def _plausible_time_value(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ZhValueError("a time with its UTC offset", "{label}须注明时区（如 +08:00）")
    if not _plausible_year(value.year):
        raise ZhValueError(f"a year in {EARLIEST_YEAR}..{LATEST_YEAR}",
                           _range_zh("{label}"))
    return value.astimezone(UTC)


def _plausible_date_value(value: date) -> date:
    if not _plausible_year(value.year):
        raise ZhValueError(f"a year in {EARLIEST_YEAR}..{LATEST_YEAR}", _range_zh("{label}"))
    return value


PlausibleTime = Annotated[datetime, AfterValidator(_plausible_time_value)]
PlausibleDate = Annotated[date, AfterValidator(_plausible_date_value)]
