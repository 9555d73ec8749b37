"""A station changes its key: what the replaced key sealed stays verifiable at the center
(accepted on upload, and shown as intact in the console), and nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from zhichao.common import Backoff
from zhichao.evidence.manifest import CHECKPOINT_NAME, INCLUSION_NAME
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.signing import (
    Checkpoint,
    generate_key,
    load_public_key_bytes,
    public_pem,
    sign_checkpoint,
)
from zhichao.evidence.verify import verify_package
from zhichao.service.center.models import SyncStation
from zhichao.service.center.server import create_center_app
from zhichao.service.center.store import CenterStore
from zhichao.service.center.tables import trusted_key
from zhichao.station.sync_outbox import Outbox
from zhichao.station.uploader import Uploader
from zhichao.testing.sync import StationKit

CENTER_KEY = generate_key()


def _put(client: TestClient, folder: Path, kit: StationKit) -> tuple[int, str | None]:
    """Upload one package as a station does (with the consistency proof the center asks
    for): (201, None) if accepted, else (422, the refusal code)."""
    with Outbox(kit.root / "outbox.sqlite") as outbox:
        sha, _ = outbox.enqueue_package(folder)
        summary = Uploader(outbox, "http://testserver", CENTER_KEY.public_key(),
                           log_dir=kit.log_dir, backoff=Backoff(0.01, 0.05),
                           client=client).run(until_empty=True, max_runtime_s=30)
        refused = {r["item_sha256"]: r["code"] for r in outbox.status()["refused"]}
    if summary.accepted == 1:
        return 201, None
    return 422, refused.get(sha)


def _center(root: Path) -> tuple[CenterStore, TestClient]:
    app = create_center_app(f"sqlite:///{root / 'center.sqlite'}", root / "store",
                            CENTER_KEY, hook=lambda _accepted: None)
    return app.state.sync_store, TestClient(app)


def test_a_replaced_key_stays_trusted_for_what_it_sealed(tmp_path: Path) -> None:
    store, client = _center(tmp_path / "center")
    kit = StationKit(tmp_path / "station")
    store.register_station(kit.station_id, kit.public_pem)
    first, second = kit.seal(2)  # log entries 0 and 1 under the first key
    assert _put(client, first, kit)[0] == 201
    old_key = kit.key
    kit.key = generate_key()  # the station changes keys at log size 2
    store.register_station(kit.station_id, kit.public_pem, replace_key=True,
                           previous_key_valid_below=2)
    # sealed before the change, uploaded after: accepted (was station.key_mismatch)
    assert _put(client, second, kit)[0] == 201
    (third,) = kit.seal(1)  # entry 2, the new key
    assert _put(client, third, kit)[0] == 201
    # the replaced key signs nothing at or after the change
    kit.key = old_key
    (forged,) = kit.seal(1)  # entry 3, signed with the replaced key
    assert _put(client, forged, kit) == (422, "station.key_mismatch")
    with Session(store.engine) as session:
        for index, ok in ((0, True), (1, True), (3, False)):
            trusted = trusted_key(session, kit.station_id, _named(first), index)
            assert trusted is not None
            key = load_public_key_bytes(trusted[0], "trusted")
            assert verify_package(first, key=key).ok is ok  # what the console checks
        assert trusted_key(session, "S999", None, 0) is None


def test_by_default_the_replaced_key_covers_what_the_center_accepted(tmp_path: Path) -> None:
    store, client = _center(tmp_path / "center")
    kit = StationKit(tmp_path / "station")
    store.register_station(kit.station_id, kit.public_pem)
    (first,) = kit.seal(1)
    assert _put(client, first, kit)[0] == 201  # the center has accepted log size 1
    (second,) = kit.seal(1)  # entry 1, the first key, not uploaded before the change
    kit.key = generate_key()
    store.register_station(kit.station_id, public_pem(kit.key.public_key()),
                           replace_key=True)  # no size given: the accepted size, 1
    assert _put(client, second, kit) == (422, "station.key_mismatch")
    with Session(store.engine) as session:  # what it did seal stays trusted
        trusted = trusted_key(session, kit.station_id, _named(first), 0)
        assert trusted is not None
        assert verify_package(first, key=load_public_key_bytes(trusted[0], "k")).ok


def _named(folder: Path) -> str:
    return str(json.loads((folder / "manifest.json").read_bytes())["station"]["key_sha256"])


def test_a_replaced_key_moves_no_log_head_beyond_its_size(tmp_path: Path) -> None:
    """Someone holding the replaced key extends a copy of the log and re-signs a longer
    checkpoint under it: refused, and the station's next package under its new key is
    accepted (a review found the forged head accepted and the genuine station locked out)."""
    store, client = _center(tmp_path / "center")
    kit = StationKit(tmp_path / "station")
    store.register_station(kit.station_id, kit.public_pem)
    first, second = kit.seal(2)
    assert _put(client, first, kit)[0] == 201
    old_key = kit.key
    evil = StationKit(tmp_path / "evil", key=old_key)
    shutil.copytree(kit.log_dir, evil.log_dir)
    with MerkleLog(evil.log_dir, create=False, fsync=False) as log:
        for i in range(5):
            log.append(b"junk%d" % i)
        size = log.size
        note = sign_checkpoint(Checkpoint(log.origin, size, log.root(size)), kit.key_name,
                               old_key)
        log.store_checkpoint(size, note, None)
        proof = log.inclusion_proof(1, size)
    forged = tmp_path / "forged"
    shutil.copytree(second, forged)
    inclusion = json.loads((forged / INCLUSION_NAME).read_text())
    inclusion.update(size=size, hashes=[h.hex() for h in proof.hashes])
    (forged / INCLUSION_NAME).write_text(json.dumps(inclusion, indent=1) + "\n")
    (forged / CHECKPOINT_NAME).write_bytes(note)
    kit.key = generate_key()
    store.register_station(kit.station_id, kit.public_pem, replace_key=True,
                           previous_key_valid_below=2)
    assert _put(client, forged, evil) == (422, "station.key_mismatch")
    with Session(store.engine) as session:
        station = session.get(SyncStation, kit.station_id)
        assert station is not None and station.accepted_size <= 2
    assert _put(client, second, kit)[0] == 201  # the genuine one, sealed before the change
    (third,) = kit.seal(1)
    assert _put(client, third, kit)[0] == 201


def test_a_package_id_of_another_station_is_refused_at_upload(tmp_path: Path) -> None:
    store, client = _center(tmp_path / "center")
    kit = StationKit(tmp_path / "station", station_id="S002")
    store.register_station(kit.station_id, kit.public_pem)
    (package,) = kit.seal(1)
    manifest = json.loads((package / "manifest.json").read_bytes())
    assert manifest["package_id"].startswith("S002-")
    # one naming another station's id is quarantined before anything else is checked
    other = tmp_path / "other"
    shutil.copytree(package, other)
    manifest["package_id"] = "S001-" + manifest["package_id"][len("S002-"):]
    (other / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False))
    assert _put(client, other, kit) == (422, "package.id_station")
    assert _put(client, package, kit)[0] == 201  # its own packages pass
