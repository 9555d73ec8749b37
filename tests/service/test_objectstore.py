"""Packages in S3-compatible object storage, against a real S3 server process on loopback
(moto's ``moto_server``, see :mod:`zhichao.testing.objectstore` for what it does and does
not stand for): content-addressed keys, no overwrite (a second put of other bytes under a
key is refused and the first bytes stay), every read hashed (a replaced object is
refused), and the center end to end: a package uploaded by the real sync client lands in
the bucket, its case points at ``s3://…``, and a second center with an empty folder (another
machine) reads it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.service.sync_helpers import StationKit
from zhichao.evidence.signing import generate_key
from zhichao.service import events
from zhichao.service.center.server import create_center_app
from zhichao.service.center.store import CenterStore
from zhichao.service.db import make_engine, session_factory, transaction
from zhichao.service.models import Case
from zhichao.service.objectstore import ObjectStoreError, S3Packages, local_package
from zhichao.station.sync_outbox import Outbox
from zhichao.station.uploader import Uploader
from zhichao.testing.objectstore import CREDENTIALS, MotoServer
from zhichao.testing.sync import free_port

BUCKET = "zhichao-packages"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(free_port(), tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    server.make_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoServer:
    """boto3's credentials and the endpoint, as a deployment sets them in the environment."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ZHICHAO_S3_ENDPOINT_URL", s3.url)
    monkeypatch.setenv("ZHICHAO_OBJECT_CACHE", str(tmp_path / "reader-cache"))
    return s3


def _store(s3: MotoServer, cache: Path, prefix: str = "t/") -> S3Packages:
    return S3Packages(BUCKET, prefix=prefix, cache_dir=cache, client=s3.client())


def test_a_key_is_never_overwritten(s3: MotoServer, tmp_path: Path) -> None:
    store = _store(s3, tmp_path / "cache", prefix="overwrite/")
    key = store.prefix + "some/key.zip"
    assert store.put_new(key, b"first bytes") is True
    assert store.put_new(key, b"first bytes") is False  # the same bytes again: a no-op
    with pytest.raises(ObjectStoreError, match="other bytes"):
        store.put_new(key, b"other bytes")
    assert store.read_verified(key, None) == b"first bytes"
    racing = _store(s3, tmp_path / "cache2", prefix="overwrite/")
    racing._held_sha256 = lambda _key: None  # type: ignore[method-assign]  # HEAD saw nothing
    with pytest.raises(ObjectStoreError, match="other bytes"):  # the conditional put refuses
        racing.put_new(key, b"third bytes")
    assert racing.put_new(key, b"first bytes") is False
    assert store.read_verified(key, None) == b"first bytes"
    with pytest.raises(ObjectStoreError, match="hash"):  # data that is not what it claims
        store.put_new(store.key_for("0" * 64), b"x", content_sha256="0" * 64)
    # the server itself refuses a conditional put on a taken key (not just our HEAD)
    with pytest.raises(Exception) as refused:
        s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"other", IfNoneMatch="*")
    assert "PreconditionFailed" in str(refused.value) or "412" in str(refused.value)


def test_keys_are_content_addressed_and_reads_are_verified(s3: MotoServer,
                                                           tmp_path: Path) -> None:
    store = _store(s3, tmp_path / "cache", prefix="addressed/")
    spooled = tmp_path / "up.zip"
    data = b"PK\x03\x04 a package's bytes"
    spooled.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    location = store.keep(spooled, manifest_sha256="f" * 64, content_sha256=sha, fsync=True)
    assert location == f"s3://{BUCKET}/addressed/{sha[:2]}/{sha}.zip"
    assert not spooled.exists()
    assert store.local_copy(location).read_bytes() == data
    # a damaged cached copy is fetched again, never handed out
    (tmp_path / "cache" / f"{sha}.zip").write_bytes(b"damaged")
    assert store.local_copy(location).read_bytes() == data
    # an object replaced behind the store's back is refused on read
    s3.client().put_object(Bucket=BUCKET, Key=f"addressed/{sha[:2]}/{sha}.zip", Body=b"evil",
                           Metadata={"sha256": hashlib.sha256(b"evil").hexdigest()})
    fresh = _store(s3, tmp_path / "other-cache", prefix="addressed/")
    with pytest.raises(ObjectStoreError, match="hash"):
        fresh.local_copy(location)


def test_the_center_keeps_packages_in_the_bucket(s3_env: MotoServer, tmp_path: Path) -> None:
    key = generate_key()
    url = f"sqlite:///{tmp_path / 'center.sqlite'}"
    files = S3Packages.from_uri(f"s3://{BUCKET}/center/", endpoint_url=s3_env.url,
                                cache_dir=tmp_path / "cache-a")
    from zhichao.service.center.service_hook import ServiceHook

    service = make_engine(url)
    app = create_center_app(url, tmp_path / "store-a", key, files=files)
    store: CenterStore = app.state.sync_store
    store.hook = ServiceHook.for_engine(service)
    kit = StationKit(tmp_path / "station")
    store.register_station(kit.station_id, kit.public_pem)
    folders = kit.seal(2)
    with Outbox(tmp_path / "outbox.sqlite") as outbox:
        for folder in folders:
            outbox.enqueue_package(folder)
        summary = Uploader(outbox, "http://testserver", key.public_key(), log_dir=kit.log_dir,
                           client=TestClient(app)).run(until_empty=True, max_runtime_s=30)
    assert summary.accepted == 2
    assert not (tmp_path / "store-a" / "packages").exists()  # nothing in the local folder
    listed = s3_env.client().list_objects_v2(Bucket=BUCKET, Prefix="center/")["Contents"]
    assert len(listed) == 2
    with transaction(session_factory(service)) as session:
        cases = list(session.scalars(select(Case).order_by(Case.id)))
        paths = [c.package_path for c in cases]
        assert len(cases) == 2 and all(p.startswith(f"s3://{BUCKET}/center/") for p in paths)
        # the service opens the case's package from the bucket (verified local copy)
        origin, index = events.package_log_position(paths[0])
        assert origin == "zhichao/station/S001" and index in (0, 1)
    # another machine: an empty store folder, the same database and bucket
    other = CenterStore(store.engine, tmp_path / "store-b", key,
                        files=S3Packages.from_uri(f"s3://{BUCKET}/center/",
                                                  endpoint_url=s3_env.url,
                                                  cache_dir=tmp_path / "cache-b"))
    for row in other.package_rows():
        assert other.files.local_copy(_location(other, row[1])).exists()
    assert local_package(paths[1]).read_bytes()[:2] == b"PK"
    service.dispose()


def _location(store: CenterStore, manifest_sha256: str) -> str:
    from zhichao.service.center.models import SyncPackage

    with store._sessions() as session:
        row = session.scalar(select(SyncPackage).where(
            SyncPackage.manifest_sha256 == manifest_sha256))
        assert row is not None
        return row.stored_path


def test_bad_locations_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ObjectStoreError, match="s3://bucket/prefix"):
        S3Packages.from_uri("http://not-s3/x", cache_dir=tmp_path)
    with pytest.raises(ObjectStoreError, match="not an s3://bucket/key"):
        local_package("s3://bucket-only")
    assert local_package("packages/ab/x.zip") == Path("packages/ab/x.zip")  # a path as it is
