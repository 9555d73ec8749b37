"""The sync commands: registering stations (and refusing a silent key change), bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.service.sync_helpers import ROOT, StationKit, sync_cmd, zhichao_cmd
from zhichao.evidence.signing import generate_key, public_pem
from zhichao.service.center.store import CenterStore, make_engine


def run(*args: str, light: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = sync_cmd(*args) if light else zhichao_cmd(*args)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_add_station_refuses_a_silent_key_change_and_bad_keys(tmp_path: Path) -> None:
    kit = StationKit(tmp_path / "station")
    url = f"sqlite:///{tmp_path / 'center.sqlite'}"
    other = tmp_path / "other.pub"
    other.write_bytes(public_pem(generate_key().public_key()))
    (tmp_path / "bad.pub").write_text("not a key")
    script = (
        f"from zhichao.service.center_cli import main\n"
        f"base = ['center', 'add-station', '--db', {url!r}, '--station', 'S001', '--key']\n"
        f"print(main(base + [{str(kit.pub_path)!r}]), main(base + [{str(other)!r}]),\n"
        f"      main(base + [{str(tmp_path / 'bad.pub')!r}]),\n"
        f"      main(base + [{str(tmp_path / 'missing.pub')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split()[-4:] == ["0", "2", "2", "2"], result.stderr
    assert "refusing to replace" in result.stderr and "not a PEM public key" in result.stderr
    store = CenterStore(make_engine(url), tmp_path / "store", generate_key())
    view = store.station_view("S001")
    assert view is not None and view["key_name"] == "zhichao-station-S001"


def test_push_and_status_through_the_zhichao_command(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    center_pub = tmp_path / "center.pub"
    center_pub.write_bytes(public_pem(generate_key().public_key()))
    result = run("sync", "push", "--outbox", str(outbox), "--center", "http://127.0.0.1:9",
                 "--center-key", str(center_pub), "--until-empty", light=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["depth"] == 0
    bad = run("sync", "enqueue", "--outbox", str(outbox), str(tmp_path))
    assert bad.returncode == 2 and "not a sealed package" in bad.stderr


def test_a_schema_name_that_is_not_an_identifier_is_refused(tmp_path: Path) -> None:
    import pytest

    from zhichao.service.center.store import create_tables
    from zhichao.sync.errors import SyncError

    with pytest.raises(SyncError, match="schema name"):
        create_tables(make_engine(f"sqlite:///{tmp_path / 'c.sqlite'}"), 'x"; drop table y')
