"""The service CLI: one real subprocess for the entry point, the rest through ``main()``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zhichao.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_db_users_vehicles_stats_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    done = subprocess.run([sys.executable, "-m", "zhichao", "db", "upgrade", "--db", db],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "已升级" in done.stdout, done.stderr
    monkeypatch.setenv("ZHICHAO_PASSWORD", "a long enough password")
    code, out, _ = run(capsys, "users", "add", "wang", "--role", "technical_reviewer",
                       "--name", "王审核", "--db", db)
    assert code == 0 and "已添加用户 wang" in out
    code, _, err = run(capsys, "users", "add", "wang", "--role", "auditor", "--name", "王",
                       "--db", db)
    assert code == 1 and "已存在" in err
    code, _, err = run(capsys, "users", "add", "zhao", "--role", "king", "--name", "赵",
                       "--db", db)
    assert code == 1 and "角色无效" in err
    monkeypatch.setenv("ZHICHAO_PASSWORD", "short")
    code, _, err = run(capsys, "users", "add", "lisi", "--role", "auditor", "--name", "李",
                       "--db", db)
    assert code == 1 and "密码至少" in err

    rows = tmp_path / "vehicles.csv"
    with rows.open("w", encoding="utf-8", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["plate", "plate_colour", "vin", "licence_file_number", "owner_name_zh",
                    "owner_phone"])
        w.writerow(["浙A12345", "蓝", "LFWADRJF1J1234567", "330100123456", "张三", ""])
    code, out, _ = run(capsys, "vehicles", "import", str(rows), "--db", db)
    assert code == 0 and "已导入 1 辆车" in out
    with rows.open("a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow(["浙A99999", "蓝", "TOO-SHORT", "", "", ""])
    code, _, err = run(capsys, "vehicles", "import", str(rows), "--db", db)
    assert code == 1 and "第 3 行" in err

    code, out, _ = run(capsys, "stats", "--year", "2026", "--db", db)
    stats = json.loads(out)
    assert code == 0 and stats["year"] == 2026 and stats["figures"]["decisions"] == 0
    code, out, _ = run(capsys, "stats", "--year", "2026", "--format", "csv", "--db", db)
    assert out.splitlines()[0] == "year,metric,label_zh,value"
    code, _, err = run(capsys, "stats", "--year", "1999", "--db", db)
    assert code == 1 and "年份" in err
    code, out, _ = run(capsys, "audit", "verify", "--db", db)
    assert code == 0 and "审计日志链完整" in out
    from zhichao.evidence.signing import generate_key, private_pem
    key = tmp_path / "center.key"
    key.write_bytes(private_pem(generate_key()))
    code, out, err = run(capsys, "events", "flush", "--db", db, "--log", str(tmp_path / "log"),
                         "--key", str(key), "--key-name", "zhichao-center",
                         "--origin", "zhichao/center/test")
    assert code == 0 and "已写入 0 条" in out, err
    code, _, err = run(capsys, "db", "upgrade", "--db", "mysql://x@y/z")
    assert code == 1 and "仅支持" in err


def test_serve_answers_on_loopback(tmp_path: Path) -> None:
    """``zhichao serve`` as a real process: migrates, listens, answers, stops on SIGTERM."""
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "zhichao", "serve", "--db", db, "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ,
                                 "ZHICHAO_SECRET_KEY": "k" * 40})
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/api/v1/health"
                with urllib.request.urlopen(url, timeout=2) as r:
                    body = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.3)
        assert body is not None and body["status"] == "ok", "zhichao serve did not answer"
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/cases")
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError("unauthenticated request was answered")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
            assert "请先登录" in json.loads(exc.read())["message_zh"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
