"""Offline verification of an evidence package (directory or .zip), standing alone.

Every check produces a :class:`Check` with a code, pass/fail/warn, and bilingual text
naming the file, hash, signature or proof concerned. The verifier never raises on bad
input: unreadable or malformed parts become failed checks. The package is read through the
one strict reader (:mod:`zhichao.evidence.reader`), whose refusals are failed checks with
its reason codes (``package.names``, ``package.extra_data``, …).

Witnessing (:mod:`zhichao.evidence.witness`): given witness public keys and a required
count, the verifier requires that many valid cosignatures on a checkpoint that covers
the package (the package's own, or a ``--checkpoint`` proven consistent with it);
otherwise ``witness.missing``. Two checkpoints that contradict each other are
``witness.fork``, and ``witness.split_view`` when both carry valid cosignatures.

History (:mod:`zhichao.evidence.events`): with the log (or a history bundle), every
review/decision event of the package is listed (``history.event``), each shown to be
covered by a signed checkpoint (:mod:`zhichao.evidence.verify_log`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zhichao.evidence import strict_json
from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.errors import EvidenceError, InputError, LogError
from zhichao.evidence.manifest import (
    CHECKPOINT_NAME,
    ENTRY_NAME,
    INCLUSION_NAME,
    MANIFEST_NAME,
    PUBLIC_KEY_NAME,
    REWEIGH_FORMAT,
    SEAL_FILES,
    SIGNATURE_NAME,
    SUMS_NAME,
    TIMESTAMP_NAME,
    check_manifest,
)
from zhichao.evidence.merkle import MerkleLog, leaf_hash, verify_inclusion
from zhichao.evidence.package import sm3_hex
from zhichao.evidence.reader import (
    PackageContents,
    PackageRefusedError,
    read_package,
    zip_name_problems,
)
from zhichao.evidence.report import RESULT_ZH, Check, Checks, Report, Result
from zhichao.evidence.signing import (
    Checkpoint,
    key_fingerprint,
    load_public_key_bytes,
    public_pem,
    verify_checkpoint,
    verify_signature,
)
from zhichao.evidence.tsa import verify_timestamp
from zhichao.evidence.verify_log import (
    audit_log,
    check_against_log,
    check_history,
    check_trusted,
    check_witnesses,
    cosigned,
    station_log_origin,
    witness_names,
)

log = logging.getLogger(__name__)


def load_tsa_roots(path: Path | None) -> list[x509.Certificate] | None:
    if path is None:
        return None
    return x509.load_pem_x509_certificates(path.read_bytes())


@dataclass(frozen=True)
class _Manifest:
    data: Any
    raw: bytes
    sha256: str
    files: list[dict[str, Any]]

    @property
    def key_name(self) -> str:
        return str(self.data["station"]["key_name"])


@dataclass(frozen=True)
class _Signed:
    key: Ed25519PublicKey
    signature: bytes
    trusted: bool  # the manifest signature verified with a key whose fingerprint it names


@dataclass(frozen=True)
class _Seal:
    checkpoint: Checkpoint | None
    note: bytes | None
    index: int
    entry: bytes | None


def verify_package(
    package: Path,
    *,
    key: Ed25519PublicKey | None = None,
    trusted_checkpoint: bytes | None = None,
    consistency_proof: list[bytes] | None = None,
    log_dir: Path | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
    witness_keys: Mapping[str, Ed25519PublicKey] | None = None,
    witness_required: int = 0,
    history: bytes | None = None,
    contents: PackageContents | None = None,
) -> Report:
    """Verify ``package``; see the module docstring. Never raises on bad package data.

    ``witness_keys`` maps witness key names to public keys; ``witness_required`` is how
    many of them must have cosigned a checkpoint covering the package (0: report only).
    ``history`` is a history bundle (:func:`zhichao.evidence.events.history_bundle`);
    with ``log_dir`` the events are read from the log itself. ``contents`` is the package
    as :func:`zhichao.evidence.reader.read_package` read it already (the center reads it
    once to route it).

    Bad input gives failed checks. As a backstop, an exception nothing foresaw becomes a
    failed ``package.malformed`` check naming the exception's type (and is logged with its
    traceback), so a verifier bug cannot pass a package nor crash the center.
    """
    report = Report(str(package), [])
    checks = Checks(report)
    try:
        _verify(package, report, checks, key=key, trusted_checkpoint=trusted_checkpoint,
                consistency_proof=consistency_proof, log_dir=log_dir, tsa_roots=tsa_roots,
                witness_keys=witness_keys, witness_required=witness_required,
                history=history, contents=contents)
    except Exception as exc:  # the backstop; every foreseen problem is a check of its own
        log.exception("verify %s: unexpected %s", package, type(exc).__name__)
        what = f"{type(exc).__name__}: {str(exc)[:200]}"
        checks.fail("package.malformed", f"核验中出现意外错误，证据包不予采信（{what}）",
                    f"unexpected error while verifying; the package is not accepted ({what})")
    return report


def _verify(package: Path, report: Report, checks: Checks, *, key: Ed25519PublicKey | None,
            trusted_checkpoint: bytes | None, consistency_proof: list[bytes] | None,
            log_dir: Path | None, tsa_roots: list[x509.Certificate] | None,
            witness_keys: Mapping[str, Ed25519PublicKey] | None, witness_required: int,
            history: bytes | None, contents: PackageContents | None) -> None:
    if contents is None:
        try:
            contents = read_package(package)
        except PackageRefusedError as exc:
            checks.fail(exc.code, exc.message_zh, exc.message_en)
            return
    manifest = _check_manifest(contents, checks)
    if manifest is None:
        return
    signed = _check_key_and_signature(contents, manifest, key, checks)
    if signed is None:
        return
    # Decoding clips and interpreting a re-weighing only for a manifest that is signed:
    # unsigned input gets hashing, never an expensive decoder.
    _check_files(contents, manifest, checks, decode=signed.trusted)
    if manifest.data.get("format") == REWEIGH_FORMAT:  # a static re-weighing's supplement
        from zhichao.evidence.reweigh import check_reweigh

        check_reweigh(contents, manifest.data, checks, signed=signed.trusted)
    seal = _check_seal(contents, manifest, signed.signature, signed.key, checks)
    _check_timestamp(contents, seal.note, tsa_roots, checks)
    _check_beyond(seal, manifest, signed.key, checks, trusted_checkpoint=trusted_checkpoint,
                  consistency_proof=consistency_proof, log_dir=log_dir,
                  witnesses=dict(witness_keys or {}), witness_required=witness_required,
                  history=history)


def _check_manifest(reader: PackageContents, checks: Checks) -> _Manifest | None:
    ok, fail = checks.ok, checks.fail
    manifest_bytes = reader.read(MANIFEST_NAME)
    if manifest_bytes is None:
        fail("manifest.missing", f"缺少 {MANIFEST_NAME}", f"{MANIFEST_NAME} is missing")
        return None
    try:
        manifest: Any = strict_json.loads(manifest_bytes, MANIFEST_NAME)
    except EvidenceError as exc:
        fail("manifest.malformed", f"{MANIFEST_NAME} 不是有效的 JSON：{exc}",
             f"{MANIFEST_NAME} is not valid JSON: {exc}")
        return None
    try:
        files = check_manifest(manifest)
    except EvidenceError as exc:
        fail("manifest.malformed", f"清单结构错误：{exc}", f"manifest malformed: {exc}")
        return None
    try:
        canonical_ok = canonicalize(manifest) == manifest_bytes
    except EvidenceError:
        canonical_ok = False
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    if canonical_ok:
        ok("manifest.canonical", f"清单为 RFC 8785 规范形式，SHA-256 = {manifest_sha}",
           f"manifest is RFC 8785 canonical, SHA-256 = {manifest_sha}")
    else:
        fail("manifest.canonical", "清单不是 RFC 8785 规范形式（被重新编辑过）",
             "manifest bytes are not RFC 8785 canonical (edited after sealing)")
    return _Manifest(manifest, manifest_bytes, manifest_sha, files)


def _check_key_and_signature(reader: PackageContents, m: _Manifest, key: Ed25519PublicKey | None,
                             checks: Checks) -> _Signed | None:
    ok, fail, warn = checks.ok, checks.fail, checks.warn
    station = m.data["station"]
    manifest_bytes = m.raw
    embedded = reader.read(PUBLIC_KEY_NAME)
    if key is not None and embedded != public_pem(key):
        fail("key.embedded", f"包内 {PUBLIC_KEY_NAME} 缺失或与所给可信公钥不同",
             f"{PUBLIC_KEY_NAME} is missing or differs from the trusted --key")
    if key is None:
        if embedded is None:
            fail("key.missing", "未提供 --key，包内也无公钥", "no --key given and no station.pub")
            return None
        try:
            key = load_public_key_bytes(embedded, PUBLIC_KEY_NAME)
        except EvidenceError as exc:
            fail("key.malformed", f"包内公钥无效：{exc}", f"embedded key invalid: {exc}")
            return None
        if public_pem(key) != embedded:
            fail("key.embedded", f"包内 {PUBLIC_KEY_NAME} 不是规范的 PEM 格式（字节被改动）",
                 f"{PUBLIC_KEY_NAME} is not the canonical PEM form (bytes changed)")
        warn("key.untrusted", "未提供 --key：仅用包内公钥核验，签名者身份未独立确认",
             "no --key given: checked with the package's own key; signer NOT authenticated")
    fingerprint = key_fingerprint(key)
    trusted = fingerprint == station["key_sha256"]
    if not trusted:
        fail("key.mismatch",
             f"清单记载的站点公钥指纹 {station['key_sha256']} 与所用公钥 {fingerprint} 不同",
             f"manifest names key {station['key_sha256']}, verifying key is {fingerprint}")
    sig_text = reader.read(SIGNATURE_NAME)
    signature = b""
    try:
        signature = base64.b64decode((sig_text or b"").strip(), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if sig_text is None:
        fail("signature.missing", f"缺少 {SIGNATURE_NAME}", f"{SIGNATURE_NAME} is missing")
    elif len(signature) != 64 or sig_text != base64.b64encode(signature) + b"\n":
        fail("signature.malformed",
             f"{SIGNATURE_NAME} 不是规范形式的 64 字节 Ed25519 签名（一行 Base64）",
             f"{SIGNATURE_NAME} is not a 64-byte Ed25519 signature in its canonical form "
             "(one line of base64)")
    elif verify_signature(key, signature, manifest_bytes):
        ok("signature.manifest", f"清单签名有效（Ed25519，公钥指纹 {fingerprint}）",
           f"manifest signature valid (Ed25519, key {fingerprint})")
        return _Signed(key, signature, trusted)
    else:
        fail("signature.manifest", f"清单签名无效（{SIGNATURE_NAME}，公钥 {fingerprint}）",
             f"manifest signature INVALID ({SIGNATURE_NAME}, key {fingerprint})")
    return _Signed(key, signature, False)


def _check_files(reader: PackageContents, m: _Manifest, checks: Checks, *, decode: bool
                 ) -> None:
    """Every listed file's size and digests; with ``decode``, clips are decoded too."""
    ok, fail = checks.ok, checks.fail
    files, manifest_sha = m.files, m.sha256
    listed = set()
    for entry in files:
        path = entry["path"]
        listed.add(path)
        data = reader.read(path)
        if data is None:
            fail("file.missing", f"文件缺失：{path}", f"file missing: {path}")
            continue
        actual = hashlib.sha256(data).hexdigest()
        if len(data) != entry["size_bytes"] or actual != entry["sha256"]:
            fail("file.hash", f"文件被改动：{path}（SHA-256 应为 {entry['sha256']}，实为 {actual}，"
                 f"长度 {len(data)}/{entry['size_bytes']}）",
                 f"file altered: {path} (SHA-256 expected {entry['sha256']}, got {actual}, "
                 f"size {len(data)}/{entry['size_bytes']})")
            continue
        if "sm3" in entry and sm3_hex(data) != entry["sm3"]:
            fail("file.sm3", f"文件 SM3 不符：{path}", f"file SM3 mismatch: {path}")
            continue
        kind = "原始" if entry["kind"] == "original" else "派生"
        ok("file.hash", f"{kind}文件 {path} SHA-256 = {actual}", f"{entry['kind']} file {path} "
           f"SHA-256 = {actual}")
        if entry.get("role") == "video":
            if decode:
                _check_video(path, data, entry, checks)
            else:
                checks.warn("file.video",
                            f"视频未解码：{path}（清单签名未通过核验，不解码未经签名的视频）",
                            f"video not decoded: {path} (the manifest signature failed; "
                            "unsigned video is not decoded)")
    for name in sorted(set(reader.names()) - listed - SEAL_FILES):
        fail("file.unlisted", f"证据包中有清单未列出的文件：{name}",
             f"file not listed in the manifest: {name}")
    sums = reader.read(SUMS_NAME)
    expected_sums = "\n".join([f"{manifest_sha}  {MANIFEST_NAME}"] + [
        f"{e['sha256']}  {e['path']}" for e in files]) + "\n"
    if sums != expected_sums.encode("utf-8"):  # byte for byte, as sealed
        fail("sums.mismatch", f"{SUMS_NAME} 与清单不一致", f"{SUMS_NAME} disagrees with manifest")


def _check_video(path: str, data: bytes, entry: dict[str, Any], checks: Checks) -> None:
    """A clip must decode as H.264/MP4 to what the manifest says (frames, duration)."""
    from zhichao.evidence.clip import ClipError, probe_clip

    try:
        info = probe_clip(data, where=path)
    except ClipError as exc:
        checks.fail("file.video", f"视频无法解码：{path}（{exc}）",
                    f"video does not decode: {path} ({exc})")
        return
    said = (entry.get("codec"), entry.get("frame_count"), entry.get("duration_s"))
    found = (info.codec, info.frame_count, info.duration_s)
    if said != found:
        checks.fail("file.video", f"视频解码结果与清单不符：{path}（清单 {said}，实为 {found}）",
                    f"video decodes to other than the manifest says: {path} "
                    f"(manifest {said}, decoded {found})")
        return
    checks.ok("file.video", f"视频 {path} 可解码：{info.codec}，{info.frame_count} 帧，"
              f"{info.duration_s:.3f} 秒，{info.width}×{info.height}",
              f"video {path} decodes: {info.codec}, {info.frame_count} frames, "
              f"{info.duration_s:.3f} s, {info.width}×{info.height}")


def _check_seal(reader: PackageContents, m: _Manifest, signature: bytes, key: Ed25519PublicKey,
                checks: Checks) -> _Seal:
    ok, fail = checks.ok, checks.fail
    manifest, manifest_sha, station, key_name = m.data, m.sha256, m.data["station"], m.key_name

    entry_bytes = reader.read(ENTRY_NAME)
    checkpoint: Checkpoint | None = None
    note = reader.read(CHECKPOINT_NAME)
    index = -1
    if entry_bytes is None or note is None:
        fail("log.missing", "缺少日志条目或检查点（seal/）", "log entry or checkpoint missing")
    else:
        try:
            log_entry: Any = strict_json.loads(entry_bytes, ENTRY_NAME)
        except EvidenceError:
            log_entry = None
        if not isinstance(log_entry, dict) or log_entry.get("manifest_sha256") != manifest_sha or (
            log_entry.get("signature_sha256") != hashlib.sha256(signature).hexdigest()
        ) or log_entry.get("package_id") != manifest["package_id"]:
            fail("log.entry", "日志条目与本清单或签名不对应（seal/entry.json）",
                 "log entry does not bind this manifest and signature (seal/entry.json)")
        inc_bytes = reader.read(INCLUSION_NAME) or b"null"
        try:
            index, size, hashes, inc = read_inclusion(inc_bytes)
            problem = ""
            if inc.get("format") != "zhichao.inclusion/1":
                problem = "format is not zhichao.inclusion/1"
            elif inc.get("log_origin") != station.get("log_origin"):
                problem = f"log_origin {inc.get('log_origin')!r} is not the manifest's"
            elif json.dumps(inc, indent=1).encode() + b"\n" != inc_bytes:
                problem = "the file is not in its sealed form (edited)"
            if problem:
                raise ValueError(problem)
        except (ValueError, EvidenceError) as exc:
            fail("log.proof.malformed", f"包含证明（{INCLUSION_NAME}）无效：{exc}",
                 f"inclusion proof ({INCLUSION_NAME}) malformed: {exc}")
        else:
            try:
                checkpoint = verify_checkpoint(note, key_name, key)
                ok("checkpoint.signature",
                   f"检查点签名有效：日志 {checkpoint.origin}，大小 {checkpoint.size}",
                   f"checkpoint signature valid: log {checkpoint.origin}, size {checkpoint.size}")
            except EvidenceError as exc:
                fail("checkpoint.signature", f"检查点签名无效：{exc}",
                     f"checkpoint signature invalid: {exc}")
            if checkpoint is not None:
                _check_origin(checkpoint, station, checks)
                if checkpoint.size != size:
                    fail("log.inclusion", "包含证明的树大小与检查点不同",
                         "inclusion proof tree size differs from the checkpoint")
                elif verify_inclusion(index, size, leaf_hash(entry_bytes), hashes,
                                      checkpoint.root):
                    ok("log.inclusion", f"日志包含证明有效：第 {index} 条，树大小 {size}",
                       f"inclusion proof valid: entry {index} of tree size {size}")
                    if inc.get("leaf_hash") != leaf_hash(entry_bytes).hex():
                        fail("log.proof.malformed",
                             f"{INCLUSION_NAME} 的 leaf_hash 不是 SHA-256(0x00 ‖ {ENTRY_NAME})",
                             f"{INCLUSION_NAME}: leaf_hash is not SHA-256(0x00 | {ENTRY_NAME})")
                else:
                    fail("log.inclusion", f"日志包含证明无效（第 {index} 条，树大小 {size}）",
                         f"inclusion proof INVALID (entry {index}, tree size {size})")
    return _Seal(checkpoint, note, index, entry_bytes)


def read_inclusion(data: bytes) -> tuple[int, int, list[bytes], dict[str, Any]]:
    """(index, size, audit path, the object) of ``seal/inclusion.json``, types checked
    exactly (the center routes on the same function).

    Raises
    ------
    InputError
        Not JSON, or a field missing or of the wrong type.
    """
    inc = strict_json.loads(data, INCLUSION_NAME)
    index = strict_json.integer(inc, "index", INCLUSION_NAME)
    size = strict_json.integer(inc, "size", INCLUSION_NAME, minimum=1)
    try:
        hashes = [bytes.fromhex(h) for h in strict_json.strings(inc, "hashes", INCLUSION_NAME)]
    except ValueError:
        raise InputError(f"{INCLUSION_NAME}.hashes: not hex") from None
    return index, size, hashes, inc


def _check_origin(checkpoint: Checkpoint, station: dict[str, Any], checks: Checks) -> None:
    """The signed checkpoint is of the log the manifest names, and that log is the
    station's (``zhichao/station/<station_id>``, the origin the center requires)."""
    expected = station_log_origin(station["station_id"])
    named = station.get("log_origin")
    if checkpoint.origin == named == expected:
        checks.ok("log.origin", f"检查点属于站点日志 {expected}",
                  f"checkpoint is of the station's log {expected}")
        return
    checks.fail("log.origin", f"检查点的日志来源 {checkpoint.origin!r} 与清单记载的 "
                f"{named!r} 或站点日志 {expected!r} 不符",
                f"checkpoint origin {checkpoint.origin!r} is not the manifest's log_origin "
                f"{named!r} or the station's log {expected!r}")


def _check_timestamp(reader: PackageContents, note: bytes | None,
                     tsa_roots: list[x509.Certificate] | None, checks: Checks) -> None:
    ok, fail, warn = checks.ok, checks.fail, checks.warn

    token = reader.read(TIMESTAMP_NAME)
    if token is None:
        warn("timestamp.absent", "检查点无可信时间戳", "checkpoint has no RFC 3161 time-stamp")
    elif note is not None:
        try:
            info = verify_timestamp(token, note, tsa_roots)
            when = info.gen_time_utc.isoformat()
            if info.chain_verified:
                ok("timestamp", f"可信时间戳有效，时间 {when}（UTC），TSA 证书链已核验",
                   f"RFC 3161 time-stamp valid at {when}, TSA chain verified")
            else:
                warn("timestamp", f"时间戳摘要与检查点一致，时间 {when}；未提供 --tsa-ca，"
                     "TSA 证书链未核验", f"time-stamp imprint matches, {when}; TSA chain not "
                     "verified (no --tsa-ca)")
        except EvidenceError as exc:
            fail("timestamp", f"时间戳无效：{exc}", f"time-stamp invalid: {exc}")


def _check_beyond(seal: _Seal, m: _Manifest, key: Ed25519PublicKey, checks: Checks, *,
                  trusted_checkpoint: bytes | None, consistency_proof: list[bytes] | None,
                  log_dir: Path | None, witnesses: dict[str, Ed25519PublicKey],
                  witness_required: int, history: bytes | None) -> None:
    """Step 6: the log itself, a trusted checkpoint, witnesses, the review history."""
    ok, fail, warn = checks.ok, checks.fail, checks.warn
    checkpoint, note, index, entry_bytes = seal.checkpoint, seal.note, seal.index, seal.entry
    key_name, manifest_sha = m.key_name, m.sha256

    log: MerkleLog | None = None
    try:
        if log_dir is not None:
            try:
                log = MerkleLog(log_dir, read_only=True)
            except LogError as exc:
                fail("log.unreadable", f"日志无法读取：{exc}", f"log unreadable: {exc}")
        if checkpoint is not None and log is not None:
            check_against_log(log, checkpoint, index, entry_bytes, ok, fail)
        covering: list[bytes] = [note] if checkpoint is not None and note is not None else []
        if trusted_checkpoint is not None and checkpoint is not None and note is not None:
            state = check_trusted(trusted_checkpoint, checkpoint, key_name, key,
                                   consistency_proof, log, ok, fail, warn)
            if state == "consistent":
                covering.append(trusted_checkpoint)
            elif state == "fork" and cosigned(note, witnesses) and cosigned(
                    trusted_checkpoint, witnesses):
                mine = witness_names(note, witnesses)
                theirs = witness_names(trusted_checkpoint, witnesses)
                fail("witness.split_view",
                     f"分裂视图：两个互相矛盾的检查点都有见证方联署（本包：{mine}；所给：{theirs}），"
                     "站点向不同见证方出示了不同的日志",
                     "SPLIT VIEW: two contradicting checkpoints both carry witness cosignatures "
                     f"(package: {mine}; given: {theirs}); the log showed different "
                     "histories to different witnesses")
        if witnesses or witness_required:
            check_witnesses(covering, witnesses, witness_required, ok, fail)
        if checkpoint is not None and (log is not None or history is not None):
            check_history(log, history, manifest_sha, index, key_name, key, checkpoint.origin,
                           ok, fail, warn)
    finally:
        if log is not None:
            log.close()



__all__ = ["RESULT_ZH", "Check", "Report", "Result", "audit_log", "load_tsa_roots",
           "read_inclusion", "station_log_origin", "verify_package", "zip_name_problems"]
