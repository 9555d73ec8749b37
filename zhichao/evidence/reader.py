"""The one strict reader of an evidence package, a folder or a zip.

``zhichao verify``, the center's ingest and the console's evidence view read a package only
through :func:`read_package`. It refuses, with a stable reason code (:data:`REFUSALS`),
anything two tools could read two ways or that hides bytes:

* ``package.unreadable``: no such folder or file, or not a zip (no end record).
* ``package.names``: a name twice, two names equal after NFC normalisation or case
  folding, an absolute name, ``..``, a backslash, a drive letter, a control character, a
  name that is not UTF-8 (or non-ASCII without the zip's UTF-8 flag), an Info-ZIP Unicode
  path field (another name for the same entry).
* ``package.special``: a symlink, device, FIFO or socket (in a folder, or marked so by a
  zip entry's external attributes — read as a Unix mode whatever the "made by" host,
  since Info-ZIP's ``unzip`` makes symlinks for hosts 2, 3, 5, 16 and 30).
* ``package.extra_data``: bytes before the first local header, between entries, between
  the central directory and its end record, after the end record, a zip comment or an
  entry comment.
* ``package.header_mismatch``: a local header that disagrees with the central directory
  (name, sizes, CRC, method, flags, time, version needed), or a data descriptor that does.
* ``package.encrypted``, ``package.compression`` (other than stored or deflate),
  ``package.zip64`` (zip64 records or fields, more than one disk).
* ``package.structure``: a central directory out of order or of the wrong size, malformed
  extra fields, unknown flag bits, deflate data that does not end exactly where the entry
  ends or inflates to another size, a directory entry with content.
* ``package.too_large``: the contents add up to more than ``max_content_bytes``
  (:data:`MAX_CONTENT_BYTES` unless the caller sets it: the center sets twice its upload
  limit), or a deflated entry inflates more than :data:`MAX_DEFLATE_RATIO` times its
  compressed size (a deflate bomb) — both decided from the central directory, before
  anything is inflated.
* ``package.crc``: an entry whose CRC-32 is not that of its content.

The zip is parsed here with :mod:`struct` after PKWARE's APPNOTE 6.3.10 (§4.3: local file
header, data descriptor, central directory header, end of central directory record), not
with :mod:`zipfile`, whose leniency (last of two equal names wins, prepended data skipped)
is what a forger relies on. Members not listed in the manifest are the verifier's
``file.unlisted`` (the reader does not interpret the manifest).
"""

from __future__ import annotations

import os
import stat
import struct
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path

from zhichao.evidence.errors import PackageError
from zhichao.evidence.manifest import MANIFEST_NAME

MAX_CONTENT_BYTES = 128 * 1024 * 1024
"""Refuse a package whose members add up to more (real ones are a few MB; twice the
center's default upload limit of 64 MiB)."""
MAX_DEFLATE_RATIO = 100
"""A deflated entry may inflate to at most this many times its compressed size, plus
:data:`_RATIO_FREE_BYTES` (JSON and HTML deflate 5–10×; zeros 1 000×)."""
_RATIO_FREE_BYTES = 1024 * 1024
_ZIP_OVERHEAD_BYTES = 1024 * 1024  # headers and names of a zip beyond its contents

REFUSALS: dict[str, tuple[str, str]] = {
    "package.unreadable": ("无法读取证据包", "cannot read the package"),
    "package.names": ("证据包内文件名重复、仅大小写或 Unicode 规范化形式不同，或不安全，"
                      "不同工具会读出不同内容",
                      "ambiguous or unsafe entry names (tools would read different files)"),
    "package.special": ("证据包含符号链接、设备或其他非普通文件",
                        "the package holds a symlink, device or other special file"),
    "package.extra_data": ("zip 中有不属于任何条目的数据（前置、夹带、追加数据或注释）",
                           "the zip holds bytes outside its entries (prepended, between "
                           "entries, appended, or a comment)"),
    "package.header_mismatch": ("zip 条目的本地文件头与中央目录不一致",
                                "a zip entry's local header disagrees with the central "
                                "directory"),
    "package.encrypted": ("zip 条目被加密", "an encrypted zip entry"),
    "package.compression": ("zip 条目使用了 stored/deflate 以外的压缩方式",
                            "a zip entry compressed other than stored or deflate"),
    "package.zip64": ("zip 使用了 zip64 或分卷结构（证据包不需要）",
                      "the zip uses zip64 or several disks (never needed by a package)"),
    "package.structure": ("zip 结构损坏或不合规范", "malformed zip structure"),
    "package.crc": ("zip 条目的 CRC-32 与内容不符", "a zip entry fails its CRC-32"),
    "package.too_large": ("证据包内容超过允许的大小，或压缩比异常（疑为压缩炸弹）",
                          "the package's contents exceed the size limit, or an entry "
                          "inflates implausibly (a deflate bomb)"),
}

_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # APPNOTE 4.3.7
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 4.3.12
_END = struct.Struct("<4sHHHHIIH")  # 4.3.16
_LOCAL_SIG, _CENTRAL_SIG, _END_SIG = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"
_ZIP64_LOCATOR_SIG, _DESCRIPTOR_SIG = b"PK\x06\x07", b"PK\x07\x08"
_FLAG_ENCRYPTED, _FLAG_DESCRIPTOR, _FLAG_STRONG, _FLAG_UTF8 = 0x1, 0x8, 0x40, 0x800
_FLAGS_ALLOWED = 0x2 | 0x4 | _FLAG_DESCRIPTOR | _FLAG_UTF8
_STORED, _DEFLATED, _AES = 0, 8, 99
_ZIP64_EXTRA, _UNICODE_PATH_EXTRA = 0x0001, 0x7075


class PackageRefusedError(PackageError):
    """The package is refused by the strict reader; ``code`` is a key of :data:`REFUSALS`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def message_zh(self) -> str:
        return f"{REFUSALS[self.code][0]}：{self.detail}"

    @property
    def message_en(self) -> str:
        return f"{REFUSALS[self.code][1]}: {self.detail}"


@dataclass(frozen=True)
class PackageContents:
    """The files of a package by package-relative path (directories are not members)."""

    source: Path
    members: dict[str, bytes]

    def names(self) -> list[str]:
        return list(self.members)

    def read(self, name: str) -> bytes | None:
        return self.members.get(name)


def zip_name_problems(names: list[str]) -> list[str]:
    """Why a package's member names are ambiguous or unsafe (English; empty when they are not).

    The same name twice lets two tools read two different files (Python's ``zipfile``
    reads the last entry, ``unzip`` the first); names equal but for case or Unicode
    normalisation collide on extraction; absolute names, ``..``, ``.`` and empty segments
    (``a//b``: the same file as ``a/b``), backslashes and control characters escape or
    confuse the folder they are extracted to."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name in names:
        segments = (name[:-1] if name.endswith("/") else name).split("/")
        if name.startswith("/") or "\\" in name or any(
                seg in ("", ".", "..") for seg in segments) or any(
                ord(c) < 32 or ord(c) == 127 for c in name) or (len(name) > 1 and name[1] == ":"):
            problems.append(f"unsafe entry name {name!r}")
        key = unicodedata.normalize("NFC", name.rstrip("/")).casefold()
        if key in seen:
            other = seen[key]
            problems.append(f"entry {name!r} appears twice" if other == name else
                            f"entries {other!r} and {name!r} differ only in case or "
                            "Unicode normalisation")
        seen.setdefault(key, name)
    return problems


def read_package(path: Path, *, max_content_bytes: int = MAX_CONTENT_BYTES) -> PackageContents:
    """Every file of the package at ``path`` (a folder or a zip), strictly.

    Raises
    ------
    PackageRefusedError
        With the reason code and the entry or offset concerned.
    """
    path = Path(path)
    if path.is_dir():
        members = _read_folder(path, max_content_bytes)
    elif path.is_file():
        try:
            if path.stat().st_size > max_content_bytes + _ZIP_OVERHEAD_BYTES:
                raise PackageRefusedError("package.too_large", f"{path}: the zip is "
                                          f"{path.stat().st_size} bytes, over "
                                          f"{max_content_bytes} bytes of contents")
            data = path.read_bytes()
        except OSError as exc:
            raise PackageRefusedError("package.unreadable", f"{path}: {exc}") from None
        members = parse_zip(data, max_content_bytes=max_content_bytes)
    else:
        raise PackageRefusedError("package.unreadable",
                                  f"{path}: no such package (directory or .zip)")
    return PackageContents(path, members)


def _read_folder(root: Path, max_content_bytes: int) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    total = 0
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise PackageRefusedError("package.unreadable", f"{folder}: {exc}") from None
        for entry in entries:
            name = Path(entry.path).relative_to(root).as_posix()
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                pending.append(Path(entry.path))
                continue
            if not stat.S_ISREG(mode):
                raise PackageRefusedError("package.special", f"{name} is not a regular file "
                                          f"(mode {stat.filemode(mode)})")
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise PackageRefusedError("package.names",
                                          f"{name!r} is not a UTF-8 name") from None
            if total + entry.stat(follow_symlinks=False).st_size > max_content_bytes:
                raise PackageRefusedError("package.too_large",
                                          f"contents over {max_content_bytes} bytes (at {name})")
            try:
                members[name] = Path(entry.path).read_bytes()
            except OSError as exc:
                raise PackageRefusedError("package.unreadable", f"{name}: {exc}") from None
            total += len(members[name])
            if total > max_content_bytes:  # grew while being read
                raise PackageRefusedError("package.too_large",
                                          f"contents over {max_content_bytes} bytes")
    problems = zip_name_problems(sorted(members))
    if problems:
        raise PackageRefusedError("package.names", "; ".join(problems[:5]))
    return members


@dataclass(frozen=True)
class _Entry:
    name: str
    raw_name: bytes
    flags: int
    method: int
    version_needed: int
    dos_time: int
    crc: int
    compressed_bytes: int
    size_bytes: int
    offset: int
    is_dir: bool


def parse_zip(data: bytes, *, max_content_bytes: int = MAX_CONTENT_BYTES) -> dict[str, bytes]:
    """The members of a zip (package-relative names; directory entries dropped; a single
    top folder holding ``manifest.json`` is stripped).

    Raises
    ------
    PackageRefusedError
        See the module docstring for the codes.
    """
    cd_offset, count = _end_record(data)
    entries = _central_directory(data, cd_offset, count)
    problems = zip_name_problems([e.name for e in entries])
    if problems:
        raise PackageRefusedError("package.names", "; ".join(problems[:5]))
    total = sum(e.size_bytes for e in entries)
    if total > max_content_bytes:
        raise PackageRefusedError("package.too_large", f"contents of {total} bytes declared, "
                                  f"over {max_content_bytes} bytes")
    for e in entries:
        if e.method == _DEFLATED and e.size_bytes > (
                MAX_DEFLATE_RATIO * e.compressed_bytes + _RATIO_FREE_BYTES):
            raise PackageRefusedError("package.too_large", f"entry {e.name!r} inflates "
                                      f"{e.compressed_bytes} bytes to {e.size_bytes} (more "
                                      f"than {MAX_DEFLATE_RATIO} times)")
    members: dict[str, bytes] = {}
    cursor = 0
    for entry in entries:
        if entry.offset != cursor:
            raise PackageRefusedError(
                "package.extra_data" if entry.offset > cursor else "package.structure",
                f"entry {entry.name!r} starts at byte {entry.offset}, the previous one ends "
                f"at {cursor}")
        content, cursor = _entry_content(data, entry)
        if entry.is_dir:
            if content:
                raise PackageRefusedError("package.structure",
                                          f"directory entry {entry.name!r} has content")
            continue
        members[entry.name] = content
    if cursor != cd_offset:
        raise PackageRefusedError("package.extra_data", f"{cd_offset - cursor} bytes between "
                                  "the last entry and the central directory")
    for entry in entries:
        if entry.is_dir and not any(name.startswith(entry.name) for name in members):
            raise PackageRefusedError("package.structure",
                                      f"directory entry {entry.name!r} holds no file")
    return _strip_top_folder(members)


def _strip_top_folder(members: dict[str, bytes]) -> dict[str, bytes]:
    tops = {n.split("/", 1)[0] for n in members}
    if MANIFEST_NAME in members or len(tops) != 1 or not all("/" in n for n in members):
        return members
    prefix = next(iter(tops)) + "/"
    return {n[len(prefix):]: data for n, data in members.items()}


def _end_record(data: bytes) -> tuple[int, int]:
    """(central directory offset, entry count) from the end record, which must end the file."""
    at = len(data) - _END.size
    if at < 0 or data[at:at + 4] != _END_SIG:
        found = _misplaced_end_record(data)
        if found < 0:
            raise PackageRefusedError("package.unreadable",
                                      "not a zip archive (no end of central directory record; "
                                      "truncated or damaged?)")
        raise PackageRefusedError("package.extra_data", f"{len(data) - found - _END.size} "
                                  "bytes after the end of central directory record (a zip "
                                  "comment or appended data)")
    _sig, disk, cd_disk, on_disk, total, cd_size, cd_offset, comment = _END.unpack_from(data, at)
    if comment:
        raise PackageRefusedError("package.structure", "end record names a comment that the "
                                  "file does not hold")
    if at >= 20 and data[at - 20:at - 16] == _ZIP64_LOCATOR_SIG:
        raise PackageRefusedError("package.zip64", "zip64 end of central directory locator")
    if disk or cd_disk or on_disk != total or 0xFFFF in (on_disk, total) or 0xFFFFFFFF in (
            cd_size, cd_offset):
        raise PackageRefusedError("package.zip64", f"disk {disk}/{cd_disk}, entries "
                                  f"{on_disk}/{total}, directory {cd_size} at {cd_offset}")
    if cd_offset + cd_size > at:
        raise PackageRefusedError("package.structure", f"central directory ({cd_size} bytes at "
                                  f"{cd_offset}) overruns the end record at {at}")
    if cd_offset + cd_size != at:
        raise PackageRefusedError("package.extra_data", f"{at - cd_offset - cd_size} bytes "
                                  "between the central directory and its end record")
    return cd_offset, total


def _misplaced_end_record(data: bytes) -> int:
    """Offset of an end record that is not at the end of ``data`` but is one (it names a
    comment that fills the rest, or a central directory that ends where it starts); -1."""
    end = len(data)
    while (found := data.rfind(_END_SIG, 0, end)) >= 0:
        end = found + 3  # the next search looks strictly before this one
        if len(data) - found < _END.size:
            continue
        fields = _END.unpack_from(data, found)
        cd_size, cd_offset, comment = fields[5], fields[6], fields[7]
        if found + _END.size + comment == len(data) or cd_offset + cd_size == found:
            return found
    return -1


def _central_directory(data: bytes, cd_offset: int, count: int) -> list[_Entry]:
    entries: list[_Entry] = []
    pos = cd_offset
    end = len(data) - _END.size
    for i in range(count):
        if pos + _CENTRAL.size > end or data[pos:pos + 4] != _CENTRAL_SIG:
            raise PackageRefusedError("package.structure",
                                      f"central directory entry {i} is not at byte {pos}")
        (_sig, _made_by, needed, flags, method, mtime, mdate, crc, csize, usize, name_len,
         extra_len, comment_len, disk, _internal, external, offset) = _CENTRAL.unpack_from(
            data, pos)
        raw_name = data[pos + _CENTRAL.size:pos + _CENTRAL.size + name_len]
        extra_at = pos + _CENTRAL.size + name_len
        pos = extra_at + extra_len + comment_len
        if pos > end:
            raise PackageRefusedError("package.structure",
                                      f"central directory entry {i} overruns the directory")
        name = _decode_name(raw_name, flags)
        _check_extra(data[extra_at:extra_at + extra_len], name)
        if comment_len:
            raise PackageRefusedError("package.extra_data", f"entry {name!r} has a comment")
        _check_kind(name, flags, method, external)
        if disk or 0xFFFFFFFF in (csize, usize, offset):
            raise PackageRefusedError("package.zip64", f"entry {name!r} has zip64 sizes")
        if entries and offset <= entries[-1].offset:
            raise PackageRefusedError("package.structure", "central directory out of order at "
                                      f"entry {name!r}")
        entries.append(_Entry(name, raw_name, flags, method, needed, mtime | mdate << 16, crc,
                              csize, usize, offset, name.endswith("/")))
    if pos != end:
        raise PackageRefusedError("package.structure", f"central directory holds {end - pos} "
                                  f"bytes more than its {count} entries")
    return entries


def _decode_name(raw: bytes, flags: int) -> str:
    try:
        return raw.decode("utf-8") if flags & _FLAG_UTF8 else raw.decode("ascii")
    except UnicodeDecodeError:
        raise PackageRefusedError("package.names", f"entry name {raw!r} is not "
                                  + ("UTF-8" if flags & _FLAG_UTF8 else
                                     "ASCII and not flagged UTF-8 (CP437 or UTF-8?)")) from None


def _check_extra(extra: bytes, name: str) -> None:
    pos = 0
    while pos < len(extra):
        if pos + 4 > len(extra):
            raise PackageRefusedError("package.structure", f"entry {name!r}: torn extra field")
        ident, size = struct.unpack_from("<HH", extra, pos)
        pos += 4 + size
        if pos > len(extra):
            raise PackageRefusedError("package.structure",
                                      f"entry {name!r}: extra field {ident:#06x} overruns")
        if ident == _ZIP64_EXTRA:
            raise PackageRefusedError("package.zip64", f"entry {name!r}: zip64 extra field")
        if ident == _UNICODE_PATH_EXTRA:
            raise PackageRefusedError("package.names", f"entry {name!r}: a Unicode path extra "
                                      "field gives it a second name")


def _check_kind(name: str, flags: int, method: int, external: int) -> None:
    if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG) or method == _AES:
        raise PackageRefusedError("package.encrypted", f"entry {name!r}")
    if flags & ~_FLAGS_ALLOWED & 0xFFFF:
        raise PackageRefusedError("package.structure",
                                  f"entry {name!r}: unknown general purpose flags {flags:#06x}")
    if method not in (_STORED, _DEFLATED):
        raise PackageRefusedError("package.compression", f"entry {name!r}: method {method}")
    is_dir = name.endswith("/")
    # The high 16 bits are a Unix mode whenever they are set, whatever the "made by"
    # host says: Info-ZIP's unzip makes a symlink of an S_IFLNK entry of host 2 (OS/2),
    # 3, 5 (Atari), 16 (BeOS) or 30 (AtheOS) alike. MS-DOS-style zips leave them 0.
    if external >> 16:
        kind = stat.S_IFMT(external >> 16)
        expected = stat.S_IFDIR if is_dir else stat.S_IFREG
        if kind not in (0, expected):
            raise PackageRefusedError("package.special", f"entry {name!r} is marked "
                                      f"{stat.filemode(external >> 16)}, not as a "
                                      + ("directory" if is_dir else "regular file"))
    if external & 0x10 and not is_dir:
        raise PackageRefusedError("package.special", f"entry {name!r} is marked a directory")


def _entry_content(data: bytes, entry: _Entry) -> tuple[bytes, int]:
    """(content, offset after the entry) with the local header checked against ``entry``."""
    at = entry.offset
    if at + _LOCAL.size > len(data) or data[at:at + 4] != _LOCAL_SIG:
        raise PackageRefusedError("package.structure",
                                  f"no local header for {entry.name!r} at byte {at}")
    (_sig, needed, flags, method, mtime, mdate, crc, csize, usize, name_len,
     extra_len) = _LOCAL.unpack_from(data, at)
    raw_name = data[at + _LOCAL.size:at + _LOCAL.size + name_len]
    _check_extra(data[at + _LOCAL.size + name_len:at + _LOCAL.size + name_len + extra_len],
                 entry.name)
    sizes = (crc, csize, usize)
    expected = (entry.crc, entry.compressed_bytes, entry.size_bytes)
    deferred = bool(flags & _FLAG_DESCRIPTOR) and sizes == (0, 0, 0)
    differs = [what for what, mine, theirs in (
        ("name", raw_name, entry.raw_name), ("version needed", needed, entry.version_needed),
        ("flags", flags, entry.flags), ("method", method, entry.method),
        ("time", mtime | mdate << 16, entry.dos_time),
        ("CRC and sizes", expected if deferred else sizes, expected)) if mine != theirs]
    if differs:
        raise PackageRefusedError("package.header_mismatch",
                                  f"entry {entry.name!r}: {', '.join(differs)}")
    start = at + _LOCAL.size + name_len + extra_len
    end = start + entry.compressed_bytes
    if end > len(data):
        raise PackageRefusedError("package.structure", f"entry {entry.name!r} is truncated")
    if flags & _FLAG_DESCRIPTOR:
        end = _check_descriptor(data, end, entry)
    raw = data[start:start + entry.compressed_bytes]
    content = _inflate(raw, entry) if entry.method == _DEFLATED else raw
    if len(content) != entry.size_bytes:
        raise PackageRefusedError("package.structure", f"entry {entry.name!r}: "
                                  f"{len(content)} bytes, {entry.size_bytes} declared")
    if zlib.crc32(content) != entry.crc:
        raise PackageRefusedError("package.crc", f"entry {entry.name!r}")
    return content, end


def _check_descriptor(data: bytes, at: int, entry: _Entry) -> int:
    """Offset after the data descriptor at ``at`` (APPNOTE 4.3.9), which must match."""
    if data[at:at + 4] == _DESCRIPTOR_SIG:
        at += 4
    if at + 12 > len(data):
        raise PackageRefusedError("package.structure", f"entry {entry.name!r}: torn data "
                                  "descriptor")
    if struct.unpack_from("<III", data, at) != (entry.crc, entry.compressed_bytes,
                                                entry.size_bytes):
        raise PackageRefusedError("package.header_mismatch", f"entry {entry.name!r}: data "
                                  "descriptor")
    return at + 12


def _inflate(raw: bytes, entry: _Entry) -> bytes:
    inflater = zlib.decompressobj(-15)
    try:
        content = inflater.decompress(raw, entry.size_bytes + 1)
    except zlib.error as exc:
        raise PackageRefusedError("package.structure",
                                  f"entry {entry.name!r}: bad deflate data ({exc})") from None
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise PackageRefusedError("package.structure", f"entry {entry.name!r}: deflate data "
                                  "does not end where the entry ends")
    return content


__all__ = ["MAX_CONTENT_BYTES", "MAX_DEFLATE_RATIO", "REFUSALS", "PackageContents",
           "PackageRefusedError", "parse_zip", "read_package", "zip_name_problems"]
