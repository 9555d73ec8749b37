"""The 回避 bar of 案卷评查 (``score``): whoever recorded anything on a case handled it.

A legal reviewer who recorded the hearing of a case (or any other act on it that the
audit log names them for: a waiver, the notice's service, …) may not score that case file
later; one who only read its evidence may. SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.service.conftest import TEST_POLICY, Sealed, new_case, new_user
from zhichao.common import utc_now
from zhichao.service import audit, duties, owners, procedure, supervision, workflow
from zhichao.service.accounts import user_label
from zhichao.service.db import transaction
from zhichao.service.errors import PermissionDeniedError
from zhichao.service.models import Case, ReviewCampaign, User

ALL_MET = {k: True for k in supervision.CHECKLIST}


def _act(sessions: sessionmaker[Session], case_id: int, fn: object, user: User,
         **kw: object) -> None:
    with transaction(sessions) as s:
        fn(s, s.get(Case, case_id), s.get(User, user.id), **kw)  # type: ignore[operator]


def _campaign(sessions: sessionmaker[Session], chief: User, reviewer: User,
              case_ids: list[int]) -> int:
    """An open campaign whose sample holds ``case_ids``, ``reviewer`` its only reviewer."""
    with transaction(sessions) as s:
        campaign = supervision.open_campaign(
            s, s.get(User, chief.id), title="回避评查", period_start=date(2000, 1, 1),
            period_end=date(2099, 12, 31), site_ids=[], states=[],
            reviewer_ids=[reviewer.id])
        drawn = {row.case_id for row in supervision.sample(s, campaign)}
        for case_id in case_ids:
            if case_id not in drawn:
                supervision.add_case(s, campaign, s.get(User, chief.id), case_id=case_id)
        return campaign.id


def _score(sessions: sessionmaker[Session], campaign_id: int, user: User,
           case_id: int) -> None:
    with transaction(sessions) as s:
        campaign = s.get(ReviewCampaign, campaign_id)
        assert campaign is not None
        supervision.score_case(s, campaign, s.get(User, user.id), case_id=case_id,
                               checklist=ALL_MET, problems=None, correction=None)


def test_the_hearing_recorder_may_not_score_the_case(sessions: sessionmaker[Session],
                                                     sealed: Sealed) -> None:
    tech, legal = new_user(sessions, "technical_reviewer"), new_user(sessions, "legal_reviewer")
    boss, chief = new_user(sessions, "decision_maker"), new_user(sessions, "supervisor")
    presiding = new_user(sessions, "legal_reviewer")  # only records the hearing
    case_id = new_case(sessions, sealed).id
    _act(sessions, case_id, workflow.technical_review, tech, approve=True)
    _act(sessions, case_id, workflow.legal_review, legal, approve=True)
    _act(sessions, case_id, workflow.open_and_notify, boss, channel="sms",
         policy=TEST_POLICY, hearing_right=True)
    _act(sessions, case_id, procedure.serve_notice, boss,
         delivered_utc=utc_now(), proof="短信送达回执",
         policy=TEST_POLICY)
    with transaction(sessions) as s:
        case = s.get(Case, case_id)
        assert case is not None
        workflow.add_statement(s, case, kind="hearing_request", text="申请听证", contact=None,
                               actor_label="owner:vin:test", max_chars=2000)
    _act(sessions, case_id, workflow.record_hearing, presiding,
         held_utc=utc_now(), summary="听证由本人主持")

    with transaction(sessions) as s:
        case = s.get(Case, case_id)
        assert case is not None
        assert presiding.id in supervision.handlers(s, case)
        assert duties.was("handled", s.get(User, presiding.id), case)
    campaign_id = _campaign(sessions, chief, presiding, [case_id])
    with pytest.raises(PermissionDeniedError, match="handl"):
        _score(sessions, campaign_id, presiding, case_id)
    with transaction(sessions) as s:  # nobody else may score it: another reviewer is needed
        campaign = s.get(ReviewCampaign, campaign_id)
        assert campaign is not None
        assert (case_id, None) in supervision.outstanding(s, campaign)


def test_any_recorded_act_on_the_case_bars_but_reading_does_not(
        sessions: sessionmaker[Session], sealed: Sealed) -> None:
    chief = new_user(sessions, "supervisor")
    recorder, reader = new_user(sessions, "legal_reviewer"), new_user(sessions, "supervisor")
    waived, read = new_case(sessions, sealed).id, new_case(sessions, sealed).id
    with transaction(sessions) as s:  # as procedure.waive and the evidence views write them
        audit.append(s, actor=user_label(s.get(User, recorder.id)), action="case.waiver",
                     object_type="case", object_id=str(waived), detail={"scope": "statement"})
        case = s.get(Case, read)
        assert case is not None
        owners.log_evidence_view(s, actor=user_label(s.get(User, reader.id)), case=case,
                                 what="record")
    barred = _campaign(sessions, chief, recorder, [waived])
    with pytest.raises(PermissionDeniedError, match="handl"):
        _score(sessions, barred, recorder, waived)
    allowed = _campaign(sessions, chief, reader, [read])
    _score(sessions, allowed, reader, read)
