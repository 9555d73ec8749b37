"""The strict package reader: one forged zip (or folder) per refusal, each refused with its
reason code by the reader and by ``verify``; zips made by other tools are read."""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from zhichao.evidence.reader import PackageRefusedError, parse_zip, read_package
from zhichao.evidence.verify import verify_package
from zhichao.testing.zipforge import (
    build_zip,
    central_entries,
    patched,
    with_comment,
    with_local_name,
)

Members = list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def members(sealed_template: Path) -> Members:
    return [(p.relative_to(sealed_template).as_posix(), p.read_bytes())
            for p in sorted(sealed_template.rglob("*")) if p.is_file()]


def _gap(m: Members) -> bytes:
    """Three bytes slipped in after the first entry, every offset after them moved."""
    data = build_zip(m)
    entries = central_entries(data)
    at = entries[1].local_offset
    out = data[:at] + b"xyz" + data[at:]
    end = len(out) - 22
    cd = struct.unpack_from("<I", out, end + 16)[0]
    out = out[:end + 16] + struct.pack("<I", cd + 3) + out[end + 20:]
    for i in range(1, len(entries)):
        out = patched(out, i, central={"offset": entries[i].local_offset + 3})
    return out


def _stored_as_deflate(m: Members) -> bytes:
    """The first entry claims deflate but holds stored bytes."""
    return patched(build_zip(m), 0, central={"method": 8}, local={"method": 8})


CASES: dict[str, tuple[str, Callable[[Members], bytes]]] = {
    "prepended": ("package.extra_data", lambda m: b"\x7fELF" + build_zip(m)),
    "appended": ("package.extra_data", lambda m: build_zip(m) + b"\0" * 10),
    "zip comment": ("package.extra_data", lambda m: with_comment(build_zip(m), b"hi")),
    "entry comment": ("package.extra_data", lambda m: _entry_comment(m)),
    "gap between entries": ("package.extra_data", _gap),
    "duplicate": ("package.names", lambda m: build_zip([*m, m[3]])),
    "case twin": ("package.names", lambda m: build_zip([*m, (m[3][0].upper(), b"x")])),
    "nfd twin": ("package.names", lambda m: build_zip([*m, ("original/e\u0301.jpg", b"x"),
                                                       ("original/\u00e9.jpg", b"y")])),
    "dot segment": ("package.names", lambda m: build_zip([*m, ("./manifest.json", b"{}")])),
    "empty segment": ("package.names", lambda m: build_zip([*m, ("original//x.jpg", b"x")])),
    "unicode path field": ("package.names", lambda m: build_zip(
        m, extra={m[3][0]: struct.pack("<HH", 0x7075, 5) + b"\x01abcd"})),
    "symlink": ("package.special", lambda m: patched(build_zip(m), 3, central={
        "external": (stat.S_IFLNK | 0o777) << 16})),
    "device": ("package.special", lambda m: patched(build_zip(m), 3, central={
        "external": (stat.S_IFCHR | 0o644) << 16})),
    "local name": ("package.header_mismatch", lambda m: with_local_name(
        build_zip(m), m[3][0], m[3][0].swapcase())),
    "local crc": ("package.header_mismatch", lambda m: patched(build_zip(m), 2,
                                                               local={"crc": 1})),
    "local size": ("package.header_mismatch", lambda m: patched(build_zip(m), 2,
                                                                local={"size": 1})),
    "local flags": ("package.header_mismatch", lambda m: patched(build_zip(m), 2,
                                                                 local={"flags": 0x800})),
    "encrypted": ("package.encrypted", lambda m: patched(build_zip(m), 1, central={
        "flags": 1}, local={"flags": 1})),
    "bzip2": ("package.compression", lambda m: patched(build_zip(m), 1, central={
        "method": 12}, local={"method": 12})),
    "zip64 extra": ("package.zip64", lambda m: build_zip(
        m, extra={m[1][0]: struct.pack("<HHQ", 1, 8, len(m[1][1]))})),
    "zip64 sizes": ("package.zip64", lambda m: patched(build_zip(m), 1, central={
        "size": 0xFFFFFFFF})),
    "second disk": ("package.zip64", lambda m: patched(build_zip(m), 1, central={"disk": 1})),
    "reordered directory": ("package.structure", lambda m: build_zip(
        m, central_order=[1, 0, *range(2, len(m))])),
    "empty directory entry": ("package.structure", lambda m: build_zip([("extra/", b""), *m])),
    "torn extra field": ("package.structure", lambda m: build_zip(m, extra={m[1][0]: b"\x01"})),
    "stored bytes called deflate": ("package.structure", _stored_as_deflate),
    "wrong crc": ("package.crc", lambda m: patched(build_zip(m), 4, central={"crc": 7},
                                                   local={"crc": 7})),
    "truncated": ("package.unreadable", lambda m: build_zip(m)[:-30]),
}


def _entry_comment(m: Members) -> bytes:
    data = build_zip(m)
    end = len(data) - 22
    cd = struct.unpack_from("<I", data, end + 16)[0]
    name_len = len(m[0][0].encode())
    at = cd + 46 + name_len  # a comment of 2 bytes after the first central header
    out = data[:at] + b"hi" + data[at:]
    out = out[:cd + 32] + struct.pack("<H", 2) + out[cd + 34:]
    end += 2
    size = struct.unpack_from("<I", out, end + 12)[0]
    return out[:end + 12] + struct.pack("<I", size + 2) + out[end + 16:]


def test_the_genuine_zip_and_folder_are_read(members: Members, sealed_template: Path,
                                             tmp_path: Path) -> None:
    for deflate in (False, True):
        assert parse_zip(build_zip(members, deflate=deflate)) == dict(members)
    assert read_package(sealed_template).members == dict(members)
    assert verify_package(sealed_template).ok


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_forgery_is_refused_with_its_code(members: Members, tmp_path: Path,
                                               case: str) -> None:
    code, forge = CASES[case]
    data = forge(members)
    with pytest.raises(PackageRefusedError) as refused:
        parse_zip(data)
    assert refused.value.code == code, refused.value
    path = tmp_path / "forged.zip"
    path.write_bytes(data)
    report = verify_package(path)
    assert [c.code for c in report.failures()] == [code], report.text()
    assert report.failures()[0].message_zh.startswith(refused.value.message_zh[:6])


def test_a_deflate_bomb_is_refused_before_inflating(members: Members) -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = bomb.compress(b"\0" * (64 << 20)) + bomb.flush()
    data = build_zip([*members, ("original/bomb.bin", b"")])
    assert payload  # declared size over the limit: refused from the directory alone
    forged = patched(data, len(members), central={"size": 64 << 20}, local={"size": 64 << 20})
    with pytest.raises(PackageRefusedError) as refused:
        parse_zip(forged, max_content_bytes=1 << 20)
    assert refused.value.code == "package.too_large"


def test_special_files_in_a_folder_are_refused(sealed_template: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(sealed_template, tmp_path / "pkg"))
    os.symlink("/etc/hostname", folder / "original" / "link.jpg")
    assert verify_package(folder).codes() == {"package.special"}
    (folder / "original" / "link.jpg").unlink()
    os.mkfifo(folder / "derived" / "pipe")
    assert verify_package(folder).codes() == {"package.special"}
    (folder / "derived" / "pipe").unlink()
    (folder / "original" / "x").symlink_to(folder / "original")  # a folder link
    assert verify_package(folder).codes() == {"package.special"}


@pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP zip not installed")
@pytest.mark.parametrize("how", ["folder with directory entries", "streamed (descriptors)",
                                 "deflated, no extra fields"])
def test_zips_made_by_info_zip_are_read(sealed_template: Path, tmp_path: Path,
                                        how: str) -> None:
    out = tmp_path / "pkg.zip"
    if how == "folder with directory entries":
        shutil.copytree(sealed_template, tmp_path / "pkg")
        subprocess.run(["zip", "-qr", str(out), "pkg"], cwd=tmp_path, check=True)
    elif how == "streamed (descriptors)":
        with out.open("wb") as handle:
            subprocess.run(["zip", "-qr", "-", "."], cwd=sealed_template, stdout=handle,
                           check=True)
    else:
        subprocess.run(["zip", "-qrX", str(out), "."], cwd=sealed_template, check=True)
    assert verify_package(out).ok, verify_package(out).text()
    assert read_package(out).members == read_package(sealed_template).members
