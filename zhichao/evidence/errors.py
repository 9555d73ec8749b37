"""Exceptions of the evidence stage.

Tree::

    ZhichaoError
    └── EvidenceError                 root of this stage
        ├── RuleError                 rule data missing, malformed, or no rule in force
        ├── InputError                a vehicle record / device / plate input is malformed
        ├── CanonicalisationError     a value cannot be put in RFC 8785 form
        ├── KeyFileError              a key file is missing, malformed or of the wrong type
        ├── CheckpointError           a signed checkpoint is malformed or does not verify
        ├── LogError                  the Merkle log store is damaged or misused
        ├── TimestampError            an RFC 3161 request/response failed
        ├── PackageError              a package cannot be written or read (names the file)
        ├── ClipError                 a passage clip cannot be encoded, or does not decode
        ├── DocumentError             an evidence document cannot be rendered
        ├── EventError                a review/decision event is malformed or misplaced
        └── WitnessError              a witness refuses to cosign a checkpoint
            ├── WitnessConflictError  the client's idea of the witness's last size is stale
            └── WitnessForkError      the checkpoint is not an append-only extension (fork)

Every message names *what* is wrong and *where* (file, field, entry index).
"""

from __future__ import annotations

from zhichao.errors import ZhichaoError


class EvidenceError(ZhichaoError):
    """Root of every exception the evidence stage raises on purpose."""


class RuleError(EvidenceError):
    """Rule data is missing or malformed, or no rule version is in force at a time."""


class InputError(EvidenceError):
    """An input record (vehicle, device status, plate result, …) is malformed."""


class CanonicalisationError(EvidenceError):
    """A value cannot be serialised as RFC 8785 canonical JSON (NaN, non-str key, …)."""


class KeyFileError(EvidenceError):
    """A key file is missing, unreadable, or not an Ed25519 key of the expected kind."""


class CheckpointError(EvidenceError):
    """A signed checkpoint is malformed or its signature does not verify."""


class LogError(EvidenceError):
    """The append-only Merkle log store is damaged, inconsistent or misused."""


class TimestampError(EvidenceError):
    """An RFC 3161 time-stamp request or response failed or did not verify."""


class PackageError(EvidenceError):
    """An evidence package cannot be written or read; the message names the file."""


class DocumentError(EvidenceError):
    """An evidence document (取证单, 通知书) cannot be rendered."""


class EventError(EvidenceError):
    """A review or decision event is malformed or does not bind the package it names."""


class WitnessError(EvidenceError):
    """A witness refuses to cosign a checkpoint (unknown log, bad signature, …)."""


class WitnessConflictError(WitnessError):
    """The old size the client gave is not the size the witness last cosigned.

    :attr:`witness_size` is the witness's size; retry with a proof from there.
    """

    def __init__(self, message: str, witness_size: int) -> None:
        super().__init__(message)
        self.witness_size = witness_size


class WitnessForkError(WitnessError):
    """The checkpoint contradicts one the witness already cosigned: the log forked."""


class ClipError(EvidenceError):
    """A passage clip cannot be encoded, or a file is not a decodable H.264/MP4 clip."""
