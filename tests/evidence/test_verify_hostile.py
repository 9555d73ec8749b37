"""Hostile packages: crafted JSON, out-of-range times and figures, a checkpoint of another
log, symlinks under any zip host, unsigned clips, deflate bombs. Each must give a failed
check with its own code and a clear message — never an exception, and never the verifier's
backstop (``package.malformed`` naming an unexpected exception), which would mean a case
nothing foresaw."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import shutil
import stat
import struct
import time
import zipfile
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.evidence.conftest import Env, case_dict
from tests.evidence.test_reweigh_rule import reading
from zhichao.evidence import strict_json
from zhichao.evidence._util import parse_time, to_decimal
from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.errors import InputError
from zhichao.evidence.events import EventType, ReviewEvent, history_bundle, record_review_event
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.evidence.reader import (
    MAX_CONTENT_BYTES,
    PackageRefusedError,
    parse_zip,
    read_package,
)
from zhichao.evidence.report import Report, Result
from zhichao.evidence.reweigh import OriginalRef, seal_reweigh, vehicle_record_sha256
from zhichao.evidence.static_reading import StaticReading
from zhichao.evidence.verify import station_log_origin, verify_package
from zhichao.testing.zipforge import build_zip, folder_members

NO_DOCS: Any = lambda *_: {}  # noqa: E731
DEEP = b"[" * 50_000 + b"]" * 50_000
BIG_INT = b"1" * 5_000  # json.loads: ValueError (more than 4300 digits)


def no_backstop(report: Report) -> None:
    """The verifier's backstop was not needed: every failure has its own code."""
    assert "package.malformed" not in report.codes(), report.text()


def copy(template: Path, tmp_path: Path, name: str = "pkg") -> Path:
    return Path(shutil.copytree(template, tmp_path / name))


def resign(folder: Path, manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    """Write ``manifest`` canonical, signed by ``key``, with its SHA256SUMS (the log entry
    is left as sealed: it names the old manifest)."""
    data = canonicalize(manifest)
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sig").write_text(base64.b64encode(key.sign(data)).decode() + "\n")
    sha = hashlib.sha256(data).hexdigest()
    (folder / "SHA256SUMS").write_text("".join(
        [f"{sha}  manifest.json\n"] + [f"{f['sha256']}  {f['path']}\n" for f in
                                       manifest["files"]]))


def set_file(manifest: dict[str, Any], folder: Path, path: str, data: bytes,
             **extra: Any) -> None:
    (folder / path).write_bytes(data)
    entry = next((f for f in manifest["files"] if f["path"] == path), None)
    if entry is None:
        entry = {"path": path, "kind": path.split("/")[0]}
        manifest["files"].append(entry)
    entry.update(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), **extra)


# ------------------------------------------------------------------ 1. crafted JSON


def test_strict_json_refuses_what_json_loads_would_crash_on_or_read_two_ways() -> None:
    for bad, says in [(DEEP, "nested too deeply"), (b"[" * 70 + b"]" * 70, "deeper than 64"),
                      (b'{"a":' + BIG_INT + b"}", "not valid JSON"),
                      (b'{"a":1e400}', "out of range"), (b'{"a":NaN}', "not a JSON number"),
                      (b'{"a":-Infinity}', "not a JSON number"),
                      (b'{"a":1,"a":2}', "appears twice"), (b"\xff{}", "not valid JSON"),
                      (b'{"a":1', "not valid JSON")]:
        with pytest.raises(InputError, match=says):
            strict_json.loads(bad, "x.json")
    assert strict_json.loads(b'{"a":[1,2.5,"z",null,true]}', "x") == {
        "a": [1, 2.5, "z", None, True]}
    for value in (True, 1.0, "1", None, -1):
        with pytest.raises(InputError, match="x.index"):
            strict_json.integer({"index": value}, "index", "x")
    assert strict_json.integer({"index": 3}, "index", "x") == 3
    with pytest.raises(InputError, match="missing"):
        strict_json.integer({}, "index", "x")
    with pytest.raises(InputError, match="expected a JSON object"):
        strict_json.string([], "a", "x")


@pytest.mark.parametrize(("manifest", "says"), [
    (DEEP, "nested too deeply"), (b'{"format":' + BIG_INT + b"}", "not valid JSON"),
    (b'{"format":NaN}', "not a JSON number"), (b'{"format":"a","format":"b"}', "twice")],
    ids=["deep", "5000-digits", "NaN", "key-twice"])
def test_crafted_manifest_is_manifest_malformed(sealed_template: Path, tmp_path: Path,
                                                manifest: bytes, says: str) -> None:
    folder = copy(sealed_template, tmp_path)
    (folder / "manifest.json").write_bytes(manifest)
    report = verify_package(folder)
    assert report.codes() == {"manifest.malformed"}, report.text()
    assert says in report.failures()[0].message_en


def test_crafted_log_entry_is_log_entry(sealed_template: Path, tmp_path: Path,
                                        station: Station) -> None:
    folder = copy(sealed_template, tmp_path)
    for entry in (DEEP, b'{"manifest_sha256":' + BIG_INT + b"}"):
        (folder / "seal/entry.json").write_bytes(entry)
        report = verify_package(folder, key=station.key.public_key())
        no_backstop(report)
        assert {"log.entry", "log.inclusion"} <= report.codes(), report.text()


@pytest.mark.parametrize("index", ["1e400", "-1e400", "Infinity", "NaN", "1.0", "true",
                                   '"0"', "-1", "1" * 5000, "null"],
                         ids=lambda i: i if len(i) < 10 else "5000-digits")
def test_crafted_inclusion_index_is_log_proof_malformed(sealed_template: Path, tmp_path: Path,
                                                        station: Station, index: str) -> None:
    folder = copy(sealed_template, tmp_path)
    path = folder / "seal/inclusion.json"
    text = path.read_text()
    forged = text.replace('"index": 0', f'"index": {index}')
    assert forged != text
    path.write_text(forged)
    report = verify_package(folder, key=station.key.public_key())
    no_backstop(report)
    assert report.codes() == {"log.proof.malformed"}, report.text()
    assert "inclusion.json" in report.failures()[0].message_en


def test_a_float_index_in_sealed_form_is_refused(sealed_template: Path, tmp_path: Path,
                                                  station: Station) -> None:
    """``"index": 0.0`` survives the sealed-form check (json.dumps writes 0.0) and int()
    would take it: only the exact type check refuses it."""
    folder = copy(sealed_template, tmp_path)
    path = folder / "seal/inclusion.json"
    inc = json.loads(path.read_text())
    inc["index"] = float(inc["index"])
    path.write_text(json.dumps(inc, indent=1) + "\n")
    report = verify_package(folder, key=station.key.public_key())
    assert report.codes() == {"log.proof.malformed"}, report.text()
    assert "expected an integer, got a number" in report.failures()[0].message_en


def _history(env: Env) -> tuple[Path, bytes]:
    base = env.root / "in"
    base.mkdir()
    res = seal_package(CaseInputs.from_json(case_dict(base)), env.root / "pkg",
                       station=env.station, log=env.log, base_dir=base, renderer=NO_DOCS)
    event = ReviewEvent.for_package(res.directory, EventType.TECHNICAL_REVIEW,
                                    actor_id="R-0042", outcome="approved", reason_zh="清晰")
    record_review_event(env.log, env.station, event)
    return res.directory, history_bundle(env.log, res.manifest_sha256)


def test_crafted_history_bundle_is_history_malformed(env: Env) -> None:
    folder, bundle = _history(env)
    key = env.station.key.public_key()
    good = verify_package(folder, key=key, history=bundle)
    assert good.ok and "history.event" in good.codes(Result.PASS), good.text()
    raw = json.loads(bundle)
    forged: list[bytes] = [DEEP, b'{"checkpoint":' + BIG_INT + b"}"]
    for index in (1e300, True, "1", 1.5):
        changed = json.loads(bundle)
        changed["events"][0]["index"] = index
        forged.append(json.dumps(changed).encode())
    forged.append(json.dumps({**raw, "not_yet_checkpointed": 1.5}).encode())
    forged.append(json.dumps({**raw, "events": [1]}).encode())
    forged.append(bundle.replace(b'"index": 1', b'"index": 1e400'))
    for data in forged:
        report = verify_package(folder, key=key, history=data)
        no_backstop(report)
        assert report.codes() == {"history.malformed"}, (data[:80], report.text())


def test_backstop_turns_an_unforeseen_exception_into_a_failed_check(
        sealed_template: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("a bug nothing foresaw")

    monkeypatch.setattr("zhichao.evidence.verify._check_seal", broken)
    report = verify_package(sealed_template)
    assert not report.ok
    assert report.failures()[-1].code == "package.malformed"
    assert "RuntimeError: a bug nothing foresaw" in report.failures()[-1].message_en
    assert "file.hash" in report.codes(Result.PASS)  # the checks made before it are kept


# ------------------------------------------------------------------ 2. times and figures


def test_times_and_figures_out_of_range_are_input_errors() -> None:
    with pytest.raises(InputError, match="out of range in UTC"):
        parse_time("0001-01-01T00:00:00+01:00", "t")
    with pytest.raises(InputError, match="out of range in UTC"):
        parse_time("9999-12-31T23:59:59-01:00", "t")
    assert parse_time("0001-01-01T00:00:00Z", "t") == datetime.fromisoformat(
        "0001-01-01T00:00:00+00:00")
    for value in ("1e999999999", "-1e999999999", "1e-999999999", 10 ** 5000, "1e61"):
        with pytest.raises(InputError, match="w"):
            to_decimal(value, "w")
    assert str(to_decimal("46060", "w")) == "46060"
    assert str(to_decimal(0.1, "w")) == "0.1"


def _supplement(env: Env) -> tuple[Path, dict[str, Any]]:
    base = env.root / "in"
    base.mkdir()
    case = CaseInputs.from_json(case_dict(base))
    res = seal_package(case, env.root / "pkg", station=env.station, log=env.log,
                       base_dir=base, renderer=NO_DOCS)
    ref = OriginalRef("S001-2-1000", vehicle_record_sha256(case.vehicle.raw), res.package_id,
                      res.manifest_sha256)
    static = StaticReading.from_json(reading(46060))
    folder = seal_reweigh(dataclasses.replace(case, static_reweigh=static), ref,
                          env.root / "reweigh", station=env.station, log=env.log,
                          renderer=NO_DOCS).directory
    return folder, json.loads((folder / "manifest.json").read_bytes())


@pytest.mark.parametrize(("field", "raw", "says"), [
    ("reading_utc", b'"0001-01-01T00:00:00+01:00"', "out of range in UTC"),
    ("weight_kg", b'"1e999999999"', "out of range"),
    ("weight_kg", BIG_INT, "not valid JSON")], ids=["year-1", "exponent", "5000-digits"])
def test_signed_supplement_with_hostile_reading_fails_reweigh_reading(
        env: Env, field: str, raw: bytes, says: str) -> None:
    folder, manifest = _supplement(env)
    hostile = {**manifest["case"]["reading"], field: "HOSTILE"}
    manifest["case"]["reading"] = hostile
    data = canonicalize(hostile).replace(b'"HOSTILE"', raw)
    set_file(manifest, folder, "original/static-reading.json", data)
    resign(folder, manifest, env.station.key)
    report = verify_package(folder, key=env.station.key.public_key())
    no_backstop(report)
    assert "signature.manifest" in report.codes(Result.PASS)
    assert "reweigh.reading" in report.codes(), report.text()
    assert says in next(c for c in report.failures() if c.code == "reweigh.reading").message_en


# ------------------------------------------------------------------ 3. checkpoint origin


class OtherOrigin(Station):
    """A station whose manifest names another log than zhichao/station/<id>."""

    @property
    def origin(self) -> str:
        return "shadow/unmonitored-log"


def _seal_in(tmp_path: Path, station: Station, log_origin: str) -> Path:
    base = tmp_path / "in"
    base.mkdir()
    with MerkleLog(tmp_path / "log", origin=log_origin, create=True, fsync=False) as log:
        res = seal_package(CaseInputs.from_json(case_dict(base)), tmp_path / "pkg",
                           station=station, log=log, base_dir=base, renderer=NO_DOCS)
    return res.directory


def test_checkpoint_of_another_log_is_log_origin(tmp_path: Path, station: Station) -> None:
    """Sealed into an unmonitored log whose checkpoint the station key signs; the unsigned
    inclusion.json is then edited to name the station's log (the reviewer's attack)."""
    folder = _seal_in(tmp_path, station, "shadow/unmonitored-log")
    path = folder / "seal/inclusion.json"
    inc = json.loads(path.read_text())
    inc["log_origin"] = station.origin
    path.write_text(json.dumps(inc, indent=1) + "\n")
    report = verify_package(folder, key=station.key.public_key())
    assert report.codes() == {"log.origin"}, report.text()
    assert "shadow/unmonitored-log" in report.failures()[0].message_en


def test_manifest_naming_a_log_other_than_the_stations_is_log_origin(
        tmp_path: Path, station: Station) -> None:
    other = OtherOrigin(station.station_id, station.key_name, station.key)
    folder = _seal_in(tmp_path, other, other.origin)
    report = verify_package(folder, key=station.key.public_key())
    assert report.codes() == {"log.origin"}, report.text()
    assert station_log_origin("S001") in report.failures()[0].message_en


def test_a_genuine_package_passes_log_origin(sealed_template: Path, station: Station) -> None:
    report = verify_package(sealed_template, key=station.key.public_key())
    assert report.ok and "log.origin" in report.codes(Result.PASS), report.text()
    assert station_log_origin(station.station_id) == station.origin


# ------------------------------------------------------------------ 6. symlinks, any host

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END = struct.Struct("<4sHHHHIIH")


def _zip_with_host(members: list[tuple[str, bytes, int]], host: int) -> bytes:
    body, headers = bytearray(), []
    for name, data, external in members:
        raw, crc, offset = name.encode(), zlib.crc32(data), len(body)
        body += _LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, 33, crc, len(data), len(data),
                            len(raw), 0) + raw + data
        headers.append(_CENTRAL.pack(b"PK\x01\x02", host << 8 | 20, 20, 0, 0, 0, 33, crc,
                                     len(data), len(data), len(raw), 0, 0, 0, 0, external,
                                     offset) + raw)
    directory = b"".join(headers)
    return bytes(body) + directory + _END.pack(b"PK\x05\x06", 0, 0, len(headers),
                                               len(headers), len(directory), len(body), 0)


@pytest.mark.parametrize("host", [0, 2, 3, 5, 16, 30, 10, 19])
def test_a_symlink_entry_is_refused_whatever_the_host(host: int) -> None:
    for mode in (stat.S_IFLNK | 0o777, stat.S_IFCHR | 0o644, stat.S_IFIFO | 0o644):
        data = _zip_with_host([("original/link", b"../../../etc/passwd", mode << 16)], host)
        with pytest.raises(PackageRefusedError) as refused:
            parse_zip(data)
        assert refused.value.code == "package.special"
    # A directory mode on a file name, too.
    data = _zip_with_host([("original/x", b"x", (stat.S_IFDIR | 0o755) << 16)], host)
    with pytest.raises(PackageRefusedError, match="package.special"):
        parse_zip(data)


@pytest.mark.parametrize("host", [0, 3, 10, 19])
def test_plain_entries_pass_whatever_the_host(host: int) -> None:
    data = _zip_with_host([("manifest.json", b"{}", 0), ("original/a", b"a", 0x20),
                           ("original/b", b"b", (stat.S_IFREG | 0o644) << 16 | 0x20),
                           ("original/c", b"c", 0o644 << 16),
                           ("derived/", b"", (stat.S_IFDIR | 0o755) << 16 | 0x10),
                           ("derived/d", b"d", 0)], host)
    assert parse_zip(data) == {"manifest.json": b"{}", "original/a": b"a", "original/b": b"b",
                               "original/c": b"c", "derived/d": b"d"}


def test_zips_written_by_python_zipfile_and_the_station_still_verify(
        sealed_template: Path, tmp_path: Path, station: Station) -> None:
    from zhichao.sync.wire import pack_package

    key = station.key.public_key()
    members = folder_members(sealed_template)
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression) as archive:
            for path in sorted(p for p in sealed_template.rglob("*")):
                archive.write(path, path.relative_to(sealed_template).as_posix())
        path = tmp_path / f"zipfile-{compression}.zip"
        path.write_bytes(out.getvalue())
        report = verify_package(path, key=key)
        assert report.ok, report.text()
    station_zip = tmp_path / "station.zip"
    station_zip.write_bytes(pack_package(sealed_template))
    assert verify_package(station_zip, key=key).ok
    assert read_package(station_zip).members == dict(members)


# ------------------------------------------------------------------ 7. unsigned clips


@pytest.fixture
def with_clip(sealed_template: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    from zhichao.evidence.clip import encode_clip

    folder = copy(sealed_template, tmp_path)
    frames = [(i / 10, np.full((32, 32, 3), 40 * i, np.uint8)) for i in range(4)]
    clip = tmp_path / "clip.mp4"
    info = encode_clip(frames, clip, fps=10)
    manifest = json.loads((folder / "manifest.json").read_bytes())
    set_file(manifest, folder, "original/video-X.mp4", clip.read_bytes(), role="video",
             media_type="video/mp4", **info.to_json())
    return folder, manifest


def _count_probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from zhichao.evidence import clip

    calls: list[str] = []
    real = clip.probe_clip

    def probe(data: bytes, *, where: str = "clip") -> Any:
        calls.append(where)
        return real(data, where=where)

    monkeypatch.setattr(clip, "probe_clip", probe)
    return calls


def test_a_clip_is_not_decoded_when_the_manifest_signature_fails(
        with_clip: tuple[Path, dict[str, Any]], station: Station,
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, manifest = with_clip
    (folder / "manifest.json").write_bytes(canonicalize(manifest))  # not re-signed
    calls = _count_probes(monkeypatch)
    report = verify_package(folder, key=station.key.public_key())
    assert calls == []
    assert "signature.manifest" in report.codes()
    video = [c for c in report.checks if c.code == "file.video"]
    assert [c.result for c in video] == [Result.WARN]
    assert "signature failed" in video[0].message_en
    assert "file.hash" in report.codes(Result.PASS)  # files are still hashed


def test_a_clip_is_not_decoded_under_a_key_the_manifest_does_not_name(
        with_clip: tuple[Path, dict[str, Any]], station: Station,
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, manifest = with_clip
    intruder = Ed25519PrivateKey.generate()
    resign(folder, manifest, intruder)
    calls = _count_probes(monkeypatch)
    report = verify_package(folder, key=intruder.public_key())
    assert calls == [] and "key.mismatch" in report.codes(), report.text()


def test_a_signed_clip_is_decoded(with_clip: tuple[Path, dict[str, Any]], station: Station,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    folder, manifest = with_clip
    resign(folder, manifest, station.key)
    calls = _count_probes(monkeypatch)
    report = verify_package(folder, key=station.key.public_key())
    assert calls == ["original/video-X.mp4"]
    assert "file.video" in report.codes(Result.PASS), report.text()


def test_a_supplement_whose_signature_fails_is_not_interpreted(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, manifest = _supplement(env)
    manifest["case"]["officer"] = "改"
    (folder / "manifest.json").write_bytes(canonicalize(manifest))

    def parse(*_: Any, **__: Any) -> Any:
        raise AssertionError("an unsigned reading was parsed")

    monkeypatch.setattr(StaticReading, "from_json", parse)
    report = verify_package(folder, key=env.station.key.public_key())
    no_backstop(report)
    checks = [c for c in report.checks if c.code == "reweigh.reading"]
    assert [c.result for c in checks] == [Result.WARN]
    assert "signature failed" in checks[0].message_en


# ------------------------------------------------------------------ 8. deflate bombs


def _deflated_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    out = [packer.compress(chunk) for _ in range(size >> 20)]
    return b"".join(out) + packer.flush()


def _bomb_zip(size: int, payload: bytes) -> bytes:
    """A zip holding ``manifest.json`` and one deflated member of ``size`` zero bytes."""
    body, headers = bytearray(), []
    crc = zlib.crc32(bytes(size)) if size <= 64 << 20 else 0
    for name, data, method, usize, ccrc in [("manifest.json", b"{}", 0, 2, zlib.crc32(b"{}")),
                                            ("original/x", payload, 8, size, crc)]:
        raw, offset = name.encode(), len(body)
        body += _LOCAL.pack(b"PK\x03\x04", 20, 0, method, 0, 33, ccrc, len(data), usize,
                            len(raw), 0) + raw + data
        headers.append(_CENTRAL.pack(b"PK\x01\x02", 3 << 8 | 20, 20, 0, method, 0, 33, ccrc,
                                     len(data), usize, len(raw), 0, 0, 0, 0,
                                     0o100644 << 16, offset) + raw)
    directory = b"".join(headers)
    return bytes(body) + directory + _END.pack(b"PK\x05\x06", 0, 0, 2, 2, len(directory),
                                               len(body), 0)


def test_a_bomb_over_the_content_cap_is_refused_before_inflating() -> None:
    size = MAX_CONTENT_BYTES + (64 << 20)  # 192 MiB of zeros in a 190 kB zip
    data = _bomb_zip(size, _deflated_zeros(size))
    assert len(data) < 1 << 20
    started = time.process_time()
    with pytest.raises(PackageRefusedError) as refused:
        parse_zip(data)
    assert time.process_time() - started < 0.5
    assert refused.value.code == "package.too_large"
    assert f"over {MAX_CONTENT_BYTES} bytes" in refused.value.message_en


def test_a_bomb_under_the_cap_is_refused_by_its_ratio() -> None:
    size = 16 << 20  # 16 MiB of zeros in 16 kB: 1 000 times
    data = _bomb_zip(size, _deflated_zeros(size))
    with pytest.raises(PackageRefusedError) as refused:
        parse_zip(data)
    assert refused.value.code == "package.too_large"
    assert "more than 100 times" in refused.value.message_en


def test_a_package_over_the_cap_is_too_large_as_folder_and_zip(
        sealed_template: Path, tmp_path: Path) -> None:
    total = sum(p.stat().st_size for p in sealed_template.rglob("*") if p.is_file())
    for cap in (total - 1, 1000):
        with pytest.raises(PackageRefusedError, match="package.too_large"):
            read_package(sealed_template, max_content_bytes=cap)
    assert read_package(sealed_template, max_content_bytes=total).members
    big = tmp_path / "big.zip"
    with big.open("wb") as handle:  # the file alone is over the cap: not even read
        handle.truncate(MAX_CONTENT_BYTES + (2 << 20))
    report = verify_package(big)
    assert report.codes() == {"package.too_large"}, report.text()


def test_ordinary_deflated_members_pass_the_ratio(sealed_template: Path) -> None:
    text = json.dumps(list(range(400_000))).encode()  # 3 MB that deflate about 4 times
    members = [*folder_members(sealed_template), ("derived/text.json", text)]
    assert parse_zip(build_zip(members, deflate=True))["derived/text.json"] == text
