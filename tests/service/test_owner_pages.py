"""Owner queries page with a keyset cursor (newest first, ``(time_utc, id)``): across the
pages every visible case comes exactly once, ties in time are broken by id, cases the owner
may not see never come, the token names only its page, a forged cursor is refused; both
backends. The plans that make this fast on PostgreSQL are in docs/service.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from tests.service.conftest import Sealed
from zhichao.service import owners
from zhichao.service.db import session_factory, transaction
from zhichao.service.errors import InvalidInputError, NotFoundError
from zhichao.service.models import Case, CaseHolder, Passage, Vehicle
from zhichao.service.settings import Settings

PLATE, VIN = "浙A7P123", "LFWAD0000000T4Q21"


def _settings() -> Settings:
    return Settings(database_url="sqlite://", migrate_on_start=False,
                    owner_query_min_duration_ms=0, owner_query_per_client_per_minute=10**6,
                    owner_query_per_plate_per_hour=10**6)


def _cases(db: Engine, sealed: Sealed, tag: str) -> list[int]:
    """11 cases of one vehicle (3 share one time), 2 not yet visible; the visible ids."""
    t0 = datetime(2026, 9, 1, tzinfo=UTC)
    visible = []
    with transaction(session_factory(db)) as s:
        s.add(Vehicle(plate=PLATE, plate_colour="yellow", vin=VIN))
        for i in range(13):
            when = t0 + timedelta(days=min(i, 5) * 9)  # i = 5..12 share one time
            p = Passage(source_key=f"{tag}-{i}", site_id="S1", lane_code="2", time_utc=when,
                        plate=PLATE, plate_colour="yellow", overloaded=True, flags=[],
                        gross_weight_kg=60000.0 + i, limit_kg=49000.0, excess_kg=11000.0 + i)
            s.add(p)
            s.flush()
            state = "technical_review" if i in (3, 9) else "notified"
            c = Case(passage_id=p.id, package_id=f"{tag}-pkg-{i}",
                     manifest_sha256=sealed.manifest_sha256,
                     package_path=str(sealed.directory), site_id="S1", time_utc=when,
                     plate=PLATE, plate_colour="yellow", state=state,
                     eligibility_status="ENFORCEABLE",
                     opened_utc=when if state == "notified" else None)
            s.add(c)
            s.flush()
            s.add(CaseHolder(case_id=c.id, vin=VIN, bound_utc=when))  # as ingest binds it
            if state == "notified":
                visible.append((when, c.id))
    return [case_id for _, case_id in sorted(visible, reverse=True)]


def test_every_visible_case_exactly_once_across_pages(fresh_db: Engine,
                                                      sealed: Sealed) -> None:
    expected = _cases(fresh_db, sealed, "kp")
    settings, limiter = _settings(), owners.RateLimiter()
    sessions = session_factory(fresh_db)
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        with transaction(sessions) as s:
            answer = owners.owner_query(s, settings, limiter, client_id="t", plate=PLATE,
                                        plate_colour="黄", vin_last6=VIN[-6:], after=after,
                                        limit=3)
        page = [r["case_id"] for r in answer["records"]]
        assert page and len(page) <= 3
        grant = owners.read_owner_token(settings, answer["owner_token"])
        assert grant.case_ids == frozenset(page)  # the token names its page only
        assert answer["records"][0]["weights"]["gross_weight_kg"] >= 60000.0
        seen += page
        pages += 1
        after = answer["next_after"]
        if after is None:
            break
    assert seen == expected and len(set(seen)) == len(seen) == 11
    assert pages == 4
    with transaction(sessions) as s:  # the wrong VIN: nothing, whatever the cursor
        wrong = owners.owner_query(s, settings, limiter, client_id="t", plate=PLATE,
                                   plate_colour="黄", vin_last6="000000", limit=3)
    assert wrong == owners.NOTHING_FOUND


@pytest.mark.parametrize("cursor", ["x", "2026-09-01T00:00:00~1~2", "2026-09-01T00:00:00~7",
                                    "2026-09-01T00:00:00+00:00~abc"])
def test_a_forged_cursor_is_refused(fresh_db: Engine, cursor: str) -> None:
    with pytest.raises(InvalidInputError, match="after"), \
            transaction(session_factory(fresh_db)) as s:
        owners.owner_query(s, _settings(), owners.RateLimiter(), client_id="t", plate=PLATE,
                           plate_colour="黄", vin_last6=VIN[-6:], after=cursor)


def test_an_archived_case_that_was_never_notified_is_not_the_owners(
        fresh_db: Engine, sealed: Sealed) -> None:
    """A case rejected at a review or withdrawn (不予立案) and then archived was never
    notified to the owner: not in the owner's answer, not openable with a token naming it
    (it showed as 已归档 with its proposed fine); an archived case that was notified is."""
    t0 = datetime(2026, 9, 1, tzinfo=UTC)
    ids = {}
    with transaction(session_factory(fresh_db)) as s:
        s.add(Vehicle(plate=PLATE, plate_colour="yellow", vin=VIN))
        for i, (name, opened) in enumerate((("withdrawn", None), ("closed", t0))):
            when = t0 + timedelta(days=i)
            p = Passage(source_key=f"arch-{i}", site_id="S1", lane_code="2", time_utc=when,
                        plate=PLATE, plate_colour="yellow", overloaded=True, flags=[],
                        gross_weight_kg=60000.0, limit_kg=49000.0, excess_kg=11000.0)
            s.add(p)
            s.flush()
            c = Case(passage_id=p.id, package_id=f"arch-pkg-{i}",
                     manifest_sha256=sealed.manifest_sha256,
                     package_path=str(sealed.directory), site_id="S1", time_utc=when,
                     plate=PLATE, plate_colour="yellow", state="archived",
                     eligibility_status="ENFORCEABLE", opened_utc=opened,
                     proposed_outcome="fine", proposed_fine_yuan=600)
            s.add(c)
            s.flush()
            s.add(CaseHolder(case_id=c.id, vin=VIN, bound_utc=when))
            ids[name] = c.id
    settings = _settings()
    sessions = session_factory(fresh_db)
    with transaction(sessions) as s:
        answer = owners.owner_query(s, settings, owners.RateLimiter(), client_id="t",
                                    plate=PLATE, plate_colour="黄", vin_last6=VIN[-6:])
    assert [r["case_id"] for r in answer["records"]] == [ids["closed"]]
    grant = owners.read_owner_token(settings, answer["owner_token"])
    forged = owners.OwnerGrant(grant.holder, frozenset(ids.values()), grant.expires_epoch_s,
                               grant.token_id)
    with transaction(sessions) as s:
        assert owners.owner_case(s, settings, forged, ids["closed"]).id == ids["closed"]
        with pytest.raises(NotFoundError):
            owners.owner_case(s, settings, forged, ids["withdrawn"])
