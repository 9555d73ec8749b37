"""A static re-weighing (复检) the center accepted: attached to its case or passage.

The station seals a re-weighing as a supplementary package (``zhichao.reweigh/1``,
:mod:`zhichao.evidence.reweigh`) that names its original: a case package (``package_id``
and ``manifest_sha256``) or a passage without one (the SHA-256 of its vehicle record, which
is the sync's passage key). The center verifies it like any package; the accept hook then
calls :func:`register_reweigh`, which records it in the hash-chained audit log against the
case (or passage): the supplement's package id, manifest hash and stored path, both
weights, the officer, the scale's certificate, and the decision the rule gives with the
static weight. No table is added: the case's reviewers read it with the case's audit
entries (``action = "reweigh.attached"``); the package itself stays in the center's store.

The original must be registered first: until it is, :class:`~zhichao.service.errors.IngestError`
is raised and the center's store redelivers the item later. A supplement that names a
case package with another manifest hash than the one registered is refused (never
attached to the wrong evidence), and so is one from another station than the case's or
passage's (it could block or override that station's own re-weighing).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhichao.common import utc_now
from zhichao.service import audit
from zhichao.service.errors import IngestError, WorkflowError
from zhichao.service.models import AuditEntry, Case, Passage

REWEIGH_FORMAT = "zhichao.reweigh/1"
ACTION = "reweigh.attached"


def is_reweigh(manifest: dict[str, Any]) -> bool:
    return manifest.get("format") == REWEIGH_FORMAT


def _same_station(kind: str, owner: str | None, station: str | None) -> None:
    """A supplement only attaches to its own station's case or passage: another station's
    could block or override its decision (check_approval reads the latest)."""
    if owner is not None and owner != station:
        raise IngestError(f"re-weighing from station {station} names a {kind} of station "
                          f"{owner}; refused",
                          "复检包所指原始记录属于其他检测站，已拒绝")


def _target(session: Session, original: dict[str, Any], station: str | None
            ) -> tuple[str, int]:
    """(object type, id) the supplement attaches to; raises while it is not registered, or
    where it is another station's."""
    package_id = original.get("package_id")
    if package_id:
        case = session.scalars(select(Case).where(Case.package_id == package_id)).first()
        if case is None:
            passage = session.scalars(select(Passage).where(
                Passage.package_id == package_id)).first()
            if passage is None:
                raise IngestError(f"re-weighing: original package {package_id} not registered "
                                  "yet", "复检包所指原始证据包尚未登记，稍后重试")
            _same_station("passage", passage.station_id, station)
            return "passage", passage.id
        _same_station("case", case.station_id, station)
        if case.manifest_sha256 != original.get("manifest_sha256"):
            raise IngestError(f"re-weighing: names {package_id} with manifest "
                              f"{original.get('manifest_sha256')}, registered "
                              f"{case.manifest_sha256}; refused",
                              "复检包所指原始证据包与中心登记的不一致，已拒绝")
        return "case", case.id
    key = f"sync:{original.get('vehicle_record_sha256')}"
    passage = session.scalars(select(Passage).where(Passage.source_key == key)).first()
    if passage is None:
        raise IngestError(f"re-weighing: passage {original.get('passage_key')} not "
                          "registered yet", "复检所指通行记录尚未登记，稍后重试")
    _same_station("passage", passage.station_id, station)
    return "passage", passage.id


def register_reweigh(session: Session, manifest: dict[str, Any], package_path: Path | str, *,
                     manifest_sha256: str, now: datetime | None = None) -> AuditEntry:
    """Attach a verified supplement to its case or passage (idempotent on its manifest
    hash); the audit entry. Runs inside the caller's transaction."""
    if not is_reweigh(manifest):
        raise IngestError(f"manifest: expected format {REWEIGH_FORMAT}")
    facts = manifest.get("case")
    if not isinstance(facts, dict) or not isinstance(facts.get("original"), dict):
        raise IngestError("manifest.case.original: missing")
    station = (manifest.get("station") or {}).get("station_id")
    object_type, object_id = _target(session, facts["original"], station)
    for entry in session.scalars(select(AuditEntry).where(
            AuditEntry.action == ACTION, AuditEntry.object_type == object_type,
            AuditEntry.object_id == str(object_id))):
        if entry.detail.get("manifest_sha256") == manifest_sha256:
            return entry
    reading = facts.get("reading") or {}
    decision = facts.get("decision") or {}
    elig = decision.get("eligibility") or {}
    assessment = elig.get("assessment") or {}
    penalty = decision.get("penalty") or {}
    detail = {
        "package_id": manifest.get("package_id"), "manifest_sha256": manifest_sha256,
        "package_path": str(package_path), "original": facts["original"],
        "static_weight_kg": reading.get("weight_kg"),
        "wim_gross_kg": assessment.get("wim_gross_kg"),
        "reading_utc": reading.get("reading_utc"), "flags": reading.get("flags"),
        "officer": facts.get("officer"),
        "certificate_number": (reading.get("certificate") or {}).get("certificate_number"),
        "status": elig.get("status"), "status_by_law": elig.get("status_by_law"),
        "verdict": assessment.get("verdict"), "excess_kg": assessment.get("excess_kg"),
        "reasons": [r.get("code") for r in elig.get("reasons") or []],
        "penalty_outcome": penalty.get("outcome"), "fine_yuan": penalty.get("fine_yuan"),
    }
    return audit.append(session, actor=f"station:{station}", action=ACTION,
                        object_type=object_type, object_id=str(object_id),
                        now=now or utc_now(), detail=detail)


def reweighs_of(session: Session, object_type: str, object_id: int) -> list[dict[str, Any]]:
    """The re-weighings attached to a case or passage, oldest first."""
    return [dict(e.detail) for e in session.scalars(select(AuditEntry).where(
        AuditEntry.action == ACTION, AuditEntry.object_type == object_type,
        AuditEntry.object_id == str(object_id)).order_by(AuditEntry.id))]


def no_penalty_reweigh(session: Session, case: Case) -> dict[str, Any] | None:
    """The case's latest static re-weighing when it proposes no penalty (the verified
    static weight is within limit + tolerance, or it makes the evidence unusable), else
    None: the case cannot proceed on its WIM proposal (行政处罚法 Art. 40, 41(2))."""
    attached = reweighs_of(session, "case", case.id)
    if not attached:
        return None
    latest = attached[-1]
    if latest.get("penalty_outcome") in (None, "none") or latest.get("status") == "UNUSABLE":
        return latest
    return None


def no_penalty_zh(latest: dict[str, Any]) -> str:
    """Why the re-weighing bars a penalty, in Chinese."""
    return (f"静态复检（{_kg(latest.get('static_weight_kg'))}）认定不予处罚"
            f"（{latest.get('verdict')}）")


#: what the officer must do instead, per step the re-weighing bars
_BARRED_ZH = {
    "approval": "不得按动态称重结果通过审核，请驳回",
    "notify": "不得按动态称重结果立案告知，请作不予立案处理",
    "decision": "不得按动态称重结果作出处罚决定，只能作出不予行政处罚的决定",
    "serve": "不得送达处罚决定，请依法变更或撤销该决定",
    "publish": "不得公示处罚决定，请依法变更或撤销该决定",
}


def check_no_penalty_reweigh(session: Session, case: Case, step: str) -> None:
    """Refuse ``step`` (a key of ``_BARRED_ZH``) on a case whose latest static
    re-weighing proposes no penalty: never stricter than the measurement that is the
    evidence allows. Raises :class:`WorkflowError`."""
    latest = no_penalty_reweigh(session, case)
    if latest is not None:
        raise WorkflowError(
            f"case {case.id}: static re-weighing {latest.get('package_id')} proposes no "
            f"penalty ({latest.get('status')}, {latest.get('verdict')}); {step} refused",
            f"{no_penalty_zh(latest)}，{_BARRED_ZH[step]}")


def check_approval(session: Session, case: Case) -> None:
    """A case whose latest static re-weighing proposes no penalty cannot be approved on
    its WIM proposal (:func:`check_no_penalty_reweigh` at the reviews)."""
    check_no_penalty_reweigh(session, case, "approval")


def _kg(value: Any) -> str:
    return "—" if value is None else f"{value} kg"
