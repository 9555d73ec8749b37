"""The station outbox and the uploader's policy: durability, idempotence, back-off,
refusals, receipts that do not verify."""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.service.sync_helpers import ROOT, StationKit, database, free_port
from zhichao.common import Backoff
from zhichao.evidence.signing import generate_key
from zhichao.service.center.server import create_center_app
from zhichao.station.sync_outbox import Outbox
from zhichao.station.uploader import Uploader
from zhichao.sync.errors import OutboxError


def test_outbox_is_wal_with_full_sync_and_idempotent(tmp_path: Path) -> None:
    kit = StationKit(tmp_path / "station")
    (folder,) = kit.seal(1)
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as outbox:
        sha, added = outbox.enqueue_package(folder)
        assert added and outbox.enqueue_package(folder) == (sha, False)
        record = kit.passages(1)[0]
        psha, padded = outbox.enqueue_passage(record, "S001", kit.key)
        assert padded and outbox.enqueue_passage(dict(record), "S001", kit.key) == (psha, False)
        assert outbox.depth() == 2
        assert outbox.status()["counts"] == {"package": {"pending": 1}, "passage": {"pending": 1}}
        assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    manifest = (folder / "manifest.json").read_bytes()
    assert sha == hashlib.sha256(manifest).hexdigest()


def test_bad_items_are_refused_naming_what_and_where(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as outbox:
        with pytest.raises(OutboxError, match="not a sealed package"):
            outbox.enqueue_package(tmp_path)
        with pytest.raises(OutboxError, match=r"passage\.time_utc"):
            outbox.enqueue_passage({"format": "x"}, "S001", generate_key())
        with pytest.raises(OutboxError, match="JSON object"):
            outbox.enqueue_passage([1, 2], "S001", generate_key())
        assert outbox.depth() == 0
    (tmp_path / "garbage.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match=r"garbage\.sqlite"):
        Outbox(tmp_path / "garbage.sqlite")


_ENQUEUE_LOOP = textwrap.dedent("""
    import sys
    from pathlib import Path
    from zhichao.evidence.signing import load_private_key
    from zhichao.station.sync_outbox import Outbox
    key = load_private_key(Path(sys.argv[2]))
    with Outbox(Path(sys.argv[1])) as outbox:
        print("ready", flush=True)
        for i in range(100000):
            outbox.enqueue_passage({"format": "t/1", "time_utc": "2025-01-01T00:00:00Z",
                                    "n": i}, "S001", key)
""")


def test_killed_while_enqueueing_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    kit = StationKit(tmp_path / "station")
    path = tmp_path / "outbox.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _ENQUEUE_LOOP, str(path), str(kit.key_path)],
                            cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT item_sha256, payload FROM outbox").fetchall()
    assert len(rows) > 0
    assert all(hashlib.sha256(payload).hexdigest() == sha for sha, payload in rows)
    with Outbox(path) as outbox:  # the restarted station enqueues everything again
        for i in range(len(rows) + 50):
            outbox.enqueue_passage({"format": "t/1", "time_utc": "2025-01-01T00:00:00Z",
                                    "n": i}, "S001", kit.key)
        assert outbox.depth() == len(rows) + 50


@given(st.integers(min_value=1, max_value=200), st.floats(0.01, 5), st.floats(5, 120),
       st.integers(0, 2**32))
def test_backoff_is_exponential_jittered_and_bounded(failures: int, base: float, cap: float,
                                                     seed: int) -> None:
    backoff = Backoff(base, cap)
    ceiling = min(cap, base * 2 ** (failures - 1))
    delay = backoff.delay_s(failures, random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling <= cap


def test_center_down_keeps_everything_and_backs_off(tmp_path: Path) -> None:
    kit = StationKit(tmp_path / "station")
    with Outbox(tmp_path / "o.sqlite") as outbox:
        for folder in kit.seal(2):
            outbox.enqueue_package(folder)
        url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
        uploader = Uploader(outbox, url, generate_key().public_key(), log_dir=kit.log_dir,
                            backoff=Backoff(0.2, 0.4), timeout_s=2)
        started = time.time()
        assert uploader.step() is True
        assert started + 0.1 <= uploader._center_retry_at <= time.time() + 0.2
        summary = uploader.run(max_runtime_s=1.0, poll_s=0.05)
        uploader.close()
        assert 2 <= summary.center_failures <= 8  # bounded back-off, not a busy loop
        assert outbox.depth() == 2 and summary.accepted == 0


CenterApp = tuple[TestClient, Ed25519PrivateKey, StationKit]


@pytest.fixture
def center_app(tmp_path: Path) -> Iterator[CenterApp]:
    for db in database("sqlite", tmp_path):
        key = generate_key()
        app = create_center_app(db.url, tmp_path / "store", key)
        kit = StationKit(tmp_path / "station")
        app.state.sync_store.register_station(kit.station_id, kit.public_pem)
        yield TestClient(app), key, kit


def test_permanent_refusal_is_kept_for_a_human(tmp_path: Path,
                                               center_app: CenterApp
                                               ) -> None:
    client, key, kit = center_app
    good, bad = kit.seal(2)
    photo = bad / "original" / "image-side.jpg"
    photo.write_bytes(photo.read_bytes() + b"\0")  # altered after sealing
    with Outbox(tmp_path / "o.sqlite") as outbox:
        outbox.enqueue_package(good)
        bad_sha, _ = outbox.enqueue_package(bad)
        uploader = Uploader(outbox, "http://testserver", key.public_key(),
                            log_dir=kit.log_dir, client=client)
        summary = uploader.run(until_empty=True, max_runtime_s=30)
        assert summary.accepted == 1 and summary.refused == 1 and outbox.depth() == 0
        (refused,) = outbox.status()["refused"]
        assert refused["code"] == "package.invalid" and "核验失败" in refused["message_zh"]
        assert outbox.retry_refused(bad_sha) and outbox.depth() == 1


def test_a_receipt_not_signed_by_the_center_leaves_the_item_pending(
        tmp_path: Path, center_app: CenterApp) -> None:
    client, _key, kit = center_app
    with Outbox(tmp_path / "o.sqlite") as outbox:
        outbox.enqueue_package(kit.seal(1)[0])
        wrong = generate_key().public_key()  # the station expects another center key
        uploader = Uploader(outbox, "http://testserver", wrong, log_dir=kit.log_dir,
                            client=client, backoff=Backoff(5, 10))
        uploader.step()
        assert uploader.summary.failures == 1 and outbox.depth() == 1
        assert "signature is not the center's" in str(outbox.status()["last_error"])


def test_scanning_the_package_folder_enqueues_each_sealed_package_once(tmp_path: Path) -> None:
    kit = StationKit(tmp_path / "station")
    folders = kit.seal(3)
    (kit.packages / "pkg-x.partial").mkdir()  # a package being written: not yet
    (kit.packages / "notes").mkdir()
    with Outbox(tmp_path / "o.sqlite") as outbox:
        outbox.enqueue_package(folders[0])  # enqueued right after sealing
        assert outbox.enqueue_tree(kit.packages) == (2, 1)  # the start-up scan adds the rest
        assert outbox.enqueue_tree(kit.packages) == (0, 3)
        assert outbox.depth() == 3
