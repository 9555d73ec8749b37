"""Registering packages and passages: idempotent, conflicts refused, no case when none is due."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.service.conftest import Sealed, variant
from zhichao.service.db import transaction
from zhichao.service.errors import IngestError, InvalidInputError
from zhichao.service.ingest import (
    normalise_colour,
    normalise_plate,
    register_ingested_package,
    register_passage,
    update_device_health,
)
from zhichao.service.models import Case, Device, Passage, Site


def test_a_real_package_becomes_a_case_once(sessions: sessionmaker[Session],
                                            sealed: Sealed) -> None:
    manifest = copy.deepcopy(sealed.manifest)
    with transaction(sessions) as s:
        first = register_ingested_package(s, manifest, sealed.directory,
                                          manifest_sha256=sealed.manifest_sha256)
        assert isinstance(first, Case)
        assert first.state == "technical_review" and first.plate == "浙J12345"
        assert first.plate_colour == "yellow" and first.eligibility_status == "ENFORCEABLE"
        assert first.legal_basis_zh and first.hearing_right in ("yes", "no", "undetermined")
        assert s.get(Site, "ZJ-G60-K123") is not None
        device = s.get(Device, "WIM-ZJ-0007")
        assert device is not None and device.certificate_number == "ZJJL-2025-0456"
        assert device.certificate_valid_to is not None
        assert device.certificate_valid_to.isoformat() == "2026-01-09T16:00:00+00:00"
        assert str(device.technical_review_date) == "2024-03-01"
        update_device_health(s, "WIM-ZJ-0007", health="degraded", detail="通道3噪声偏高")
        with pytest.raises(InvalidInputError):
            update_device_health(s, "WIM-ZJ-0007", health="great")
    with transaction(sessions) as s:
        again = register_ingested_package(s, manifest, sealed.directory,
                                          manifest_sha256=sealed.manifest_sha256)
        assert again.id == first.id
        with pytest.raises(IngestError, match="refused"):
            register_ingested_package(s, manifest, sealed.directory, manifest_sha256="f" * 64)
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Case)
                        .where(Case.package_id == manifest["package_id"])) == 1


def test_unusable_or_no_penalty_keeps_only_the_passage(sessions: sessionmaker[Session],
                                                       sealed: Sealed) -> None:
    for kw in ({"status": "UNUSABLE"}, {"penalty": None}):
        manifest, digest = variant(sealed, **kw)
        with transaction(sessions) as s:
            got = register_ingested_package(s, manifest, sealed.directory,
                                            manifest_sha256=digest)
            assert isinstance(got, Passage) and got.package_id == manifest["package_id"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda m: m.update(format="other/1"), "format"),
    (lambda m: m.pop("package_id"), "package_id"),
    (lambda m: m["case"].pop("vehicle"), "vehicle"),
    (lambda m: m["case"]["vehicle"].update(time_utc="yesterday"), "time_utc"),
    (lambda m: m["case"]["vehicle"].update(time_utc="2025-06-01T02:03:04"), "offset"),
    # a package id is its station's (station-time-lane-hash): another station's id taken
    # first would make the genuine package fail for ever
    (lambda m: m["station"].update(station_id="S002"), "not an id of station 'S002'"),
    (lambda m: m.update(package_id="S0011-" + m["package_id"]), "not an id of station"),
])
def test_malformed_manifests_are_refused_by_name(sessions: sessionmaker[Session],
                                                 sealed: Sealed, mutate: object,
                                                 message: str) -> None:
    manifest, digest = variant(sealed)
    mutate(manifest)  # type: ignore[operator]
    with pytest.raises(IngestError, match=message), transaction(sessions) as s:
        register_ingested_package(s, manifest, sealed.directory, manifest_sha256=digest)


def test_every_passage_is_kept_once(sessions: sessionmaker[Session], sealed: Sealed) -> None:
    record = dict(sealed.manifest["case"]["vehicle"], overloaded=False,
                  time_utc="2026-03-01T00:00:00Z")
    with transaction(sessions) as s:
        a = register_passage(s, record, station_id="S001", plate="浙J00001",
                             plate_colour="blue")
        b = register_passage(s, record, station_id="S001")
        assert a.id == b.id and a.overloaded is False


def test_plate_and_colour_normalisation() -> None:
    assert normalise_plate(" 浙a·12345 ") == "浙A12345"
    assert normalise_colour("黄") == normalise_colour("yellow") == "yellow"
    assert normalise_colour("黄绿") == "yellow_green"
    assert normalise_colour("紫") is None


def test_a_package_without_a_case_registered_again_adds_nothing(
        sessions: sessionmaker[Session], sealed: Sealed) -> None:
    from zhichao.service.models import AuditEntry

    manifest, digest = variant(sealed, penalty=None)
    with transaction(sessions) as s:
        first = register_ingested_package(s, manifest, sealed.directory,
                                          manifest_sha256=digest)
        entries = s.scalar(select(func.count()).select_from(AuditEntry))
    with transaction(sessions) as s:  # a redelivery: the same row, no second audit entry
        again = register_ingested_package(s, manifest, sealed.directory,
                                          manifest_sha256=digest)
        assert isinstance(again, Passage) and again.id == first.id
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == entries


def test_a_passage_record_and_its_package_are_one_passage(sessions: sessionmaker[Session],
                                                          sealed: Sealed) -> None:
    """The center keys both by the vehicle record's hash: whichever comes first, one row."""
    import hashlib

    from zhichao.evidence.canonical import canonicalize

    for record_first in (True, False):
        manifest, digest = variant(sealed)
        vehicle = copy.deepcopy(manifest["case"]["vehicle"])
        vehicle["first_sample"] = 7_000_000 + record_first  # a vehicle of its own
        manifest["case"]["vehicle"] = vehicle
        key = f"sync:{hashlib.sha256(canonicalize(vehicle)).hexdigest()}"
        with transaction(sessions) as s:
            if record_first:
                plain = register_passage(s, vehicle, station_id="S001", source_key=key)
                assert plain.package_id is None and plain.plate is None
            case = register_ingested_package(s, manifest, sealed.directory,
                                             manifest_sha256=digest, passage_source_key=key)
            assert isinstance(case, Case)
            if not record_first:
                register_passage(s, vehicle, station_id="S001", source_key=key)
            rows = s.scalars(select(Passage).where(Passage.source_key == key)).all()
            assert len(rows) == 1 and rows[0].id == case.passage_id
            assert rows[0].package_id == manifest["package_id"]
            assert rows[0].plate == "浙J12345" and rows[0].eligibility_status == "ENFORCEABLE"
