"""Offline verification of an evidence package (directory or .zip), standing alone.

Every check produces a :class:`Check` with a code, pass/fail/warn, and bilingual text
naming the file, hash, signature or proof concerned. The verifier never raises on bad
input: unreadable or malformed parts become failed checks.

Witnessing (:mod:`zhichao.evidence.witness`): given witness public keys and a required
count, the verifier requires that many valid cosignatures on a checkpoint that covers
the package (the package's own, or a ``--checkpoint`` proven consistent with it);
otherwise ``witness.missing``. Two checkpoints that contradict each other are
``witness.fork``, and ``witness.split_view`` when both carry valid cosignatures.

History (:mod:`zhichao.evidence.events`): with the log (or a history bundle), every
review/decision event of the package is listed (``history.event``), each shown to be
covered by a signed checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import unicodedata
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.errors import EvidenceError, LogError
from zhichao.evidence.manifest import (
    CHECKPOINT_NAME,
    ENTRY_NAME,
    INCLUSION_NAME,
    MANIFEST_NAME,
    PUBLIC_KEY_NAME,
    SEAL_FILES,
    SIGNATURE_NAME,
    SUMS_NAME,
    TIMESTAMP_NAME,
    check_manifest,
)
from zhichao.evidence.merkle import MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from zhichao.evidence.package import sm3_hex
from zhichao.evidence.signing import (
    Checkpoint,
    key_fingerprint,
    load_public_key_bytes,
    public_pem,
    verify_checkpoint,
    verify_signature,
)
from zhichao.evidence.tsa import verify_timestamp
from zhichao.evidence.witness import check_cosignatures

_Emit = Callable[[str, str, str], None]


class Result(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"


RESULT_ZH = {Result.PASS: "通过", Result.FAIL: "失败", Result.WARN: "提示"}


@dataclass(frozen=True)
class Check:
    code: str
    result: Result
    message_zh: str
    message_en: str

    def line(self) -> str:
        return (f"[{RESULT_ZH[self.result]} {self.result}] {self.code}: "
                f"{self.message_zh} / {self.message_en}")


@dataclass
class Report:
    package: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.result is not Result.FAIL for c in self.checks)

    @property
    def origin_proven(self) -> bool:
        """Checked against a key the caller trusts (``--key``), not the package's own."""
        return "key.untrusted" not in self.codes(Result.WARN)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.result is Result.FAIL]

    def codes(self, result: Result = Result.FAIL) -> set[str]:
        return {c.code for c in self.checks if c.result is result}

    def text(self) -> str:
        lines = [f"核验对象 Package: {self.package}"]
        lines += [c.line() for c in self.checks]
        if not self.ok:
            verdict = (f"结论：{len(self.failures())} 项检查失败，证据包不可信。 / "
                       f"Result: {len(self.failures())} check(s) FAILED.")
        elif not self.origin_proven:
            verdict = ("结论：内容自洽（哈希、签名与日志证明彼此一致），但未用可信的站点公钥"
                       "（--key）核验，来源未经证实，不能据此认定证据真实。 / "
                       "Result: self-consistent, "
                       "but the origin is NOT proven (no trusted --key).")
        else:
            verdict = ("结论：全部检查通过，证据包完整、未被篡改。 / Result: all checks passed.")
        lines.append(verdict)
        return "\n".join(lines)


class _AmbiguousNamesError(EvidenceError):
    """A zip whose entry names can be read two ways (duplicates, look-alikes, unsafe)."""


def zip_name_problems(names: list[str]) -> list[str]:
    """Why a zip's entry names are ambiguous or unsafe (English; empty when they are not).

    The same name twice lets two tools read two different files (Python's ``zipfile``
    reads the last entry, ``unzip`` the first); names equal but for case or Unicode
    normalisation collide on extraction; absolute names, ``..``, backslashes and control
    characters escape or confuse the folder they are extracted to."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name in names:
        if name.startswith("/") or "\\" in name or ".." in name.split("/") or any(
                ord(c) < 32 or ord(c) == 127 for c in name) or (len(name) > 1 and name[1] == ":"):
            problems.append(f"unsafe entry name {name!r}")
        key = unicodedata.normalize("NFC", name.rstrip("/")).casefold()
        if key in seen:
            other = seen[key]
            problems.append(f"entry {name!r} appears twice" if other == name else
                            f"entries {other!r} and {name!r} differ only in case or "
                            "Unicode normalisation")
        seen.setdefault(key, name)
    return problems


class _Reader:
    """Read files of a package directory or .zip by their package-relative path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        if path.is_file():
            try:
                self._zip = zipfile.ZipFile(path)
                bad = self._zip.testzip()
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise EvidenceError(f"{path}: not a readable zip archive "
                                    f"(truncated or damaged?): {exc}") from None
            if bad is not None:
                raise EvidenceError(f"{path}: zip member {bad} is corrupt (CRC error)")
            names = self._zip.namelist()
            problems = zip_name_problems(names)
            if problems:
                raise _AmbiguousNamesError(f"{path}: " + "; ".join(problems[:5]))
            tops = {n.split("/", 1)[0] for n in names}
            if MANIFEST_NAME not in names and len(tops) == 1:
                self._prefix = next(iter(tops)) + "/"
        elif not path.is_dir():
            raise EvidenceError(f"{path}: no such package (directory or .zip)")

    def names(self) -> list[str]:
        if self._zip is not None:
            return [n[len(self._prefix):] for n in self._zip.namelist()
                    if n.startswith(self._prefix) and not n.endswith("/")]
        return [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]

    def read(self, name: str) -> bytes | None:
        if self._zip is not None:
            try:
                return self._zip.read(self._prefix + name)
            except (KeyError, zipfile.BadZipFile, OSError, EOFError):
                return None
        target = self.path / name
        try:
            return target.read_bytes() if target.is_file() else None
        except OSError:
            return None


def load_tsa_roots(path: Path | None) -> list[x509.Certificate] | None:
    if path is None:
        return None
    return x509.load_pem_x509_certificates(path.read_bytes())


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
) -> Report:
    """Verify ``package``; see the module docstring. Never raises on bad package data.

    ``witness_keys`` maps witness key names to public keys; ``witness_required`` is how
    many of them must have cosigned a checkpoint covering the package (0: report only).
    ``history`` is a history bundle (:func:`zhichao.evidence.events.history_bundle`);
    with ``log_dir`` the events are read from the log itself.
    """
    report = Report(str(package), [])
    checks = report.checks

    def ok(code: str, zh: str, en: str) -> None:
        checks.append(Check(code, Result.PASS, zh, en))

    def fail(code: str, zh: str, en: str) -> None:
        checks.append(Check(code, Result.FAIL, zh, en))

    def warn(code: str, zh: str, en: str) -> None:
        checks.append(Check(code, Result.WARN, zh, en))

    try:
        reader = _Reader(package)
    except _AmbiguousNamesError as exc:
        fail("package.names",
             f"证据包内文件名重复、仅大小写不同或不安全，不同工具会读出不同内容：{exc}",
             f"ambiguous or unsafe entry names (tools would read different files): {exc}")
        return report
    except EvidenceError as exc:
        fail("package.unreadable", f"无法读取证据包：{exc}", f"cannot read the package: {exc}")
        return report
    # 1. Manifest ---------------------------------------------------------------------
    manifest_bytes = reader.read(MANIFEST_NAME)
    if manifest_bytes is None:
        fail("manifest.missing", f"缺少 {MANIFEST_NAME}", f"{MANIFEST_NAME} is missing")
        return report
    try:
        manifest: Any = json.loads(manifest_bytes.decode("utf-8"))
        files = check_manifest(manifest)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail("manifest.malformed", f"{MANIFEST_NAME} 不是有效的 JSON：{exc}",
             f"{MANIFEST_NAME} is not valid JSON: {exc}")
        return report
    except EvidenceError as exc:
        fail("manifest.malformed", f"清单结构错误：{exc}", f"manifest malformed: {exc}")
        return report
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
    station = manifest["station"]
    key_name = station["key_name"]
    # 2. Key and signature ------------------------------------------------------------
    embedded = reader.read(PUBLIC_KEY_NAME)
    if key is not None and embedded != public_pem(key):
        fail("key.embedded", f"包内 {PUBLIC_KEY_NAME} 缺失或与所给可信公钥不同",
             f"{PUBLIC_KEY_NAME} is missing or differs from the trusted --key")
    if key is None:
        if embedded is None:
            fail("key.missing", "未提供 --key，包内也无公钥", "no --key given and no station.pub")
            return report
        try:
            key = load_public_key_bytes(embedded, PUBLIC_KEY_NAME)
        except EvidenceError as exc:
            fail("key.malformed", f"包内公钥无效：{exc}", f"embedded key invalid: {exc}")
            return report
        if public_pem(key) != embedded:
            fail("key.embedded", f"包内 {PUBLIC_KEY_NAME} 不是规范的 PEM 格式（字节被改动）",
                 f"{PUBLIC_KEY_NAME} is not the canonical PEM form (bytes changed)")
        warn("key.untrusted", "未提供 --key：仅用包内公钥核验，签名者身份未独立确认",
             "no --key given: checked with the package's own key; signer NOT authenticated")
    fingerprint = key_fingerprint(key)
    if fingerprint != station["key_sha256"]:
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
    else:
        fail("signature.manifest", f"清单签名无效（{SIGNATURE_NAME}，公钥 {fingerprint}）",
             f"manifest signature INVALID ({SIGNATURE_NAME}, key {fingerprint})")
    # 3. Files ------------------------------------------------------------------------
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
    for name in sorted(set(reader.names()) - listed - SEAL_FILES):
        fail("file.unlisted", f"证据包中有清单未列出的文件：{name}",
             f"file not listed in the manifest: {name}")
    sums = reader.read(SUMS_NAME)
    expected_sums = "\n".join([f"{manifest_sha}  {MANIFEST_NAME}"] + [
        f"{e['sha256']}  {e['path']}" for e in files]) + "\n"
    if sums != expected_sums.encode("utf-8"):  # byte for byte, as sealed
        fail("sums.mismatch", f"{SUMS_NAME} 与清单不一致", f"{SUMS_NAME} disagrees with manifest")
    # 4. Log entry, inclusion proof, checkpoint ----------------------------------------
    entry_bytes = reader.read(ENTRY_NAME)
    checkpoint: Checkpoint | None = None
    note = reader.read(CHECKPOINT_NAME)
    index = -1
    if entry_bytes is None or note is None:
        fail("log.missing", "缺少日志条目或检查点（seal/）", "log entry or checkpoint missing")
    else:
        try:
            log_entry: Any = json.loads(entry_bytes)
        except (ValueError, UnicodeDecodeError):
            log_entry = None
        if not isinstance(log_entry, dict) or log_entry.get("manifest_sha256") != manifest_sha or (
            log_entry.get("signature_sha256") != hashlib.sha256(signature).hexdigest()
        ) or log_entry.get("package_id") != manifest["package_id"]:
            fail("log.entry", "日志条目与本清单或签名不对应（seal/entry.json）",
                 "log entry does not bind this manifest and signature (seal/entry.json)")
        inc_bytes = reader.read(INCLUSION_NAME) or b"null"
        try:
            inc = json.loads(inc_bytes)
            index, size = int(inc["index"]), int(inc["size"])
            hashes = [bytes.fromhex(h) for h in inc["hashes"]]
            problem = ""
            if inc.get("format") != "zhichao.inclusion/1":
                problem = "format is not zhichao.inclusion/1"
            elif inc.get("log_origin") != station.get("log_origin"):
                problem = f"log_origin {inc.get('log_origin')!r} is not the manifest's"
            elif json.dumps(inc, indent=1).encode() + b"\n" != inc_bytes:
                problem = "the file is not in its sealed form (edited)"
            if problem:
                raise ValueError(problem)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
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
    # 5. Time-stamp --------------------------------------------------------------------
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
    # 6. Trusted checkpoint, witnesses, history --------------------------------------
    log: MerkleLog | None = None
    witnesses = dict(witness_keys or {})
    try:
        if log_dir is not None:
            try:
                log = MerkleLog(log_dir, read_only=True)
            except LogError as exc:
                fail("log.unreadable", f"日志无法读取：{exc}", f"log unreadable: {exc}")
        if checkpoint is not None and log is not None:
            _check_against_log(log, checkpoint, index, entry_bytes, ok, fail)
        covering: list[bytes] = [note] if checkpoint is not None and note is not None else []
        if trusted_checkpoint is not None and checkpoint is not None and note is not None:
            state = _check_trusted(trusted_checkpoint, checkpoint, key_name, key,
                                   consistency_proof, log, ok, fail, warn)
            if state == "consistent":
                covering.append(trusted_checkpoint)
            elif state == "fork" and _cosigned(note, witnesses) and _cosigned(
                    trusted_checkpoint, witnesses):
                mine, theirs = _names(note, witnesses), _names(trusted_checkpoint, witnesses)
                fail("witness.split_view",
                     f"分裂视图：两个互相矛盾的检查点都有见证方联署（本包：{mine}；所给：{theirs}），"
                     "站点向不同见证方出示了不同的日志",
                     "SPLIT VIEW: two contradicting checkpoints both carry witness cosignatures "
                     f"(package: {_names(note, witnesses)}; given: "
                     f"{_names(trusted_checkpoint, witnesses)}); the log showed different "
                     "histories to different witnesses")
        if witnesses or witness_required:
            _check_witnesses(covering, witnesses, witness_required, ok, fail)
        if checkpoint is not None and (log is not None or history is not None):
            _check_history(log, history, manifest_sha, index, key_name, key, checkpoint.origin,
                           ok, fail, warn)
    finally:
        if log is not None:
            log.close()
    return report


def _cosigned(note: bytes, witnesses: Mapping[str, Ed25519PublicKey]) -> bool:
    try:
        return bool(check_cosignatures(note, witnesses).valid)
    except EvidenceError:
        return False


def _names(note: bytes, witnesses: Mapping[str, Ed25519PublicKey]) -> str:
    try:
        return ", ".join(c.witness for c in check_cosignatures(note, witnesses).valid) or "—"
    except EvidenceError:
        return "—"


def _check_witnesses(covering: list[bytes], witnesses: Mapping[str, Ed25519PublicKey],
                     required: int, ok: _Emit, fail: _Emit) -> None:
    """Require ``required`` valid cosignatures on one of the ``covering`` checkpoints."""
    best: list[str] = []
    for note in covering:
        try:
            result = check_cosignatures(note, witnesses)
        except EvidenceError:
            continue
        for name in result.invalid:
            fail("witness.signature", f"见证方 {name} 的联署签名无效",
                 f"cosignature by witness {name} does NOT verify")
        names = sorted(c.witness for c in result.valid)
        if len(names) > len(best):
            best = names
    listed = ", ".join(best) or "无 none"
    if required > len(best):
        fail("witness.missing",
             f"要求至少 {required} 个受信见证方联署检查点，实际只有 {len(best)} 个（{listed}）："
             "未经见证的检查点不能排除分叉或分裂视图",
             f"{required} witness cosignature(s) required on a checkpoint covering the "
             f"package, found {len(best)} ({listed}): an un-witnessed checkpoint cannot rule "
             "out a fork or split view")
    elif best:
        ok("witness.cosigned", f"检查点经 {len(best)} 个见证方联署：{listed}",
           f"checkpoint cosigned by {len(best)} witness(es): {listed}")


def _check_history(log: MerkleLog | None, history: bytes | None, manifest_sha: str,
                   package_index: int, key_name: str, key: Ed25519PublicKey, origin: str,
                   ok: _Emit, fail: _Emit, warn: _Emit) -> None:
    """List the package's review events, each covered by a signed checkpoint."""
    from zhichao.evidence.events import (
        APPROVED_OUTCOMES,
        EventType,
        ReviewEvent,
        find_events,
        latest_checkpoint,
    )

    events: list[tuple[int, ReviewEvent, bool]] = []  # (index, event, covered)
    cp: Checkpoint | None = None
    if log is not None:
        latest = latest_checkpoint(log)
        if latest is not None:
            try:
                cp = verify_checkpoint(latest[1], key_name, key)
            except EvidenceError as exc:
                fail("history.checkpoint", f"日志最新检查点签名无效：{exc}",
                     f"latest log checkpoint does not verify: {exc}")
            if cp is not None and (cp.size > log.size or log.root(cp.size) != cp.root):
                fail("history.checkpoint", f"日志与其最新检查点（大小 {cp.size}）不符",
                     f"log does not match its latest checkpoint (size {cp.size})")
                cp = None
        # A manifest hash cannot be known before its sealing: scan from there on.
        for i, _data, event in find_events(log, manifest_sha, max(0, package_index + 1)):
            events.append((i, event, cp is not None and i < cp.size))
    if history is not None:
        try:
            bundle = json.loads(history)
            cp = verify_checkpoint(bundle["checkpoint"].encode("utf-8"), key_name, key)
            items = [(int(e["index"]), base64.b64decode(e["entry_b64"], validate=True),
                      [bytes.fromhex(h) for h in e["hashes"]]) for e in bundle["events"]]
            pending = int(bundle.get("not_yet_checkpointed", 0))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error,
                EvidenceError) as exc:
            fail("history.malformed", f"审核记录文件无效：{exc}", f"history file invalid: {exc}")
            return
        if cp.origin != origin:
            fail("history.origin", f"审核记录来自另一日志 {cp.origin}",
                 f"history is from another log {cp.origin}")
            return
        for i, data, hashes in items:
            if not verify_inclusion(i, cp.size, leaf_hash(data), hashes, cp.root):
                fail("history.proof", f"审核记录第 {i} 条的包含证明无效",
                     f"inclusion proof of history entry {i} FAILS")
                continue
            try:
                event = ReviewEvent.from_entry(json.loads(data), f"log entry {i}")
            except (EvidenceError, ValueError, UnicodeDecodeError) as exc:
                fail("history.malformed", f"审核记录第 {i} 条无效：{exc}",
                     f"history entry {i} invalid: {exc}")
                continue
            if event.manifest_sha256 != manifest_sha:
                fail("history.binding", f"审核记录第 {i} 条属于另一证据包",
                     f"history entry {i} is about another package")
                continue
            events.append((i, event, True))
        if pending:
            warn("history.uncovered", f"另有 {pending} 条审核记录尚无检查点覆盖",
                 f"{pending} more event(s) not yet covered by a checkpoint")
    if not events:
        warn("history.none", "日志中未见本证据包的审核、决定或送达记录"
             "（未经审核的记录不得作为处罚证据）",
             "no review, decision or service event found for this package in the log")
        return
    passed: set[EventType] = set()
    for i, event, covered in sorted(events, key=lambda item: item[0]):
        when = event.time_utc.isoformat().replace("+00:00", "Z")
        text_zh = (f"日志第 {i} 条：{event.event_type_zh}（{event.event_type}），{when}，"
                   f"人员 {event.actor_id}，结果 {event.outcome}，理由：{event.reason_zh}")
        text_en = (f"log entry {i}: {event.event_type} at {when} by {event.actor_id}, "
                   f"outcome {event.outcome}")
        if i <= package_index:
            fail("history.order", f"{text_zh}——早于证据包封存（第 {package_index} 条）",
                 f"{text_en} -- precedes the sealing (entry {package_index})")
        elif covered:
            ok("history.event", text_zh + "（已由签名检查点覆盖）",
               text_en + " (covered by a signed checkpoint)")
        else:
            warn("history.uncovered", text_zh + "（尚无签名检查点覆盖）",
                 text_en + " (not yet covered by a signed checkpoint)")
        if event.event_type in (EventType.TECHNICAL_REVIEW, EventType.LEGAL_REVIEW) and (
                event.outcome in APPROVED_OUTCOMES):
            passed.add(event.event_type)
        if event.event_type in (EventType.DECISION, EventType.SERVICE):
            missing = {EventType.TECHNICAL_REVIEW, EventType.LEGAL_REVIEW} - passed
            if missing:
                names = "、".join(sorted(t.value for t in missing))
                warn("history.sequence",
                     f"日志第 {i} 条{event.event_type_zh}之前没有通过的{names}记录"
                     "（行政处罚法第四十一条、第五十八条）",
                     f"entry {i} ({event.event_type}) has no earlier approved {names}")


def _check_against_log(log: MerkleLog, cp: Checkpoint, index: int, entry_bytes: bytes | None,
                       ok: Any, fail: Any) -> None:
    if log.origin != cp.origin:
        fail("log.origin", f"日志来源 {log.origin} 与检查点 {cp.origin} 不同",
             f"log origin {log.origin} differs from checkpoint {cp.origin}")
        return
    if log.size < cp.size:
        fail("log.truncated", f"日志只有 {log.size} 条，少于已签名检查点的 {cp.size} 条"
             "（条目被删除）",
             f"log has {log.size} entries, fewer than the signed checkpoint's {cp.size} "
             "(entries removed)")
        return
    if log.root(cp.size) != cp.root:
        fail("log.rewritten", f"日志前 {cp.size} 条的根哈希与已签名检查点不同"
             "（条目被删除、重排或修改）",
             f"log root at size {cp.size} differs from the signed checkpoint "
             "(entries removed, reordered or altered)")
    else:
        ok("log.root", f"日志前 {cp.size} 条与检查点一致", f"log matches checkpoint at {cp.size}")
    if entry_bytes is not None and 0 <= index < log.size and log.entry(index) != entry_bytes:
        fail("log.entry.moved", f"日志第 {index} 条不是本证据包的条目",
             f"log entry {index} is not this package's entry")
    proof = log.consistency_proof(cp.size, log.size)
    if verify_consistency(cp.size, log.size, cp.root, log.root(), proof):
        ok("log.consistency", f"日志当前状态（{log.size} 条）是检查点的追加扩展",
           f"current log ({log.size}) is an append-only extension of the checkpoint")
    else:
        fail("log.consistency", "日志当前状态与检查点不一致", "log inconsistent with checkpoint")


def _check_trusted(note: bytes, cp: Checkpoint, key_name: str, key: Ed25519PublicKey,
                   proof: list[bytes] | None, log: MerkleLog | None,
                   ok: Any, fail: Any, warn: Any) -> str:
    """Compare the package's checkpoint with a trusted one: consistent, fork or unknown."""
    try:
        trusted = verify_checkpoint(note, key_name, key)
    except EvidenceError as exc:
        fail("witness.signature", f"所给 --checkpoint 签名无效：{exc}",
             f"--checkpoint signature invalid: {exc}")
        return "unknown"
    if trusted.origin != cp.origin:
        fail("witness.origin", "所给检查点属于另一日志", "--checkpoint is of another log")
        return "unknown"
    small, large = (trusted, cp) if trusted.size <= cp.size else (cp, trusted)
    if small.size == large.size:
        if small.root == large.root:
            ok("witness.consistency", f"与所给检查点（大小 {trusted.size}）一致",
               f"consistent with the trusted checkpoint of size {trusted.size}")
            return "consistent"
        fail("witness.fork", f"日志分叉：同一大小 {trusted.size} 有两个不同的已签名根哈希",
             f"log FORK: two signed roots for tree size {trusted.size}")
        return "fork"
    if proof is None and log is not None and log.size >= large.size:
        proof = log.consistency_proof(small.size, large.size)
    if proof is None:
        warn("witness.unchecked", "未提供一致性证明（--log 或 --consistency），"
             "未能与所给检查点比对",
             "no consistency proof (--log or --consistency): trusted checkpoint not compared")
        return "unknown"
    if verify_consistency(small.size, large.size, small.root, large.root, proof):
        ok("witness.consistency", f"一致性证明有效：大小 {small.size} → {large.size}",
           f"consistency proof valid: size {small.size} -> {large.size}")
        return "consistent"
    fail("witness.fork", f"一致性证明无效：大小 {small.size} → {large.size}"
         "（日志被分叉或改写）",
         f"consistency proof FAILS {small.size} -> {large.size} (log forked or rewritten)")
    return "fork"


def audit_log(log_dir: Path, key: Ed25519PublicKey, key_name: str) -> Report:
    """Check a whole station log: entries vs leaves, caches, every stored checkpoint."""
    report = Report(str(log_dir), [])
    checks = report.checks
    try:
        log = MerkleLog(log_dir, read_only=True)
    except LogError as exc:
        checks.append(Check("log.unreadable", Result.FAIL, f"日志无法读取：{exc}", str(exc)))
        return report
    with log:
        for problem in log.audit():
            checks.append(Check("log.leaf", Result.FAIL, f"日志损坏：{problem}", problem))
        previous: Checkpoint | None = None
        cps = sorted((log_dir / "checkpoints").glob("*.txt"), key=lambda p: int(p.stem))
        for path in cps:
            try:
                cp = verify_checkpoint(path.read_bytes(), key_name, key)
            except EvidenceError as exc:
                checks.append(Check("checkpoint.signature", Result.FAIL,
                                    f"{path.name} 签名无效：{exc}", f"{path.name}: {exc}"))
                continue
            if cp.size > log.size or log.root(cp.size) != cp.root:
                checks.append(Check(
                    "log.rewritten", Result.FAIL,
                    f"检查点 {path.name} 与日志不符（条目被删除、重排或修改）",
                    f"checkpoint {path.name} does not match the log "
                    "(entries removed, reordered or altered)"))
            elif previous is not None and not verify_consistency(
                previous.size, cp.size, previous.root, cp.root,
                log.consistency_proof(previous.size, cp.size)):
                checks.append(Check("log.fork", Result.FAIL, f"{path.name} 与前一检查点不一致",
                                    f"{path.name} inconsistent with the previous checkpoint"))
            previous = cp
        if not report.failures():
            checks.append(Check("log.ok", Result.PASS,
                                f"日志 {log.size} 条、{len(cps)} 个检查点全部核验通过",
                                f"log of {log.size} entries and {len(cps)} checkpoints verified"))
    return report


__all__ = ["Check", "Report", "Result", "audit_log", "load_tsa_roots", "verify_package"]
