"""Checkpoint witnessing: an independent party cosigns a station log's checkpoints.

A *witness* (the provincial center, a court's or a notary's service, another agency)
keeps, per log origin, the last checkpoint it cosigned. Shown a new checkpoint and a
consistency proof from that size, it cosigns only if the new tree is an append-only
extension of the old one; otherwise it refuses with :class:`WitnessForkError` and keeps
both signed checkpoints as evidence of the fork. Because a witness never cosigns two
views that contradict each other, a verifier who requires cosignatures of enough
witnesses it trusts cannot be shown a private, rewritten history (a *split view*).

Formats follow c2sp.org/tlog-cosignature (cosignature/v1, Ed25519) and the witness
protocol's ``add-checkpoint`` semantics (c2sp.org/tlog-witness): the cosignature is one
more signed-note line ``— <witness name> base64(keyid ‖ u64 timestamp ‖ signature)`` with
``keyid = SHA-256(name ‖ 0x0A ‖ 0x04 ‖ raw public key)[:4]``, over::

    cosignature/v1
    time <unix seconds>
    <checkpoint body: origin, size, root lines>

The witness state is one small JSON file per origin under ``DIR/state/`` (written
atomically); refused checkpoints go to ``DIR/forks/``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from zhichao.evidence.errors import (
    CheckpointError,
    WitnessConflictError,
    WitnessError,
    WitnessForkError,
)
from zhichao.evidence.merkle import MerkleLog, verify_consistency
from zhichao.evidence.signing import (
    EM_DASH,
    Checkpoint,
    parse_checkpoint,
    public_raw,
    verify_checkpoint,
    verify_signature,
)

STATE_FORMAT = "zhichao.witness-state/1"
COSIGNATURE_HEADER = b"cosignature/v1\n"
COSIGNATURE_BYTES = 4 + 8 + 64


def cosignature_key_id(name: str, key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n\x04" + public_raw(key)).digest()[:4]


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    return COSIGNATURE_HEADER + f"time {timestamp}\n".encode() + body


@dataclass(frozen=True)
class Cosignature:
    witness: str
    timestamp: int

    @property
    def time_utc(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, UTC)


@dataclass(frozen=True)
class CosignatureCheck:
    """The cosignatures on one checkpoint: valid ones, and lines that claim a known
    witness's key id but do not verify."""

    valid: tuple[Cosignature, ...]
    invalid: tuple[str, ...]


def check_cosignatures(note: bytes, witnesses: Mapping[str, Ed25519PublicKey]
                       ) -> CosignatureCheck:
    """Verify the cosignatures of ``witnesses`` (name → key) on a signed checkpoint.

    Lines of other signers are ignored. Raises :class:`CheckpointError` if the note is
    malformed.
    """
    _cp, body, lines = parse_checkpoint(note)
    valid: dict[str, Cosignature] = {}
    invalid: list[str] = []
    for name, blob in lines:
        key = witnesses.get(name)
        if key is None or blob[:4] != cosignature_key_id(name, key):
            continue
        if len(blob) != COSIGNATURE_BYTES:
            invalid.append(name)
            continue
        timestamp = int.from_bytes(blob[4:12], "big")
        if timestamp >= 1 << 63 or not verify_signature(key, blob[12:],
                                                        cosigned_message(body, timestamp)):
            invalid.append(name)
            continue
        valid.setdefault(name, Cosignature(name, timestamp))
    return CosignatureCheck(tuple(valid.values()), tuple(invalid))


def add_cosignature_lines(note: bytes, lines: Sequence[bytes]) -> bytes:
    """The signed note with extra signature lines (each ending in a newline) appended."""
    out = note if note.endswith(b"\n") else note + b"\n"
    return out + b"".join(lines)


class WitnessClient(Protocol):
    """What a station needs from a witness (local :class:`Witness` or a remote one)."""

    name: str

    def latest_size(self, origin: str) -> int:
        """Size of the last checkpoint of ``origin`` this witness cosigned (0 if none)."""
        ...

    def add_checkpoint(self, note: bytes, old_size: int, proof: Sequence[bytes]) -> bytes:
        """Check and cosign ``note``; return the cosignature line."""
        ...


@dataclass(frozen=True)
class LogKey:
    """A log the witness follows: its origin, checkpoint key name and public key."""

    origin: str
    key_name: str
    key: Ed25519PublicKey


class Witness:
    """A witness with its own Ed25519 key and state directory.

    Parameters
    ----------
    directory
        State directory (created).
    name
        The witness's key name in cosignature lines, e.g. ``witness.center.example/w1``.
    key
        The witness's private key.
    logs
        The logs it follows; checkpoints of any other origin are refused.
    clock
        Returns "now" (UTC); for tests.
    """

    def __init__(self, directory: Path, name: str, key: Ed25519PrivateKey,
                 logs: Sequence[LogKey], clock: Callable[[], datetime] | None = None) -> None:
        if not name or any(ch.isspace() for ch in name) or "+" in name:
            raise WitnessError(f"witness name {name!r} must be non-empty, without spaces or +")
        self.directory = Path(directory)
        self.name = name
        self._key = key
        self._logs = {log.origin: log for log in logs}
        self._clock = clock
        (self.directory / "state").mkdir(parents=True, exist_ok=True)
        (self.directory / "forks").mkdir(exist_ok=True)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def _now(self) -> datetime:
        return self._clock() if self._clock is not None else datetime.now(UTC)

    def _state_path(self, origin: str) -> Path:
        return self.directory / "state" / (hashlib.sha256(origin.encode()).hexdigest() + ".json")

    def latest(self, origin: str) -> tuple[Checkpoint, bytes] | None:
        """The last cosigned checkpoint of ``origin`` and its note, or None."""
        path = self._state_path(origin)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            note = base64.b64decode(raw["note_b64"])
            checkpoint, _body, _sigs = parse_checkpoint(note)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, CheckpointError) as exc:
            raise WitnessError(f"{path}: witness state is damaged ({exc})") from None
        if raw.get("format") != STATE_FORMAT or checkpoint.origin != origin:
            raise WitnessError(f"{path}: witness state is not {STATE_FORMAT} for {origin}")
        return checkpoint, note

    def latest_size(self, origin: str) -> int:
        state = self.latest(origin)
        return 0 if state is None else state[0].size

    def _store(self, origin: str, note: bytes) -> None:
        path = self._state_path(origin)
        tmp = path.with_suffix(".tmp")
        data = json.dumps({"format": STATE_FORMAT, "origin": origin,
                           "note_b64": base64.b64encode(note).decode()}).encode()
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    def _keep_fork(self, origin: str, old_note: bytes, new_note: bytes,
                   proof: Sequence[bytes]) -> Path:
        stamp = self._now().strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / "forks" / (
            f"{hashlib.sha256(origin.encode()).hexdigest()[:16]}-{stamp}-"
            f"{hashlib.sha256(new_note).hexdigest()[:12]}.json")
        path.write_text(json.dumps({
            "format": "zhichao.witness-fork/1", "origin": origin,
            "cosigned_note_b64": base64.b64encode(old_note).decode(),
            "refused_note_b64": base64.b64encode(new_note).decode(),
            "proof": [h.hex() for h in proof],
        }, indent=1) + "\n", encoding="utf-8")
        return path

    def add_checkpoint(self, note: bytes, old_size: int, proof: Sequence[bytes]) -> bytes:
        """Cosign ``note`` if it extends the last cosigned checkpoint; return the line.

        Raises
        ------
        WitnessError
            Unknown log, or the log's own signature does not verify.
        WitnessConflictError
            ``old_size`` is not the witness's last size (``witness_size`` says which).
        WitnessForkError
            The checkpoint contradicts the last cosigned one (same size, other root; a
            smaller tree; or a consistency proof that fails). Both are kept in
            ``forks/``.
        """
        try:
            checkpoint, _body, _sigs = parse_checkpoint(note)
        except CheckpointError as exc:
            raise WitnessError(f"witness {self.name}: checkpoint malformed: {exc}") from None
        log = self._logs.get(checkpoint.origin)
        if log is None:
            raise WitnessError(f"witness {self.name}: unknown log {checkpoint.origin!r}")
        try:
            verify_checkpoint(note, log.key_name, log.key)
        except CheckpointError as exc:
            raise WitnessError(f"witness {self.name}: {exc}") from None
        state = self.latest(checkpoint.origin)
        known_size = 0 if state is None else state[0].size
        if old_size != known_size:
            raise WitnessConflictError(
                f"witness {self.name}: last cosigned size of {checkpoint.origin} is "
                f"{known_size}, not {old_size}", known_size)
        if state is not None:
            old, old_note = state
            fork = ""
            if checkpoint.size < old.size:
                fork = f"tree size {checkpoint.size} is smaller than cosigned {old.size}"
            elif checkpoint.size == old.size and checkpoint.root != old.root:
                fork = f"two different roots for tree size {old.size}"
            elif checkpoint.size > old.size and not verify_consistency(
                    old.size, checkpoint.size, old.root, checkpoint.root, list(proof)):
                fork = (f"consistency proof {old.size} -> {checkpoint.size} fails: not an "
                        "append-only extension")
            if fork:
                kept = self._keep_fork(checkpoint.origin, old_note, note, proof)
                raise WitnessForkError(
                    f"witness {self.name} refuses {checkpoint.origin}: {fork} "
                    f"(evidence kept in {kept})")
        elif proof:
            raise WitnessError(f"witness {self.name}: first checkpoint of "
                               f"{checkpoint.origin} must come with an empty proof")
        timestamp = int(self._now().timestamp())
        body = checkpoint.body()
        signature = self._key.sign(cosigned_message(body, timestamp))
        blob = cosignature_key_id(self.name, self.public_key) + timestamp.to_bytes(8, "big")
        line = f"{EM_DASH} {self.name} {base64.b64encode(blob + signature).decode()}\n"
        self._store(checkpoint.origin, add_cosignature_lines(note, [line.encode()]))
        return line.encode()


def witness_checkpoint(log: MerkleLog, note: bytes, witnesses: Sequence[WitnessClient]
                       ) -> bytes:
    """Have every witness cosign ``note`` (a checkpoint of ``log``); the cosigned note.

    For each witness the consistency proof is made from the size it last cosigned; a
    stale size is retried once. A :class:`WitnessForkError` propagates: the station
    must stop and investigate, not go on sealing.
    """
    checkpoint, _body, _sigs = parse_checkpoint(note)
    lines: list[bytes] = []
    for witness in witnesses:
        old = witness.latest_size(checkpoint.origin)
        for _attempt in range(2):
            if old > checkpoint.size:
                raise WitnessForkError(
                    f"witness {witness.name} has cosigned size {old} of {checkpoint.origin}, "
                    f"larger than this checkpoint's {checkpoint.size}")
            proof = log.consistency_proof(old, checkpoint.size) if old else []
            try:
                lines.append(witness.add_checkpoint(note, old, proof))
                break
            except WitnessConflictError as exc:
                old = exc.witness_size
        else:
            raise WitnessError(f"witness {witness.name}: size conflict persists")
    return add_cosignature_lines(note, lines)


__all__ = [
    "Cosignature",
    "CosignatureCheck",
    "LogKey",
    "Witness",
    "WitnessClient",
    "add_cosignature_lines",
    "check_cosignatures",
    "cosignature_key_id",
    "cosigned_message",
    "witness_checkpoint",
]
