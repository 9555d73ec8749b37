"""Malformed input gets a specific VisionError naming the file, never a crash."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from zhichao.cli import main
from zhichao.vision.errors import (
    EmptyImageError,
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    VisionError,
)
from zhichao.vision.image import check_array, load_image
from zhichao.vision.reader import PlateReader


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_huge_png(path: Path, width_px: int, height_px: int) -> None:
    """A genuine 1-bit greyscale PNG of the given size, streamed (a few hundred kB)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes((width_px + 7) // 8)
    body = b"".join(compressor.compress(row) for _ in range(height_px)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width_px, height_px, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("<html>502 Bad Gateway</html>", encoding="utf-8")
    with pytest.raises(NotAnImageError) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_zero_size_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(EmptyImageError, match="empty"):
        load_image(path)


def test_20000_by_20000_png_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    write_huge_png(path, 20_000, 20_000)
    with pytest.raises(ImageTooLargeError, match="20000×20000"):
        load_image(path)


def test_20000_by_20000_jpeg_header_is_refused(tmp_path: Path, dev_dir: Path) -> None:
    data = bytearray((dev_dir / "toll_0001.jpg").read_bytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xC0)
    data[sof + 5 : sof + 9] = struct.pack(">HH", 20_000, 20_000)
    path = tmp_path / "huge.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageTooLargeError):
        load_image(path)


def test_truncated_jpeg(tmp_path: Path, dev_dir: Path) -> None:
    data = (dev_dir / "toll_0001.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedImageError, match="truncated"):
        load_image(path)


def test_corrupt_jpeg_body_is_a_decode_error_or_reads(tmp_path: Path, dev_dir: Path) -> None:
    data = bytearray((dev_dir / "toll_0001.jpg").read_bytes())
    data[200:4000] = bytes(3800)
    path = tmp_path / "garbled.jpg"
    path.write_bytes(bytes(data))
    try:
        image = load_image(path)
    except ImageError as exc:
        assert str(path) in str(exc)
    else:
        assert image.ndim == 3


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="no such file"):
        load_image(tmp_path / "absent.jpg")
    with pytest.raises(ImageDecodeError, match="directory"):
        load_image(tmp_path)


def test_bad_arrays() -> None:
    with pytest.raises(EmptyImageError):
        check_array(np.zeros((0, 10, 3), dtype=np.uint8), "<array>")
    with pytest.raises(ImageDecodeError):
        check_array(np.zeros((10, 10, 3), dtype=np.float32), "<array>")
    with pytest.raises(NotAnImageError):
        check_array("toll_0001.jpg", "<array>")
    with pytest.raises(ImageTooLargeError):
        check_array(np.zeros((20_000, 1, 3), dtype=np.uint8), "<array>")
    assert check_array(np.zeros((4, 5), dtype=np.uint8), "<array>").shape == (4, 5, 3)


def test_reader_raises_vision_errors(tmp_path: Path, reader: PlateReader) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(VisionError):
        reader.read_path(path)
    assert reader.read_image(np.zeros((64, 64, 3), dtype=np.uint8)) == []


def test_cli_reports_bad_files_and_keeps_going(
    tmp_path: Path, dev_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    code = main(["plates", "--json", str(bad), str(dev_dir / "toll_0001.jpg")])
    out, err = capsys.readouterr()
    assert code == 1
    assert "bad.jpg" in err
    assert "川QEZ982" in out
