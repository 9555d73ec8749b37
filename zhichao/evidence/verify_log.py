"""Verification beyond one package: the station log, trusted checkpoints, witnesses and
the review history (see :func:`zhichao.evidence.verify.verify_package`), and the audit of
a whole log (``zhichao log-audit``)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zhichao.evidence import strict_json
from zhichao.evidence.errors import EvidenceError, LogError
from zhichao.evidence.merkle import MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from zhichao.evidence.report import Check, Emit, Report, Result
from zhichao.evidence.signing import Checkpoint, verify_checkpoint
from zhichao.evidence.witness import check_cosignatures

STATION_ORIGIN_PREFIX = "zhichao/station/"


def station_log_origin(station_id: str) -> str:
    """The origin of station ``station_id``'s log, ``zhichao/station/<station_id>``: what
    the center requires of every checkpoint it accepts from that station, and what the
    verifier requires of a package's checkpoint (one rule, so the two cannot drift)."""
    return STATION_ORIGIN_PREFIX + station_id


def cosigned(note: bytes, witnesses: Mapping[str, Ed25519PublicKey]) -> bool:
    try:
        return bool(check_cosignatures(note, witnesses).valid)
    except EvidenceError:
        return False


def witness_names(note: bytes, witnesses: Mapping[str, Ed25519PublicKey]) -> str:
    try:
        return ", ".join(c.witness for c in check_cosignatures(note, witnesses).valid) or "—"
    except EvidenceError:
        return "—"


def check_witnesses(covering: list[bytes], witnesses: Mapping[str, Ed25519PublicKey],
                     required: int, ok: Emit, fail: Emit) -> None:
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


def check_history(log: MerkleLog | None, history: bytes | None, manifest_sha: str,
                   package_index: int, key_name: str, key: Ed25519PublicKey, origin: str,
                   ok: Emit, fail: Emit, warn: Emit) -> None:
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
        where = "history"
        try:
            bundle = strict_json.loads(history, where)
            cp = verify_checkpoint(strict_json.string(bundle, "checkpoint", where)
                                   .encode("utf-8"), key_name, key)
            items = [(strict_json.integer(e, "index", f"{where}.events[{n}]"),
                      base64.b64decode(strict_json.string(e, "entry_b64",
                                                          f"{where}.events[{n}]"), validate=True),
                      [bytes.fromhex(h) for h in strict_json.strings(
                          e, "hashes", f"{where}.events[{n}]")])
                     for n, e in enumerate(strict_json.objects(bundle, "events", where))]
            pending = (strict_json.integer(bundle, "not_yet_checkpointed", where)
                       if "not_yet_checkpointed" in bundle else 0)
        except (ValueError, binascii.Error, EvidenceError) as exc:
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
                event = ReviewEvent.from_entry(strict_json.loads(data, f"log entry {i}"),
                                               f"log entry {i}")
            except (EvidenceError, ValueError, ArithmeticError) as exc:
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


def check_against_log(log: MerkleLog, cp: Checkpoint, index: int, entry_bytes: bytes | None,
                       ok: Emit, fail: Emit) -> None:
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


def check_trusted(note: bytes, cp: Checkpoint, key_name: str, key: Ed25519PublicKey,
                   proof: list[bytes] | None, log: MerkleLog | None,
                   ok: Emit, fail: Emit, warn: Emit) -> str:
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



__all__ = ["STATION_ORIGIN_PREFIX", "audit_log", "check_against_log", "check_history",
           "check_trusted", "check_witnesses", "cosigned", "station_log_origin",
           "witness_names"]
