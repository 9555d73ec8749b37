"""What the center's ingest hands around: accepted items, outcomes, proofs, refusals, and
the head of a package read through the strict reader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhichao.evidence import strict_json
from zhichao.evidence.errors import EvidenceError
from zhichao.evidence.manifest import INCLUSION_NAME, MANIFEST_NAME
from zhichao.evidence.reader import PackageContents, PackageRefusedError
from zhichao.evidence.verify import read_inclusion
from zhichao.sync.errors import SyncError
from zhichao.sync.wire import REFUSALS, PackageHead, refusal_body, sha256_hex


@dataclass(frozen=True)
class Accepted:
    """What the accept hook receives for each newly accepted item (never for duplicates)."""

    kind: str  # "package" or "passage"
    station_id: str
    item_sha256: str
    receipt: dict[str, Any]
    package_path: Path | None = None  # the stored zip (verify/open it with zhichao.evidence)
    manifest: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    # Where the package is kept, as recorded (a path under the store, or s3://bucket/key):
    # what the service records as the case's package location.
    location: str | None = None


AcceptHook = Callable[[Accepted], None]


@dataclass(frozen=True)
class Outcome:
    """An HTTP status and JSON body (the router returns them as they are)."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class ProofClaim:
    """The consistency proof an upload carries: from size ``first`` to size ``second``."""

    first: int
    second: int
    hashes: list[bytes]

    @staticmethod
    def parse(first: str | None, second: str | None, hashes: str | None) -> ProofClaim | None:
        """From the three headers; ``None`` when absent. Raises ``ValueError`` if malformed."""
        if first is None and second is None:
            return None
        if first is None or second is None:
            raise ValueError("both proof sizes are needed")
        parts = [h for h in (hashes or "").split(",") if h]
        decoded = [bytes.fromhex(h) for h in parts]
        if any(len(h) != 32 for h in decoded):
            raise ValueError("every proof hash must be 32 bytes of hex")
        a, b = int(first), int(second)
        if a < 0 or b < a:
            raise ValueError(f"proof sizes {a} → {b} are not ordered")
        return ProofClaim(a, b, decoded)


class Refusal(SyncError):  # noqa: N818 (control flow inside the center, never escapes)
    """Why an upload is refused: a code of ``zhichao.sync.wire.REFUSALS``."""

    def __init__(self, code: str, detail: str = "", quarantine: bool | None = None,
                 **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail
        self.quarantine = REFUSALS[code][3] if quarantine is None else quarantine
        self.extra = extra


    def body(self) -> dict[str, Any]:
        """The refusal as the answer says it (``refused: true``, code, messages)."""
        return {"refused": True, **refusal_body(self.code, self.detail, **self.extra)}


def reader_refusal(exc: PackageRefusedError) -> Refusal:
    """The upload refusal for a package the strict reader refused: the verifier's reason
    code travels in ``failed_checks``, exactly as ``zhichao verify`` says it."""
    code = "package.unreadable" if exc.code == "package.unreadable" else "package.invalid"
    return Refusal(code, exc.message_zh, failed_checks=[exc.code])


def package_head(contents: PackageContents) -> PackageHead:
    """Route a package read by the strict reader (not a verification).

    Raises
    ------
    Refusal
        ``package.unreadable`` naming what is missing or malformed.
    """
    manifest_bytes = contents.read(MANIFEST_NAME)
    inclusion_bytes = contents.read(INCLUSION_NAME)
    try:
        if manifest_bytes is None or inclusion_bytes is None:
            raise ValueError(f"{MANIFEST_NAME} or {INCLUSION_NAME} missing")
        manifest = strict_json.loads(manifest_bytes, MANIFEST_NAME)
        index, size, _hashes, _inc = read_inclusion(inclusion_bytes)
        station = strict_json.member(manifest, "station", MANIFEST_NAME)
        return PackageHead(sha256_hex(manifest_bytes),
                           strict_json.string(manifest, "package_id", MANIFEST_NAME),
                           strict_json.string(station, "station_id", f"{MANIFEST_NAME}.station"),
                           index, size)
    except (ValueError, EvidenceError) as exc:
        raise Refusal("package.unreadable", f"manifest or {INCLUSION_NAME} malformed "
                      f"({exc})") from None


def package_manifest(contents: PackageContents) -> dict[str, Any]:
    """The manifest of a package the center accepted (so verified already)."""
    manifest: dict[str, Any] = strict_json.loads(contents.read(MANIFEST_NAME) or b"{}",
                                                 MANIFEST_NAME)
    return manifest


__all__ = ["AcceptHook", "Accepted", "Outcome", "ProofClaim", "Refusal", "package_head",
           "package_manifest", "reader_refusal"]
