"""One item the center fails on, or finds too large, never holds up the others; a clock
set back never delays an upload by more than the longest back-off."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from tests.service.sync_helpers import StationKit
from tests.sync.conftest import Center
from zhichao.common import Backoff
from zhichao.service.body_limit import BodyLimit, RouteLimit, center_limits
from zhichao.station.sync_outbox import Outbox
from zhichao.station.uploader import Uploader
from zhichao.sync.wire import pack_package, sign_passage

Handler = Callable[[httpx.Request], httpx.Response]


def forwarding(client: httpx.Client, fails: Callable[[httpx.Request], int | None]
               ) -> httpx.Client:
    """A client to the in-process center whose answer is replaced by the status
    ``fails(request)`` gives (None: the center's own answer)."""
    def handler(request: httpx.Request) -> httpx.Response:
        status = fails(request)
        if status is not None:
            return httpx.Response(status, json={"detail": "injected"})
        answer = client.request(request.method, str(request.url), content=request.content,
                                headers=request.headers)
        return httpx.Response(answer.status_code, content=answer.content,
                              headers={"content-type": "application/json"})
    return httpx.Client(transport=httpx.MockTransport(handler))


def _uploader(outbox: Outbox, center: Center, kit: StationKit, client: httpx.Client
              ) -> Uploader:
    return Uploader(outbox, "http://testserver", center.key.public_key(), log_dir=kit.log_dir,
                    backoff=Backoff(0.01, 0.05), client=client)


def test_a_passage_the_center_fails_on_is_isolated(center: Center, kit: StationKit,
                                                    tmp_path: Path) -> None:
    records = kit.passages(7)
    poison = base64.b64encode(sign_passage(records[2], kit.key)[0])
    client = forwarding(center.client, lambda r: 500 if r.url.path.endswith("/passages")
                        and poison in r.content else None)
    with Outbox(tmp_path / "o.sqlite") as outbox:
        for record in records:
            outbox.enqueue_passage(record, kit.station_id, kit.key)
        uploader = _uploader(outbox, center, kit, client)
        assert uploader.step()
        states = [(i["state"], i["attempts"]) for i in outbox.items()]
    assert states == [("done", 0)] * 2 + [("pending", 1)] + [("done", 0)] * 4
    assert uploader.summary.center_failures == 0 and uploader.summary.accepted == 6
    assert center.store.counts()["passages"] == 6


def test_a_center_that_is_down_is_not_bisected(center: Center, kit: StationKit,
                                               tmp_path: Path) -> None:
    client = forwarding(center.client, lambda _r: 503)
    with Outbox(tmp_path / "o.sqlite") as outbox:
        for record in kit.passages(8):
            outbox.enqueue_passage(record, kit.station_id, kit.key)
        uploader = _uploader(outbox, center, kit, client)
        uploader.step()
        assert {i["attempts"] for i in outbox.items()} == {0}
    assert uploader.summary.center_failures == 1 and uploader.summary.failures == 0


def test_a_package_the_center_fails_on_backs_off_alone(center: Center, kit: StationKit,
                                                       tmp_path: Path) -> None:
    folders = kit.seal(2)
    with Outbox(tmp_path / "o.sqlite") as outbox:
        first, _ = outbox.enqueue_package(folders[0])
        outbox.enqueue_package(folders[1])
        for record in kit.passages(2):
            outbox.enqueue_passage(record, kit.station_id, kit.key)
        client = forwarding(center.client, lambda r: 500 if r.url.path.endswith(first)
                            else None)
        uploader = _uploader(outbox, center, kit, client)
        uploader.step()
        states = [(i["kind"], i["state"]) for i in outbox.items()]
    assert states == [("package", "pending"), ("package", "done"), ("passage", "done"),
                      ("passage", "done")]


def test_too_large_is_the_protocols_permanent_refusal(center: Center, kit: StationKit,
                                                      tmp_path: Path) -> None:
    """The body-limit backstop answers the sync routes with ``package.too_large`` /
    ``passage.too_large`` (permanent): the item is refused, not retried for ever; a
    passage batch over the limit is split until the big record is alone."""
    assert [r.refusal_code for r in center_limits(1000)] == ["package.too_large",
                                                             "passage.too_large"]
    folders = kit.seal(2)
    package_limit = len(pack_package(folders[1])) + 10_000
    guarded = BodyLimit(center.app, default_bytes=1 << 17, routes=[
        RouteLimit(r"/sync/v1/packages/", package_limit, "evidence package",
                   "package.too_large"),
        RouteLimit(r"/sync/v1/passages$", 20_000, "passage batch", "passage.too_large")])
    (folders[0] / "media").mkdir(exist_ok=True)
    (folders[0] / "media" / "long_clip.bin").write_bytes(b"\0" * 40_000)
    records = kit.passages(5)
    records[3]["note"] = "x" * 30_000
    with Outbox(tmp_path / "o.sqlite") as outbox, TestClient(guarded) as client:
        for folder in folders:
            outbox.enqueue_package(folder)
        for record in records:
            outbox.enqueue_passage(record, kit.station_id, kit.key)
        uploader = _uploader(outbox, center, kit, client)
        uploader.run(until_empty=True, max_runtime_s=20)
        states = [(i["state"], i["refusal_code"]) for i in outbox.items()]
    assert states == [("refused", "package.too_large"), ("done", None)] + [
        ("done", None)] * 3 + [("refused", "passage.too_large"), ("done", None)]
    # chunked (no Content-Length): the same refusal
    answer = TestClient(guarded).post("/sync/v1/passages",
                                      content=iter([b"x" * 15_000, b"x" * 15_000]))
    assert answer.status_code == 413
    assert answer.json()["code"] == "passage.too_large" and answer.json()["permanent"]


def test_a_clock_set_back_delays_no_more_than_the_longest_back_off(
        center: Center, kit: StationKit, tmp_path: Path) -> None:
    day_s = 86_400.0
    with Outbox(tmp_path / "o.sqlite") as outbox:
        sha, _ = outbox.enqueue_passage(kit.passages(1)[0], kit.station_id, kit.key)
        # failed while the clock was a day ahead; the clock has been set back since
        outbox.mark_failed(sha, "station.unknown", time.time() + day_s)
        assert outbox.due("passage", 10) == []
        assert [i.item_sha256 for i in outbox.due("passage", 10, max_delay_s=60)] == [sha]
        now = time.time()
        assert outbox.next_due_s(now, max_delay_s=60) == now
        uploader = _uploader(outbox, center, kit, center.client)
        uploader._center_retry_at = time.time() + day_s  # center back-off, same clock
        started = time.monotonic()
        uploader.run(until_empty=True, max_runtime_s=10)
        assert outbox.depth() == 0 and time.monotonic() - started < 5
