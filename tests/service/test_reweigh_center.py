"""The center receives a static re-weighing's supplementary package through the same sync
as any package and attaches it to the case it names (after the case, if it came first);
a supplement naming other evidence than the registered case is refused."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.evidence.test_reweigh_rule import reading
from tests.service.conftest import PASSWORD, TEST_POLICY, new_user
from tests.service.sync_helpers import Database, StationKit, database
from tests.service.test_web_common import csrf_of
from zhichao.common import Backoff
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station
from zhichao.evidence.reweigh import OriginalRef, seal_reweigh, vehicle_record_sha256
from zhichao.evidence.signing import generate_key
from zhichao.evidence.static_reading import StaticReading
from zhichao.service.center.server import create_center_app
from zhichao.service.center.service_hook import ServiceHook
from zhichao.service.center.store import CenterStore
from zhichao.service.db import make_engine, session_factory, transaction
from zhichao.service.errors import IngestError
from zhichao.service.models import Case, User
from zhichao.service.reweigh import register_reweigh, reweighs_of
from zhichao.station.sync_outbox import Outbox
from zhichao.station.uploader import Uploader
from zhichao.testing.cases import case_dict, vehicle_dict


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from database(request.param, tmp_path)


def supplement(kit: StationKit, original: Path, weight_kg: float = 61800) -> Path:
    """The re-weighing of the kit's first package (same vehicle record), sealed into the
    kit's log after it."""
    raw = case_dict(kit.inputs, vehicle=vehicle_dict(first_sample=1000, station_seq=0))
    case = CaseInputs.from_json(raw)
    manifest_bytes = (original / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    assert manifest["case"]["vehicle"] == case.vehicle.raw
    ref = OriginalRef("S001-2-1000", vehicle_record_sha256(case.vehicle.raw),
                      manifest["package_id"], hashlib.sha256(manifest_bytes).hexdigest())
    static = StaticReading.from_json(reading(weight_kg))
    station = Station(kit.station_id, kit.key_name, kit.key)
    with MerkleLog(kit.log_dir, origin=station.origin, create=True, fsync=False) as log:
        res = seal_reweigh(dataclasses.replace(case, static_reweigh=static), ref,
                           kit.root / "reweigh", station=station, log=log)
    return res.directory


@pytest.mark.slow  # a center, a service and a console on each backend
def test_supplement_is_attached_to_its_case_even_when_it_arrives_first(
        db: Database, tmp_path: Path) -> None:
    service = make_engine(db.url, schema=db.schema)
    key = generate_key()
    app = create_center_app(db.url, tmp_path / "store", key, schema=db.schema,
                            hook=ServiceHook.for_engine(service))
    store: CenterStore = app.state.sync_store
    kit = StationKit(tmp_path / "station")
    store.register_station(kit.station_id, kit.public_pem)
    (original,) = kit.seal(1)
    sup = supplement(kit, original)
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        outbox.enqueue_package(sup)  # the supplement first: it must wait for its case
        outbox.enqueue_package(original)
        summary = Uploader(outbox, "http://testserver", key.public_key(),
                           log_dir=kit.log_dir, backoff=Backoff(0.01, 0.05),
                           client=TestClient(app)).run(until_empty=True, max_runtime_s=60)
    assert summary.accepted == 2 and summary.refused == 0
    assert store.counts()["hook_pending"] == 1  # the supplement, waiting for its case
    assert store.redeliver() == 1
    assert store.counts()["hook_pending"] == 0
    assert store.redeliver() == 0
    with transaction(session_factory(service)) as s:
        (case,) = s.scalars(select(Case)).all()
        attached = reweighs_of(s, "case", case.id)
        assert len(attached) == 1
        entry = attached[0]
        assert entry["static_weight_kg"] == "61800" and entry["wim_gross_kg"] == "62000"
        assert entry["officer"] == "执法员 张三" and entry["status"] == "ENFORCEABLE"
        assert entry["original"]["package_id"] == case.package_id
        assert Path(entry["package_path"]).is_file()
        # registered again (at-least-once delivery): nothing new
        sup_manifest = json.loads((sup / "manifest.json").read_bytes())
        sha = hashlib.sha256((sup / "manifest.json").read_bytes()).hexdigest()
        register_reweigh(s, sup_manifest, entry["package_path"], manifest_sha256=sha)
        assert len(reweighs_of(s, "case", case.id)) == 1
        # a supplement naming other evidence under the case's package id is refused
        forged = json.loads(json.dumps(sup_manifest))
        forged["case"]["original"]["manifest_sha256"] = "0" * 64
        with pytest.raises(IngestError, match="refused"):
            register_reweigh(s, forged, entry["package_path"], manifest_sha256="1" * 64)
        # and so is another station's supplement naming this station's case: it could
        # block or override the case's own re-weighing (the latest counts)
        other = json.loads(json.dumps(sup_manifest))
        other["station"]["station_id"] = "S002"
        assert case.station_id == kit.station_id != "S002"
        with pytest.raises(IngestError, match="station S002") as refused:
            register_reweigh(s, other, entry["package_path"], manifest_sha256="2" * 64)
        assert refused.value.message_zh == "复检包所指原始记录属于其他检测站，已拒绝"
        assert len(reweighs_of(s, "case", case.id)) == 1
        case_id = case.id
    service.dispose()
    html = case_page(db, case_id)
    assert "静态复检" in html and "61,800 kg" in html and "62,000 kg" in html
    assert "执法员 张三" in html and "ZJJL-S-2025-01" in html
    # the 静态复检 row in Chinese names, never the internal identifiers
    section = html[html.index("<h2>静态复检</h2>"):html.index('id="waveform"')]
    for internal in ("ENFORCEABLE", "MANUAL_REVIEW", "UNUSABLE", "overloaded", "within_limit",
                     "depends_on_facts", "undecidable", ">fine<", "理由代码"):
        assert internal not in section, internal
    assert "依法：" in section and any(z in section for z in ("超限", "未超限", "需人工核定"))


def case_page(db: Database, case_id: int) -> str:
    """The console's case page as a technical reviewer sees it."""
    from zhichao.service.settings import Settings
    from zhichao.service.web import WebSettings, create_console_app

    app = create_console_app(Settings(database_url=db.url, database_schema=db.schema,
                                      deadlines=TEST_POLICY),
                             web=WebSettings(cookie_secure=False))
    try:
        reviewer = new_user(app.state.sessions, "technical_reviewer")
        client = TestClient(app)
        page = client.get("/console/login")
        r = client.post("/console/login", follow_redirects=False, data={
            "username": reviewer.username, "password": PASSWORD,
            "csrf_token": csrf_of(page.text), "next": "/console/"})
        assert r.status_code == 303, r.text
        got = client.get(f"/console/cases/{case_id}")
        assert got.status_code == 200, got.text
        return str(got.text)
    finally:
        app.state.engine.dispose()


@pytest.mark.slow  # a migrated service database
def test_a_reweighing_without_penalty_bars_approving_the_wim_proposal(tmp_path: Path) -> None:
    """WIM 62 t (a fine proposed); the verified static scale says 46 060 kg (not over):
    the reviewers may reject, never approve the WIM proposal."""
    from zhichao.service import workflow
    from zhichao.service.db import upgrade
    from zhichao.service.errors import WorkflowError
    from zhichao.service.ingest import register_ingested_package

    engine = make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    kit = StationKit(tmp_path / "station")
    (original,) = kit.seal(1)
    sup = supplement(kit, original, 46060)
    sha = hashlib.sha256((sup / "manifest.json").read_bytes()).hexdigest()
    reviewer = new_user(sessions, "technical_reviewer")
    with transaction(sessions) as s:
        case = register_ingested_package(s, None, original)
        assert isinstance(case, Case) and case.proposed_outcome not in (None, "none")
        register_reweigh(s, json.loads((sup / "manifest.json").read_bytes()), sup,
                         manifest_sha256=sha)
        case_id = case.id
    def review(s: Any, approve: bool, reason: str) -> Case:
        case, user = s.get(Case, case_id), s.get(User, reviewer.id)
        assert case is not None and user is not None
        return workflow.technical_review(s, case, user, approve=approve, reason=reason)

    with pytest.raises(WorkflowError) as info, transaction(sessions) as s:
        review(s, True, "按动态称重")
    assert "静态复检" in info.value.message_zh and "请驳回" in info.value.message_zh
    with transaction(sessions) as s:
        assert review(s, False, "静态复检未超限").state == "rejected"
    engine.dispose()
