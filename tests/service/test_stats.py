"""Annual statistics count exactly what happened, in the China-time year."""

from __future__ import annotations

from sqlalchemy import Engine

from tests.service.conftest import Sealed, new_case, new_user, utc
from zhichao.service import procedure, stats, workflow
from zhichao.service.db import session_factory, transaction
from zhichao.service.ingest import register_passage
from zhichao.service.models import Case, User
from zhichao.service.workdays import DeadlinePolicy

OPEN = utc(2026, 2, 13, 2)
LATER = utc(2026, 3, 2, 2)


def test_annual_statistics_count_each_event(fresh_db: Engine, sealed: Sealed) -> None:
    f = session_factory(fresh_db)
    tech, legal = new_user(f, "technical_reviewer"), new_user(f, "legal_reviewer")
    boss = new_user(f, "decision_maker")

    def act(case_id: int, fn: object, user: User, **kw: object) -> None:
        with transaction(f) as s:
            c = s.get(Case, case_id)
            fn(s, c, s.get(User, user.id), **kw)  # type: ignore[operator]

    fined, rejected, warned = (new_case(f, sealed) for _ in range(3))
    act(rejected.id, workflow.technical_review, tech, approve=False, reason="图像模糊", now=OPEN)
    for case, outcome, fine in ((fined, "reduced", 300), (warned, "warning", 0)):
        act(case.id, workflow.technical_review, tech, approve=True, now=OPEN)
        act(case.id, workflow.legal_review, legal, approve=True, now=OPEN)
        act(case.id, workflow.open_and_notify, boss, channel="sms", policy=DeadlinePolicy(),
            hearing_right=True, now=OPEN)
        act(case.id, procedure.serve_notice, boss, delivered_utc=OPEN, proof="短信回执",
            policy=DeadlinePolicy(), now=OPEN)  # the periods run from service
        with transaction(f) as s:
            c = s.get(Case, case.id)
            assert c is not None
            st = workflow.add_statement(s, c, kind="statement", text="申辩", contact=None,
                                        actor_label="owner", max_chars=100, now=OPEN)
            workflow.answer_statement(s, c, s.get(User, legal.id), statement_id=st.id,
                                      response="已复核", now=OPEN)
        act(case.id, workflow.close_statements, legal, now=LATER)
        act(case.id, workflow.decide, boss, outcome=outcome, fine_yuan=fine, reasons="依法",
            now=LATER)
    with transaction(f) as s:
        record = dict(sealed.manifest["case"]["vehicle"], overloaded=False)
        # 31 Dec 2026 17:00 UTC is 1 Jan 2027 in China: counted in 2027, not 2026.
        for i, when in enumerate((utc(2026, 5, 1), utc(2026, 12, 31, 17))):
            register_passage(s, dict(record, time_utc=when.isoformat()), station_id="S001",
                             source_key=f"stats-{i}")
        figures = stats.annual_statistics(s, 2026)["figures"]
        next_year = stats.annual_statistics(s, 2027)["figures"]
    assert figures["technical_reviews"] == 3 and figures["technical_rejections"] == 1
    assert figures["legal_reviews"] == 2 and figures["legal_rejections"] == 0
    assert figures["cases_opened"] == 2 and figures["statements"] == 2
    assert figures["decisions"] == 2 and figures["fines_yuan"] == 300
    assert figures["decisions_reduced"] == 1 and figures["decisions_warning"] == 1
    assert figures["decisions_fine"] == 0 and figures["hearing_requests"] == 0
    assert figures["passages"] == 1 and next_year["passages"] == 1
    assert next_year["decisions"] == 0
