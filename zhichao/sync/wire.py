"""What travels between a station and the center (protocol ``zhichao.sync/1``).

Both ends import this module; it holds no state.

Items
    *package*: a sealed evidence package (``zhichao.evidence/1``) as a deterministic zip of
    its folder. Its key is ``manifest_sha256`` = SHA-256 of the canonical ``manifest.json``
    (the manifest binds the digest of every file, so it names the content).
    *passage*: one passage record (a JSON object, e.g. ``zhichao.vehicle/1``), signed by the
    station key as ``Ed25519("zhichao.passage/1\\n" ‖ canonical JSON)``. Its key is the
    SHA-256 of the canonical JSON.

Receipts
    The center answers every accepted item with a receipt: canonical JSON
    (``zhichao.sync-receipt/1``) signed with the center's Ed25519 key. The same item always
    gets the same receipt (same bytes, same signature).

HTTP (prefix ``/sync/v1``)
    ``PUT /packages/{manifest_sha256}`` body: the zip; headers ``X-Zhichao-Proof-From``,
    ``X-Zhichao-Proof-To``, ``X-Zhichao-Proof`` (comma-separated hex hashes): the RFC 6962
    consistency proof between the package's checkpoint and the center's last accepted
    checkpoint of that station. ``201`` new, ``200`` duplicate (same receipt), ``409``
    ``log.proof_needed`` (body says which sizes), ``4xx`` refusal with a code.
    ``POST /passages`` body ``{"items": [{"record": {...}, "signature": b64}, ...]}``.
    ``POST /stations/{station_id}/checkpoints`` body: the station's latest signed
    checkpoint (so log entries that are not packages, e.g. review events, are covered
    too), with the same proof headers.
    ``GET /stations/{station_id}``: the center's view of a station's log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from zhichao.evidence import strict_json
from zhichao.evidence.canonical import canonicalize
from zhichao.evidence.errors import EvidenceError
from zhichao.evidence.manifest import MANIFEST_NAME
from zhichao.evidence.signing import key_fingerprint, verify_signature
from zhichao.sync.errors import OutboxError, ReceiptError

PROTOCOL = "zhichao.sync/1"
API_PREFIX = "/sync/v1"
RECEIPT_FORMAT = "zhichao.sync-receipt/1"
PASSAGE_DOMAIN = b"zhichao.passage/1\n"
HEADER_PROOF_FROM = "X-Zhichao-Proof-From"
HEADER_PROOF_TO = "X-Zhichao-Proof-To"
HEADER_PROOF = "X-Zhichao-Proof"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------- packages


def pack_package(directory: Path) -> bytes:
    """The package folder as a zip whose bytes depend only on the files (sorted, fixed times).

    Raises
    ------
    OutboxError
        If ``directory`` is not a package folder (no ``manifest.json``).
    """
    directory = Path(directory)
    if not (directory / MANIFEST_NAME).is_file():
        raise OutboxError(f"{directory}: not a sealed package (no {MANIFEST_NAME})")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix(), _ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buf.getvalue()


@dataclass(frozen=True)
class PackageHead:
    """What the uploader and the center read from a packed package before verifying it."""

    manifest_sha256: str
    package_id: str
    station_id: str
    log_index: int
    checkpoint_size: int


def read_package_head(data: bytes, where: str) -> PackageHead:
    """Parse the zip enough to route it (not a verification: see ``verify_package``).

    Raises
    ------
    OutboxError
        Naming what is missing or malformed.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest_bytes = archive.read(MANIFEST_NAME)
            inclusion = strict_json.loads(archive.read("seal/inclusion.json"),
                                          f"{where}: seal/inclusion.json")
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, EvidenceError) as exc:
        raise OutboxError(f"{where}: not a packed evidence package ({exc})") from None
    try:
        manifest = strict_json.loads(manifest_bytes, f"{where}: {MANIFEST_NAME}")
        return PackageHead(sha256_hex(manifest_bytes), str(manifest["package_id"]),
                           str(manifest["station"]["station_id"]), int(inclusion["index"]),
                           int(inclusion["size"]))
    except (ValueError, KeyError, TypeError, EvidenceError) as exc:
        raise OutboxError(f"{where}: manifest or seal/inclusion.json malformed ({exc})") from None


# ------------------------------------------------------------------------- passages


def passage_bytes(record: Any, where: str = "passage") -> bytes:
    """Canonical bytes of a passage record; it must be an object with ``format`` and
    ``time_utc`` strings.

    Raises
    ------
    OutboxError
        If the record is not such an object or cannot be canonicalised.
    """
    if not isinstance(record, dict):
        raise OutboxError(f"{where}: a passage record must be a JSON object")
    for key in ("format", "time_utc"):
        if not isinstance(record.get(key), str):
            raise OutboxError(f"{where}.{key}: missing or not a string")
    try:
        return canonicalize(record)
    except EvidenceError as exc:
        raise OutboxError(f"{where}: {exc}") from None


VEHICLE_FORMAT = "zhichao.vehicle/1"
FORMAT_MAX_CHARS = 100
# RFC 3339 in UTC ("Z" or "+00:00"), at most nanoseconds: at most 35 characters (the
# center stores it in sync_passage.time_utc, 40 characters)
_TIME_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|\+00:00)")
# What the center's accept hook registers of a zhichao.vehicle/1 record
# (zhichao.service.ingest.register_passage) and the widths of the service columns it
# fills (passages.site_id, lane_code, vehicle_class, verdict). The station's config checks
# its site and lane ids against the same limits (zhichao.station.config).
SITE_ID_MAX_CHARS = 64
LANE_ID_MAX_CHARS = 16
VEHICLE_CLASS_MAX_CHARS = 64
VERDICT_MAX_CHARS = 32
_VEHICLE_TEXT_MAX_CHARS = {"site_id": SITE_ID_MAX_CHARS, "lane_id": LANE_ID_MAX_CHARS,
                           "vehicle_class": VEHICLE_CLASS_MAX_CHARS,
                           "verdict": VERDICT_MAX_CHARS}


def check_passage_record(record: dict[str, Any], where: str = "passage") -> None:
    """Check what the center stores and registers of a passage record, before it issues
    a receipt: ``format`` (1–100 characters); ``time_utc`` an RFC 3339 UTC time
    (``…Z`` or ``…+00:00``, at most nanoseconds); for ``zhichao.vehicle/1`` also what the
    service registers: ``site_id`` (a string), ``lane_id`` (a string or an integer),
    ``flags`` (a list, if present), each within its column's width (``vehicle_class``,
    ``verdict`` too, where they are strings).

    Raises
    ------
    OutboxError
        Naming the first field that fails (the center answers ``passage.malformed``).
    """
    fmt, time_utc = record.get("format"), record.get("time_utc")
    if not isinstance(fmt, str) or not 0 < len(fmt) <= FORMAT_MAX_CHARS:
        raise OutboxError(f"{where}.format: a string of 1 to {FORMAT_MAX_CHARS} characters")
    if not isinstance(time_utc, str) or not _TIME_UTC.fullmatch(time_utc):
        raise OutboxError(f"{where}.time_utc: {str(time_utc)[:60]!r} is not an RFC 3339 UTC "
                          "time (YYYY-MM-DDTHH:MM:SS[.fraction of up to 9 digits]Z)")
    try:
        datetime.fromisoformat(time_utc.replace("Z", "+00:00"))
    except ValueError as exc:
        raise OutboxError(f"{where}.time_utc: {time_utc!r}: {exc}") from None
    if fmt != VEHICLE_FORMAT:
        return
    for key in ("site_id", "lane_id"):  # required
        value = record.get(key)
        if key == "lane_id" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not 0 < len(value) <= _VEHICLE_TEXT_MAX_CHARS[key]:
            raise OutboxError(f"{where}.{key}: required, a string of 1 to "
                              f"{_VEHICLE_TEXT_MAX_CHARS[key]} characters")
    for key in ("vehicle_class", "verdict"):  # registered where they are strings
        value = record.get(key)
        if isinstance(value, str) and len(value) > _VEHICLE_TEXT_MAX_CHARS[key]:
            raise OutboxError(f"{where}.{key}: more than {_VEHICLE_TEXT_MAX_CHARS[key]} "
                              "characters")
    if record.get("flags") is not None and not isinstance(record["flags"], list):
        raise OutboxError(f"{where}.flags: a list")


def sign_passage(record: Any, key: Ed25519PrivateKey) -> tuple[bytes, str]:
    """(canonical bytes, base64 station signature) of a passage record."""
    data = passage_bytes(record)
    return data, base64.b64encode(key.sign(PASSAGE_DOMAIN + data)).decode()


def verify_passage(data: bytes, signature_b64: str, key: Ed25519PublicKey) -> bool:
    try:
        sig = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(sig) == 64 and verify_signature(key, sig, PASSAGE_DOMAIN + data)


# ------------------------------------------------------------------------- receipts


def sign_receipt(fields: dict[str, Any], key: Ed25519PrivateKey) -> tuple[bytes, str]:
    """Canonical receipt bytes (``format`` and ``center_key_sha256`` added) and signature."""
    body = {**fields, "format": RECEIPT_FORMAT,
            "center_key_sha256": key_fingerprint(key.public_key())}
    data = canonicalize(body)
    return data, base64.b64encode(key.sign(data)).decode()


def check_receipt(receipt_b64: str, signature_b64: str, key: Ed25519PublicKey, *,
                  item_sha256: str, station_id: str) -> dict[str, Any]:
    """Verify a receipt for one item; return its fields.

    Raises
    ------
    ReceiptError
        If it is malformed, not signed by ``key``, or for another item or station.
    """
    try:
        data = base64.b64decode(receipt_b64, validate=True)
        sig = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReceiptError(f"receipt for {item_sha256}: malformed ({exc})") from None
    if len(sig) != 64 or not verify_signature(key, sig, data):
        raise ReceiptError(f"receipt for {item_sha256}: signature is not the center's")
    try:  # parsed only once it is known to be the center's, and strictly even then
        body = strict_json.loads(data, f"receipt for {item_sha256}")
    except EvidenceError as exc:
        raise ReceiptError(str(exc)) from None
    if not isinstance(body, dict) or body.get("format") != RECEIPT_FORMAT:
        raise ReceiptError(f"receipt for {item_sha256}: not a {RECEIPT_FORMAT} receipt")
    if body.get("item_sha256") != item_sha256 or body.get("station_id") != station_id:
        raise ReceiptError(f"receipt names item {body.get('item_sha256')} of station "
                           f"{body.get('station_id')}, expected {item_sha256} of {station_id}")
    return body


# ------------------------------------------------------------------------- refusals

# Machine code → (HTTP status, zh-CN text, English text, permanent?). A permanent refusal
# is kept in the center's quarantine and marked refused in the station outbox; the others
# are retried by the station with back-off.
REFUSALS: dict[str, tuple[int, str, str, bool]] = {
    "package.too_large": (413, "证据包超过中心允许的大小", "package exceeds the size limit", True),
    "package.unreadable": (422, "上传内容不是可读的证据包", "upload is not a readable package",
                           True),
    "package.hash_mismatch": (422, "上传的清单哈希与请求地址中的哈希不符",
                              "manifest SHA-256 differs from the one in the request", True),
    "package.invalid": (422, "证据包核验失败（哈希、签名或日志证明不符），已隔离待查",
                        "package failed verification (hash, signature or log proof); "
                        "quarantined", True),
    "package.conflict": (422, "同一清单哈希已接收过内容不同的证据包，本次上传已隔离",
                         "a different upload with this manifest hash was accepted before; "
                         "this one is quarantined", True),
    "station.unknown": (403, "中心未登记该站点或其公钥", "station or its key not registered",
                        False),
    "station.key_mismatch": (422, "证据包签名公钥与中心登记的站点公钥不同",
                             "package key differs from the station's registered key", True),
    "package.id_station": (422, "证据包编号与所属检测站不符，已隔离待查",
                           "package id does not begin with its station's id; quarantined",
                           True),
    "log.origin": (422, "证据包的日志来源与站点不符", "log origin does not belong to the station",
                   True),
    "log.fork": (422, "站点日志分叉：与中心已接受的检查点不一致，已隔离待查",
                 "station log FORK: inconsistent with the accepted checkpoint; quarantined",
                 True),
    "log.index_taken": (422, "该日志序号已被另一个证据包占用（日志分叉），已隔离待查",
                        "another package holds this log index (fork); quarantined", True),
    "log.proof_needed": (409, "需要与中心已接受检查点之间的一致性证明",
                         "a consistency proof to the accepted checkpoint is needed", False),
    "log.proof_malformed": (400, "一致性证明格式错误", "consistency proof malformed", False),
    "checkpoint.invalid": (422, "站点检查点格式错误或签名无效，已隔离待查",
                           "station checkpoint malformed or not signed by the station; "
                           "quarantined", True),
    "passage.malformed": (422, "通行记录格式错误", "passage record malformed", True),
    "passage.too_large": (413, "通行记录超过中心允许的大小", "passage record exceeds the size "
                          "limit", True),
    "passage.signature": (422, "通行记录的站点签名无效，已隔离待查",
                          "passage signature invalid; quarantined", True),
    "request.malformed": (400, "请求格式错误", "request malformed", False),
}


def refusal_body(code: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    _status, zh, en, permanent = REFUSALS[code]
    body: dict[str, Any] = {"code": code, "message_zh": zh + (f"：{detail}" if detail else ""),
                            "message_en": en + (f": {detail}" if detail else ""),
                            "permanent": permanent}
    body.update(extra)
    return body
