"""Stopping a station that runs on a full disk: what the way out cannot store is noted
and the exit is clean (the next start does it again); the log file handler reports its
own failure once instead of a traceback per record."""

from __future__ import annotations

import io
import logging
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from zhichao.station import runtime
from zhichao.station.config import StationConfig, parse_config
from zhichao.station.messages import SealOutcome
from zhichao.station.ops import JsonFormatter, LogFileHandler
from zhichao.station.runtime import Station


def _cfg(tmp_path: Path) -> StationConfig:
    return parse_config({"station": {"data_dir": str(tmp_path / "st"), "disk_reserve_mb": 0},
                         "vision": {"read": "none"}, "evidence": {"render_documents": False},
                         "http": {"metrics_port": 0, "console_port": 0}}, tmp_path)


def test_a_stop_on_a_full_disk_is_clean(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    st = Station(_cfg(tmp_path))
    monkeypatch.setattr(runtime, "open_wim_device", lambda _url: SimpleNamespace(
        close=lambda: None, connected=False,
        health_snapshot=lambda: SimpleNamespace(error_count=0, describe=lambda: "")))

    def full(*_a: object, **_k: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    # the sealer said the evidence folder is full; storing its alarm fails at the exit
    st.seals.outcomes.put(SealOutcome("stopped", "S-1-0", detail="no room"))
    monkeypatch.setattr(st.store, "raise_alarm", full)
    stop = threading.Event()
    stop.set()  # SIGTERM
    st.run(stop)  # returns: no exception
    assert st.failure is None
    assert st.exit_unstored and "database or disk is full" in st.exit_unstored[0]


def test_the_log_file_handler_reports_a_full_disk_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handler = LogFileHandler(tmp_path / "station.log.jsonl")
    handler.setFormatter(JsonFormatter())

    class Full(io.StringIO):
        def flush(self) -> None:
            raise OSError(28, "No space left on device")

    real = handler.stream
    handler.stream = Full()
    log = logging.getLogger("zhichao.test.full_log")
    log.propagate = False
    log.addHandler(handler)
    try:
        for i in range(5):
            log.error("record %d", i)
        err = capsys.readouterr().err
        assert "Logging error" not in err and "Traceback" not in err
        assert err.count("cannot write the log file") == 1
        assert "No space left on device" in err
        handler.stream = real  # room again
        log.error("after")
        err = capsys.readouterr().err
        assert "is written again (5 record(s) were dropped)" in err
        log.error("and on")
        assert capsys.readouterr().err == ""
    finally:
        log.removeHandler(handler)
        handler.close()
    assert '"message": "after"' in (tmp_path / "station.log.jsonl").read_text("utf-8")
