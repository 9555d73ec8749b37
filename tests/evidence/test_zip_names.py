"""A zip whose entry names can be read two ways never verifies: duplicates (zipfile reads
the last entry, unzip the first), names equal but for case or Unicode normalisation, and
unsafe names (absolute, ``..``, backslashes, control characters)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from zhichao.evidence.verify import verify_package, zip_name_problems


def _zip(folder: Path, out: Path, extra: list[tuple[str, bytes]], first: bool) -> Path:
    members = sorted(p for p in folder.rglob("*") if p.is_file())
    with zipfile.ZipFile(out, "w") as z:
        if first:
            for name, data in extra:
                z.writestr(name, data)
        for p in members:
            z.write(p, p.relative_to(folder).as_posix())
        if not first:
            for name, data in extra:
                z.writestr(name, data)
    return out


def test_the_genuine_zip_verifies(sealed_template: Path, tmp_path: Path) -> None:
    z = _zip(sealed_template, tmp_path / "p.zip", [], first=False)
    assert verify_package(z).ok


@pytest.mark.parametrize("first", [True, False], ids=["planted-first", "planted-last"])
def test_a_duplicate_photo_name_is_refused(sealed_template: Path, tmp_path: Path,
                                          first: bool) -> None:
    genuine = (sealed_template / "original" / "image-front.jpg").read_bytes()
    assert genuine
    with pytest.warns(UserWarning, match="Duplicate name"):
        z = _zip(sealed_template, tmp_path / "p.zip",
                 [("original/image-front.jpg", b"planted")], first=first)
    report = verify_package(z)
    assert not report.ok
    assert [c.code for c in report.failures()] == ["package.names"]
    assert "重复" in report.failures()[0].message_zh


@pytest.mark.parametrize("name", ["ORIGINAL/image-front.jpg", "original/IMAGE-front.jpg",
                                  "../evil.jpg", "/abs.jpg", "original\\\\x.jpg", "a\\x00b",
                                  "C:/x.jpg"])
def test_look_alike_and_unsafe_names_are_refused(sealed_template: Path, tmp_path: Path,
                                                 name: str) -> None:
    z = _zip(sealed_template, tmp_path / "p.zip", [(name, b"x")], first=False)
    report = verify_package(z)
    assert [c.code for c in report.failures()] == ["package.names"], report.text()


def test_name_problems_unit() -> None:
    assert zip_name_problems(["a/b.jpg", "a/c.jpg", "manifest.json"]) == []
    nfd = "original/e\\u0301.jpg"
    nfc = "original/\\u00e9.jpg"
    assert zip_name_problems([nfc, nfd])  # the same name in two normal forms
    assert zip_name_problems(["x", "x"]) == ["entry 'x' appears twice"]
