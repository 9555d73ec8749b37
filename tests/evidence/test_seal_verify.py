"""Seal and verify: an untouched package verifies; every tampering is caught by name."""

from __future__ import annotations

import base64
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.evidence.conftest import Env
from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.eligibility import Status
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.evidence.signing import (
    Checkpoint,
    generate_key,
    public_pem,
    sign_checkpoint,
)
from zhichao.evidence.verify import audit_log, verify_package


def _seal(env: Env, case: CaseInputs, base: Path, name: str = "pkg", **kw: object) -> Path:
    out = env.root / name
    seal_package(case, out, station=env.station, log=env.log, base_dir=base, **kw)  # type: ignore[arg-type]
    return out


NO_DOCS: Any = lambda *_: {}  # noqa: E731


@pytest.fixture
def sealed(env: Env, sealed_template: Path) -> Path:
    """A fresh copy of the session's sealed package (same station key as ``env``)."""
    out = env.root / "pkg"
    shutil.copytree(sealed_template, out)
    return out


def test_untouched_package_verifies(env: Env, sealed: Path) -> None:
    report = verify_package(sealed, key=env.station.key.public_key())
    assert report.ok, report.text()
    assert {"signature.manifest", "log.inclusion", "checkpoint.signature"} <= report.codes(
        __import__("zhichao.evidence.verify", fromlist=["Result"]).Result.PASS)
    manifest = json.loads((sealed / "manifest.json").read_text())
    assert manifest["case"]["penalty"]["fine_yuan"] == 600
    assert manifest["case"]["eligibility"]["status"] == "ENFORCEABLE"
    kinds = {f["path"]: f["kind"] for f in manifest["files"]}
    assert kinds["original/image-front.jpg"] == "original"
    assert kinds["derived/evidence_sheet.pdf"] == "derived"


def test_originals_are_byte_identical(sealed: Path, good_case: tuple[CaseInputs, Path]) -> None:
    _, base = good_case
    assert (sealed / "original/image-side.jpg").read_bytes() == (base / "side.jpg").read_bytes()
    assert (sealed / "original/waveform.npz").read_bytes() == (base / "lane2.npz").read_bytes()


def _all_files(pkg: Path) -> list[str]:
    return sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file())


# The specific reason the verifier must give when a byte of that file changes.
EXPECTED_REASON = {
    "manifest.json": {"signature.manifest", "manifest.canonical", "manifest.malformed"},
    "manifest.sig": {"signature.manifest", "signature.malformed"},
    "SHA256SUMS": {"sums.mismatch"},
    "seal/entry.json": {"log.inclusion", "log.entry"},
    "seal/inclusion.json": {"log.inclusion", "log.proof.malformed"},
    "seal/checkpoint.txt": {"checkpoint.signature"},
}


def test_any_changed_byte_of_any_file_is_detected(env: Env, sealed: Path) -> None:
    key = env.station.key.public_key()
    names = [n for n in _all_files(sealed) if n != "station.pub"]  # --key is what counts
    assert {"original/image-front.jpg", "original/waveform.npz", "original/vehicle.json",
            "derived/evidence_sheet.pdf", "derived/notice.pdf"} <= set(names)
    for name in names:
        for where in (0.1, 0.5, 0.9):
            copy = env.root / "copy"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(sealed, copy)
            data = bytearray((copy / name).read_bytes())
            pos = int(len(data) * where)
            data[pos] = ord("A") if data[pos] != ord("A") else ord("B")  # stays valid text
            (copy / name).write_bytes(bytes(data))
            report = verify_package(copy, key=key)
            expected = EXPECTED_REASON.get(name, {"file.hash"})
            assert report.codes() & expected, (name, where, report.text())
            if expected == {"file.hash"}:
                failed = [c for c in report.failures() if c.code == "file.hash"]
                assert name in failed[0].message_en and name in failed[0].message_zh


@pytest.mark.parametrize(("target", "code"), [
    ("original/image-front.jpg", "file.hash"),
    ("derived/notice.pdf", "file.hash"),
    ("manifest.json", "signature.manifest"),
    ("manifest.sig", "signature.manifest"),
    ("seal/entry.json", "log.inclusion"),
    ("seal/checkpoint.txt", "checkpoint.signature"),
])
def test_specific_reasons(env: Env, sealed: Path, target: str, code: str) -> None:
    data = bytearray((sealed / target).read_bytes())
    idx = 10 if target != "manifest.sig" else 3
    data[idx] = ord("A") if data[idx] != ord("A") else ord("B")
    (sealed / target).write_bytes(bytes(data))
    report = verify_package(sealed, key=env.station.key.public_key())
    assert code in report.codes(), report.text()
    assert target.split("/")[-1] in report.text() or code.startswith(("signature", "checkpoint",
                                                                      "log"))


def test_missing_and_extra_files(env: Env, sealed: Path) -> None:
    (sealed / "original/image-rear.jpg").unlink()
    (sealed / "original/extra.jpg").write_bytes(b"x")
    report = verify_package(sealed, key=env.station.key.public_key())
    assert {"file.missing", "file.unlisted"} <= report.codes()


def test_replaced_key_is_detected(env: Env, sealed: Path) -> None:
    # An attacker edits the manifest, re-signs it with their own key and ships their key.
    mallory = generate_key()
    manifest = json.loads((sealed / "manifest.json").read_text())
    manifest["case"]["penalty"]["fine_yuan"] = 30000
    data = canonicalize(manifest)
    (sealed / "manifest.json").write_bytes(data)
    (sealed / "manifest.sig").write_text(base64.b64encode(mallory.sign(data)).decode() + "\n")
    (sealed / "station.pub").write_bytes(public_pem(mallory.public_key()))
    report = verify_package(sealed, key=env.station.key.public_key())
    assert {"signature.manifest", "key.embedded", "log.entry"} <= report.codes()
    # Without the trusted key the verifier says the signer is not authenticated.
    unkeyed = verify_package(sealed)
    assert "key.untrusted" in {c.code for c in unkeyed.checks}
    assert not unkeyed.origin_proven
    assert "未被篡改" not in unkeyed.text()


@pytest.mark.parametrize(("name", "change"), [
    ("SHA256SUMS", lambda b: b[:-1] + bytes([b[-1] ^ 1])),  # the last byte
    ("SHA256SUMS", lambda b: b.rstrip(b"\n")),
    ("SHA256SUMS", lambda b: b"\n".join(reversed(b.rstrip(b"\n").split(b"\n"))) + b"\n"),
    ("manifest.sig", lambda b: b.rstrip(b"\n")),
    ("manifest.sig", lambda b: b + b" "),
    ("seal/checkpoint.txt", lambda b: b.rstrip(b"\n")),
    ("seal/checkpoint.txt", lambda b: b.replace(b"\n", b"\r\n")),
    ("station.pub", lambda b: b[:-1] + bytes([b[-1] ^ 1])),
    ("station.pub", lambda b: b""),
], ids=["sums-last-byte", "sums-no-newline", "sums-reordered", "sig-stripped",
        "sig-space", "checkpoint-stripped", "checkpoint-crlf", "pub-flipped", "pub-empty"])
def test_every_unsigned_byte_is_checked(env: Env, sealed: Path, name: str,
                                        change: Callable[[bytes], bytes]) -> None:
    """Files outside the signature are exactly the bytes the format defines."""
    path = sealed / name
    path.write_bytes(change(path.read_bytes()))
    report = verify_package(sealed, key=env.station.key.public_key())
    assert not report.ok, name


def test_verify_exit_codes(env: Env, sealed: Path, tmp_path: Path) -> None:
    from zhichao.evidence.cli import verify_exit_code

    assert verify_exit_code(verify_package(sealed, key=env.station.key.public_key())) == 0
    unkeyed = verify_package(sealed)
    assert verify_exit_code(unkeyed) == 3  # self-consistent, origin unproven
    assert "来源未经证实" in unkeyed.text() and "未被篡改" not in unkeyed.text()
    (sealed / "SHA256SUMS").write_bytes(b"")
    assert verify_exit_code(verify_package(sealed)) == 1


def test_wrong_key_is_named(env: Env, sealed: Path) -> None:
    report = verify_package(sealed, key=generate_key().public_key())
    assert {"key.mismatch", "signature.manifest", "checkpoint.signature"} <= report.codes()


def _three(env: Env, good_case: tuple[CaseInputs, Path]) -> list[Path]:
    case, base = good_case
    return [_seal(env, case, base, f"p{i}", renderer=NO_DOCS) for i in range(3)]


def test_removed_or_reordered_log_entry_is_detected(
        env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    pkgs = _three(env, good_case)
    key = env.station.key.public_key()
    entries = [env.log.entry(i) for i in range(env.log.size)]
    env.log.close()
    for label, new_entries in (("removed", [entries[0], entries[2]]),
                               ("reordered", [entries[1], entries[0], entries[2]])):
        forged = env.root / f"log-{label}"
        with MerkleLog(forged, origin=env.station.origin, create=True, fsync=False) as log:
            for e in new_entries:
                log.append(e)
        shutil.copytree(env.root / "log" / "checkpoints", forged / "checkpoints",
                        dirs_exist_ok=True)
        report = verify_package(pkgs[1], key=key, log_dir=forged)
        assert {"log.rewritten", "log.entry.moved"} & report.codes(), (label, report.text())
        audit = audit_log(forged, key, env.station.key_name)
        assert "log.rewritten" in audit.codes(), label
    env.log = MerkleLog(env.root / "log")  # reopened for the fixture's close
    assert audit_log(env.root / "log", key, env.station.key_name).ok


def test_fork_is_detected(env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    pkgs = _three(env, good_case)
    key = env.station.key.public_key()
    # A second history of the same size, signed with the same key: a fork.
    fork_dir = env.root / "fork"
    with MerkleLog(fork_dir, origin=env.station.origin, create=True, fsync=False) as fork:
        for i in range(3):
            fork.append(f"other {i}".encode())
        forked = sign_checkpoint(Checkpoint(fork.origin, 3, fork.root()), env.station.key_name,
                                 env.station.key)
        later = [fork.append(b"x") for _ in range(2)]
        del later
        forked_later = sign_checkpoint(Checkpoint(fork.origin, 5, fork.root()),
                                       env.station.key_name, env.station.key)
        proof = fork.consistency_proof(3, 5)
    same_size = verify_package(pkgs[2], key=key, trusted_checkpoint=forked)
    assert "witness.fork" in same_size.codes()
    larger = verify_package(pkgs[2], key=key, trusted_checkpoint=forked_later,
                            consistency_proof=proof)
    assert "witness.fork" in larger.codes()
    # The honest log's own later checkpoint is consistent.
    honest = sign_checkpoint(Checkpoint(env.log.origin, 3, env.log.root()),
                             env.station.key_name, env.station.key)
    assert verify_package(pkgs[0], key=key, trusted_checkpoint=honest, log_dir=None,
                          consistency_proof=env.log.consistency_proof(1, 3)).ok


def test_zip_package_and_truncation(env: Env, sealed: Path) -> None:
    archive = env.root / "pkg.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for name in _all_files(sealed):
            zf.write(sealed / name, f"pkg/{name}")
    key = env.station.key.public_key()
    assert verify_package(archive, key=key).ok
    truncated = env.root / "trunc.zip"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    report = verify_package(truncated, key=key)
    assert report.codes() == {"package.unreadable"}
    garbage = env.root / "garbage.zip"
    garbage.write_bytes(b"\x00garbage" * 10)
    assert not verify_package(garbage, key=key).ok


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"format": "zhichao.evidence/1"}',
                                     "{\"a\": \"\ud800\"}".encode("utf-8", "surrogatepass")])
def test_garbage_manifest_never_crashes(env: Env, sealed: Path, content: bytes) -> None:
    (sealed / "manifest.json").write_bytes(content)
    report = verify_package(sealed, key=env.station.key.public_key())
    assert not report.ok
    assert report.codes() & {"manifest.malformed", "manifest.missing"}


@pytest.mark.parametrize(("device_change", "code"), [
    ({"certificate_valid_to": "2025-05-01T00:00:00Z"}, "certificate_invalid"),  # expired
    ({"certificate_valid_from": "2025-06-01T02:03:05Z"}, "certificate_invalid"),  # not yet
    ({"certificate_valid_to": "2025-06-01T02:03:04.500000Z"}, "certificate_invalid"),  # [from, to)
    ({"certificate_number": None}, "certificate_unavailable"),
])
def test_invalid_certificate_is_sealed_kept_and_marked_unusable(
        env: Env, tmp_path: Path, device_change: dict[str, Any], code: str) -> None:
    from tests.evidence.conftest import case_dict
    base = tmp_path / "in2"
    base.mkdir()
    raw = case_dict(base)
    raw["device"].update(device_change)
    result = seal_package(CaseInputs.from_json(raw), env.root / "bad", station=env.station,
                          log=env.log, base_dir=base, renderer=NO_DOCS)
    assert result.eligibility.status is Status.UNUSABLE
    pkg = env.root / "bad"
    report = verify_package(pkg, key=env.station.key.public_key(), log_dir=env.log.directory)
    assert report.ok, report.text()  # sealed and logged like any other package
    assert json.loads(env.log.entry(result.log_index))["manifest_sha256"] == (
        result.manifest_sha256)
    for name, source in (("image-front.jpg", "front.jpg"), ("image-side.jpg", "side.jpg"),
                         ("image-rear.jpg", "rear.jpg"), ("waveform.npz", "lane2.npz")):
        assert (pkg / "original" / name).read_bytes() == (base / source).read_bytes()
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["case"]["eligibility"]["status"] == "UNUSABLE"
    reasons = {r["code"]: r for r in manifest["case"]["eligibility"]["reasons"]}
    assert code in reasons and reasons[code]["severity"] == "unusable"


def test_sm3_digests(env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    case, base = good_case
    pkg = _seal(env, case, base, "sm3", sm3=True, renderer=NO_DOCS)
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert all(len(f["sm3"]) == 64 for f in manifest["files"])
    assert verify_package(pkg, key=env.station.key.public_key()).ok


def test_missing_original_names_the_file(env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    case, base = good_case
    (base / "rear.jpg").unlink()
    from zhichao.evidence.errors import PackageError
    with pytest.raises(PackageError, match="rear.jpg"):
        _seal(env, case, base, "x")
    assert not (env.root / "x").exists()


def test_station_type() -> None:
    assert Station("A", "n", generate_key()).origin == "zhichao/station/A"


def test_the_plate_reader_is_sealed_and_shown(env: Env,
                                              good_case: tuple[CaseInputs, Path]) -> None:
    """A plate result's ``reader`` (models, runtime, thresholds) goes into the signed
    manifest as given and onto the reviewers' sheet; a package without one says so."""
    from dataclasses import replace

    from zhichao.evidence.documents import SHEET_PLATE_READS, sheet_html

    case, base = good_case
    assert case.plate is not None
    reader = {"software_version": "0.1.0", "runtime": "openvino 2026.4.1 bf16",
              "models_sha256": {"detector": "a" * 64, "recogniser": "b" * 64,
                                "plate_model": "c" * 64},
              "settings": {"views": []},
              "policy": {"min_char_confidence": 0.9, "min_province_confidence": 0.9,
                         "min_province_head_confidence": 0.9, "min_plate_width_px": 70.0}}
    reads = tuple({"camera": "CAM-FRONT-1", "captured_utc": "2025-06-01T02:03:04Z",
                   "box_px": [100.0, 200.0, 260.0, 250.0], "text": case.plate.text,
                   "char_confidences": [0.99, 0.42], "colour": "yellow", "layout": "single",
                   "plate_model": {"text": case.plate.text, "char_confidences": [1.0],
                                   "province": "浙", "province_confidence": 0.97}}
                  for _ in range(8))
    alternatives = ({"text": "浙J12346", "support": 0.31},)
    plate = replace(case.plate, reader=reader, reads=reads, alternatives=alternatives)
    pkg = _seal(env, replace(case, plate=plate), base, "reader", renderer=NO_DOCS)
    assert verify_package(pkg, key=env.station.key.public_key()).ok
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["case"]["plate"]["reader"] == reader
    assert manifest["case"]["plate"]["reads"] == list(reads)
    assert manifest["case"]["plate"]["alternatives"] == list(alternatives)
    sheet = sheet_html(manifest, lambda _name: None).decode()
    assert "号牌识别依据" in sheet and "openvino 2026.4.1 bf16" in sheet
    assert "a" * 16 in sheet and "号牌宽度不小于 70" in sheet
    # each read (its least sure character, 北京时间), up to the sheet's limit, and the rivals
    assert sheet.count("号牌读数 ") == SHEET_PLATE_READS
    assert "最低字符置信度 0.42" in sheet and "2025年06月01日 10:03:04（北京时间）" in sheet
    assert "另有 2 次读数" in sheet and "浙J12346（支持度 0.31）" in sheet
    assert "颜色 黄" in sheet and "颜色 yellow" not in sheet  # as officers name it
    assert "综合两个识别模型" not in sheet
    # a read whose province was chosen with the plate model's head shows PP-OCRv4's own read
    joint = dict(manifest["case"]["plate"]["reads"][0], text="皖J12345",
                 joint_text=case.plate.text, joint_char_confidences=[0.87, 0.99])
    manifest["case"]["plate"]["reads"][0] = joint
    sheet = sheet_html(manifest, lambda _name: None).decode()
    assert (f"通用文字识别 皖J12345（最低字符置信度 0.42）；综合两个识别模型的概率，"
            f"省份简称最可能为“{case.plate.text[0]}”（号牌 {case.plate.text}，综合概率 0.87），"
            "需人工核对") in sheet
    manifest["case"]["plate"]["reader"]["models_sha256"]["plate_model"] = None
    manifest["case"]["plate"]["alternatives"] = [{"text": f"浙J1234{i}", "support": 0.1}
                                                 for i in range(12)]
    sheet = sheet_html(manifest, lambda _name: None).decode()
    assert "号牌识别 未加载" in sheet and "另有 2 个，见签名清单" in sheet
    # the PDF sheet carries the same rows
    import pypdfium2 as pdfium

    from zhichao.evidence.documents import sheet_pdf

    pdf = pdfium.PdfDocument(sheet_pdf(manifest, lambda _name: None))
    text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    flat = "".join(text.split())
    assert "号牌识别依据" in flat and "号牌读数1" in flat and "最低字符置信度0.42" in flat
    manifest["case"]["plate"].pop("reader")  # sealed before the reader was recorded
    assert "号牌识别依据</td><td>未记录" in sheet_html(manifest, lambda _name: None).decode()


@pytest.mark.parametrize(("change", "field"), [
    ({"captured_utc": 12}, r"reads\[0\].captured_utc"),
    ({"captured_utc": "2025-06-01T02:03:04"}, r"reads\[0\].captured_utc"),  # no offset
    ({"box_px": 5}, r"reads\[0\].box_px"),
    ({"box_px": [1, 2, 3, float("nan")]}, r"reads\[0\].box_px"),
    ({"char_confidences": 3}, r"reads\[0\].char_confidences"),
    ({"char_confidences": [0.5, 1.5]}, r"reads\[0\].char_confidences"),
    ({"text": "浙" * 200}, r"reads\[0\].text"),
    ({"joint_text": 7}, r"reads\[0\].joint_text"),
    ({"joint_text": "皖" * 200}, r"reads\[0\].joint_text"),
    ({"joint_char_confidences": [1.5]}, r"reads\[0\].joint_char_confidences"),
    ({"camera": None}, r"reads\[0\].camera"),
    ({"plate_model": "x"}, r"reads\[0\].plate_model"),
    ({"plate_model": {"province_confidence": True}}, r"plate_model.province_confidence"),
])
def test_a_malformed_plate_read_is_refused_naming_the_field(
        good_case: tuple[CaseInputs, Path], change: dict[str, object], field: str) -> None:
    from zhichao.evidence.errors import InputError
    from zhichao.evidence.inputs import PlateResult

    case, _base = good_case
    assert case.plate is not None
    read = {"camera": "CAM-F", "captured_utc": "2025-06-01T02:03:04Z",
            "box_px": [1.0, 2.0, 30.0, 12.0], "text": "浙J12345",
            "char_confidences": [0.9] * 7, "plate_model": None}
    good = {**case.plate.to_json(), "reads": [read]}
    assert PlateResult.from_json(good).reads == (read,)
    with pytest.raises(InputError, match=field):
        PlateResult.from_json({**good, "reads": [{**read, **change}]})
    with pytest.raises(InputError, match="at most 64"):
        PlateResult.from_json({**good, "reads": [read] * 65})
    # the vision stage records no more than the evidence accepts
    from zhichao.evidence.inputs import MAX_PLATE_READS, MAX_PLATE_TEXT
    from zhichao.vision.vehicle import MAX_RECORDED_READS, READ_TEXT_MAX_CHARS

    assert (MAX_RECORDED_READS, READ_TEXT_MAX_CHARS) == (MAX_PLATE_READS, MAX_PLATE_TEXT)
    with pytest.raises(InputError, match=r"alternatives\[0\].support"):
        PlateResult.from_json({**good, "alternatives": [{"text": "浙J1", "support": "x"}]})
