"""The console plays a case's clip: a ``<video>`` element in real headless Chromium
(Debian's /usr/bin/chromium, which decodes H.264) loads the clip served from the sealed
package as ``video/mp4``, only to staff who may see the case; a missing clip is shown
with its reason."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.service.test_web_browser import CHROMIUM, _unavailable, shot, staff
from tests.service.test_web_common import PLATES, Web, make_web, simulated_packages
from zhichao.evidence.clip import probe_clip

pytestmark = pytest.mark.slow  # a simulated lane, a server and a browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Web]]:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the browser tests are required: {reason}")
        pytest.skip(reason)
    import uvicorn

    lane = simulated_packages(tmp_path_factory.mktemp("cliplane"), PLATES, clips=True)
    web = make_web(tmp_path_factory.mktemp("clipweb"), lane)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(web.app, host="127.0.0.1", port=port,
                                        log_level="warning", access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", web
    srv.should_exit = True
    thread.join(10)
    web.app.state.engine.dispose()


def test_case_page_plays_the_clip_in_chromium(server: tuple[str, Web]) -> None:
    from playwright.sync_api import sync_playwright

    base, web = server
    case_id = web.cases[0].id
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=["--no-sandbox", "--disable-gpu",
                                            "--disable-dev-shm-usage"])
        try:
            page = staff(chromium, base, web, "technical_reviewer")
            page.goto(f"{base}/console/cases/{case_id}")
            assert "核验通过" in page.inner_text("#integrity")
            videos = page.locator("#videos video")
            assert videos.count() == 1
            page.wait_for_function(
                "() => { const v = document.querySelector('#videos video');"
                " return v.readyState >= 1 || v.error !== null; }", timeout=15_000)
            state = videos.first.evaluate(
                "v => ({ready: v.readyState, duration: v.duration, error: v.error && "
                "v.error.code, width: v.videoWidth})")
            assert state["error"] is None, state
            assert state["ready"] >= 1 and state["duration"] == pytest.approx(3.0, abs=0.05)
            assert state["width"] == 320
            text = page.inner_text("#videos")
            assert "CAM-F" in text and "30 帧" in text and "北京时间" in text
            assert "CAM-R 的视频缺失：摄像机视频流在该时段内没有画面" in text
            shot(page, "case-video")
            src = videos.first.get_attribute("src")
            assert src is not None
            # served as video/mp4 to this user, the package's bytes (they decode)
            got = page.context.request.get(f"{base}{src}")
            assert got.status == 200 and got.headers["content-type"] == "video/mp4"
            assert probe_clip(got.body()).frame_count == 30
        finally:
            chromium.close()
    # nobody else: without a session the clip is not served
    anon = httpx.get(f"{base}{src}", follow_redirects=False)
    assert anon.status_code != 200 or anon.headers.get("content-type") != "video/mp4"
    assert b"ftyp" not in anon.content[:64]


def test_owner_portal_cannot_fetch_the_console_clip(server: tuple[str, Web]) -> None:
    base, web = server
    case_id = web.cases[0].id
    with httpx.Client(base_url=base) as client:
        r = client.get(f"/console/cases/{case_id}/files/original/video-CAM-F.mp4")
        assert r.status_code in (302, 303, 401, 403, 404) and b"ftyp" not in r.content[:64]
