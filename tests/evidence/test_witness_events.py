"""Checkpoint witnesses (cosigning, forks, split views) and review events in the log."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.evidence.conftest import Env
from zhichao.evidence.errors import (
    EventError,
    WitnessConflictError,
    WitnessError,
    WitnessForkError,
)
from zhichao.evidence.events import (
    EventType,
    ReviewEvent,
    history_bundle,
    record_review_event,
)
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.evidence.signing import Checkpoint, generate_key, sign_checkpoint
from zhichao.evidence.verify import Report, Result, verify_package
from zhichao.evidence.witness import LogKey, Witness, check_cosignatures, witness_checkpoint

NO_DOCS: Callable[..., dict[str, bytes]] = lambda *_: {}  # noqa: E731
NOW = datetime(2025, 6, 2, 1, 0, tzinfo=UTC)


def _witness(env: Env, name: str) -> Witness:
    log_key = LogKey(env.station.origin, env.station.key_name, env.station.key.public_key())
    return Witness(env.root / f"witness-{name}", name, generate_key(), [log_key],
                   clock=lambda: NOW)


def _seal(env: Env, case: tuple[CaseInputs, Path], name: str, **kw: Any) -> Path:
    out = env.root / name
    seal_package(case[0], out, station=env.station, log=env.log, base_dir=case[1],
                 renderer=NO_DOCS, **kw)
    return out


def _note(log: MerkleLog, station: Station) -> bytes:
    return sign_checkpoint(Checkpoint(log.origin, log.size, log.root()), station.key_name,
                           station.key)


def _check(report: Report, code: str) -> str:
    lines = [c.line() for c in report.checks if c.code == code]
    assert lines, f"no {code} check in:\n{report.text()}"
    return "\n".join(lines)


# ------------------------------------------------------------------------- witnesses


def test_witnessed_package_verifies(env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    w1, w2 = _witness(env, "center.zj/w1"), _witness(env, "notary.example/w2")
    keys = {w1.name: w1.public_key, w2.name: w2.public_key}
    pkgs = [_seal(env, good_case, f"p{i}", witnesses=[w1, w2]) for i in range(3)]
    assert w1.latest_size(env.station.origin) == 3
    report = verify_package(pkgs[2], key=env.station.key.public_key(), witness_keys=keys,
                            witness_required=2)
    assert report.ok, report.text()
    assert "2" in _check(report, "witness.cosigned")
    note = (pkgs[0] / "seal/checkpoint.txt").read_bytes()
    assert {c.witness for c in check_cosignatures(note, keys).valid} == set(keys)
    # The stored checkpoint is the cosigned one.
    assert (env.log.directory / "checkpoints/3.txt").read_bytes() == (
        pkgs[2] / "seal/checkpoint.txt").read_bytes()


def test_unwitnessed_checkpoint_fails_when_witnessing_is_required(
        env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    w1 = _witness(env, "center.zj/w1")
    pkg = _seal(env, good_case, "plain")
    key = env.station.key.public_key()
    report = verify_package(pkg, key=key, witness_keys={w1.name: w1.public_key},
                            witness_required=1)
    assert "witness.missing" in report.codes()
    text = _check(report, "witness.missing")
    assert "1 witness cosignature(s) required" in text and "found 0" in text and "见证" in text
    # A cosignature by a witness the verifier does not trust does not count.
    stranger = _witness(env, "stranger.example/w9")
    other = _seal(env, good_case, "cosigned-by-stranger", witnesses=[stranger])
    report = verify_package(other, key=key, witness_keys={w1.name: w1.public_key},
                            witness_required=1)
    assert "witness.missing" in report.codes()
    # Required count higher than the cosignatures present.
    report = verify_package(other, key=key, witness_required=2,
                            witness_keys={stranger.name: stranger.public_key})
    assert "witness.missing" in report.codes() and "found 1" in _check(report, "witness.missing")


def test_altered_cosignature_is_named(env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    w1 = _witness(env, "center.zj/w1")
    pkg = _seal(env, good_case, "p", witnesses=[w1])
    path = pkg / "seal/checkpoint.txt"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    name, blob = lines[-1].rstrip("\n").split(" ")[1:]
    flipped = blob[:20] + ("A" if blob[20] != "A" else "B") + blob[21:]
    path.write_text("".join(lines[:-1]) + f"\u2014 {name} {flipped}\n", encoding="utf-8")
    report = verify_package(pkg, key=env.station.key.public_key(),
                            witness_keys={w1.name: w1.public_key}, witness_required=1)
    assert {"witness.signature", "witness.missing"} <= report.codes(), report.text()
    assert "center.zj/w1" in _check(report, "witness.signature")


def _forked_log(env: Env, entries: list[bytes]) -> MerkleLog:
    fork = MerkleLog(env.root / f"fork-{len(entries)}", origin=env.station.origin,
                     create=True, fsync=False)
    for e in entries:
        fork.append(e)
    return fork


def test_witness_refuses_a_fork(env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    w1 = _witness(env, "center.zj/w1")
    for i in range(3):
        _seal(env, good_case, f"p{i}", witnesses=[w1])
    cosigned_root = env.log.root()
    # Same size, other history, signed with the real station key.
    with _forked_log(env, [b"other 0", b"other 1", b"other 2"]) as fork:
        with pytest.raises(WitnessForkError, match="two different roots for tree size 3"):
            w1.add_checkpoint(_note(fork, env.station), 3, [])
        fork.append(b"other 3")
        fork.append(b"other 4")
        with pytest.raises(WitnessForkError, match="consistency proof 3 -> 5 fails"):
            w1.add_checkpoint(_note(fork, env.station), 3, fork.consistency_proof(3, 5))
        # The station-side helper stops too.
        with pytest.raises(WitnessForkError):
            witness_checkpoint(fork, _note(fork, env.station), [w1])
    # Nothing was cosigned; the evidence of the fork is kept.
    state = w1.latest(env.station.origin)
    assert state is not None and state[0].size == 3 and state[0].root == cosigned_root
    kept = list((w1.directory / "forks").glob("*.json"))
    assert len(kept) >= 2
    assert json.loads(kept[0].read_text())["format"] == "zhichao.witness-fork/1"
    # The honest log goes on being cosigned.
    _seal(env, good_case, "p3", witnesses=[w1])
    assert w1.latest_size(env.station.origin) == 4


def test_witness_refuses_rollback_bad_signature_and_unknown_log(
        env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    w1 = _witness(env, "center.zj/w1")
    for i in range(2):
        _seal(env, good_case, f"p{i}", witnesses=[w1])
    with _forked_log(env, [env.log.entry(0)]) as shorter, pytest.raises(
            WitnessForkError, match="smaller"):
        w1.add_checkpoint(_note(shorter, env.station), 2, [])
    with pytest.raises(WitnessConflictError) as conflict:
        w1.add_checkpoint(_note(env.log, env.station), 1, [])
    assert conflict.value.witness_size == 2
    mallory = Station("S001", env.station.key_name, generate_key())
    with pytest.raises(WitnessError, match="does not verify|no signature"):
        w1.add_checkpoint(_note(env.log, mallory), 2, [])
    elsewhere = Station("S999", "zhichao-station-S999", generate_key())
    with MerkleLog(env.root / "l999", origin=elsewhere.origin, create=True, fsync=False) as l2:
        l2.append(b"x")
        with pytest.raises(WitnessError, match="unknown log"):
            w1.add_checkpoint(_note(l2, elsewhere), 0, [])


def test_split_view_is_reported(env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    honest_w, fooled_w = _witness(env, "center.zj/w1"), _witness(env, "notary.example/w2")
    keys = {honest_w.name: honest_w.public_key, fooled_w.name: fooled_w.public_key}
    pkgs = [_seal(env, good_case, f"p{i}", witnesses=[honest_w]) for i in range(3)]
    # The station shows another history of the same log to the second witness.
    with _forked_log(env, [b"a", b"b", b"c"]) as fork:
        shown = witness_checkpoint(fork, _note(fork, env.station), [fooled_w])
    report = verify_package(pkgs[2], key=env.station.key.public_key(), witness_keys=keys,
                            witness_required=1, trusted_checkpoint=shown)
    assert {"witness.fork", "witness.split_view"} <= report.codes(), report.text()
    text = _check(report, "witness.split_view")
    assert honest_w.name in text and fooled_w.name in text


def test_later_cosigned_checkpoint_covers_an_older_package(
        env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    w1 = _witness(env, "center.zj/w1")
    first = _seal(env, good_case, "p0")  # sealed before the witness existed
    _seal(env, good_case, "p1")
    cosigned = witness_checkpoint(env.log, _note(env.log, env.station), [w1])
    key = env.station.key.public_key()
    keys = {w1.name: w1.public_key}
    report = verify_package(first, key=key, witness_keys=keys, witness_required=1,
                            trusted_checkpoint=cosigned, log_dir=env.log.directory)
    assert report.ok, report.text()
    assert "witness.consistency" in report.codes(Result.PASS)
    # Without a consistency proof the later checkpoint cannot count.
    report = verify_package(first, key=key, witness_keys=keys, witness_required=1,
                            trusted_checkpoint=cosigned)
    assert "witness.missing" in report.codes()


# ---------------------------------------------------------------------- review events


def _event(pkg: Path, kind: EventType, outcome: str, minute: int, **kw: Any) -> ReviewEvent:
    return ReviewEvent.for_package(pkg, kind, actor_id=kw.pop("actor_id", "R-0042"),
                                   outcome=outcome, reason_zh=kw.pop("reason_zh", "核对无误"),
                                   time_utc=NOW.replace(minute=minute), **kw)


def test_review_history_is_logged_and_verified(env: Env, good_case: tuple[CaseInputs, Path]
                                               ) -> None:
    w1 = _witness(env, "center.zj/w1")
    pkg = _seal(env, good_case, "p", witnesses=[w1])
    other = _seal(env, good_case, "other", witnesses=[w1])
    steps = [(EventType.TECHNICAL_REVIEW, "approved"), (EventType.LEGAL_REVIEW, "approved"),
             (EventType.DECISION, "fine"), (EventType.SERVICE, "served")]
    receipts = []
    for minute, (kind, outcome) in enumerate(steps):
        receipts.append(record_review_event(
            env.log, env.station, _event(pkg, kind, outcome, minute,
                                         details={"fine_yuan": 600} if outcome == "fine" else {}),
            witnesses=[w1]))
    record_review_event(env.log, env.station,
                        _event(other, EventType.REJECTION, "rejected", 9,
                               reason_zh="号牌无法辨认，退回"))
    assert [r.index for r in receipts] == [2, 3, 4, 5]
    assert receipts[-1].to_json()["inclusion"]["size"] == 6
    key = env.station.key.public_key()
    report = verify_package(pkg, key=key, log_dir=env.log.directory)
    assert report.ok, report.text()
    events = [c for c in report.checks if c.code == "history.event"]
    assert len(events) == 4
    assert "技术审核" in events[0].message_zh and "R-0042" in events[0].message_zh
    assert "送达" in events[3].message_zh and "served" in events[3].message_en
    assert "history.sequence" not in report.codes(Result.WARN)
    # The same, offline, from a history bundle without the log.
    bundle = history_bundle(env.log, json.loads(
        (pkg / "seal/entry.json").read_text())["manifest_sha256"])
    report = verify_package(pkg, key=key, history=bundle)
    assert report.ok and len([c for c in report.checks if c.code == "history.event"]) == 4
    # The rejected package shows its own single event only.
    rejected = verify_package(other, key=key, log_dir=env.log.directory)
    events = [c for c in rejected.checks if c.code == "history.event"]
    assert len(events) == 1 and "退回" in events[0].message_zh
    # A tampered bundle entry is named.
    raw = json.loads(bundle)
    raw["events"][2]["entry_b64"] = raw["events"][1]["entry_b64"]
    report = verify_package(pkg, key=key, history=json.dumps(raw).encode())
    assert "history.proof" in report.codes() and "entry 4" in _check(report, "history.proof")


def test_decision_without_reviews_is_flagged(env: Env, good_case: tuple[CaseInputs, Path]
                                             ) -> None:
    pkg = _seal(env, good_case, "p")
    record_review_event(env.log, env.station, _event(pkg, EventType.TECHNICAL_REVIEW,
                                                     "approved", 1))
    record_review_event(env.log, env.station, _event(pkg, EventType.DECISION, "fine", 2))
    report = verify_package(pkg, key=env.station.key.public_key(), log_dir=env.log.directory)
    assert "legal_review" in _check(report, "history.sequence")
    unreviewed = _seal(env, good_case, "q")
    report = verify_package(unreviewed, key=env.station.key.public_key(),
                            log_dir=env.log.directory)
    assert "history.none" in report.codes(Result.WARN)


def test_bad_events_are_refused_and_nothing_is_appended(
        env: Env, good_case: tuple[CaseInputs, Path]) -> None:
    pkg = _seal(env, good_case, "p")
    size = env.log.size
    with pytest.raises(EventError, match="pseudonymous"):
        _event(pkg, EventType.TECHNICAL_REVIEW, "approved", 1, actor_id="张三")
    with pytest.raises(EventError, match="time zone"):
        ReviewEvent.for_package(pkg, "legal_review", actor_id="R-1", outcome="approved",
                                reason_zh="x", time_utc=datetime(2025, 6, 2))
    with pytest.raises(EventError, match="unknown event_type"):
        ReviewEvent.for_package(pkg, "coffee", actor_id="R-0001", outcome="approved",
                                reason_zh="x")
    with pytest.raises(EventError, match="reason_zh"):
        _event(pkg, EventType.DECISION, "fine", 1, reason_zh="  ")
    good = _event(pkg, EventType.TECHNICAL_REVIEW, "approved", 1)
    wrong_hash = ReviewEvent(good.event_type, good.package_id, "0" * 64,
                             good.package_log_origin, good.package_log_index, good.actor_id,
                             good.time_utc, good.outcome, good.reason_zh)
    with pytest.raises(EventError, match="is not the sealing of package"):
        record_review_event(env.log, env.station, wrong_hash)
    wrong_index = ReviewEvent(good.event_type, good.package_id, good.manifest_sha256,
                              good.package_log_origin, 99, good.actor_id, good.time_utc,
                              good.outcome, good.reason_zh)
    with pytest.raises(EventError, match="not in"):
        record_review_event(env.log, env.station, wrong_index)
    assert env.log.size == size


def test_cli_review_history_and_witness(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    from tests.evidence.conftest import case_dict
    from zhichao.cli import main

    base = tmp_path / "in"
    base.mkdir()
    (base / "case.json").write_text(json.dumps(case_dict(base), ensure_ascii=False))
    assert main(["keygen", str(tmp_path / "keys/station")]) == 0
    assert main(["keygen", str(tmp_path / "keys/witness")]) == 0
    station = ["--key", str(tmp_path / "keys/station.key"), "--station", "S001",
               "--log", str(tmp_path / "log")]
    pkg = str(tmp_path / "pkg")
    assert main(["seal", str(base / "case.json"), "--out", pkg, *station]) == 0
    for kind, outcome in (("technical_review", "approved"), ("legal_review", "approved")):
        assert main(["review-event", pkg, *station, "--type", kind, "--actor", "R-0042",
                     "--outcome", outcome, "--reason", "照片清晰，轴数一致",
                     "--time", "2025-06-02T01:00:00Z"]) == 0
    assert main(["review-event", pkg, *station, "--type", "decision", "--actor", "张三",
                 "--outcome", "fine", "--reason", "x"]) == 2  # a name is refused
    pub = str(tmp_path / "keys/station.pub")
    witness = ["--witness-key", f"center.zj/w1={tmp_path / 'keys/witness.pub'}"]
    capsys.readouterr()
    assert main(["verify", pkg, "--key", pub, *witness]) == 1
    assert "witness.missing" in capsys.readouterr().out
    cosigned = tmp_path / "cosigned.txt"
    assert main(["witness-cosign", "--log", str(tmp_path / "log"), "--state",
                 str(tmp_path / "wstate"), "--key", str(tmp_path / "keys/witness.key"),
                 "--name", "center.zj/w1", "--log-key", pub, "--log-key-name",
                 "zhichao-station-S001", "--out", str(cosigned)]) == 0
    capsys.readouterr()
    assert main(["verify", pkg, "--key", pub, *witness, "--checkpoint", str(cosigned),
                 "--log", str(tmp_path / "log")]) == 0
    out = capsys.readouterr().out
    assert "witness.cosigned" in out and out.count("history.event") == 2 and "法制审核" in out
    bundle = tmp_path / "history.json"
    assert main(["history", pkg, "--log", str(tmp_path / "log"), "--out", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["verify", pkg, "--key", pub, "--history", str(bundle)]) == 0
    assert capsys.readouterr().out.count("history.event") == 2
    assert main(["verify", pkg, "--key", pub, "--witness-key", "bad"]) == 2


def test_event_not_yet_checkpointed_is_a_warning(env: Env, good_case: tuple[CaseInputs, Path]
                                                 ) -> None:
    pkg = _seal(env, good_case, "p")
    record_review_event(env.log, env.station, _event(pkg, EventType.TECHNICAL_REVIEW,
                                                     "approved", 1))
    # Appended by a writer that crashed before signing a checkpoint.
    env.log.append(_event(pkg, EventType.LEGAL_REVIEW, "approved", 2).entry_bytes())
    report = verify_package(pkg, key=env.station.key.public_key(), log_dir=env.log.directory)
    assert report.ok, report.text()
    assert len([c for c in report.checks if c.code == "history.event"]) == 1
    assert "legal_review" in _check(report, "history.uncovered")
    bundle = json.loads(history_bundle(env.log, json.loads(
        (pkg / "seal/entry.json").read_text())["manifest_sha256"]))
    assert len(bundle["events"]) == 1 and bundle["not_yet_checkpointed"] == 1
