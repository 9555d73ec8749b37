"""``zhichao`` subcommands of the evidence stage: verify, keygen, seal, render, log-audit,
review-event, history, witness-cosign.

Exit codes: 0 success (all checks passed), 1 a check failed, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from zhichao.evidence.errors import EvidenceError


def _witness_keys(specs: list[str] | None) -> dict[str, Any]:
    from zhichao.evidence.signing import load_public_key

    keys: dict[str, Any] = {}
    for spec in specs or []:
        name, sep, path = spec.rpartition("=")
        if not sep or not name:
            raise ValueError(f"--witness-key {spec!r}: expected NAME=PUBLIC_KEY_FILE")
        keys[name] = load_public_key(Path(path))
    return keys


def _verify(args: argparse.Namespace) -> int:
    from zhichao.evidence.signing import load_public_key
    from zhichao.evidence.verify import load_tsa_roots, verify_package

    try:
        witnesses = _witness_keys(args.witness_key)
        required = len(witnesses) if args.witness_count is None else args.witness_count
        if required < 0 or required > len(witnesses):
            raise ValueError(f"--witness-count {required}: between 0 and the number of "
                             f"--witness-key given ({len(witnesses)})")
        history = Path(args.history).read_bytes() if args.history else None
        key = load_public_key(args.key) if args.key else None
        trusted = Path(args.checkpoint).read_bytes() if args.checkpoint else None
        proof = None
        if args.consistency:
            raw = json.loads(Path(args.consistency).read_text(encoding="utf-8"))
            proof = [bytes.fromhex(h) for h in raw["hashes"]]
        roots = load_tsa_roots(Path(args.tsa_ca)) if args.tsa_ca else None
    except (EvidenceError, OSError, ValueError, KeyError, TypeError) as exc:
        print(f"错误 error: {exc}", file=sys.stderr)
        return 2
    report = verify_package(Path(args.package), key=key, trusted_checkpoint=trusted,
                            consistency_proof=proof,
                            log_dir=Path(args.log) if args.log else None, tsa_roots=roots,
                            witness_keys=witnesses, witness_required=required,
                            history=history)
    if args.original:  # a re-weighing's supplement and the case package it names
        from zhichao.evidence.reweigh import check_original

        check_original(report, Path(args.package), Path(args.original), key=key)
    print(report.text())
    return verify_exit_code(report)


def verify_exit_code(report: Any) -> int:
    """0 verified against a trusted key; 3 self-consistent but the origin unproven (no
    ``--key``); 1 a check failed (2 is bad input, before any check)."""
    if not report.ok:
        return 1
    return 0 if report.origin_proven else 3


def _review_event(args: argparse.Namespace) -> int:
    from zhichao.evidence._util import parse_time
    from zhichao.evidence.events import ReviewEvent, record_review_event
    from zhichao.evidence.merkle import MerkleLog
    from zhichao.evidence.package import Station
    from zhichao.evidence.signing import load_private_key

    try:
        details = json.loads(args.details) if args.details else {}
        if not isinstance(details, dict):
            raise ValueError("--details must be a JSON object")
        event = ReviewEvent.for_package(
            Path(args.package), args.type, actor_id=args.actor, outcome=args.outcome,
            reason_zh=args.reason, details=details,
            time_utc=parse_time(args.time, "--time") if args.time else None)
        station = Station(args.station, args.key_name or f"zhichao-station-{args.station}",
                          load_private_key(Path(args.key)))
        with MerkleLog(Path(args.log)) as log:
            receipt = record_review_event(log, station, event)
    except (EvidenceError, OSError, ValueError) as exc:
        print(f"错误 error: {exc}", file=sys.stderr)
        return 2
    print(f"log index {receipt.index}  {event.event_type}  {event.outcome}  "
          f"checkpoint size {receipt.proof.size}")
    return 0


def _history(args: argparse.Namespace) -> int:
    import hashlib

    from zhichao.evidence.events import history_bundle
    from zhichao.evidence.merkle import MerkleLog

    try:
        manifest_sha = hashlib.sha256((Path(args.package) / "manifest.json").read_bytes())
        with MerkleLog(Path(args.log), read_only=True) as log:
            data = history_bundle(log, manifest_sha.hexdigest())
        Path(args.out).write_bytes(data)
    except (EvidenceError, OSError) as exc:
        print(f"错误 error: {exc}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


def _witness_cosign(args: argparse.Namespace) -> int:
    from zhichao.evidence.errors import WitnessForkError
    from zhichao.evidence.events import latest_checkpoint
    from zhichao.evidence.merkle import MerkleLog
    from zhichao.evidence.signing import load_private_key, load_public_key
    from zhichao.evidence.witness import LogKey, Witness, add_cosignature_lines

    try:
        with MerkleLog(Path(args.log), read_only=True) as log:
            witness = Witness(Path(args.state), args.name, load_private_key(Path(args.key)),
                              [LogKey(log.origin, args.log_key_name,
                                      load_public_key(Path(args.log_key)))])
            latest = latest_checkpoint(log)
            if latest is None:
                raise EvidenceError(f"{args.log}: no stored checkpoint to cosign")
            size, note = latest
            old = witness.latest_size(log.origin)
            proof = log.consistency_proof(old, size) if 0 < old <= size else []
            line = witness.add_checkpoint(note, old, proof)
        Path(args.out).write_bytes(add_cosignature_lines(note, [line]))
    except WitnessForkError as exc:
        print(f"拒绝联署：日志分叉 / REFUSED, log fork: {exc}", file=sys.stderr)
        return 1
    except (EvidenceError, OSError) as exc:
        print(f"错误 error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}  cosigned by {args.name}: {log.origin} size {size}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from zhichao.evidence.signing import generate_key, key_fingerprint, private_pem, public_pem

    out = Path(args.out)
    priv, pub = out.with_suffix(".key"), out.with_suffix(".pub")
    if priv.exists() or pub.exists():
        print(f"错误 error: {priv} or {pub} exists; refusing to overwrite a key", file=sys.stderr)
        return 2
    key = generate_key()
    priv.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem(key))
    pub.write_bytes(public_pem(key.public_key()))
    print(f"{pub}  SHA-256(raw public key) = {key_fingerprint(key.public_key())}")
    return 0


def _seal(args: argparse.Namespace) -> int:
    from zhichao.evidence.inputs import CaseInputs
    from zhichao.evidence.merkle import MerkleLog
    from zhichao.evidence.package import Station, seal_package
    from zhichao.evidence.signing import load_private_key
    from zhichao.evidence.tsa import HttpTsa, OpensslTsa, TimestampAuthority

    try:
        case_path = Path(args.case)
        raw: Any = json.loads(case_path.read_text(encoding="utf-8"))
        case = CaseInputs.from_json(raw, str(case_path))
        key = load_private_key(Path(args.key))
        station = Station(args.station, args.key_name or f"zhichao-station-{args.station}", key)
        tsa: TimestampAuthority | None = None
        if args.tsa_url:
            tsa = HttpTsa(args.tsa_url)
        elif args.tsa_openssl_config:
            tsa = OpensslTsa(Path(args.tsa_openssl_config))
        with MerkleLog(Path(args.log), origin=station.origin, create=True) as log:
            result = seal_package(case, Path(args.out), station=station, log=log,
                                  base_dir=case_path.parent, tsa=tsa, sm3=args.sm3,
                                  rules_dir=Path(args.rules_dir) if args.rules_dir else None)
    except json.JSONDecodeError as exc:
        print(f"错误 error: {args.case}: invalid JSON at line {exc.lineno}", file=sys.stderr)
        return 2
    except (EvidenceError, OSError) as exc:
        print(f"错误 error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.directory}  {result.package_id}  log index {result.log_index}  "
          f"{result.eligibility.status}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from zhichao.evidence.documents import render_all, render_reweigh
    from zhichao.evidence.manifest import REWEIGH_FORMAT
    from zhichao.evidence.verify import verify_package

    pkg = Path(args.package)
    report = verify_package(pkg)
    if not report.ok:
        print(report.text())
        print("错误 error: package does not verify; refusing to render", file=sys.stderr)
        return 1
    manifest = json.loads((pkg / "manifest.json").read_text(encoding="utf-8"))
    originals = [f for f in manifest["files"] if f["kind"] == "original"]
    doc = {"package_id": manifest["package_id"], "case": manifest["case"], "files": originals}

    def read(path: str) -> bytes | None:
        target = pkg / path
        return target.read_bytes() if target.is_file() else None

    try:
        if manifest.get("format") == REWEIGH_FORMAT:  # a supplement: its 复检记录
            docs = render_reweigh(doc, read)
        else:
            docs = render_all(doc, read)
    except EvidenceError as exc:
        print(f"错误 error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in docs.items():
        (out / Path(name).name).write_bytes(data)
        print(out / Path(name).name)
    return 0


def _log_audit(args: argparse.Namespace) -> int:
    from zhichao.evidence.signing import load_public_key
    from zhichao.evidence.verify import audit_log

    try:
        key = load_public_key(Path(args.key))
    except EvidenceError as exc:
        print(f"错误 error: {exc}", file=sys.stderr)
        return 2
    report = audit_log(Path(args.log), key, args.key_name)
    print(report.text())
    return 0 if report.ok else 1


def register(subparsers: Any) -> None:
    """Add the evidence subcommands to the ``zhichao`` parser."""
    p = subparsers.add_parser("verify", help="verify an evidence package offline (核验证据包)")
    p.add_argument("package", help="package directory or .zip")
    p.add_argument("--key", help="the station's trusted public key (PEM)")
    p.add_argument("--checkpoint", help="a trusted signed checkpoint (e.g. a witness's)")
    p.add_argument("--consistency", help="JSON consistency proof {\"hashes\": [hex…]}")
    p.add_argument("--log", help="the station log directory, to check the package against it")
    p.add_argument("--tsa-ca", help="PEM root certificate(s) of the trusted TSA")
    p.add_argument("--witness-key", action="append", metavar="NAME=FILE",
                   help="a trusted witness's key name and PEM public key (repeatable)")
    p.add_argument("--witness-count", type=int,
                   help="cosignatures required (default: all --witness-key given)")
    p.add_argument("--history", help="history bundle (zhichao history) with review events")
    p.add_argument("--original", help="for a static re-weighing's supplement: the case "
                   "package it names (checked to verify and to be exactly that one)")
    p.set_defaults(handler=_verify)

    p = subparsers.add_parser("review-event", help="log a review/decision/service event")
    p.add_argument("package", help="the sealed package directory the event is about")
    p.add_argument("--log", required=True, help="the station log directory")
    p.add_argument("--key", required=True, help="the log's private checkpoint key (PEM)")
    p.add_argument("--station", required=True, help="station id")
    p.add_argument("--key-name", help="key name in signed notes (default zhichao-station-ID)")
    p.add_argument("--type", required=True, help="technical_review, legal_review, decision, "
                   "service, rejection, statement or hearing")
    p.add_argument("--actor", required=True, help="pseudonymous id of who acted (no names)")
    p.add_argument("--outcome", required=True, help="short code, e.g. approved, rejected")
    p.add_argument("--reason", required=True, help="why (zh-CN)")
    p.add_argument("--time", help="RFC 3339 time of the act (default now, UTC)")
    p.add_argument("--details", help="JSON object of further facts")
    p.set_defaults(handler=_review_event)

    p = subparsers.add_parser("history", help="export a package's review events with proofs")
    p.add_argument("package")
    p.add_argument("--log", required=True, help="the station log directory")
    p.add_argument("--out", required=True, help="history bundle file to write")
    p.set_defaults(handler=_history)

    p = subparsers.add_parser("witness-cosign",
                              help="as a witness, cosign a log's latest checkpoint")
    p.add_argument("--log", required=True, help="the log directory (read only)")
    p.add_argument("--state", required=True, help="the witness's state directory")
    p.add_argument("--key", required=True, help="the witness's private key (PEM)")
    p.add_argument("--name", required=True, help="the witness's key name")
    p.add_argument("--log-key", required=True, help="the log's public key (PEM)")
    p.add_argument("--log-key-name", required=True, help="the log's key name")
    p.add_argument("--out", required=True, help="file for the cosigned checkpoint")
    p.set_defaults(handler=_witness_cosign)

    p = subparsers.add_parser("keygen", help="make an Ed25519 station key pair")
    p.add_argument("out", help="path without suffix; writes OUT.key (0600) and OUT.pub")
    p.set_defaults(handler=_keygen)

    p = subparsers.add_parser("seal", help="build and seal an evidence package from a case file")
    p.add_argument("case", help="case JSON: {vehicle, device, site, plate, images, …}")
    p.add_argument("--out", required=True, help="new package directory")
    p.add_argument("--key", required=True, help="station private key (PEM)")
    p.add_argument("--station", required=True, help="station id")
    p.add_argument("--key-name", help="key name in signed notes (default zhichao-station-ID)")
    p.add_argument("--log", required=True, help="station log directory (created if absent)")
    p.add_argument("--tsa-url", help="RFC 3161 TSA URL")
    p.add_argument("--tsa-openssl-config", help="local TSA: openssl ts -reply config file")
    p.add_argument("--rules-dir", help="directory of reviewed rule files overriding built-ins")
    p.add_argument("--sm3", action="store_true", help="record SM3 digests beside SHA-256")
    p.set_defaults(handler=_seal)

    p = subparsers.add_parser("render", help="re-make the zh-CN documents from a package")
    p.add_argument("package")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(handler=_render)

    p = subparsers.add_parser("log-audit", help="audit a whole station log and its checkpoints")
    p.add_argument("log")
    p.add_argument("--key", required=True, help="station public key (PEM)")
    p.add_argument("--key-name", required=True, help="key name used in the checkpoints")
    p.set_defaults(handler=_log_audit)
