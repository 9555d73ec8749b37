"""The center's ingest API in process (ASGI client), on SQLite and on PostgreSQL:
receipts, duplicates, reordering, tampering, forks, quarantine, passages, the hook."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.sync_helpers import Center, Database, StationKit, database
from zhichao.common import Backoff
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.signing import Checkpoint, generate_key, sign_checkpoint
from zhichao.service.center.store import Accepted, ProofClaim
from zhichao.station.sync_outbox import Outbox
from zhichao.station.uploader import Uploader
from zhichao.sync.wire import (
    HEADER_PROOF,
    HEADER_PROOF_FROM,
    HEADER_PROOF_TO,
    check_receipt,
    pack_package,
    read_package_head,
    sign_passage,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from database(request.param, tmp_path)


@pytest.fixture
def center(db: Database, tmp_path: Path) -> Center:
    return Center(db, tmp_path / "center")


@pytest.fixture
def kit(tmp_path: Path, center: Center) -> StationKit:
    station = StationKit(tmp_path / "station")
    center.store.register_station(station.station_id, station.public_pem)
    return station


def put(center: Center, data: bytes, *, proof: tuple[int, int, list[bytes]] | None = None
        ) -> Any:
    head = read_package_head(data, "test")
    headers = {}
    if proof is not None:
        headers = {HEADER_PROOF_FROM: str(proof[0]), HEADER_PROOF_TO: str(proof[1]),
                   HEADER_PROOF: ",".join(h.hex() for h in proof[2])}
    return center.client.put(f"/sync/v1/packages/{head.manifest_sha256}", content=data,
                             headers=headers)


def consistency(kit: StationKit, first: int, second: int) -> tuple[int, int, list[bytes]]:
    with MerkleLog(kit.log_dir, read_only=True) as log:
        return first, second, log.consistency_proof(first, second)


def rezip(data: bytes, change: dict[str, bytes]) -> bytes:
    """The same zip with some members replaced."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, change.get(info.filename, src.read(info.filename)))
    return out.getvalue()


def test_accept_then_duplicate_returns_the_same_receipt(center: Center, kit: StationKit
                                                        ) -> None:
    (folder,) = kit.seal(1)
    data = pack_package(folder)
    first = put(center, data)
    assert first.status_code == 201, first.text
    body = first.json()
    receipt = check_receipt(body["receipt_b64"], body["signature"], center.key.public_key(),
                            item_sha256=read_package_head(data, "t").manifest_sha256,
                            station_id="S001")
    assert receipt["kind"] == "package" and receipt["log_index"] == 0
    again = put(center, data)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert (again.json()["receipt_b64"], again.json()["signature"]) == (
        body["receipt_b64"], body["signature"])
    assert center.store.counts()["packages"] == 1
    assert len(center.hooked) == 1 and center.hooked[0].package_path is not None
    stored = center.hooked[0].package_path
    assert stored.read_bytes() == data and stored.name == f"{receipt['item_sha256']}.zip"
    view = center.client.get("/sync/v1/stations/S001").json()
    assert view["accepted_size"] == 1 and view["packages"] == 1


def test_reordered_uploads_need_and_get_consistency_proofs(center: Center, kit: StationKit
                                                           ) -> None:
    folders = kit.seal(5)
    blobs = [pack_package(f) for f in folders]
    assert put(center, blobs[1]).status_code == 201  # accepted size 2
    # A later package without a proof: the center says which proof it needs.
    need = put(center, blobs[4])
    assert need.status_code == 409 and need.json()["code"] == "log.proof_needed"
    assert (need.json()["proof_from"], need.json()["proof_to"]) == (2, 5)
    assert put(center, blobs[4], proof=consistency(kit, 2, 5)).status_code == 201
    # Earlier packages arrive after later ones: proven against the accepted size 5.
    for i in (0, 3, 2):
        size = i + 1
        response = put(center, blobs[i], proof=consistency(kit, size, 5))
        assert response.status_code == 201, response.text
    assert center.store.station_view("S001")["accepted_size"] == 5  # type: ignore[index]
    assert [row[2] for row in center.store.package_rows()] == [0, 1, 2, 3, 4]


def test_uploader_in_process_drains_a_shuffled_outbox(center: Center, kit: StationKit,
                                                      tmp_path: Path) -> None:
    folders = kit.seal(8)
    random.Random(3).shuffle(folders)
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        for folder in folders:
            outbox.enqueue_package(folder)
        for record in kit.passages(30):
            outbox.enqueue_passage(record, kit.station_id, kit.key)
        uploader = Uploader(outbox, "http://testserver", center.key.public_key(),
                            log_dir=kit.log_dir, backoff=Backoff(0.01, 0.05),
                            client=center.client)
        summary = uploader.run(until_empty=True, max_runtime_s=60)
        assert outbox.depth() == 0 and summary.accepted == 38 and summary.refused == 0
        assert {i["state"] for i in outbox.items()} == {"done"}
    assert center.store.counts() == {"packages": 8, "passages": 30, "quarantined": 0,
                                     "stations": 1, "hook_pending": 0}


def test_tampered_package_is_refused_and_quarantined(center: Center, kit: StationKit) -> None:
    (folder,) = kit.seal(1)
    data = pack_package(folder)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        photo = archive.read("original/image-front.jpg")
    tampered = rezip(data, {"original/image-front.jpg": photo[:-1] + bytes([photo[-1] ^ 1])})
    response = put(center, tampered)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "package.invalid" and "file.hash" in body["failed_checks"]
    assert "已隔离" in body["message_zh"] and body["permanent"] is True
    (row,) = center.store.quarantine_rows()
    assert row["code"] == "package.invalid" and row["station_id"] == "S001"
    assert (center.store.store_dir / row["stored_path"]).read_bytes() == tampered
    assert center.store.counts()["packages"] == 0 and center.hooked == []
    # The genuine package is still accepted afterwards; the tampered one again refused.
    assert put(center, data).status_code == 201
    again = put(center, tampered)
    assert again.status_code == 422 and again.json()["code"] == "package.conflict"


def test_duplicate_entry_names_are_refused(center: Center, kit: StationKit) -> None:
    """A planted photo stored first under the same name as the genuine one (stored last,
    so Python's zipfile reads the genuine one and ``unzip`` the planted one) is refused
    and quarantined, never served."""
    (folder,) = kit.seal(1)
    data = pack_package(folder)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename == "original/image-front.jpg":
                genuine = src.read(info.filename)
                dst.writestr(zipfile.ZipInfo(info.filename, info.date_time), b"planted photo")
                with pytest.warns(UserWarning, match="Duplicate name"):
                    dst.writestr(zipfile.ZipInfo(info.filename, info.date_time), genuine)
            else:
                dst.writestr(info, src.read(info.filename))
    response = put(center, out.getvalue())
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "package.invalid" and "package.names" in body["failed_checks"]
    assert center.store.counts()["packages"] == 0 and center.hooked == []
    assert put(center, data).status_code == 201  # the genuine package still is accepted


def test_garbage_wrong_hash_unknown_station_and_wrong_key(center: Center, kit: StationKit,
                                                          tmp_path: Path) -> None:
    garbage = center.client.put("/sync/v1/packages/" + "ab" * 32, content=b"not a zip")
    assert garbage.status_code == 422 and garbage.json()["code"] == "package.unreadable"
    (folder,) = kit.seal(1)
    data = pack_package(folder)
    wrong = center.client.put("/sync/v1/packages/" + "cd" * 32, content=data)
    assert wrong.json()["code"] == "package.hash_mismatch"
    bad_path = center.client.put("/sync/v1/packages/XYZ", content=data)
    assert bad_path.status_code == 400 and bad_path.json()["code"] == "request.malformed"
    stranger = StationKit(tmp_path / "stranger", station_id="S999")
    unknown = put(center, pack_package(stranger.seal(1)[0]))
    assert unknown.status_code == 403 and unknown.json()["code"] == "station.unknown"
    assert unknown.json()["permanent"] is False
    impostor = StationKit(tmp_path / "impostor", station_id="S001")  # same id, other key
    forged = put(center, pack_package(impostor.seal(1)[0]))
    assert forged.status_code == 422 and forged.json()["code"] == "station.key_mismatch"
    codes = sorted(r["code"] for r in center.store.quarantine_rows())
    assert codes == ["package.hash_mismatch", "package.unreadable", "station.key_mismatch"]
    assert center.store.counts()["packages"] == 0


def test_forked_station_log_is_refused_with_an_alarm(center: Center, kit: StationKit,
                                                     tmp_path: Path) -> None:
    honest = kit.seal(3)
    for i, folder in enumerate(honest):
        proof = consistency(kit, i, i + 1) if i else None
        assert put(center, pack_package(folder), proof=proof).status_code == 201
    # The same key signs a second history (a restored or cloned station): a fork.
    fork = StationKit(tmp_path / "fork", station_id="S001", key=kit.key)
    forked = fork.seal(4, salt=7)
    same_size = put(center, pack_package(forked[2]))  # size 3, another root
    assert same_size.status_code == 422 and same_size.json()["code"] == "log.fork"
    with MerkleLog(fork.log_dir, read_only=True) as log:
        proof = (3, 4, log.consistency_proof(3, 4))  # proves fork 3→4, not the center's 3
    longer = put(center, pack_package(forked[3]), proof=proof)
    assert longer.status_code == 422 and longer.json()["code"] == "log.fork"
    assert "分叉" in longer.json()["message_zh"]
    view = center.store.station_view("S001")
    assert view is not None and view["fork_alarm_utc"] is not None
    assert view["accepted_size"] == 3 and view["packages"] == 3
    assert sorted(r["code"] for r in center.store.quarantine_rows()) == ["log.fork", "log.fork"]
    malformed = put(center, pack_package(honest[0]) + b"", proof=None)
    assert malformed.status_code == 200  # a duplicate is still answered


def test_passages_duplicates_and_bad_signatures(center: Center, kit: StationKit) -> None:
    records = kit.passages(3)
    items = []
    for record in records:
        data, sig = sign_passage(record, kit.key)
        items.append({"record_b64": base64.b64encode(data).decode(), "signature": sig})
    forged_data, _ = sign_passage(kit.passages(1, start=99)[0], kit.key)
    _, other_sig = sign_passage(records[0], generate_key())
    forged = {"record_b64": base64.b64encode(forged_data).decode(), "signature": other_sig}
    batch = {"station_id": "S001", "items": [*items, items[0], forged, {"record_b64": "!!"}]}
    first = center.client.post("/sync/v1/passages", json=batch).json()["results"]
    assert [r.get("status", r.get("code")) for r in first] == [
        "accepted", "accepted", "accepted", "accepted", "passage.signature",
        "passage.malformed"]
    assert first[3]["receipt_b64"] == first[0]["receipt_b64"]
    second = center.client.post("/sync/v1/passages", json=batch).json()["results"]
    assert [r.get("status", r.get("code")) for r in second[:3]] == ["duplicate"] * 3
    assert [r["signature"] for r in second[:3]] == [r["signature"] for r in first[:3]]
    assert center.store.counts()["passages"] == 3
    assert [r["code"] for r in center.store.quarantine_rows()] == ["passage.signature"]
    assert len([h for h in center.hooked if h.kind == "passage"]) == 3
    bad = center.client.post("/sync/v1/passages", content=b"{")
    assert bad.status_code == 400 and bad.json()["code"] == "request.malformed"


def test_a_failing_hook_is_redelivered_after_restart(center: Center, kit: StationKit) -> None:
    def broken(_item: Accepted) -> None:
        raise RuntimeError("main service not ready")

    crashing = center.reopen(broken)
    (folder,) = kit.seal(1)
    assert put(crashing, pack_package(folder)).status_code == 201  # accepted regardless
    delivered: list[Accepted] = []
    restarted = crashing.reopen(delivered.append)  # redelivers at start-up
    assert [d.kind for d in delivered] == ["package"]
    assert delivered[0].manifest is not None
    assert delivered[0].manifest["station"]["station_id"] == "S001"
    assert restarted.store.redeliver() == 0


def test_too_large_upload_is_refused_before_storing(center: Center, kit: StationKit) -> None:
    center.store.max_package_bytes = 1000
    (folder,) = kit.seal(1)
    response = put(center, pack_package(folder))
    assert response.status_code == 413 and response.json()["code"] == "package.too_large"
    assert list((center.store.store_dir / "tmp").iterdir()) == []
    assert center.store.counts()["packages"] == 0


def test_receipt_json_is_canonical_and_names_the_center_key(center: Center, kit: StationKit
                                                            ) -> None:
    (folder,) = kit.seal(1)
    body = put(center, pack_package(folder)).json()
    raw = base64.b64decode(body["receipt_b64"])
    assert json.loads(raw) == body["receipt"]
    assert body["receipt"]["format"] == "zhichao.sync-receipt/1"
    assert len(body["receipt"]["center_key_sha256"]) == 64


def test_concurrent_duplicates_store_one_row_and_one_receipt(center: Center, kit: StationKit
                                                             ) -> None:
    import threading

    folders = kit.seal(2)
    blobs = [pack_package(f) for f in folders]
    assert put(center, blobs[0]).status_code == 201
    head = read_package_head(blobs[1], "t")
    proof = consistency(kit, 1, 2)
    results: list[Any] = []

    def send() -> None:
        spooled = center.store.spool([blobs[1]])
        assert isinstance(spooled, tuple)
        claim = ProofClaim(proof[0], proof[1], proof[2])
        results.append(center.store.ingest_package(head.manifest_sha256, spooled[0],
                                                   spooled[1], claim))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.status for r in results) == [200] * 5 + [201]
    assert len({(r.body["receipt_b64"], r.body["signature"]) for r in results}) == 1
    assert center.store.counts()["packages"] == 2 and len(center.hooked) == 2
    assert list((center.store.store_dir / "tmp").iterdir()) == []


def latest_note(kit: StationKit) -> tuple[int, bytes]:
    notes = sorted((kit.log_dir / "checkpoints").glob("*.txt"), key=lambda p: int(p.stem))
    return int(notes[-1].stem), notes[-1].read_bytes()


def post_checkpoint(center: Center, note: bytes,
                    proof: tuple[int, int, list[bytes]] | None = None) -> Any:
    headers = {}
    if proof is not None:
        headers = {HEADER_PROOF_FROM: str(proof[0]), HEADER_PROOF_TO: str(proof[1]),
                   HEADER_PROOF: ",".join(h.hex() for h in proof[2])}
    return center.client.post("/sync/v1/stations/S001/checkpoints", content=note,
                              headers=headers)


def test_station_checkpoints_extend_the_view_and_forks_are_caught(
        center: Center, kit: StationKit, tmp_path: Path) -> None:
    folders = kit.seal(2)
    assert put(center, pack_package(folders[0])).status_code == 201
    # A log entry that is not a package (e.g. a review event) and its checkpoint.
    station_origin = "zhichao/station/S001"
    with MerkleLog(kit.log_dir, origin=station_origin) as log:
        log.append(b'{"type":"review_event"}')
        size = log.size
        note = sign_checkpoint(Checkpoint(log.origin, size, log.root()), kit.key_name, kit.key)
        log.store_checkpoint(size, note)
    assert latest_note(kit) == (3, note)
    need = post_checkpoint(center, note)
    assert need.status_code == 409 and need.json()["proof_from"] == 1
    ok = post_checkpoint(center, note, consistency(kit, 1, 3))
    assert ok.status_code == 200 and ok.json()["accepted_size"] == 3
    # The package sealed before the event now needs a proof 2 → 3, and gets one.
    assert put(center, pack_package(folders[1]), proof=consistency(kit, 2, 3)).status_code == 201
    forged = sign_checkpoint(Checkpoint(station_origin, 3, b"\x01" * 32), kit.key_name, kit.key)
    fork = post_checkpoint(center, forged)
    assert fork.status_code == 422 and fork.json()["code"] == "log.fork"
    unsigned = sign_checkpoint(Checkpoint(station_origin, 4, b"\x02" * 32), kit.key_name,
                               generate_key())
    bad = post_checkpoint(center, unsigned)
    assert bad.status_code == 422 and bad.json()["code"] == "checkpoint.invalid"
    assert sorted(r["code"] for r in center.store.quarantine_rows()) == [
        "checkpoint.invalid", "log.fork"]
    view = center.store.station_view("S001")
    assert view is not None and view["accepted_size"] == 3 and view["fork_alarm_utc"]


def test_uploader_sends_the_newest_checkpoint_after_the_packages(
        center: Center, kit: StationKit, tmp_path: Path) -> None:
    folders = kit.seal(2)
    with MerkleLog(kit.log_dir, origin="zhichao/station/S001") as log:
        for n in range(3):
            log.append(b'{"type":"review_event","n":%d}' % n)
        note = sign_checkpoint(Checkpoint(log.origin, log.size, log.root()), kit.key_name,
                               kit.key)
        log.store_checkpoint(log.size, note)
    with Outbox(tmp_path / "o.sqlite") as outbox:
        for folder in folders:
            outbox.enqueue_package(folder)
        uploader = Uploader(outbox, "http://testserver", center.key.public_key(),
                            log_dir=kit.log_dir, client=center.client)
        summary = uploader.run(until_empty=True, max_runtime_s=30)
    assert summary.accepted == 2
    view = center.store.station_view("S001")
    assert view is not None and view["accepted_size"] == 5 and view["packages"] == 2


def _case(folder: Path, station_id: str) -> Any:
    from zhichao.service.models import Case

    manifest = (folder / "manifest.json").read_bytes()
    return Case(package_path=str(folder), station_id=station_id,
                manifest_sha256=hashlib.sha256(manifest).hexdigest())


def test_console_integrity_uses_the_registered_key(center: Center, kit: StationKit,
                                                   tmp_path: Path) -> None:
    """The case page verifies with the key the center registered for the station, never
    with the key inside the package: a package re-sealed by another key (shipping its own
    station.pub) fails, and so does one whose station has no registered key."""
    from sqlalchemy.orm import Session

    from zhichao.evidence.verify import verify_package
    from zhichao.service.web.evidence_view import integrity

    (genuine,) = kit.seal(1)
    impostor = StationKit(tmp_path / "impostor", station_id="S001")  # same id, other key
    (forged,) = impostor.seal(1)
    assert verify_package(forged).ok  # self-consistent with its own embedded key
    stranger = StationKit(tmp_path / "stranger", station_id="S999")
    (unregistered,) = stranger.seal(1)
    with Session(center.store.engine) as session:
        good = integrity(_case(genuine, "S001"), session)
        assert good.ok, good.checks
        assert {"code": "key.registered", "css": "pass"}.items() <= good.checks[1].items()
        bad = integrity(_case(forged, "S001"), session)
        assert not bad.ok and "核验失败" in bad.summary_zh
        assert {"key.mismatch", "key.embedded"} <= {c["code"] for c in bad.checks
                                                    if c["css"] == "fail"}
        alone = integrity(_case(unregistered, "S999"), session)
        assert not alone.ok
        assert [c["code"] for c in alone.checks if c["css"] == "fail"] == ["key.registered"]


def _mutations(data: bytes) -> list[tuple[str, bytes]]:
    """Zip-level forgeries of a packed package, each with the reason verify must give."""
    from zhichao.testing.zipforge import build_zip, central_entries, with_comment, with_local_name

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [(n, archive.read(n)) for n in archive.namelist()]
    photo = next(i for i, (n, _) in enumerate(members) if n == "original/image-front.jpg")
    first = central_entries(data)[0].name
    return [
        ("package.extra_data", b"MZ" + b"\0" * 62 + data),  # prepended (a self-extractor)
        ("package.extra_data", with_comment(data, b"appended")),
        ("package.header_mismatch", with_local_name(data, first, first.swapcase())),
        ("package.names", build_zip([*members[:photo], ("original/image-front.jpg", b"planted"),
                                     *members[photo:]])),
        ("package.names", build_zip([*members, ("original/IMAGE-front.jpg", b"planted")])),
        ("package.structure", build_zip(members, central_order=[1, 0, *range(2, len(members))])),
        ("file.unlisted", build_zip([*members, ("original/extra.jpg", b"planted")])),
    ]


def test_center_refuses_what_verify_refuses_with_the_same_codes(
        center: Center, kit: StationKit, tmp_path: Path) -> None:
    """The same forged zips through ``zhichao verify`` and through the center's ingest:
    both refuse, with the same reason code; the center quarantines each upload."""
    from zhichao.evidence.verify import verify_package

    (folder,) = kit.seal(1)
    data = pack_package(folder)
    sha = read_package_head(data, "t").manifest_sha256
    forgeries = _mutations(data)
    for i, (code, forged) in enumerate(forgeries):
        path = tmp_path / f"forged-{i}.zip"
        path.write_bytes(forged)
        report = verify_package(path, key=kit.key.public_key())
        assert report.codes() == {code}, report.text()
        response = center.client.put(f"/sync/v1/packages/{sha}", content=forged)
        body = response.json()
        assert response.status_code == 422 and body["refused"] is True, body
        assert body["code"] == "package.invalid" and body["failed_checks"] == [code]
        stored = center.store.store_dir / center.store.quarantine_rows()[-1]["stored_path"]
        assert stored.read_bytes() == forged
    assert center.store.counts()["packages"] == 0 and center.hooked == []
    assert len(center.store.quarantine_rows()) == len(forgeries)
    assert put(center, data).status_code == 201
