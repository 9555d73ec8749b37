"""Workflow steps reach the evidence Merkle log through the outbox, verifiably."""

from __future__ import annotations

import copy
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.service.conftest import Sealed, new_user, utc
from tests.service.test_workflow import AFTER_DEADLINES, NOTIFY_AT, POLICY, act
from zhichao.evidence.events import find_events
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station
from zhichao.evidence.signing import generate_key
from zhichao.service import events, ingest, procedure, workflow
from zhichao.service.db import transaction
from zhichao.service.models import Case, EvidenceEvent, User


def test_review_events_are_appended_once_and_found_by_the_verifier_side(
        sessions: sessionmaker[Session], sealed: Sealed, tmp_path: Path) -> None:
    manifest = copy.deepcopy(sealed.manifest)
    with transaction(sessions) as s:
        case = ingest.register_ingested_package(s, manifest, sealed.directory,
                                                manifest_sha256=sealed.manifest_sha256)
        assert isinstance(case, Case) and case.state == "technical_review"
    tech, legal = new_user(sessions, "technical_reviewer"), new_user(sessions, "legal_reviewer")
    boss = new_user(sessions, "decision_maker")
    act(sessions, case.id, workflow.technical_review, tech, approve=True)
    act(sessions, case.id, workflow.legal_review, legal, approve=True, reason="符合法定条件")
    act(sessions, case.id, workflow.open_and_notify, boss, channel="sms", policy=POLICY,
        hearing_right=True, now=NOTIFY_AT)
    act(sessions, case.id, procedure.serve_notice, boss, delivered_utc=NOTIFY_AT,
        proof="短信回执", policy=POLICY, now=NOTIFY_AT)  # the periods run from service
    with transaction(sessions) as s:
        c = s.get(Case, case.id)
        assert c is not None
        st = workflow.add_statement(s, c, kind="statement", text="申辩", contact=None,
                                    actor_label="owner", max_chars=100, now=NOTIFY_AT)
        workflow.answer_statement(s, c, s.get(User, legal.id), statement_id=st.id,
                                  response="已复核", now=NOTIFY_AT)
    act(sessions, case.id, workflow.close_statements, legal, now=AFTER_DEADLINES)
    act(sessions, case.id, workflow.decide, boss, outcome="warning", fine_yuan=0,
        reasons="首次违法", now=AFTER_DEADLINES)
    act(sessions, case.id, workflow.serve, boss, channel="post", now=utc(2026, 3, 3))

    center = Station("CENTER", "zhichao-center", generate_key())
    log = MerkleLog(tmp_path / "center-log", origin="zhichao/center/test", create=True,
                    fsync=False)
    try:
        assert events.flush_to_log(sessions, log, center) == 8
        assert events.flush_to_log(sessions, log, center) == 0  # nothing twice
        found = find_events(log, sealed.manifest_sha256)
        kinds = [(e.event_type.value, e.outcome) for _i, _b, e in found]
        assert kinds == [("technical_review", "approved"), ("legal_review", "approved"),
                         ("service", "notice_issued"), ("service", "notice_served"),
                         ("statement", "filed"), ("statement", "answered"),
                         ("decision", "warning"), ("service", "decision_served")]
        assert all(e.actor_id.startswith(("U-", "owner")) for _i, _b, e in found)
        assert found[1][2].reason_zh == "符合法定条件"
        with transaction(sessions) as s:
            rows = s.scalars(select(EvidenceEvent).where(EvidenceEvent.case_id == case.id)
                             .order_by(EvidenceEvent.id)).all()
            assert [r.log_index for r in rows] == [i for i, _b, _e in found]
    finally:
        log.close()
