"""Deadlines against the official 2026 holiday schedule (国务院办公厅 2026 年部分节假日安排：
春节 2月15日–23日放假，2月14日、2月28日（周六）上班)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tests.service.conftest import utc
from zhichao.service.errors import CalendarError
from zhichao.service.workdays import (
    DeadlinePolicy,
    add_calendar_days,
    add_working_days,
    china_date,
    is_working_day,
    load_year_calendar,
)


def test_spring_festival_2026_working_days() -> None:
    assert is_working_day(date(2026, 2, 14))  # Saturday made a working day
    assert not is_working_day(date(2026, 2, 16))
    # 5 working days after Fri 13 Feb: Sat 14, Tue 24, Wed 25, Thu 26, Fri 27.
    assert add_working_days(date(2026, 2, 13), 5) == date(2026, 2, 27)
    assert add_working_days(date(2026, 2, 27), 1) == date(2026, 2, 28)


def test_calendar_period_ending_on_a_holiday_moves_to_the_next_working_day() -> None:
    assert add_calendar_days(date(2026, 2, 6), 15) == date(2026, 2, 24)  # 21 Feb is a holiday
    assert add_calendar_days(date(2026, 2, 13), 15) == date(2026, 2, 28)  # Saturday, working


def test_default_policy_sources_and_units() -> None:
    policy = DeadlinePolicy()
    assert policy.hearing_request.unit == "working"
    assert "第六十四条" in policy.hearing_request.source_zh
    assert policy.serve.unit == "working" and policy.serve.days == 7
    assert not policy.statement.confirmed  # 15 days is Zhejiang's text; flagged for review
    assert policy.hearing_request.due(date(2026, 2, 13)) == date(2026, 2, 27)


def test_china_date_of_a_utc_time() -> None:
    assert china_date(utc(2026, 2, 13, 16, 0)) == date(2026, 2, 14)  # 00:00 in Beijing
    assert china_date(utc(2026, 2, 13, 15, 59)) == date(2026, 2, 13)
    with pytest.raises(ValueError, match="naive"):
        china_date(utc(2026, 1, 1).replace(tzinfo=None))


def test_year_without_calendar_data_is_refused_not_guessed() -> None:
    with pytest.raises(CalendarError, match="2027") as info:
        add_working_days(date(2026, 12, 28), 5)
    assert "人工" in info.value.message_zh
    with pytest.raises(CalendarError):
        is_working_day(date(2003, 5, 1))


def test_a_loaded_year_calendar_fills_the_gap(tmp_path: Path) -> None:
    path = tmp_path / "2027.json"
    path.write_text(json.dumps({
        "format": "zhichao.holidays/1", "year": 2027, "source_zh": "测试用安排（非官方）",
        "holidays": ["2027-01-01", "2027-01-04"], "working_weekend_days": ["2027-01-09"]}),
        encoding="utf-8")
    cal = load_year_calendar(path)
    # Thu 31 Dec 2026 (package data) + 3 working days: Fri 1 Jan off, Mon 4 Jan off,
    # Tue 5, Wed 6, Thu 7.
    assert add_working_days(date(2026, 12, 31), 3, (cal,)) == date(2027, 1, 7)
    assert is_working_day(date(2027, 1, 9), (cal,))  # Saturday made a working day
    path.write_text(json.dumps({"format": "zhichao.holidays/1", "year": 2027, "source_zh": "x",
                                "holidays": ["2028-01-01"], "working_weekend_days": []}),
                    encoding="utf-8")
    with pytest.raises(CalendarError, match="not in 2027"):
        load_year_calendar(path)
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(CalendarError, match="unreadable"):
        load_year_calendar(path)


def test_settings_load_holiday_files_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zhichao.service.errors import ConfigError
    from zhichao.service.settings import Settings

    path = tmp_path / "2027.json"
    path.write_text(json.dumps({
        "format": "zhichao.holidays/1", "year": 2027, "source_zh": "测试用安排（非官方）",
        "holidays": ["2027-01-01"], "working_weekend_days": []}), encoding="utf-8")
    monkeypatch.setenv("ZHICHAO_HOLIDAY_FILES", str(path))
    settings = Settings.from_env(secret_key="k" * 32)
    assert [c.year for c in settings.deadlines.supplements] == [2027]
    # the 15-day statement period from mid-December now ends in 2027 instead of refusing
    assert settings.deadlines.statement_due(date(2026, 12, 20)) == date(2027, 1, 4)
    with pytest.raises(ConfigError, match="already loaded"):
        settings.with_holiday_files([path])
    monkeypatch.setenv("ZHICHAO_HOLIDAY_FILES", str(tmp_path / "missing.json"))
    with pytest.raises(CalendarError, match="missing.json"):
        Settings.from_env(secret_key="k" * 32)
