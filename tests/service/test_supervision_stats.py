"""Monthly statistics and the 年报 reconcile with the database: each figure equals an
independent count of the rows, the sites add up to the total, the months add up to the
year, and a month is refused before the 1st of the next month (China time)."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import Engine, select

from tests.service.conftest import Sealed, new_user, utc
from tests.service.test_supervision import decide_case, many_cases, pdf_text
from zhichao.service import monthly, stats
from zhichao.service.db import session_factory, transaction
from zhichao.service.errors import WorkflowError
from zhichao.service.ingest import register_passage
from zhichao.service.models import Case, Decision, Device, Passage
from zhichao.service.workdays import CHINA_TZ


def test_monthly_and_annual_reconcile(db: Engine, sealed: Sealed) -> None:
    f = session_factory(db)
    ids = many_cases(f, sealed, 6)
    tech, legal = new_user(f, "technical_reviewer"), new_user(f, "legal_reviewer")
    boss = new_user(f, "decision_maker")
    for case_id in ids[:3]:
        decide_case(f, case_id, tech, legal, boss)  # decided 2026-03-02 (China)
    with transaction(f) as s:
        device_id = s.scalars(select(Device.device_id)).first()
        record = dict(sealed.manifest["case"]["vehicle"])
        # March 2026 (China): two sites; 31 Mar 16:30 UTC is 1 Apr in China
        times = [utc(2026, 3, d, 3) for d in (1, 1, 5, 20)] + [utc(2026, 3, 31, 16, 30)]
        for i, when in enumerate(times):
            for site, over in (("SITE-A", i % 2 == 0), ("SITE-B", True)):
                register_passage(s, dict(record, time_utc=when.isoformat(), site_id=site,
                                         overloaded=over), station_id="S001",
                                 device_id=device_id if site == "SITE-A" else None,
                                 source_key=f"m-{site}-{i}")
    with transaction(f) as s:
        with pytest.raises(WorkflowError) as refused:
            monthly.monthly_report(s, 2026, 3, now=utc(2026, 3, 31, 15, 59))
        assert "2026-04-01（北京时间）起提供" in refused.value.message_zh
        march = monthly.monthly_report(s, 2026, 3, now=utc(2026, 3, 31, 16))
        year = monthly.annual_report(s, 2026, now=utc(2026, 12, 31, 16))
        annual = stats.annual_statistics(s, 2026)
        passages = list(s.scalars(select(Passage)))
        decisions = list(s.scalars(select(Decision)))
        cases = list(s.scalars(select(Case)))

    def china_month(t: object) -> tuple[int, int]:
        local = t.astimezone(CHINA_TZ)  # type: ignore[attr-defined]
        return local.year, local.month

    total = march["total"]["figures"]
    in_march = [p for p in passages if china_month(p.time_utc) == (2026, 3)]
    assert total["passages"] == len(in_march) == 8
    assert total["passages_overloaded"] == sum(p.overloaded for p in in_march)
    assert total["decisions"] == len([d for d in decisions
                                      if china_month(d.decided_utc) == (2026, 3)]) == 3
    assert total["fines_yuan"] == sum(d.fine_yuan for d in decisions) == 1500
    assert total["decisions_reduced"] == 3
    kept = [c for c in cases if c.decision_due is not None
            and (c.decision_due.year, c.decision_due.month) == (2026, 3)]
    assert total["decision_deadlines_kept"] + total["decision_deadlines_missed"] == len(kept)
    # the sites add up to the total, every figure
    for key, value in total.items():
        assert sum(b["figures"][key] for b in march["sites"].values()) == value, key
    assert march["sites"]["SITE-B"]["figures"]["passages"] == 4
    by_class = Counter(p.vehicle_class for p in in_march if p.overloaded)
    assert march["total"]["overloads_by_class"] == dict(by_class)
    # device availability: SITE-A's device recorded on 3 China days of 31
    assert march["total"]["devices"]["availability_pct"][device_id] == round(300 / 31, 1)
    # the months add up to the year, and the 年报 agrees with the annual statistics
    for key, value in year["total"]["figures"].items():
        assert sum(m[key] for m in year["months"]) == value, key
    for key, value in annual["figures"].items():
        assert year["total"]["figures"][key] == value, key
    assert year["total"]["figures"]["cases_registered"] == len(
        [c for c in cases if china_month(c.created_utc)[0] == 2026])
    csv_text = monthly.report_csv(march)
    assert "2026-03,total,passages,,称重检测车次,8" in csv_text
    assert "2026-03,SITE-B,passages,,称重检测车次,4" in csv_text
    text = pdf_text(monthly.report_pdf(year))
    assert "2026年度治超非现场执法统计年报" in text and "北京时间" in text and "12月" in text
