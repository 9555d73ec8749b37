"""The station console's 静态复检 page in a real headless Chromium against uvicorn: an
operator signs in, a flagged reading is refused in zh-CN, a stable one is linked by plate
and 北京时间, and the station seals it."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import PASSWORD
from tests.service.test_web_browser import CHROMIUM, _unavailable, shot
from tests.station.test_reweigh import add_passage, write_config
from zhichao.devices.data import WeightReading
from zhichao.service import accounts
from zhichao.service.db import transaction
from zhichao.station.config import StationConfig
from zhichao.station.reweigh_stage import ReweighStage
from zhichao.station.sealing import Sealer
from zhichao.station.static_scale import ReadingStore, SettledReading
from zhichao.station.store import StationStore

pytestmark = pytest.mark.slow  # a browser and a server


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[str, StationConfig, dict[str, int]]]:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the browser tests are required: {reason}")
        pytest.skip(reason)
    import uvicorn

    from zhichao.service.web.console import create_console_app
    from zhichao.station.local_service import LocalService
    from zhichao.station.reweigh_console import mount

    cfg = write_config(tmp_path, "xk3190+serial:///dev/null")
    passed = datetime.now(UTC) - timedelta(minutes=5)
    add_passage(cfg, "ZJ-G60-K123-2-1000", "冀A12345", passed, case=True)
    store = ReadingStore(cfg.data_dir / "station.db")
    ids = {"unstable": store.add(SettledReading(WeightReading(30000.0, False, raw=b"\x02"),
                                                ("unstable",), ""), "toledo"),
           "stable": store.add(SettledReading(WeightReading(46060.0, True, raw=b"\x02"), (),
                                              "device"), "toledo")}
    store.close()
    link = LocalService(cfg)
    with transaction(link.sessions) as s:
        accounts.create_user(s, username="operator1", password=PASSWORD,
                             display_name_zh="执法员 王五", roles=["station_operator"],
                             station_id=cfg.station.station_id)
    app = create_console_app(link.settings)
    mount(app, cfg)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", cfg, ids
    finally:
        srv.should_exit = True
        thread.join(10)
        link.engine.dispose()


def test_operator_links_a_reading_on_the_console(
        console: tuple[str, StationConfig, dict[str, int]]) -> None:
    from playwright.sync_api import sync_playwright

    base, cfg, ids = console
    passed = json.loads(next(iter(
        (cfg.data_dir / "evidence" / "packages").iterdir())).joinpath(
        "manifest.json").read_text(encoding="utf-8"))["case"]["time_utc"]
    local = datetime.fromisoformat(passed.replace("Z", "+00:00")).astimezone(
        UTC) + timedelta(hours=8)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=["--no-sandbox", "--disable-gpu",
                                            "--disable-dev-shm-usage"])
        page: Any = chromium.new_context(locale="zh-CN").new_page()
        page.goto(f"{base}/console/login")
        page.fill("input[name=username]", "operator1")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        page.goto(f"{base}/console/reweigh")
        assert "46060 kg" in page.inner_text("#readings")
        assert "动态（未稳定）" in page.inner_text("#readings")
        page.fill("input[name=plate]", "冀A12345")
        page.fill("input[name=time]", local.strftime("%Y-%m-%dT%H:%M:%S"))
        page.fill("input[name=reading]", str(ids["unstable"]))
        page.click("#link-form button[type=submit]")
        page.wait_for_load_state()
        assert "未稳定" in page.content()  # refused, in zh-CN
        page.goto(f"{base}/console/reweigh")
        page.fill("input[name=plate]", "冀A12345")
        page.fill("input[name=time]", local.strftime("%Y-%m-%dT%H:%M:%S"))
        page.click("#link-form button[type=submit]")
        page.wait_for_load_state()
        assert f"已关联读数 #{ids['stable']}" in page.inner_text("#done")
        assert "待封存" in page.inner_text("#readings")
        # the running station's pass seals it
        store = StationStore(cfg.data_dir / "station.db")
        sealer = Sealer(cfg)
        stage = ReweighStage(cfg, store, sealer)
        assert stage.seal_pending() == 1
        stage.close()
        sealer.close()
        store.close()
        page.reload()
        assert "已封存" in page.inner_text("#readings")
        assert "执法员 王五" in page.inner_text("#readings")
        shot(page, "station-reweigh")
        chromium.close()
