"""Start-up on damaged or unusable data: a clear one-line error and exit code 2, nothing
replaced, nothing started blank (an empty station.db beside an earlier station's data, a
damaged station.db, an unreadable key, a read-only data folder, a full disk)."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from zhichao.cli import main
from zhichao.station import launcher, store
from zhichao.station.config import StationConfig, parse_config
from zhichao.station.device import DRIFT_STATE_KEY
from zhichao.station.errors import StationError, StoreError
from zhichao.station.journal import SampleJournal
from zhichao.station.runtime import Station
from zhichao.station.sealing import load_or_create_key
from zhichao.station.store import StationStore


def _toml(tmp_path: Path) -> Path:
    """A real-device station (its WIM unit unreachable: nothing is read before it fails)."""
    path = tmp_path / "station.toml"
    path.write_text(f"""
[station]
data_dir = "{tmp_path / 'st'}"
disk_reserve_mb = 0
[wim]
url = "tcp://127.0.0.1:9"
[vision]
read = "none"
[evidence]
render_documents = false
[http]
metrics_port = 0
console_port = 0
""", encoding="utf-8")
    return path


def _cfg(tmp_path: Path) -> StationConfig:
    return parse_config({"station": {"data_dir": str(tmp_path / "st"), "disk_reserve_mb": 0},
                         "vision": {"read": "none"}, "evidence": {"render_documents": False},
                         "http": {"metrics_port": 0, "console_port": 0}}, tmp_path)


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["run", "--config", str(_toml(tmp_path)), "--no-view"])
    return rc, capsys.readouterr().err


def _earlier_station(tmp_path: Path) -> Path:
    """An earlier station's data folder: its database, a journal, the evidence log."""
    Station(_cfg(tmp_path)).close()
    data = tmp_path / "st"
    j = SampleJournal(data / "journal")
    j.append(0, np.zeros((100, 8), np.float32), 0)
    j.close()
    return data


def test_an_empty_database_beside_an_earlier_stations_data_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _earlier_station(tmp_path)
    (data / "station.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (data / f"station.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="journal segment.*evidence log.*Restore station.db "
                                         "from a backup, or move the data folder aside"):
        Station(_cfg(tmp_path))
    assert (data / "station.db").stat().st_size == 0  # nothing created in it
    rc, err = _run(tmp_path, capsys)
    assert rc == 2 and "zhichao run:" in err and "Traceback" not in err
    assert (data / "station.db").stat().st_size == 0  # refused again: never started blank
    (data / "station.db").unlink()  # a missing database is refused the same way
    with pytest.raises(StoreError, match="earlier station's data"):
        Station(_cfg(tmp_path))


def test_a_new_station_starts_and_restarts(tmp_path: Path) -> None:
    Station(_cfg(tmp_path)).close()  # a new data folder: created
    Station(_cfg(tmp_path)).close()  # its own data beside its database: started


@pytest.mark.parametrize("where", ["after_schema", "overflow"])
def test_a_damaged_database_is_a_clear_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            where: str) -> None:
    data = _earlier_station(tmp_path)
    db = data / "station.db"
    con = sqlite3.connect(db)
    if where == "overflow":  # a long value last: its overflow pages end the file
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (DRIFT_STATE_KEY,
                                                                 "x" * 40_000))
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    raw = bytearray(db.read_bytes())
    page = 4096
    # the header and the schema page intact; the rest (or the long value's last pages:
    # read only when the station reads that value) garbage
    start = page if where == "after_schema" else len(raw) - 4 * page
    rng = np.random.default_rng(1)
    raw[start:] = rng.integers(0, 256, len(raw) - start, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(raw))
    rc, err = _run(tmp_path, capsys)
    assert rc == 2 and "Traceback" not in err
    assert "station database is damaged" in err and "Restore station.db from a backup" in err


@pytest.mark.parametrize("content", [b"", b"-----BEGIN PRIVATE KEY-----\nMC4CAQAw"])
def test_an_unreadable_key_is_a_clear_error_and_never_replaced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    data = _earlier_station(tmp_path)
    key = data / "station-key.pem"
    key.write_bytes(content)
    with pytest.raises(StationError, match="never replaced"):
        load_or_create_key(key)
    rc, err = _run(tmp_path, capsys)
    assert rc == 2 and "Traceback" not in err and "station-key.pem" in err
    assert key.read_bytes() == content


def test_a_read_only_data_folder_is_a_clear_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(path: Path | None, *, stderr: bool) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(launcher, "setup_logging", read_only)
    rc, err = _run(tmp_path, capsys)
    assert rc == 2 and "Traceback" not in err
    assert "the data folder is not writable" in err and "Read-only file system" in err


def test_a_database_that_cannot_open_on_a_full_disk_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def connect(*_a: object, **_k: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("disk I/O error")

    real_statvfs = os.statvfs
    monkeypatch.setattr(store.sqlite3, "connect", connect)
    monkeypatch.setattr(store.os, "statvfs", lambda _p: SimpleNamespace(
        f_bavail=0, f_frsize=4096))
    with pytest.raises(StoreError) as caught:
        StationStore(tmp_path / "station.db")
    text = str(caught.value)
    assert "disk I/O error" in text and "the disk is full: 0 bytes free" in text
    assert "Free space on that filesystem" in text
    monkeypatch.setattr(store.os, "statvfs", real_statvfs)  # room: no such note
    with pytest.raises(StoreError) as again:
        StationStore(tmp_path / "station.db")
    assert "disk is full" not in str(again.value)
