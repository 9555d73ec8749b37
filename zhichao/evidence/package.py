"""Build and seal an evidence package.

Steps (:func:`seal_package`):

1. run the eligibility gate and, for an overload with a decidable limit, the penalty
   proposal of the rule in force at the violation time;
2. copy the original files byte for byte (never re-encoded) into ``original/``;
3. render the derived documents (取证单, 违法行为通知书) from the manifest facts and the
   originals into ``derived/`` (marked ``kind: derived`` with ``derived_from``);
4. hash every file (SHA-256, and SM3 when asked), write the canonical manifest, sign it;
5. append a log entry binding the manifest and signature to the station's Merkle log,
   sign a checkpoint, time-stamp it when a TSA is configured, and store the inclusion
   proof and checkpoint in ``seal/``.

A passage whose device certificate was invalid is sealed all the same; its eligibility
says ``UNUSABLE`` with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zhichao import __version__
from zhichao.evidence._util import format_time
from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.eligibility import Eligibility, GateConfig, evaluate
from zhichao.evidence.errors import EvidenceError, PackageError, RuleError
from zhichao.evidence.inputs import CaseInputs, DeviceStatus, SiteInfo
from zhichao.evidence.manifest import (
    CHECKPOINT_NAME,
    ENTRY_NAME,
    INCLUSION_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    PUBLIC_KEY_NAME,
    SIGNATURE_NAME,
    SUMS_NAME,
    TIMESTAMP_NAME,
)
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.penalty import PenaltyProposal
from zhichao.evidence.rules import RuleSet, load_rule_set
from zhichao.evidence.signing import (
    Checkpoint,
    key_fingerprint,
    public_pem,
    sign_checkpoint,
)
from zhichao.evidence.tsa import TimestampAuthority, request_timestamp
from zhichao.evidence.verify_log import station_log_origin
from zhichao.evidence.witness import WitnessClient, witness_checkpoint

ENTRY_FORMAT = "zhichao.log-entry/1"
Renderer = Callable[[dict[str, Any], Callable[[str], bytes | None]], dict[str, bytes]]


@dataclass(frozen=True)
class Station:
    station_id: str
    key_name: str
    key: Ed25519PrivateKey

    @property
    def origin(self) -> str:
        return station_log_origin(self.station_id)


@dataclass(frozen=True)
class SealResult:
    directory: Path
    package_id: str
    manifest_sha256: str
    log_index: int
    eligibility: Eligibility
    penalty: PenaltyProposal | None


def sm3_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize().hex()


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def _device_json(d: DeviceStatus | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "device_id": d.device_id,
        "technical_review_approved": d.technical_review_approved,
        "technical_review_date": None if d.technical_review_date is None
        else d.technical_review_date.isoformat(),
        "legal_review_approved": d.legal_review_approved,
        "legal_review_date": None if d.legal_review_date is None
        else d.legal_review_date.isoformat(),
        "accuracy_class": d.accuracy_class,
        "certificate_number": d.certificate_number,
        "certificate_issuer": d.certificate_issuer,
        "certificate_valid_from": None if d.certificate_valid_from is None
        else format_time(d.certificate_valid_from),
        "certificate_valid_to": None if d.certificate_valid_to is None
        else format_time(d.certificate_valid_to),
        "drift_alarm_open": d.drift_alarm_open,
        "manufacturer": d.manufacturer,
        "model": d.model,
        "installation_type": d.installation_type,
    }


def site_json(s: SiteInfo | None) -> dict[str, Any] | None:
    """The site as the manifests record it (a case package's and a supplement's)."""
    return None if s is None else {
        "site_id": s.site_id, "name_zh": s.name_zh, "road_zh": s.road_zh,
        "stake_zh": s.stake_zh, "jurisdiction": s.jurisdiction,
        "published_utc": None if s.published_utc is None else format_time(s.published_utc),
        "announcement_zh": s.announcement_zh, "authority_zh": s.authority_zh,
        "handling_place_zh": s.handling_place_zh,
    }


def case_facts(case: CaseInputs, eligibility: Eligibility, penalty: PenaltyProposal | None,
               rule_set: RuleSet | None, gate: GateConfig) -> dict[str, Any]:
    """The ``case`` section of the manifest: every fact, as JSON data."""
    v = case.vehicle
    s, p, c, r = case.site, case.plate, case.clocks, case.registration
    rule = eligibility.rule
    return {
        "time_utc": format_time(v.time_utc),
        "site": site_json(s),
        "site_id": v.site_id,
        "lane_id": v.lane_id,
        "device": _device_json(case.device),
        "vehicle": v.raw,
        "limit": {
            "vehicle_class": v.vehicle_class,
            "vehicle_class_zh": v.vehicle_class_zh,
            "limit_kg": _dec(v.limit_kg),
            "limit_basis": v.limit_basis,
            "rule_table_limit_kg": None if rule is None or v.vehicle_class is None
            else rule.limits_by_class_kg.get(v.vehicle_class),
            "rule_limit_source": None if rule is None else rule.limits_source.to_json(),
        },
        "allowance_kg": _dec(v.allowance_kg),
        "excess_kg": _dec(v.excess_kg),
        "excess_after_allowance_kg": _dec(v.excess_after_allowance_kg),
        "uncertainty_kg": _dec(v.uncertainty_kg),
        "rule_set": None if rule_set is None else {
            "jurisdiction": rule_set.jurisdiction, "jurisdiction_zh": rule_set.jurisdiction_zh,
            "version": None if rule is None else rule.version,
            "effective_from": None if rule is None else format_time(rule.effective_from),
            "notes": None if rule is None else rule.notes,
            "statement_days": None if rule is None else rule.statement_days,
            "statement_days_source": None if rule is None
            else rule.statement_days_source.to_json(),
            "hearing_request_days": None if rule is None else rule.hearing_request_days,
            "hearing_request_source": None if rule is None
            else rule.hearing_request_source.to_json(),
            "pending_legal_review": [] if rule is None
            else [p.to_json() for p in rule.pending_legal_review()],
        },
        "penalty": None if penalty is None else penalty.to_json(),
        "plate": None if p is None else p.to_json(),
        "registration": None if r is None else {
            "plate_text": r.plate_text, "axle_count": r.axle_count,
            "total_mass_kg": _dec(r.total_mass_kg), "owner_name_zh": r.owner_name_zh,
            "owner_address_zh": r.owner_address_zh,
        },
        "clocks": None if c is None else c.to_json(),
        "flags": list(v.flags),
        "eligibility": eligibility.to_json(),
        "gate_config": gate.to_json(),
        "prior_violations": case.prior_violations,
        "calibration_profile": v.calibration_profile,
        "weighing_software_version": v.software_version,
        # a linked static re-weighing is the evidence weight: the reading goes with it
        **({} if case.static_reweigh is None
           else {"static_reweigh": case.static_reweigh.to_json()}),
    }


def _original_name(prefix: str, source: Path, used: set[str]) -> str:
    suffix = "".join(ch for ch in source.suffix.lower() if ch.isalnum() or ch == ".")[:10]
    name = f"{prefix}{suffix}"
    n = 2
    while name in used:
        name = f"{prefix}-{n}{suffix}"
        n += 1
    used.add(name)
    return name


def _penalty_for(case: CaseInputs, eligibility: Eligibility) -> PenaltyProposal | None:
    """The gate's proposal (verdict by the law, 从旧兼从轻): ``zhichao evaluate`` shows it."""
    return eligibility.penalty


def seal_package(
    case: CaseInputs,
    out_dir: Path,
    *,
    station: Station,
    log: MerkleLog,
    base_dir: Path | None = None,
    rules_dir: Path | None = None,
    gate: GateConfig | None = None,
    tsa: TimestampAuthority | None = None,
    sm3: bool = False,
    renderer: Renderer | None = None,
    created_utc: datetime | None = None,
    witnesses: Sequence[WitnessClient] = (),
) -> SealResult:
    """Build, hash, sign and log one package in the new directory ``out_dir``.

    Relative file paths in ``case`` are resolved against ``base_dir``. ``renderer`` makes
    the derived documents (default: :func:`zhichao.evidence.documents.render_all`); pass
    ``lambda *_: {}`` to skip them. Each of ``witnesses`` cosigns the new checkpoint
    before it is time-stamped and stored (see :mod:`zhichao.evidence.witness`); a witness
    that detects a fork raises :class:`~zhichao.evidence.errors.WitnessForkError` and the
    package is not written (its log entry stays: the log is append-only).

    Raises
    ------
    PackageError
        If ``out_dir`` exists, or an original file is missing or unreadable.
    """
    gate = gate or GateConfig()
    if out_dir.exists():
        raise PackageError(f"{out_dir}: already exists; a package is written once")
    rule_set: RuleSet | None = None
    if case.site is not None:
        try:
            rule_set = load_rule_set(case.site.jurisdiction, rules_dir)
        except RuleError:
            rule_set = None
    eligibility = evaluate(case, rule_set, gate)
    penalty = _penalty_for(case, eligibility)

    sources = _original_sources(case, base_dir or Path.cwd())
    videos_missing = _video_sources(case, base_dir or Path.cwd(), sources)

    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "original").mkdir(parents=True)
    (tmp / "derived").mkdir()
    (tmp / "seal").mkdir()
    try:
        record_bytes = canonicalize(case.vehicle.raw)
        file_entries, originals = _write_originals(tmp, record_bytes, sources)
        facts = case_facts(case, eligibility, penalty, rule_set, gate)
        if case.videos:  # a streaming camera's clip, or why there is none
            facts["videos_missing"] = videos_missing
        package_id = "{}-{}-{}-{}".format(
            station.station_id, case.vehicle.time_utc.strftime("%Y%m%dT%H%M%S%fZ"),
            case.vehicle.lane_id, hashlib.sha256(record_bytes).hexdigest()[:8])
        doc_input = {"package_id": package_id, "case": facts,
                     "files": [dict(e) for e in file_entries]}
        if renderer is None:
            from zhichao.evidence.documents import render_all
            renderer = render_all
        derived = renderer(doc_input, originals.get)
        for path, data in sorted(derived.items()):
            (tmp / path).write_bytes(data)
            file_entries.append({"path": path, "kind": "derived",
                                 "media_type": mimetypes.guess_type(path)[0]
                                 or "application/octet-stream",
                                 "role": Path(path).stem,
                                 "derived_from": ["manifest.case", *sorted(originals)]})
        for entry in file_entries:
            data = (tmp / entry["path"]).read_bytes()
            entry["size_bytes"] = len(data)
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            if sm3:
                entry["sm3"] = sm3_hex(data)
        public = station.key.public_key()
        manifest = {
            "format": MANIFEST_FORMAT,
            "package_id": package_id,
            "created_utc": format_time(created_utc or datetime.now(UTC)),
            "software": {"name": "zhichao", "version": __version__},
            "station": {"station_id": station.station_id, "key_name": station.key_name,
                        "key_sha256": key_fingerprint(public), "log_origin": station.origin},
            "hash_algorithms": ["sha256", "sm3"] if sm3 else ["sha256"],
            "case": facts,
            "files": file_entries,
        }
        try:
            manifest_bytes = canonicalize(manifest)
        except EvidenceError as exc:
            raise PackageError(f"manifest cannot be canonicalised: {exc}") from exc
        signature = station.key.sign(manifest_bytes)
        (tmp / MANIFEST_NAME).write_bytes(manifest_bytes)
        (tmp / SIGNATURE_NAME).write_text(base64.b64encode(signature).decode() + "\n")
        (tmp / PUBLIC_KEY_NAME).write_bytes(public_pem(public))
        sums = [f"{hashlib.sha256(manifest_bytes).hexdigest()}  {MANIFEST_NAME}"]
        sums += [f"{e['sha256']}  {e['path']}" for e in file_entries]
        (tmp / SUMS_NAME).write_text("\n".join(sums) + "\n")
        manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
        entry_bytes = canonicalize({
            "format": ENTRY_FORMAT, "type": "package_sealed", "package_id": package_id,
            "manifest_sha256": manifest_sha,
            "signature_sha256": hashlib.sha256(signature).hexdigest(),
        })
        index = _log_and_seal(tmp, entry_bytes, log, station, witnesses, tsa)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SealResult(out_dir, package_id, manifest_sha, index, eligibility, penalty)


def _original_sources(case: CaseInputs, base: Path) -> list[tuple[str, Path, dict[str, Any]]]:
    """(name in ``original/``, source file, manifest fields) of each captured file."""
    sources: list[tuple[str, Path, dict[str, Any]]] = []
    used: set[str] = set()
    for img in case.images:
        src = base / img.path
        extra: dict[str, Any] = {"role": f"image_{img.role}",
                                 "capture_utc": format_time(img.capture_utc),
                                 "camera_id": img.camera_id,
                                 "axle_count_visible": img.axle_count_visible,
                                 "source_name": Path(img.path).name}
        sources.append((_original_name(f"image-{img.role}", src, used), src, extra))
    if case.waveform_path:
        src = base / case.waveform_path
        sources.append((_original_name("waveform", src, used), src,
                        {"role": "waveform", "source_name": src.name}))
    for vid in case.video_paths:
        src = base / vid
        sources.append((_original_name("video", src, used), src,
                        {"role": "video", "source_name": src.name}))
    for _, src, _ in sources:
        if not src.is_file():
            raise PackageError(f"original file {src} is missing or not a file")
    return sources


def _video_sources(case: CaseInputs, base: Path,
                   sources: list[tuple[str, Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Add each clip of ``case.videos`` that decodes to ``sources`` (with what decoding
    found); the clips that are missing or do not decode, with why (manifest facts)."""
    from zhichao.evidence.clip import ClipError, probe_clip

    used = {name for name, _, _ in sources}
    missing: list[dict[str, Any]] = []
    for v in case.videos:
        facts = {"camera_id": v.camera_id, "start_utc": format_time(v.start_utc),
                 "end_utc": format_time(v.end_utc)}
        reason = v.missing_reason
        if v.path is not None:
            src = base / v.path
            try:
                info = probe_clip(src.read_bytes(), where=src.name)
            except (OSError, ClipError) as exc:
                reason = f"the clip file cannot be used: {exc}"
            else:
                frames = {k: format_time(t) for k, t in (("first_frame_utc", v.first_frame_utc),
                                                         ("last_frame_utc", v.last_frame_utc))
                          if t is not None}
                sources.append((_original_name(f"video-{v.camera_id}", src, used), src,
                                {"role": "video", **facts, **frames, "source_name": src.name,
                                 **info.to_json()}))
                continue
        missing.append({**facts, "reason": reason or "unknown"})
    return missing


def _write_originals(tmp: Path, record_bytes: bytes,
                     sources: list[tuple[str, Path, dict[str, Any]]]
                     ) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Copy the originals into ``tmp/original`` byte for byte; (file entries, contents)."""
    file_entries: list[dict[str, Any]] = []
    originals: dict[str, bytes] = {"original/vehicle.json": record_bytes}
    (tmp / "original" / "vehicle.json").write_bytes(record_bytes)
    file_entries.append({"path": "original/vehicle.json", "kind": "original",
                         "role": "vehicle_record", "media_type": "application/json"})
    for name, src, extra in sources:
        dest = tmp / "original" / name
        shutil.copyfile(src, dest)  # byte-for-byte, never re-encoded
        originals[f"original/{name}"] = dest.read_bytes()
        file_entries.append({"path": f"original/{name}", "kind": "original",
                             "media_type": mimetypes.guess_type(name)[0]
                             or "application/octet-stream", **extra})
    return file_entries, originals


def _log_and_seal(tmp: Path, entry_bytes: bytes, log: MerkleLog, station: Station,
                  witnesses: Sequence[WitnessClient], tsa: TimestampAuthority | None) -> int:
    """Append the entry to the log, sign (witness, time-stamp) and store the checkpoint,
    and write ``seal/``; the entry's log index."""
    index = log.append(entry_bytes)
    size = log.size
    note = sign_checkpoint(Checkpoint(log.origin, size, log.root(size)), station.key_name,
                           station.key)
    if witnesses:
        note = witness_checkpoint(log, note, witnesses)
    token = request_timestamp(tsa, note) if tsa is not None else None
    log.store_checkpoint(size, note, token)
    proof = log.inclusion_proof(index, size)
    (tmp / ENTRY_NAME).write_bytes(entry_bytes)
    (tmp / INCLUSION_NAME).write_text(json.dumps({
        "format": "zhichao.inclusion/1", "log_origin": log.origin, "index": index,
        "size": size, "leaf_hash": proof.leaf_hash.hex(),
        "hashes": [h.hex() for h in proof.hashes],
    }, indent=1) + "\n")
    (tmp / CHECKPOINT_NAME).write_bytes(note)
    if token is not None:
        (tmp / TIMESTAMP_NAME).write_bytes(token)
    return index
