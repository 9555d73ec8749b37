"""A real center process and a real station uploader process on loopback.

One run walks through: shuffled (reordered) uploads, the station killed in the middle of
sending an upload, the station killed while the center holds back its answer (the center
accepted, the station never read the receipt), the center killed and restarted while the
station keeps sealing, and a second station outbox re-sending everything (duplicates).
At the end both ends are counted: every item is in the center exactly once and every
outbox item holds a receipt that verifies.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.sync_helpers import (
    ROOT,
    CenterProcess,
    Database,
    HoldingProxy,
    PushProcess,
    StationKit,
    database,
    wait_for,
    zhichao_cmd,
)
from zhichao.evidence.signing import generate_key
from zhichao.service.center.store import CenterStore, create_tables, register_station
from zhichao.station.sync_outbox import Outbox
from zhichao.sync.wire import check_receipt

pytestmark = pytest.mark.slow  # minutes of simulated traffic or processes


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from database(request.param, tmp_path)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(zhichao_cmd(*args), cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def done_count(outbox_path: Path) -> int:
    with Outbox(outbox_path) as outbox:
        return sum(1 for i in outbox.items() if i["state"] == "done")


def test_restart_outage_duplicates_and_reordering_lose_and_duplicate_nothing(
        db: Database, tmp_path: Path) -> None:
    kit = StationKit(tmp_path / "station")
    center_key = generate_key()
    center = CenterProcess(db, tmp_path / "store", center_key, tmp_path)
    create_tables(db.engine, db.schema)
    register_station(db.engine, kit.station_id, kit.public_pem, schema=db.schema)
    outbox_path = tmp_path / "station" / "outbox.sqlite"
    folders = kit.seal(16)
    random.Random(5).shuffle(folders)  # reordered: uploads do not follow the log
    passages = kit.passages(20)
    with Outbox(outbox_path) as outbox:
        for folder in folders:
            outbox.enqueue_package(folder)
        for record in passages:
            outbox.enqueue_passage(record, kit.station_id, kit.key)
        assert outbox.depth() == 36
    center.start()
    proxy = HoldingProxy(center.port)
    try:
        # 0. The station dies in the middle of sending an upload.
        proxy.stall.set()
        push = PushProcess(outbox_path, proxy.url, center.pub_path, kit.log_dir, tmp_path,
                           until_empty=True)
        wait_for(lambda: proxy.requests_stalled >= 1, what="an upload under way")
        push.kill()
        proxy.stall.clear()
        assert center.health()["packages"] == 0 and done_count(outbox_path) == 0
        # 1. The station dies after the center accepted an upload but before the answer came.
        proxy.hold.set()
        push = PushProcess(outbox_path, proxy.url, center.pub_path, kit.log_dir, tmp_path,
                           until_empty=True)
        wait_for(lambda: center.health()["packages"] >= 1 and proxy.answers_held >= 1,
                 what="the center to accept the first package")
        push.kill()
        assert done_count(outbox_path) == 0  # the station never saw the receipt
        proxy.hold.clear()
        # 2. Restarted station; the center is killed mid-stream and comes back later.
        push = PushProcess(outbox_path, center.url, center.pub_path, kit.log_dir, tmp_path,
                           until_empty=False)
        wait_for(lambda: done_count(outbox_path) >= 8, what="eight receipts")
        center.kill()
        before = done_count(outbox_path)
        more = kit.seal(4, salt=1)  # the station keeps working while the center is down
        with Outbox(outbox_path) as outbox:
            for folder in more:
                outbox.enqueue_package(folder)
            depth_down = outbox.depth()
        assert depth_down == 36 + 4 - before
        time.sleep(1.5)  # the uploader meets the outage and backs off
        assert push.alive(), push.out_path.read_text()[-2000:]
        center.start()
        wait_for(lambda: done_count(outbox_path) == 40, timeout_s=60, what="the outbox drained")
        push.kill()
        log_text = push.out_path.read_text()
        assert "center unavailable" in log_text  # it did see the outage and back off
        # 3. A second outbox (e.g. restored from an old backup) re-sends everything.
        outbox2 = tmp_path / "outbox2.sqlite"
        with Outbox(outbox2) as second:
            for folder in [*folders, *more]:
                second.enqueue_package(folder)
            for record in passages:
                second.enqueue_passage(record, kit.station_id, kit.key)
        again = PushProcess(outbox2, center.url, center.pub_path, kit.log_dir, tmp_path,
                            until_empty=True).wait()
        assert again["rc"] == 0 and again["duplicates"] == 40 and again["accepted"] == 0
        status = cli("sync", "status", "--outbox", str(outbox_path))
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["depth"] == 0
        health = center.health()
    finally:
        proxy.close()
        center.kill()
    # Count both ends.
    assert (health["packages"], health["passages"], health["quarantined"]) == (20, 20, 0)
    store = CenterStore(db.engine, tmp_path / "store", center_key, schema=db.schema)
    assert [row[2] for row in store.package_rows()] == list(range(20))
    view = store.station_view(kit.station_id)
    assert view is not None and view["accepted_size"] == 20 and view["fork_alarm_utc"] is None
    stored = sorted(p.stem for p in (tmp_path / "store" / "packages").rglob("*.zip"))
    assert stored == sorted(row[1] for row in store.package_rows())
    assert list((tmp_path / "store" / "tmp").iterdir()) == []
    with Outbox(outbox_path) as first, Outbox(outbox2) as second:
        items1, items2 = first.items(), second.items()
    assert len(items1) == len(items2) == 40
    by_sha = {i["item_sha256"]: i for i in items1}
    for item in items2:  # a duplicate upload got the very same receipt
        assert (item["receipt_b64"], item["receipt_sig"]) == (
            by_sha[item["item_sha256"]]["receipt_b64"], by_sha[item["item_sha256"]]["receipt_sig"])
        check_receipt(item["receipt_b64"], item["receipt_sig"], center_key.public_key(),
                      item_sha256=item["item_sha256"], station_id=kit.station_id)
