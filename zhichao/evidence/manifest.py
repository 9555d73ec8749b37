"""The evidence manifest, format ``zhichao.evidence/1`` (documented in docs/evidence.md).

The manifest is stored as its RFC 8785 canonical bytes in ``manifest.json`` and signed
with the station's Ed25519 key (``manifest.sig``, base64 of the 64-byte signature over
exactly those bytes). :func:`check_manifest` validates the structure a verifier relies on,
naming the field that is wrong.
"""

from __future__ import annotations

import re
from typing import Any

from zhichao.evidence.errors import PackageError

MANIFEST_FORMAT = "zhichao.evidence/1"
#: a static re-weighing's supplementary package (zhichao.evidence.reweigh): same layout
REWEIGH_FORMAT = "zhichao.reweigh/1"
MANIFEST_FORMATS = (MANIFEST_FORMAT, REWEIGH_FORMAT)
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
PUBLIC_KEY_NAME = "station.pub"
SUMS_NAME = "SHA256SUMS"
SEAL_DIR = "seal"
ENTRY_NAME = "seal/entry.json"
INCLUSION_NAME = "seal/inclusion.json"
CHECKPOINT_NAME = "seal/checkpoint.txt"
TIMESTAMP_NAME = "seal/checkpoint.tsr"
# Files of the package that the manifest cannot list (they are made from it).
SEAL_FILES = frozenset({MANIFEST_NAME, SIGNATURE_NAME, PUBLIC_KEY_NAME, SUMS_NAME, ENTRY_NAME,
                        INCLUSION_NAME, CHECKPOINT_NAME, TIMESTAMP_NAME})
KINDS = ("original", "derived")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_PATH = re.compile(r"^(original|derived)/[A-Za-z0-9._-]+$")


def check_manifest(manifest: Any) -> list[dict[str, Any]]:
    """Validate the parts of the manifest a verifier relies on; return its file list.

    Raises
    ------
    PackageError
        Naming the field that is missing or malformed.
    """
    if not isinstance(manifest, dict):
        raise PackageError(f"{MANIFEST_NAME}: top level is not a JSON object")
    if manifest.get("format") not in MANIFEST_FORMATS:
        raise PackageError(
            f"{MANIFEST_NAME}.format: {manifest.get('format')!r} is not "
            f"{' or '.join(MANIFEST_FORMATS)}"
        )
    for key in ("package_id", "created_utc"):
        if not isinstance(manifest.get(key), str):
            raise PackageError(f"{MANIFEST_NAME}.{key}: missing or not a string")
    station = manifest.get("station")
    if not isinstance(station, dict) or not all(
        isinstance(station.get(k), str) for k in ("station_id", "key_name", "key_sha256")
    ):
        raise PackageError(f"{MANIFEST_NAME}.station: needs station_id, key_name, key_sha256")
    if not isinstance(manifest.get("case"), dict):
        raise PackageError(f"{MANIFEST_NAME}.case: missing or not an object")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise PackageError(f"{MANIFEST_NAME}.files: missing or empty")
    seen: set[str] = set()
    for i, entry in enumerate(files):
        where = f"{MANIFEST_NAME}.files[{i}]"
        if not isinstance(entry, dict):
            raise PackageError(f"{where}: not an object")
        path = entry.get("path")
        if not isinstance(path, str) or not _SAFE_PATH.match(path):
            raise PackageError(f"{where}.path: {path!r} is not original/NAME or derived/NAME")
        if path in seen:
            raise PackageError(f"{where}.path: {path} listed twice")
        seen.add(path)
        if entry.get("kind") not in KINDS or not path.startswith(str(entry.get("kind")) + "/"):
            raise PackageError(f"{where}.kind: must be original or derived and match the path")
        sha = entry.get("sha256")
        if not isinstance(sha, str) or not _HEX64.match(sha):
            raise PackageError(f"{where}.sha256: not 64 lowercase hex digits")
        size = entry.get("size_bytes")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise PackageError(f"{where}.size_bytes: not a non-negative integer")
    return files
