"""Hostile uploads at the center: crafted JSON, a checkpoint of another log, a symlink
entry, a deflate bomb, an error nothing foresaw. Each is answered 4xx, the package is
quarantined with its bytes (nothing lost), and ``zhichao verify`` refuses the same bytes
(the offline verifier never accepts what the center refuses). SQLite only: the paths under
test are above the database."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.sync_helpers import Database, StationKit, database
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.evidence.reader import MAX_CONTENT_BYTES
from zhichao.evidence.signing import generate_key
from zhichao.evidence.verify import verify_package
from zhichao.service.center.server import create_center_app
from zhichao.service.center.store import CenterStore
from zhichao.sync.wire import pack_package, read_package_head
from zhichao.testing.cases import case_dict
from zhichao.testing.zipforge import build_zip, folder_members

DEEP = b"[" * 50_000 + b"]" * 50_000
BIG_INT = b"1" * 5_000


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    yield from database("sqlite", tmp_path)


class Center:
    def __init__(self, db: Database, root: Path) -> None:
        self.hooked: list[Any] = []
        self.app = create_center_app(db.url, root / "store", generate_key(),
                                     schema=db.schema, hook=self.hooked.append)
        self.store: CenterStore = self.app.state.sync_store
        self.client = TestClient(self.app, raise_server_exceptions=False)


@pytest.fixture
def center(db: Database, tmp_path: Path) -> Center:
    return Center(db, tmp_path / "center")


@pytest.fixture
def kit(tmp_path: Path, center: Center) -> StationKit:
    station = StationKit(tmp_path / "station")
    center.store.register_station(station.station_id, station.public_pem)
    return station


def upload(center: Center, data: bytes, manifest: bytes | None = None) -> Any:
    if manifest is None:
        manifest = read_package_head(data, "t").manifest_sha256.encode()
        sha = manifest.decode()
    else:
        sha = hashlib.sha256(manifest).hexdigest()
    return center.client.put(f"/sync/v1/packages/{sha}", content=data)


def refused_and_kept(center: Center, response: Any, data: bytes, tmp_path: Path,
                     code: str, failed: str | None = None, *, offline: bool = True
                     ) -> dict[str, Any]:
    """4xx with ``code`` (and ``failed`` among the failed checks), the bytes quarantined,
    and (``offline``) the offline verifier refusing them too."""
    body: dict[str, Any] = response.json()
    assert response.status_code == 422 and body["refused"] is True, body
    assert body["code"] == code, body
    if failed is not None:
        assert failed in body["failed_checks"], body
        assert "package.malformed" not in body["failed_checks"] or failed == (
            "package.malformed"), body
    row = center.store.quarantine_rows()[-1]
    assert (center.store.store_dir / row["stored_path"]).read_bytes() == data
    path = tmp_path / f"upload-{len(center.store.quarantine_rows())}.zip"
    path.write_bytes(data)
    assert verify_package(path).ok is not offline
    assert center.store.counts()["packages"] == 0 and center.hooked == []
    return body


def replaced(members: list[tuple[str, bytes]], name: str, data: bytes
             ) -> list[tuple[str, bytes]]:
    return [(n, data if n == name else d) for n, d in members]


@pytest.mark.parametrize(("name", "data", "code", "failed"), [
    ("manifest.json", DEEP, "package.unreadable", "manifest.malformed"),
    ("manifest.json", b'{"format":' + BIG_INT + b"}", "package.unreadable",
     "manifest.malformed"),
    ("manifest.json", b'{"format":"zhichao.evidence/1","format":1}', "package.unreadable",
     "manifest.malformed"),
    ("seal/inclusion.json", b'{"index":1e400,"size":1}', "package.unreadable",
     "log.proof.malformed"),
    ("seal/inclusion.json", b'{"index":true,"size":1}', "package.unreadable",
     "log.proof.malformed"),
    ("seal/inclusion.json", b'{"index":0.0,"size":1.0}', "package.unreadable",
     "log.proof.malformed"),
    ("seal/entry.json", DEEP, "package.invalid", "log.entry"),
], ids=["deep-manifest", "bigint-manifest", "key-twice", "index-1e400", "index-true",
        "index-float", "deep-entry"])
def test_crafted_json_is_refused_and_quarantined(center: Center, kit: StationKit,
                                                 tmp_path: Path, name: str, data: bytes,
                                                 code: str, failed: str) -> None:
    (folder,) = kit.seal(1)
    members = replaced(folder_members(folder), name, data)
    zipped = build_zip(members)
    response = upload(center, zipped, dict(members)["manifest.json"])
    refused_and_kept(center, response, zipped, tmp_path, code, failed)


def test_crafted_passages_and_request_bodies_are_4xx(center: Center, kit: StationKit) -> None:
    items = [{"record_b64": base64.b64encode(raw).decode(), "signature": "x"}
             for raw in (DEEP, b'{"format":' + BIG_INT + b"}", b'{"a":1e400}')]
    response = center.client.post("/sync/v1/passages",
                                  json={"station_id": kit.station_id, "items": items})
    assert response.status_code == 200
    assert [r["code"] for r in response.json()["results"]] == ["passage.malformed"] * 3
    for body in (b'{"station_id":"S001","items":' + DEEP + b"}",
                 b'{"station_id":' + BIG_INT + b',"items":[]}',
                 b'{"station_id":"S001","station_id":"S002","items":[]}',
                 b'{"station_id":1,"items":[]}', b"[]", b"\xff"):
        answer = center.client.post("/sync/v1/passages", content=body,
                                    headers={"content-type": "application/json"})
        assert answer.status_code == 400, (body[:40], answer.text)
        assert answer.json()["code"] == "request.malformed"


def test_a_checkpoint_of_another_log_is_log_origin_at_both(center: Center, kit: StationKit,
                                                           tmp_path: Path) -> None:
    """Sealed by the station's key into a log it does not show the center; the unsigned
    inclusion.json names the station's log. The center and ``zhichao verify`` agree."""
    station = Station(kit.station_id, kit.key_name, kit.key)
    base = tmp_path / "in"
    base.mkdir()
    with MerkleLog(tmp_path / "shadow", origin="shadow/unmonitored-log", create=True,
                   fsync=False) as log:
        res = seal_package(CaseInputs.from_json(case_dict(base)), tmp_path / "pkg",
                           station=station, log=log, base_dir=base, renderer=lambda *_: {})
    path = res.directory / "seal/inclusion.json"
    inc = json.loads(path.read_text())
    inc["log_origin"] = station.origin
    path.write_text(json.dumps(inc, indent=1) + "\n")
    report = verify_package(res.directory, key=kit.key.public_key())
    assert report.codes() == {"log.origin"}, report.text()
    data = pack_package(res.directory)
    body = refused_and_kept(center, upload(center, data), data, tmp_path, "log.origin")
    assert body["failed_checks"] == ["log.origin"]


def test_a_registered_key_name_other_than_the_packages_is_refused_not_5xx(
        center: Center, tmp_path: Path) -> None:
    """A registration error at the center (the package itself is sound: verify passes)."""
    kit = StationKit(tmp_path / "named")
    center.store.register_station(kit.station_id, kit.public_pem, key_name="another-name")
    (folder,) = kit.seal(1)
    data = pack_package(folder)
    refused_and_kept(center, upload(center, data), data, tmp_path, "checkpoint.invalid",
                     offline=False)


def _with_host(data: bytes, name: str, host: int, mode: int) -> bytes:
    """``data`` (a zip from build_zip) with entry ``name`` made by ``host`` with ``mode``."""
    at = data.index(b"PK\x01\x02" + (3 << 8 | 20).to_bytes(2, "little"))
    while True:
        name_len = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + name_len] == name.encode():
            break
        at = data.index(b"PK\x01\x02", at + 4)
    out = bytearray(data)
    out[at + 4:at + 6] = (host << 8 | 20).to_bytes(2, "little")
    out[at + 38:at + 42] = (mode << 16).to_bytes(4, "little")
    return bytes(out)


@pytest.mark.parametrize("host", [2, 5, 16, 30])
def test_a_symlink_entry_of_any_host_is_refused(center: Center, kit: StationKit,
                                                tmp_path: Path, host: int) -> None:
    (folder,) = kit.seal(1)
    members = folder_members(folder)
    data = _with_host(build_zip(members), "original/image-front.jpg", host,
                      stat.S_IFLNK | 0o777)
    response = upload(center, data, dict(members)["manifest.json"])
    refused_and_kept(center, response, data, tmp_path, "package.invalid", "package.special")


def _raw_zip(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip of (name, payload, method, declared size, CRC) as given (APPNOTE 4.3)."""
    local, central, end = (struct.Struct("<4sHHHHHIIIHH"), struct.Struct("<4sHHHHHHIIIHHHHHII"),
                           struct.Struct("<4sHHHHIIH"))
    body, headers = bytearray(), []
    for name, payload, method, size, crc in entries:
        raw, offset = name.encode(), len(body)
        body += local.pack(b"PK\x03\x04", 20, 0, method, 0, 33, crc, len(payload), size,
                           len(raw), 0) + raw + payload
        headers.append(central.pack(b"PK\x01\x02", 3 << 8 | 20, 20, 0, method, 0, 33, crc,
                                    len(payload), size, len(raw), 0, 0, 0, 0,
                                    0o100644 << 16, offset) + raw)
    directory = b"".join(headers)
    return bytes(body) + directory + end.pack(b"PK\x05\x06", 0, 0, len(headers),
                                              len(headers), len(directory), len(body), 0)


def test_a_deflate_bomb_is_refused_before_inflating(center: Center, kit: StationKit,
                                                    tmp_path: Path) -> None:
    """A genuine package plus one member of 144 MiB of zeros deflated to 140 kB: over the
    center's cap (twice its 64 MiB upload limit), refused from the directory alone."""
    (folder,) = kit.seal(1)
    members = folder_members(folder)
    size = MAX_CONTENT_BYTES + (16 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    payload = b"".join(packer.compress(chunk) for _ in range(size >> 20)) + packer.flush()
    bomb = _raw_zip([(n, d, 0, len(d), zlib.crc32(d)) for n, d in members]
                    + [("original/bomb.bin", payload, 8, size, 0)])
    assert len(bomb) < 2 << 20
    started = time.process_time()
    response = upload(center, bomb, dict(members)["manifest.json"])
    assert time.process_time() - started < 5  # nothing inflated (144 MiB would take more)
    refused_and_kept(center, response, bomb, tmp_path, "package.invalid", "package.too_large")


def test_an_error_nothing_foresaw_is_a_refusal_not_a_5xx(
        center: Center, kit: StationKit, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (folder,) = kit.seal(1)
    data = pack_package(folder)

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("a verifier bug")

    monkeypatch.setattr("zhichao.evidence.verify._check_seal", broken)
    body = refused_and_kept(center, upload(center, data), data, tmp_path, "package.invalid",
                            "package.malformed")
    assert "RuntimeError" in body["message_zh"]
    monkeypatch.undo()

    def unreadable(*_: Any, **__: Any) -> None:
        raise ValueError("a reader bug")

    monkeypatch.setattr("zhichao.service.center.store.read_package", unreadable)
    response = upload(center, data)
    assert response.status_code == 422 and response.json()["code"] == "package.unreadable"
    assert response.json()["failed_checks"] == ["package.malformed"]
    monkeypatch.undo()
    assert upload(center, data).status_code == 201  # the genuine package, afterwards
