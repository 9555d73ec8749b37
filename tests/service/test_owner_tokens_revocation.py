"""结束查询 ends an owner token on the server: after the portal's logout or
``POST /api/v1/owner/logout`` the token (the ``zc_owner`` cookie, ``X-Owner-Token``) is
refused with 401 and a zh-CN message, for reading and for filing statements, until it
would have expired; expired revocations are pruned. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.service.conftest import Api, Sealed, make_api
from tests.service.test_web_common import csrf_of
from zhichao.service import owners
from zhichao.service.db import transaction
from zhichao.service.errors import AuthenticationError
from zhichao.service.models import Case, CaseHolder, OwnerTokenRevocation, Passage, Vehicle

PLATE, VIN = "浙A7R001", "LFWAD0000000R0R01"
QUERY = {"plate": PLATE, "plate_colour": "黄", "vin_last6": VIN[-6:]}


def _owner_case(api: Api) -> int:
    """A notified case of the vehicle, bound to its VIN (as ingest binds it)."""
    sealed = api.sealed
    when = datetime(2026, 9, 1, tzinfo=UTC)
    with transaction(api.sessions) as s:
        s.add(Vehicle(plate=PLATE, plate_colour="yellow", vin=VIN))
        passage = Passage(source_key=f"rv-{uuid.uuid4().hex}", site_id="S1", lane_code="2",
                          time_utc=when, plate=PLATE, plate_colour="yellow", overloaded=True,
                          flags=[], gross_weight_kg=60000.0, limit_kg=49000.0,
                          excess_kg=11000.0)
        s.add(passage)
        s.flush()
        case = Case(passage_id=passage.id, package_id=f"rv-{uuid.uuid4().hex}",
                     manifest_sha256=sealed.manifest_sha256,
                     package_path=str(sealed.directory), site_id="S1", time_utc=when,
                     plate=PLATE, plate_colour="yellow", state="notified",
                     eligibility_status="ENFORCEABLE", opened_utc=when)
        s.add(case)
        s.flush()
        s.add(CaseHolder(case_id=case.id, vin=VIN, bound_utc=when))
        return case.id


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path, sealed: Sealed) -> Iterator[Api]:
    site = make_api(request.param, tmp_path, sealed, console=True,
                    owner_query_per_client_per_minute=10**6,
                    owner_query_per_plate_per_hour=10**6)
    yield site
    site.client.app.state.engine.dispose()


def _token(api: Api) -> str:
    r = api.client.post("/api/v1/owner/query", json=QUERY)
    assert r.status_code == 200, r.text
    return str(r.json()["owner_token"])


def test_api_logout_ends_the_token(api: Api) -> None:
    case_id = _owner_case(api)
    token, other = _token(api), _token(api)
    headers = {"X-Owner-Token": token}
    assert api.client.get(f"/api/v1/owner/records/{case_id}", headers=headers).status_code \
        == 200
    r = api.client.post("/api/v1/owner/logout", headers=headers)
    assert r.status_code == 200 and "结束查询" in r.json()["message_zh"], r.text
    for r in (api.client.get(f"/api/v1/owner/records/{case_id}", headers=headers),
              api.client.get(f"/api/v1/owner/records/{case_id}/package", headers=headers),
              api.client.post(f"/api/v1/owner/records/{case_id}/statements",
                              headers=headers, data={"text": "仍想陈述"}),
              api.client.post("/api/v1/owner/logout", headers=headers)):
        assert r.status_code == 401 and "查询已结束" in r.json()["message_zh"], r.text
    # another query's token of the same owner is untouched
    r = api.client.get(f"/api/v1/owner/records/{case_id}", headers={"X-Owner-Token": other})
    assert r.status_code == 200, r.text


def test_portal_logout_ends_the_cookie_for_the_portal_and_the_api(api: Api) -> None:
    case_id = _owner_case(api)
    browser = TestClient(api.client.app)
    page = browser.get("/portal/").text
    r = browser.post("/portal/query", follow_redirects=False, data={
        "plate": PLATE, "plate_colour": "黄", "id_kind": "vin", "secret_value": VIN[-6:],
        "csrf_token": csrf_of(page)})
    assert r.status_code == 303, r.text
    cookie = browser.cookies.get("zc_owner")
    assert cookie
    listing = browser.get("/portal/records")
    assert listing.status_code == 200
    r = browser.post("/portal/logout", follow_redirects=False,
                     data={"csrf_token": csrf_of(listing.text)})
    assert r.status_code == 303
    replay = TestClient(api.client.app)
    replay.cookies.set("zc_owner", cookie, path="/portal")
    r = replay.get(f"/portal/records/{case_id}")
    assert r.status_code == 401 and "查询已结束" in r.text
    r = replay.post(f"/portal/records/{case_id}/statements", data={"text": "x"})
    assert r.status_code == 401 and "查询已结束" in r.text
    r = api.client.get(f"/api/v1/owner/records/{case_id}", headers={"X-Owner-Token": cookie})
    assert r.status_code == 401, r.text


def test_expired_revocations_are_pruned(api: Api) -> None:
    now = datetime.now(UTC)
    old = owners.OwnerGrant("0" * 16, frozenset({1}), int((now - timedelta(hours=1))
                                                          .timestamp()))
    live = owners.OwnerGrant("0" * 16, frozenset({1}), int((now + timedelta(hours=1))
                                                           .timestamp()))
    with transaction(api.sessions) as s:
        owners.revoke_owner_token(s, old, now=now - timedelta(hours=2))
        owners.revoke_owner_token(s, live, now=now)
        owners.revoke_owner_token(s, live, now=now)  # twice: no error
        kept = set(s.scalars(select(OwnerTokenRevocation.token_id)))
        assert kept == {live.token_id}
        with pytest.raises(AuthenticationError):
            owners.check_owner_token_live(s, live)


def test_a_signed_token_without_an_id_is_refused(api: Api) -> None:
    """Tokens issued before token ids could not be revoked: they are refused."""
    body = json.dumps({"h": "0" * 16, "c": [1], "exp": int(time.time()) + 600},
                      separators=(",", ":")).encode()
    mac = hmac.new(api.settings.secret_key.encode(), b"owner\n" + body,
                   hashlib.sha256).digest()
    token = ".".join(base64.urlsafe_b64encode(x).decode().rstrip("=") for x in (body, mac))
    with pytest.raises(AuthenticationError):
        owners.read_owner_token(api.settings, token)
