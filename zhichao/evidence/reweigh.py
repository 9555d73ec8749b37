"""The supplementary package of a static re-weighing (复检), format ``zhichao.reweigh/1``.

A sealed case package is never modified. When an officer links a stable static reading to
a passage, the station seals a **supplementary package** of its own, with the same layout,
signature and Merkle log as a case package (``manifest.json`` canonical and signed,
``station.pub``, ``SHA256SUMS``, ``seal/``), so :func:`zhichao.evidence.verify.verify_package`
checks it like any package. It holds:

* ``original/static-reading.json`` — the reading (:class:`StaticReading`: weight, status
  flags, how it was called stable, the raw frame bytes, the scale's certificate, the
  officer), RFC 8785 canonical;
* ``derived/reweigh_record.html`` and ``.pdf`` — the 复检记录, a zh-CN document made from
  the manifest's facts alone (:func:`zhichao.evidence.documents.render_reweigh`, the same
  renderer family, fonts and "derived file" footer as a case's 取证单); hashed and listed
  like any member (supplements sealed before it carry none and still verify);
* ``manifest.case`` (``kind: static_reweigh``) — the original it supplements
  (``original``: the case package's ``package_id`` and ``manifest_sha256`` — the hash that
  binds every file of it — or, for a passage that had no case, the passage key and the
  SHA-256 of its canonical vehicle record), the reading again, and the decision the rule
  (:mod:`zhichao.evidence.reweigh_rule`) gives with the static weight: eligibility,
  assessment (static and WIM weight), penalty proposal; the passage (time, site, lane,
  plate, axles, class, WIM weight and verdict) and the site (name, road, stake).

The log entry is ``type: reweigh_sealed``. :func:`check_reweigh` adds the supplement's own
checks to a verification (the reading file is the manifest's reading; the reading is a
weight); :func:`verify_reweigh` also checks, given the original package, that the original
verifies and is exactly the one the supplement names.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zhichao import __version__
from zhichao.evidence import strict_json
from zhichao.evidence._util import format_time
from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.eligibility import GateConfig, evaluate
from zhichao.evidence.errors import EvidenceError, PackageError, RuleError
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.manifest import (
    MANIFEST_NAME,
    PUBLIC_KEY_NAME,
    REWEIGH_FORMAT,
    SIGNATURE_NAME,
    SUMS_NAME,
)
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import (
    ENTRY_FORMAT,
    Renderer,
    Station,
    _log_and_seal,
    site_json,
)
from zhichao.evidence.reader import PackageContents, PackageRefusedError, read_package
from zhichao.evidence.report import Checks, Report
from zhichao.evidence.rules import load_rule_set
from zhichao.evidence.signing import key_fingerprint, public_pem
from zhichao.evidence.static_reading import StaticReading, reading_problem

READING_PATH = "original/static-reading.json"
ENTRY_TYPE = "reweigh_sealed"


@dataclass(frozen=True)
class OriginalRef:
    """What the supplement supplements: a sealed case package (``package_id`` and its
    ``manifest_sha256``), or a passage without one (both None)."""

    passage_key: str
    vehicle_record_sha256: str  # SHA-256 of the RFC 8785 vehicle record (= the sync's)
    package_id: str | None = None
    manifest_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"passage_key": self.passage_key,
                "vehicle_record_sha256": self.vehicle_record_sha256,
                "package_id": self.package_id, "manifest_sha256": self.manifest_sha256}


@dataclass(frozen=True)
class ReweighResult:
    directory: Path
    package_id: str
    manifest_sha256: str
    log_index: int
    decision: dict[str, Any]


def vehicle_record_sha256(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonicalize(record)).hexdigest()


def decision(case: CaseInputs, rules_dir: Path | None = None,
             gate: GateConfig | None = None) -> dict[str, Any]:
    """The gate's decision for ``case`` (with its static reading), as sealed."""
    rule_set = None
    if case.site is not None:
        try:
            rule_set = load_rule_set(case.site.jurisdiction, rules_dir)
        except RuleError:
            rule_set = None
    result = evaluate(case, rule_set, gate)
    return {"eligibility": result.to_json(),
            "penalty": None if result.penalty is None else result.penalty.to_json(),
            "rule_version_at_act": None if result.rule is None else result.rule.version}


def seal_reweigh(case: CaseInputs, original: OriginalRef, out_dir: Path, *, station: Station,
                 log: MerkleLog, rules_dir: Path | None = None, gate: GateConfig | None = None,
                 created_utc: datetime | None = None, renderer: Renderer | None = None
                 ) -> ReweighResult:
    """Seal the supplement of ``case`` (whose ``static_reweigh`` is the linked reading) in
    the new folder ``out_dir``; append it to ``log``. ``renderer`` makes the derived
    documents (default: :func:`zhichao.evidence.documents.render_reweigh`, the 复检记录);
    ``lambda *_: {}`` skips them. Raises :class:`PackageError` if the folder exists, the
    case has no reading, or the reading is no weight; :class:`DocumentError` if a document
    cannot be rendered."""
    reading = case.static_reweigh
    if reading is None:
        raise PackageError("a re-weighing package needs a linked static reading")
    problem = reading_problem(reading)
    if problem is not None:
        raise PackageError(f"static reading {reading.reading_id}: {problem}")
    if out_dir.exists():
        raise PackageError(f"{out_dir}: already exists; a package is written once")
    reading_bytes = canonicalize(reading.to_json())
    v = case.vehicle
    package_id = "{}-RW-{}-{}-{}".format(
        station.station_id, reading.reading_utc.strftime("%Y%m%dT%H%M%S%fZ"), v.lane_id,
        hashlib.sha256(reading_bytes).hexdigest()[:8])
    sealed_decision = decision(case, rules_dir, gate)
    facts: dict[str, Any] = {
        "kind": "static_reweigh", "original": original.to_json(),
        "passage": {"time_utc": format_time(v.time_utc), "site_id": v.site_id,
                    "lane_id": v.lane_id, "plate": None if case.plate is None
                    else case.plate.text, "wim_gross_kg": format(v.gross_weight_kg, "f"),
                    "wim_verdict": v.verdict, "axle_count": v.axle_count,
                    "vehicle_class_zh": v.vehicle_class_zh},
        "site": site_json(case.site),
        "reading": reading.to_json(), "officer": reading.officer,
        "decision": sealed_decision,
    }
    if renderer is None:
        from zhichao.evidence.documents import render_reweigh
        renderer = render_reweigh
    tmp = out_dir.with_name(out_dir.name + ".partial")
    (tmp / "original").mkdir(parents=True)
    (tmp / "seal").mkdir()
    try:
        (tmp / READING_PATH).write_bytes(reading_bytes)
        files: list[dict[str, Any]] = [
            {"path": READING_PATH, "kind": "original", "role": "static_reading",
             "media_type": "application/json", "size_bytes": len(reading_bytes),
             "sha256": hashlib.sha256(reading_bytes).hexdigest()}]
        derived = renderer({"package_id": package_id, "case": facts,
                            "files": [dict(f) for f in files]}, {READING_PATH: reading_bytes}.get)
        if derived:
            (tmp / "derived").mkdir()
        for path, data in sorted(derived.items()):  # 复检记录, as a case's 取证单
            (tmp / path).write_bytes(data)
            files.append({"path": path, "kind": "derived", "role": Path(path).stem,
                          "media_type": mimetypes.guess_type(path)[0]
                          or "application/octet-stream", "size_bytes": len(data),
                          "sha256": hashlib.sha256(data).hexdigest(),
                          "derived_from": ["manifest.case", READING_PATH]})
        public = station.key.public_key()
        manifest = {
            "format": REWEIGH_FORMAT, "package_id": package_id,
            "created_utc": format_time(created_utc or datetime.now(UTC)),
            "software": {"name": "zhichao", "version": __version__},
            "station": {"station_id": station.station_id, "key_name": station.key_name,
                        "key_sha256": key_fingerprint(public), "log_origin": station.origin},
            "hash_algorithms": ["sha256"], "case": facts, "files": files,
        }
        manifest_bytes = canonicalize(manifest)
        signature = station.key.sign(manifest_bytes)
        (tmp / MANIFEST_NAME).write_bytes(manifest_bytes)
        (tmp / SIGNATURE_NAME).write_text(base64.b64encode(signature).decode() + "\n")
        (tmp / PUBLIC_KEY_NAME).write_bytes(public_pem(public))
        manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
        (tmp / SUMS_NAME).write_text("".join(
            [f"{manifest_sha}  {MANIFEST_NAME}\n"]
            + [f"{f['sha256']}  {f['path']}\n" for f in files]))
        entry = canonicalize({"format": ENTRY_FORMAT, "type": ENTRY_TYPE,
                              "package_id": package_id, "manifest_sha256": manifest_sha,
                              "signature_sha256": hashlib.sha256(signature).hexdigest()})
        index = _log_and_seal(tmp, entry, log, station, (), None)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ReweighResult(out_dir, package_id, manifest_sha, index, sealed_decision)


def _manifest(contents: PackageContents) -> dict[str, Any] | None:
    try:
        raw: Any = strict_json.loads(contents.read(MANIFEST_NAME) or b"null", MANIFEST_NAME)
    except EvidenceError:
        return None
    return raw if isinstance(raw, dict) else None


def check_reweigh(contents: PackageContents, manifest: dict[str, Any], checks: Checks, *,
                  signed: bool = True) -> None:
    """The supplement's own checks (called by ``verify_package`` for ``zhichao.reweigh/1``):
    the case section names an original, the reading file is the manifest's reading, and
    the reading is a weight. With ``signed`` false (the manifest's signature or key
    failed) the reading is not interpreted: reported as not checked."""
    if not signed:
        checks.warn("reweigh.reading", "复检读数未检查：清单签名未通过核验，不解析未经签名的内容",
                    "static reading not checked: the manifest signature failed, unsigned "
                    "content is not interpreted")
        return
    case = manifest.get("case") or {}
    if not isinstance(case, dict):
        case = {}
    original = case.get("original")
    if case.get("kind") != "static_reweigh" or not isinstance(original, dict) or not (
            isinstance(original.get("passage_key"), str)
            and isinstance(original.get("vehicle_record_sha256"), str)):
        checks.fail("reweigh.malformed", "复检包清单缺少所补充的原始证据（original）",
                    "re-weighing manifest does not name its original")
        return
    data = contents.read(READING_PATH)
    try:
        reading = StaticReading.from_json(strict_json.loads(data or b"null", READING_PATH),
                                          READING_PATH)
        same = data == canonicalize(case.get("reading")) and canonicalize(
            reading.to_json()) == data
    except (EvidenceError, ValueError, ArithmeticError, UnicodeDecodeError) as exc:
        checks.fail("reweigh.reading", f"复检读数文件无效：{exc}",
                    f"{READING_PATH} is not a valid static reading: {exc}")
        return
    if not same:
        checks.fail("reweigh.reading", "复检读数文件与清单所载读数不一致",
                    f"{READING_PATH} differs from manifest.case.reading")
        return
    problem = reading_problem(reading)
    if problem is not None:
        checks.fail("reweigh.reading", f"复检读数不是有效重量：{problem}",
                    f"the static reading is not a weight ({', '.join(reading.flags)})")
        return
    target = original.get("package_id") or original["passage_key"]
    checks.ok("reweigh.reading",
              f"复检读数 {reading.weight_kg} kg（{reading.indicator}，"
              f"{format_time(reading.reading_utc)}），补充 {target}",
              f"static reading {reading.weight_kg} kg supplements {target}")


def verify_reweigh(package: Path, original: Path | None = None, *,
                   key: Ed25519PublicKey | None = None, log_dir: Path | None = None
                   ) -> Report:
    """Verify a supplement (as :func:`verify_package` does) and, with ``original``, that
    the original package verifies too and is exactly the one the supplement names."""
    from zhichao.evidence.verify import verify_package

    report = verify_package(package, key=key, log_dir=log_dir)
    if original is not None:
        check_original(report, package, original, key=key, log_dir=log_dir)
    return report


def check_original(report: Report, package: Path, original: Path, *,
                   key: Ed25519PublicKey | None = None, log_dir: Path | None = None) -> None:
    """Add ``reweigh.original`` to ``report``: ``original`` verifies and is exactly the
    package the supplement ``package`` names."""
    from zhichao.evidence.verify import verify_package

    checks = Checks(report)
    try:
        sup = _manifest(read_package(package)) or {}
        contents = read_package(original)
    except PackageRefusedError as exc:
        checks.fail("reweigh.original", f"原始证据包无法读取：{exc.message_zh}",
                    f"original package unreadable: {exc.message_en}")
        return
    named = ((sup.get("case") or {}).get("original")) or {}
    raw_manifest = contents.read(MANIFEST_NAME) or b""
    orig_sha = hashlib.sha256(raw_manifest).hexdigest()
    orig = _manifest(contents) or {}
    record = contents.read("original/vehicle.json") or b""
    problems = []
    if named.get("manifest_sha256") != orig_sha:
        problems.append(f"manifest_sha256 {named.get('manifest_sha256')} ≠ {orig_sha}")
    if named.get("package_id") != orig.get("package_id"):
        problems.append(f"package_id {named.get('package_id')} ≠ {orig.get('package_id')}")
    if named.get("vehicle_record_sha256") != hashlib.sha256(record).hexdigest():
        problems.append("vehicle_record_sha256 differs from original/vehicle.json")
    if problems:
        checks.fail("reweigh.original", "复检包所指原始证据包与所给证据包不一致："
                    + "；".join(problems), "the supplement names another original: "
                    + "; ".join(problems))
    inner = verify_package(original, key=key, log_dir=log_dir, contents=contents)
    if not inner.ok:
        checks.fail("reweigh.original", "原始证据包核验未通过：" + "；".join(
            c.message_zh for c in inner.failures()[:3]), "original package fails: "
            + ", ".join(sorted(inner.codes())))
    elif not problems:
        checks.ok("reweigh.original",
                  f"原始证据包 {orig.get('package_id')} 核验通过，且正是复检包所指",
                  f"original {orig.get('package_id')} verifies and is the one named")
