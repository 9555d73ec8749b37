"""Review and decision events in the station's (or center's) Merkle log.

行政处罚法 Art. 47 asks for the whole process to be recorded and archived (启动、调查取证、
审核、决定、送达、执行); Art. 41 para 2 says an unreviewed record is not evidence. Each step
of a package's later history is therefore appended to the same append-only log as the
package itself, as its own entry type, and can be checked offline: ``zhichao verify
PACKAGE --log LOG`` (or ``--history FILE`` from :func:`history_bundle`) lists every event
found for the package, and whether a signed checkpoint covers it.

Log entry (RFC 8785 canonical JSON; the leaf is ``SHA-256(0x00 ‖ entry)``)::

    {"format": "zhichao.log-entry/1", "type": "review_event",
     "event_format": "zhichao.review-event/1",
     "event_type": "technical_review" | "legal_review" | "decision" | "service"
                   | "rejection" | "statement" | "hearing",
     "package_id": …, "manifest_sha256": …,            # which package (its signed manifest)
     "package_log_origin": …, "package_log_index": …,  # where it was sealed
     "actor_id": "R-0042",                             # who: a pseudonymous id, never a name
     "time_utc": "2025-06-02T01:00:00.000000Z",        # when (UTC)
     "outcome": "approved",                            # what (a short code)
     "reason_zh": "…",                                 # why (zh-CN, read by officers/owners)
     "details": {…}}                                   # optional JSON facts (decided fine, …)

The service stage calls :func:`record_review_event`; it appends, signs a new checkpoint
(cosigned by the configured witnesses, time-stamped when a TSA is configured) and stores
it in the log's ``checkpoints/``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from zhichao.evidence._util import format_time, parse_time
from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.errors import EventError, EvidenceError, InputError, LogError
from zhichao.evidence.manifest import INCLUSION_NAME, MANIFEST_NAME
from zhichao.evidence.merkle import InclusionProof, MerkleLog
from zhichao.evidence.package import ENTRY_FORMAT, Station
from zhichao.evidence.signing import Checkpoint, sign_checkpoint
from zhichao.evidence.tsa import TimestampAuthority, request_timestamp
from zhichao.evidence.witness import WitnessClient, witness_checkpoint

EVENT_FORMAT = "zhichao.review-event/1"
EVENT_ENTRY_TYPE = "review_event"
PACKAGE_ENTRY_TYPE = "package_sealed"
HISTORY_FORMAT = "zhichao.history/1"
_ACTOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$")
_OUTCOME = re.compile(r"^[a-z][a-z0-9_]{1,47}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_REASON_CHARS = 4000
# Outcome codes of a review that let the case go on (technical_review, legal_review).
APPROVED_OUTCOMES = frozenset({"approved", "passed"})


class EventType(StrEnum):
    TECHNICAL_REVIEW = "technical_review"
    LEGAL_REVIEW = "legal_review"
    DECISION = "decision"
    SERVICE = "service"
    REJECTION = "rejection"
    STATEMENT = "statement"
    HEARING = "hearing"


EVENT_TYPE_ZH = {
    EventType.TECHNICAL_REVIEW: "技术审核",
    EventType.LEGAL_REVIEW: "法制审核",
    EventType.DECISION: "处理决定",
    EventType.SERVICE: "送达",
    EventType.REJECTION: "不予采用（退回）",
    EventType.STATEMENT: "当事人陈述申辩",
    EventType.HEARING: "听证",
}


@dataclass(frozen=True)
class ReviewEvent:
    """One step of a package's review workflow; see the module docstring."""

    event_type: EventType
    package_id: str
    manifest_sha256: str
    package_log_origin: str
    package_log_index: int
    actor_id: str
    time_utc: datetime
    outcome: str
    reason_zh: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"review event ({self.event_type})"
        if not isinstance(self.event_type, EventType):
            raise EventError(f"review event: unknown event_type {self.event_type!r} (one of "
                             f"{', '.join(t.value for t in EventType)})")
        if not _HEX64.match(self.manifest_sha256):
            raise EventError(f"{where}.manifest_sha256: not 64 lowercase hex digits")
        if not self.package_id or not self.package_log_origin:
            raise EventError(f"{where}: package_id and package_log_origin are required")
        if isinstance(self.package_log_index, bool) or self.package_log_index < 0:
            raise EventError(f"{where}.package_log_index: not a non-negative integer")
        if not _ACTOR.match(self.actor_id):
            raise EventError(
                f"{where}.actor_id: {self.actor_id!r} is not a pseudonymous id (3-64 of "
                "A-Z a-z 0-9 . _ : -); the permanent log must not hold personal names")
        if self.time_utc.tzinfo is None:
            raise EventError(f"{where}.time_utc: has no time zone")
        if not _OUTCOME.match(self.outcome):
            raise EventError(f"{where}.outcome: {self.outcome!r} is not a short code "
                             "(lowercase letters, digits, _)")
        if not self.reason_zh.strip() or len(self.reason_zh) > MAX_REASON_CHARS:
            raise EventError(f"{where}.reason_zh: must be non-empty and at most "
                             f"{MAX_REASON_CHARS} characters")
        try:
            canonicalize(dict(self.details))
        except EvidenceError as exc:
            raise EventError(f"{where}.details: not JSON data ({exc})") from None

    @property
    def event_type_zh(self) -> str:
        return EVENT_TYPE_ZH[self.event_type]

    def to_entry(self) -> dict[str, Any]:
        return {
            "format": ENTRY_FORMAT, "type": EVENT_ENTRY_TYPE, "event_format": EVENT_FORMAT,
            "event_type": self.event_type.value, "package_id": self.package_id,
            "manifest_sha256": self.manifest_sha256,
            "package_log_origin": self.package_log_origin,
            "package_log_index": self.package_log_index, "actor_id": self.actor_id,
            "time_utc": format_time(self.time_utc), "outcome": self.outcome,
            "reason_zh": self.reason_zh, "details": dict(self.details),
        }

    def entry_bytes(self) -> bytes:
        return canonicalize(self.to_entry())

    @classmethod
    def from_entry(cls, raw: Any, where: str = "log entry") -> ReviewEvent:
        """Parse a ``review_event`` log entry (decoded JSON).

        Raises
        ------
        EventError
            Naming the field that is missing or malformed.
        """
        if not isinstance(raw, dict) or raw.get("type") != EVENT_ENTRY_TYPE:
            raise EventError(f"{where}: not a {EVENT_ENTRY_TYPE} entry")
        if raw.get("event_format") != EVENT_FORMAT:
            raise EventError(f"{where}.event_format: not {EVENT_FORMAT}")
        try:
            event_type = EventType(str(raw.get("event_type")))
        except ValueError:
            raise EventError(f"{where}.event_type: unknown {raw.get('event_type')!r}") from None
        try:
            when = parse_time(raw.get("time_utc"), f"{where}.time_utc")
        except InputError as exc:
            raise EventError(str(exc)) from None
        fields = ("package_id", "manifest_sha256", "package_log_origin", "actor_id",
                  "outcome", "reason_zh")
        for key in fields:
            if not isinstance(raw.get(key), str):
                raise EventError(f"{where}.{key}: missing or not a string")
        index = raw.get("package_log_index")
        if not isinstance(index, int) or isinstance(index, bool):
            raise EventError(f"{where}.package_log_index: missing or not an integer")
        details = raw.get("details", {})
        if not isinstance(details, dict):
            raise EventError(f"{where}.details: not an object")
        return cls(event_type, raw["package_id"], raw["manifest_sha256"],
                   raw["package_log_origin"], index, raw["actor_id"], when, raw["outcome"],
                   raw["reason_zh"], details)

    @classmethod
    def for_package(cls, package: Path, event_type: EventType | str, *, actor_id: str,
                    outcome: str, reason_zh: str, time_utc: datetime | None = None,
                    details: Mapping[str, Any] | None = None) -> ReviewEvent:
        """An event bound to the sealed package directory ``package``.

        Reads ``manifest.json`` (its SHA-256, package id, log origin) and
        ``seal/inclusion.json`` (its log index).
        """
        try:
            manifest_bytes = (package / MANIFEST_NAME).read_bytes()
            manifest = json.loads(manifest_bytes)
            inclusion = json.loads((package / INCLUSION_NAME).read_text(encoding="utf-8"))
            package_id = str(manifest["package_id"])
            origin = str(manifest["station"]["log_origin"])
            index = int(inclusion["index"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EventError(f"{package}: not a sealed package ({exc})") from None
        try:
            kind = EventType(event_type)
        except ValueError:
            raise EventError(f"unknown event_type {event_type!r}") from None
        return cls(kind, package_id, hashlib.sha256(manifest_bytes).hexdigest(), origin, index,
                   actor_id, time_utc or datetime.now(UTC), outcome, reason_zh,
                   dict(details or {}))


@dataclass(frozen=True)
class EventReceipt:
    """Where an event went: its log index, the signed checkpoint and inclusion proof."""

    index: int
    entry: bytes
    checkpoint: bytes
    proof: InclusionProof
    timestamp_token: bytes | None

    def to_json(self) -> dict[str, Any]:
        return {"format": "zhichao.event-receipt/1", "index": self.index,
                "entry": self.entry.decode("utf-8"),
                "checkpoint": self.checkpoint.decode("utf-8"),
                "inclusion": {"index": self.proof.index, "size": self.proof.size,
                              "hashes": [h.hex() for h in self.proof.hashes]}}


def _check_binding(log: MerkleLog, event: ReviewEvent) -> None:
    if log.origin != event.package_log_origin:
        return  # a center's log records events of packages sealed elsewhere
    if event.package_log_index >= log.size:
        raise EventError(f"review event: package log index {event.package_log_index} is not "
                         f"in {log.origin} (size {log.size})")
    try:
        raw = json.loads(log.entry(event.package_log_index))
    except (ValueError, UnicodeDecodeError):
        raw = None
    if not isinstance(raw, dict) or raw.get("type") != PACKAGE_ENTRY_TYPE or (
            raw.get("manifest_sha256") != event.manifest_sha256
            or raw.get("package_id") != event.package_id):
        raise EventError(f"review event: log entry {event.package_log_index} of {log.origin} "
                         f"is not the sealing of package {event.package_id} "
                         f"(manifest {event.manifest_sha256})")


def record_review_event(log: MerkleLog, signer: Station, event: ReviewEvent, *,
                        witnesses: Sequence[WitnessClient] = (),
                        tsa: TimestampAuthority | None = None) -> EventReceipt:
    """Append ``event`` to ``log``, sign (and witness, time-stamp) a new checkpoint.

    ``signer`` holds the log's checkpoint key (the station's for a station log; for a
    center log, a :class:`Station` whose key and key name are the center's). When the
    log is the package's own, the event must name the package's sealing entry (index,
    manifest hash, id) or it is refused. Nothing is appended on refusal.

    Raises
    ------
    EventError
        The event does not bind its package.
    LogError, WitnessError, TimestampError
        From the log, the witnesses or the TSA (the entry may already be appended; the
        next checkpoint will cover it).
    """
    _check_binding(log, event)
    entry = event.entry_bytes()
    index = log.append(entry)
    size = log.size
    note = sign_checkpoint(Checkpoint(log.origin, size, log.root(size)), signer.key_name,
                           signer.key)
    if witnesses:
        note = witness_checkpoint(log, note, witnesses)
    token = request_timestamp(tsa, note) if tsa is not None else None
    log.store_checkpoint(size, note, token)
    return EventReceipt(index, entry, note, log.inclusion_proof(index, size), token)


def find_events(log: MerkleLog, manifest_sha256: str, start: int = 0
                ) -> list[tuple[int, bytes, ReviewEvent]]:
    """Every review event of the package with ``manifest_sha256``, from index ``start``.

    A linear scan of the entries (about 1 µs per entry); entries that are not review
    events, or are malformed, are skipped here (``zhichao log-audit`` reports damage).
    """
    found: list[tuple[int, bytes, ReviewEvent]] = []
    needle = manifest_sha256.encode()
    for i in range(max(0, start), log.size):
        data = log.entry(i)
        if needle not in data or b'"review_event"' not in data:
            continue
        try:
            event = ReviewEvent.from_entry(json.loads(data), f"log entry {i}")
        except (EventError, ValueError, UnicodeDecodeError):
            continue
        if event.manifest_sha256 == manifest_sha256:
            found.append((i, data, event))
    return found


def latest_checkpoint(log: MerkleLog) -> tuple[int, bytes] | None:
    """(size, note) of the largest stored checkpoint not beyond the log's size."""
    best: tuple[int, Path] | None = None
    for path in (log.directory / "checkpoints").glob("*.txt"):
        try:
            size = int(path.stem)
        except ValueError:
            continue
        if size <= log.size and (best is None or size > best[0]):
            best = (size, path)
    if best is None:
        return None
    return best[0], best[1].read_bytes()


def history_bundle(log: MerkleLog, manifest_sha256: str, start: int = 0) -> bytes:
    """A self-contained file with a package's events, their inclusion proofs and the
    latest stored checkpoint, for ``zhichao verify PACKAGE --history FILE``.

    Events appended after that checkpoint are left out and counted in
    ``not_yet_checkpointed``.

    Raises
    ------
    LogError
        If the log has no stored checkpoint.
    """
    latest = latest_checkpoint(log)
    if latest is None:
        raise LogError(f"{log.directory}: no stored checkpoint")
    size, note = latest
    events = find_events(log, manifest_sha256, start)
    covered = [(i, data) for i, data, _e in events if i < size]
    bundle = {
        "format": HISTORY_FORMAT, "log_origin": log.origin, "manifest_sha256": manifest_sha256,
        "checkpoint": note.decode("utf-8"),
        "events": [{"index": i, "entry_b64": base64.b64encode(data).decode(),
                    "hashes": [h.hex() for h in log.inclusion_proof(i, size).hashes]}
                   for i, data in covered],
        "not_yet_checkpointed": len(events) - len(covered),
    }
    return (json.dumps(bundle, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


__all__ = [
    "EVENT_TYPE_ZH",
    "EventReceipt",
    "EventType",
    "ReviewEvent",
    "find_events",
    "history_bundle",
    "latest_checkpoint",
    "record_review_event",
]
