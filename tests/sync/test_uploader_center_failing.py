"""A center that fails on every write while its (read-only) health check answers, e.g. a
full disk, is a failing center: the uploader sends a bounded number of requests a round
and backs off as a whole; it does not bisect every batch down to single records."""

from __future__ import annotations

import base64
import logging
import math
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.service.sync_helpers import StationKit
from tests.sync.conftest import Center
from tests.sync.test_uploader_isolation import forwarding
from zhichao.common import Backoff
from zhichao.evidence.signing import generate_key
from zhichao.station.sync_outbox import Outbox
from zhichao.station.uploader import Uploader
from zhichao.sync.wire import sign_passage


def _disk_full(count: Counter[tuple[str, str]]) -> httpx.Client:
    """500 on everything but ``GET /health`` (200); requests counted by (method, path)."""
    def handler(request: httpx.Request) -> httpx.Response:
        count[(request.method, request.url.path.rsplit("/", 1)[-1])] += 1
        if request.url.path.endswith("/health"):
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(500, json={"detail": "disk full"})
    return httpx.Client(transport=httpx.MockTransport(handler))


def _uploader(outbox: Outbox, client: httpx.Client) -> Uploader:
    return Uploader(outbox, "http://center", generate_key().public_key(), log_dir=None,
                    backoff=Backoff(0.5, 60.0), client=client)


def test_passages_to_a_center_failing_every_write_back_off_as_a_whole(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = 200
    kit = StationKit(tmp_path / "station")
    count: Counter[tuple[str, str]] = Counter()
    with Outbox(tmp_path / "o.sqlite") as outbox:
        for record in kit.passages(n):
            outbox.enqueue_passage(record, kit.station_id, kit.key)
        uploader = _uploader(outbox, _disk_full(count))
        with caplog.at_level(logging.WARNING, logger="zhichao.station.uploader"):
            assert uploader.step()
        attempts = Counter(i["attempts"] for i in outbox.items())
    assert count[("POST", "passages")] <= 2 * math.log2(n) + 2
    assert count[("GET", "health")] == 1
    assert uploader.summary.center_failures == 1
    assert uploader._center_retry_at > time.time()
    # the search for a bad record still isolates (at most) one record a round
    assert attempts[0] >= n - 1
    assert len(caplog.records) <= 3, [r.getMessage() for r in caplog.records]


def test_packages_to_a_center_failing_every_write_back_off_as_a_whole(
        tmp_path: Path) -> None:
    kit = StationKit(tmp_path / "station")
    count: Counter[tuple[str, str]] = Counter()
    with Outbox(tmp_path / "o.sqlite") as outbox:
        for folder in kit.seal(4):
            outbox.enqueue_package(folder)
        uploader = _uploader(outbox, _disk_full(count))
        uploader.step()
        attempts = sorted(i["attempts"] for i in outbox.items())
    assert sum(v for k, v in count.items() if k[1] != "health") <= 2
    assert count[("GET", "health")] == 1
    assert uploader.summary.center_failures == 1
    assert attempts == [0, 0, 0, 1]  # the first failing package backs off alone


def test_two_bad_records_in_one_batch_do_not_hold_the_others_up(
        center: Center, kit: StationKit, tmp_path: Path) -> None:
    """Both halves failing stops the round (center back-off), but the first bad record is
    isolated each time, so the others go through within a few rounds."""
    records = kit.passages(8)
    poison = {base64.b64encode(sign_passage(records[i], kit.key)[0]) for i in (1, 6)}
    client = forwarding(center.client, lambda r: 500 if r.url.path.endswith("/passages")
                        and any(p in r.content for p in poison) else None)
    with Outbox(tmp_path / "o.sqlite") as outbox:
        for record in records:
            outbox.enqueue_passage(record, kit.station_id, kit.key)
        uploader = Uploader(outbox, "http://testserver", center.key.public_key(),
                            log_dir=kit.log_dir, backoff=Backoff(0.01, 0.05), client=client)
        uploader.step()
        assert uploader.summary.center_failures == 1
        uploader.run(max_runtime_s=2.0, poll_s=0.01)
        states = [i["state"] for i in outbox.items()]
    assert states == ["done", "pending"] + ["done"] * 4 + ["pending", "done"]
    assert center.store.counts()["passages"] == 6
