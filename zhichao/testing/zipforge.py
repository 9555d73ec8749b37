"""Forged zips for the tamper tests and ``benchmarks/evidence_fuzz.py``.

A small zip writer of its own (stored or deflate, entries in any order, a central
directory in any order, duplicate or unsafe names) and byte-level edits of an existing
zip, so that the forgeries do not depend on what :mod:`zipfile` is willing to write.
Layout after PKWARE's APPNOTE 6.3.10 §4.3.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zhichao.evidence.reader import PackageContents, PackageRefusedError, parse_zip
from zhichao.evidence.verify import verify_package

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END = struct.Struct("<4sHHHHIIH")
_DOS_TIME, _DOS_DATE = 0, (1980 - 1980) << 9 | 1 << 5 | 1  # 1980-01-01 00:00
_UNIX_FILE = 0o100644 << 16
_UNIX_DIR = 0o40755 << 16 | 0x10


@dataclass(frozen=True)
class CentralEntry:
    """Where an entry's central directory header and local header are in a zip."""

    name: str
    header_offset: int  # of the central directory header
    local_offset: int


def build_zip(members: Sequence[tuple[str, bytes]], *, deflate: bool = False,
              central_order: Sequence[int] | None = None, comment: bytes = b"",
              extra: dict[str, bytes] | None = None) -> bytes:
    """A zip of ``members`` in that order (names as given, duplicates allowed), its central
    directory listing them in ``central_order`` (default: the same order); ``extra`` gives
    some entries an extra field (in both headers)."""
    body = bytearray()
    headers: list[bytes] = []
    for name, data in members:
        raw_name = name.encode("utf-8")
        flags = 0 if raw_name.isascii() else 0x800
        payload = _deflate(data) if deflate else data
        method = 8 if deflate else 0
        crc = zlib.crc32(data)
        offset = len(body)
        more = (extra or {}).get(name, b"")
        body += _LOCAL.pack(b"PK\x03\x04", 20, flags, method, _DOS_TIME, _DOS_DATE, crc,
                            len(payload), len(data), len(raw_name), len(more)) + raw_name + \
            more + payload
        headers.append(_CENTRAL.pack(b"PK\x01\x02", 3 << 8 | 20, 20, flags, method, _DOS_TIME,
                                     _DOS_DATE, crc, len(payload), len(data), len(raw_name),
                                     len(more), 0, 0, 0,
                                     _UNIX_DIR if name.endswith("/") else _UNIX_FILE,
                                     offset) + raw_name + more)
    order = range(len(headers)) if central_order is None else central_order
    directory = b"".join(headers[i] for i in order)
    end = _END.pack(b"PK\x05\x06", 0, 0, len(headers), len(headers), len(directory), len(body),
                    len(comment))
    return bytes(body) + directory + end + comment


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def central_entries(data: bytes) -> list[CentralEntry]:
    """The entries of a well-formed zip as its central directory lists them."""
    (_sig, _d, _cd, _n, total, _size, pos, _c) = _END.unpack_from(data, len(data) - _END.size)
    entries = []
    for _ in range(total):
        fields = _CENTRAL.unpack_from(data, pos)
        name_len, extra_len, comment_len, local = fields[10], fields[11], fields[12], fields[16]
        name = data[pos + _CENTRAL.size:pos + _CENTRAL.size + name_len].decode("utf-8")
        entries.append(CentralEntry(name, pos, local))
        pos += _CENTRAL.size + name_len + extra_len + comment_len
    return entries


CENTRAL_FIELDS = {"made_by": 4, "flags": 8, "method": 10, "crc": 16, "compressed": 20,
                  "size": 24, "comment_len": 32, "disk": 34, "external": 38, "offset": 42}
LOCAL_FIELDS = {"flags": 6, "method": 8, "crc": 14, "compressed": 18, "size": 22}
_WIDTH = {"made_by": "<H", "flags": "<H", "method": "<H", "comment_len": "<H", "disk": "<H",
          "crc": "<I", "compressed": "<I", "size": "<I", "external": "<I", "offset": "<I"}


def patched(data: bytes, index: int, *, central: dict[str, int] | None = None,
            local: dict[str, int] | None = None) -> bytes:
    """The zip with fields of entry ``index`` set in its central and/or local header."""
    entry = central_entries(data)[index]
    out = bytearray(data)
    for fields, base, table in ((central or {}, entry.header_offset, CENTRAL_FIELDS),
                                (local or {}, entry.local_offset, LOCAL_FIELDS)):
        for name, value in fields.items():
            struct.pack_into(_WIDTH[name], out, base + table[name], value)
    return bytes(out)


def with_comment(data: bytes, comment: bytes) -> bytes:
    """The zip with a zip comment (the end record's length field and the bytes after it)."""
    at = len(data) - _END.size
    return data[:at + 20] + struct.pack("<H", len(comment)) + comment


def with_local_name(data: bytes, old: str, new: str) -> bytes:
    """The zip with the local header of ``old`` naming ``new`` (same length), the central
    directory unchanged."""
    raw_old, raw_new = old.encode("utf-8"), new.encode("utf-8")
    if len(raw_old) != len(raw_new):
        raise ValueError("the names must have the same length")
    entry = next(e for e in central_entries(data) if e.name == old)
    at = entry.local_offset + _LOCAL.size
    return data[:at] + raw_new + data[at + len(raw_new):]


# ------------------------------------------------------------------ fuzzing


@dataclass(frozen=True)
class Base:
    """A genuine package zip and what every reader must see in it."""

    label: str
    members: list[tuple[str, bytes]]  # as zipped, in order
    deflate: bool
    data: bytes
    contents: dict[str, bytes]  # package-relative, as the strict reader gives them
    lenient: dict[str, bytes]  # as Python's zipfile gives them

    @staticmethod
    def of(label: str, members: list[tuple[str, bytes]], *, deflate: bool) -> Base:
        data = build_zip(members, deflate=deflate)
        return Base(label, members, deflate, data, parse_zip(data), lenient_view(data) or {})


def folder_members(folder: Path) -> list[tuple[str, bytes]]:
    """A sealed package folder's files as zip members, in name order."""
    return [(p.relative_to(folder).as_posix(), p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()]


def fuzz_bases(documents: Path, plain: Path) -> list[Base]:
    """The zips the fuzzers mutate, from a package sealed with its documents and one
    without: each stored and deflated, and the plain one inside a folder."""
    bases = []
    for label, folder in (("documents", documents), ("plain", plain)):
        for deflate in (False, True):
            bases.append(Base.of(f"{label}-{'deflate' if deflate else 'stored'}",
                                 folder_members(folder), deflate=deflate))
    prefixed = [(f"pkg/{n}", d) for n, d in folder_members(plain)]
    bases.append(Base.of("plain-in-folder", prefixed, deflate=False))
    return bases


def lenient_view(data: bytes) -> dict[str, bytes] | None:
    """What Python's zipfile reads from ``data`` (``None`` when it cannot)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
    except Exception:  # any failure of that reader is its refusal
        return None


def judge(mutant: bytes, base: Base, key: Ed25519PublicKey) -> str:
    """The reason code the verifier refuses ``mutant`` with, or ``"accepted"`` after
    showing that what it accepted is the original content, byte for byte, both as the
    strict reader and as Python's zipfile read it.

    Raises
    ------
    AssertionError
        If the verifier accepts content other than the original.
    """
    try:
        contents = PackageContents(Path(f"<{base.label}>"), parse_zip(mutant))
    except PackageRefusedError as exc:
        return exc.code
    report = verify_package(contents.source, key=key, contents=contents)
    if not report.ok:
        return min(report.codes())
    if contents.members != base.contents:
        raise AssertionError(f"{base.label}: verify accepted other content")
    other = lenient_view(mutant)
    if other is not None and other != base.lenient:
        raise AssertionError(f"{base.label}: verify accepted a zip zipfile reads otherwise")
    return "accepted"


def flip(data: bytes, at: int, xor: int) -> bytes:
    at %= len(data)
    return data[:at] + bytes([data[at] ^ (xor or 1)]) + data[at + 1:]


def insert(data: bytes, at: int, chunk: bytes) -> bytes:
    at %= len(data) + 1
    return data[:at] + chunk + data[at:]


def delete(data: bytes, at: int, count: int) -> bytes:
    at %= len(data)
    return data[:at] + data[at + max(1, count):]


def duplicate(base: Base, index: int, planted: bytes, planted_first: bool) -> bytes:
    members = list(base.members)
    index %= len(members)
    name = members[index][0]
    members.insert(index if planted_first else index + 1, (name, planted))
    return build_zip(members, deflate=base.deflate)


def rename(base: Base, index: int, new_name: str) -> bytes:
    members = list(base.members)
    index %= len(members)
    members[index] = (new_name, members[index][1])
    return build_zip(members, deflate=base.deflate)


def reorder_central(base: Base, order: Sequence[int]) -> bytes:
    return build_zip(base.members, deflate=base.deflate, central_order=order)


__all__ = ["Base", "CentralEntry", "build_zip", "central_entries", "delete", "duplicate",
           "flip", "insert", "judge", "lenient_view", "patched", "rename", "reorder_central",
           "with_comment", "with_local_name"]
