"""Statutory deadlines in China time, counted with the ``chinese_calendar`` package.

* 行政处罚法 Art. 85: the law's "二日、三日、五日、七日" are **working days** (法定节假日
  excluded), so the hearing request (Art. 64, 5 days) and serving the decision when the
  party was absent (Art. 61, 7 days) count working days.
* Other periods (the 15 days of 浙江省公路条例 Art. 40; Art. 60's 90 days to decide) are
  calendar days (the 2 years of Art. 36, the limitation period, are calendar years, never
  moved to a working day); when the last day falls on a rest day the period ends on the next working
  day (the general rule of Chinese procedural law; marked unconfirmed for this context).
* A period starts the day after the event (the event day is not counted).
* Dates are local dates in China (UTC+8); timestamps stay UTC everywhere else.
* ``chinese_calendar`` ships data for a fixed range of years (2004–2026 in 1.11). For a
  date outside it :class:`CalendarError` is raised: the deadline must be set by a human,
  never guessed — unless the deployment loads that year's schedule from the State
  Council's notice as a :class:`YearCalendar` (``load_year_calendar``, format
  ``zhichao.holidays/1``) into ``DeadlinePolicy.supplements``.

Every default period is a :class:`DeadlineRule` with its legal source and whether the
reading is confirmed; deployments override them in ``Settings.deadlines``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import chinese_calendar

from zhichao.service.errors import CalendarError

CHINA_TZ = timezone(timedelta(hours=8), "UTC+08:00")


def china_date(moment: datetime) -> date:
    """The legal (China) date of a UTC moment."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime; expected tz-aware UTC")
    return moment.astimezone(CHINA_TZ).date()


def end_of_china_day_utc(day: date) -> datetime:
    """The first UTC instant after the China date ``day`` ends."""
    return datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ).astimezone(UTC) + timedelta(
        days=1)


@dataclass(frozen=True)
class YearCalendar:
    """One year's official schedule for a year the package lacks (国务院办公厅通知)."""

    year: int
    holidays: frozenset[date]
    working_weekend_days: frozenset[date]
    source_zh: str

    def is_working_day(self, day: date) -> bool:
        if day in self.working_weekend_days:
            return True
        return day.weekday() < 5 and day not in self.holidays


def load_year_calendar(path: Path) -> YearCalendar:
    """Read ``{"format": "zhichao.holidays/1", "year", "source_zh", "holidays": [...],
    "working_weekend_days": [...]}`` (ISO dates); every date must lie in ``year``."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != "zhichao.holidays/1":
            raise ValueError("format is not zhichao.holidays/1")
        year = int(raw["year"])
        holidays = frozenset(date.fromisoformat(d) for d in raw["holidays"])
        weekends = frozenset(date.fromisoformat(d) for d in raw["working_weekend_days"])
        source = str(raw["source_zh"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CalendarError(f"{path}: holiday file unreadable ({exc})",
                            "节假日安排文件无法读取") from exc
    wrong = sorted(d for d in holidays | weekends if d.year != year)
    if wrong:
        raise CalendarError(f"{path}: {wrong[0]} is not in {year}", "节假日安排文件年份不一致")
    if not source.strip():
        raise CalendarError(f"{path}: source_zh (the notice it comes from) is required")
    return YearCalendar(year, holidays, weekends, source)


def is_working_day(day: date, supplements: tuple[YearCalendar, ...] = ()) -> bool:
    for extra in supplements:
        if extra.year == day.year:
            return extra.is_working_day(day)
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as exc:
        raise CalendarError(
            f"holiday calendar has no data for {day.isoformat()} ({exc}); "
            "set this deadline by hand",
            f"节假日日历没有 {day.year} 年的数据，无法计算 {day.isoformat()} 的期限，"
            "须人工确定") from exc


def add_working_days(start: date, days: int,
                     supplements: tuple[YearCalendar, ...] = ()) -> date:
    """The ``days``-th working day after ``start`` (``start`` itself not counted)."""
    if days < 0:
        raise ValueError("days must be >= 0")
    day, left = start, days
    while left > 0:
        day += timedelta(days=1)
        if is_working_day(day, supplements):
            left -= 1
    return day


def add_calendar_days(start: date, days: int,
                      supplements: tuple[YearCalendar, ...] = ()) -> date:
    """``start + days``; a last day on a rest day moves to the next working day."""
    day = start + timedelta(days=days)
    while not is_working_day(day, supplements):
        day += timedelta(days=1)
    return day


def add_years(start: date, years: int) -> date:
    """The same calendar day ``years`` later (29 February → 28 February), never moved to a
    working day: a limitation period says when the act stops being punishable, it is not a
    period for a party or the authority to act in."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February in a common year
        return start.replace(year=start.year + years, day=28)


@dataclass(frozen=True)
class DeadlineRule:
    days: int  # a number of ``unit``: days, or years for unit "years"
    unit: str  # "working" | "calendar" | "years"
    source_zh: str
    confirmed: bool

    def due(self, start: date, supplements: tuple[YearCalendar, ...] = ()) -> date:
        if self.unit == "working":
            return add_working_days(start, self.days, supplements)
        if self.unit == "calendar":
            return add_calendar_days(start, self.days, supplements)
        if self.unit == "years":
            return add_years(start, self.days)
        raise ValueError(f"DeadlineRule.unit: {self.unit!r} is not 'working', 'calendar' "
                         "or 'years'")


@dataclass(frozen=True)
class DeadlinePolicy:
    statement: DeadlineRule = DeadlineRule(
        15, "calendar",
        "浙江省公路条例第四十条（收到通知之日起十五日内）；其他地区须法制审核确认", False)
    hearing_request: DeadlineRule = DeadlineRule(
        5, "working", "《行政处罚法》第六十四条、第八十五条（五日，工作日）", True)
    decision: DeadlineRule = DeadlineRule(
        90, "calendar", "《行政处罚法》第六十条（立案之日起九十日内）", True)
    serve: DeadlineRule = DeadlineRule(
        7, "working", "《行政处罚法》第六十一条、第八十五条（七日，工作日）", True)
    # Service by announcement is deemed made 30 days after publication.
    announcement: DeadlineRule = DeadlineRule(
        30, "calendar", "《民事诉讼法》（2023）第九十五条（经过三十日，即视为送达），"
        "行政处罚法第六十一条准用；须法制审核确认", False)
    # 公示 of a decision: 7 working days (20 also appears); believed 国办发〔2018〕118号.
    publish: DeadlineRule = DeadlineRule(
        7, "working", "国办发〔2018〕118号（作出决定之日起七个工作日内公开；另见二十个工作日"
        "之说）；未经确认", False)
    # Withdrawal of a published decision that was changed or revoked (Art. 48: 三日).
    withdraw: DeadlineRule = DeadlineRule(
        3, "working", "《行政处罚法》第四十八条、第八十五条（三日内撤回，工作日）", True)
    # 抄告 to the transport authority of the registration place (62号令 Art. 44).
    copy_notice: DeadlineRule = DeadlineRule(
        7, "working", "《超限运输车辆行驶公路管理规定》（交通运输部令2016年第62号）第四十四条"
        "（结案之日起七个工作日内抄告）", True)
    # 撤回抄告 of a sent copy whose decision was changed or revoked: no rule names a period;
    # the copy notice's own 7 working days, counted from the revocation (unconfirmed).
    copy_withdrawal: DeadlineRule = DeadlineRule(
        7, "working", "参照《超限运输车辆行驶公路管理规定》（交通运输部令2016年第62号）第四十四条"
        "（七个工作日），自决定被变更、撤销或确认违法、无效之日起算；撤回抄告的期限无明文规定，"
        "未经确认", False)
    # 行政处罚法 Art. 36: an act not discovered within two years of being committed is no
    # longer punished. The center discovers it when it registers the package; judged on
    # China dates (legal_checks.limitation_problem).
    limitation: DeadlineRule = DeadlineRule(
        2, "years", "《行政处罚法》第三十六条第一款（违法行为在二年内未被发现的，不再给予行政处罚；"
        "自违法行为发生之日起计算）", True)
    supplements: tuple[YearCalendar, ...] = ()

    def limitation_end(self, committed: date) -> date:
        """The last China date on which an act committed on ``committed`` can be
        discovered (Art. 36)."""
        return self.limitation.due(committed, self.supplements)

    def statement_due(self, start: date) -> date:
        return self.statement.due(start, self.supplements)

    def hearing_request_due(self, start: date) -> date:
        return self.hearing_request.due(start, self.supplements)

    def decision_due(self, start: date) -> date:
        return self.decision.due(start, self.supplements)

    def serve_due(self, start: date) -> date:
        return self.serve.due(start, self.supplements)

    def announcement_served_on(self, published: date) -> date:
        """The day an announced notice counts as served: 30 days after publication, the
        last day not moved (a deemed service date, not a period's end)."""
        return published + timedelta(days=self.announcement.days)

    def publish_due(self, start: date) -> date:
        return self.publish.due(start, self.supplements)

    def withdraw_due(self, start: date) -> date:
        return self.withdraw.due(start, self.supplements)

    def copy_notice_due(self, start: date) -> date:
        return self.copy_notice.due(start, self.supplements)

    def copy_withdrawal_due(self, start: date) -> date:
        return self.copy_withdrawal.due(start, self.supplements)
