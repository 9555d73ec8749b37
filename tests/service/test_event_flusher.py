"""Review events reach the evidence log from the running app, without ``events flush``.

The app's lifespan (TestClient as a context manager, and a real ``zhichao serve`` process
stopped with SIGTERM) runs the background flusher; a review made through the API is in
the log within the interval; a locked log is survived with a log line and caught up; the
flusher stops with the app; bad settings are refused at start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.service.conftest import PASSWORD, Api, Sealed, make_api, new_case, new_user
from tests.service.sync_helpers import free_port, wait_for
from zhichao.evidence.events import find_events
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.signing import generate_key, private_pem
from zhichao.service.db import make_engine, session_factory, transaction, upgrade
from zhichao.service.errors import ConfigError
from zhichao.service.models import EvidenceEvent
from zhichao.service.settings import Settings

ORIGIN = "zhichao/center/test"


def log_settings(tmp_path: Path, interval_s: float = 0.2) -> dict[str, Any]:
    key_path = tmp_path / "center-log.key"
    key_path.write_bytes(private_pem(generate_key()))
    return {"evidence_log_dir": str(tmp_path / "center-log"),
            "evidence_log_key_path": str(key_path), "evidence_log_key_name": "zhichao-center",
            "evidence_log_origin": ORIGIN, "events_flush_interval_s": interval_s}


def logged(log_dir: Path, manifest_sha256: str) -> list[tuple[str, str]]:
    if not (log_dir / "log.json").exists():
        return []
    with MerkleLog(log_dir, read_only=True) as merkle:
        return [(e.event_type.value, e.outcome)
                for _i, _b, e in find_events(merkle, manifest_sha256)]


def pending(api: Api, case_id: int) -> list[int | None]:
    with transaction(api.sessions) as s:
        return list(s.scalars(select(EvidenceEvent.log_index)
                              .where(EvidenceEvent.case_id == case_id)
                              .order_by(EvidenceEvent.id)))


def review(client: TestClient, api: Api, case_id: int, version: int) -> None:
    r = client.post(f"/api/v1/cases/{case_id}/technical-review",
                    headers=api.auth("technical_reviewer"),
                    json={"approve": True, "expected_version": version})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_review_reaches_the_log_within_the_interval(backend: str, tmp_path: Path,
                                                      sealed: Sealed) -> None:
    api = make_api(backend, tmp_path, sealed, **log_settings(tmp_path))
    app = api.client.app
    log_dir = tmp_path / "center-log"
    try:
        case = new_case(api.sessions, sealed)
        with TestClient(app) as client:  # runs the lifespan: the flusher starts
            flusher = app.state.event_flusher
            assert flusher is not None
            started = time.monotonic()
            review(client, api, case.id, case.version)
            wait_for(lambda: logged(log_dir, case.manifest_sha256) != [], timeout_s=10,
                     what="the review event in the log")
            took_s = time.monotonic() - started
        assert logged(log_dir, case.manifest_sha256) == [("technical_review", "approved")]
        assert pending(api, case.id) == [0]
        assert took_s < 10
        # The app is shut down: the flusher stopped with it, later events stay pending.
        r = api.client.post(f"/api/v1/cases/{case.id}/legal-review",
                            headers=api.auth("legal_reviewer"),
                            json={"approve": True, "expected_version": case.version + 1})
        assert r.status_code == 200, r.text
        time.sleep(0.6)  # three intervals
        assert pending(api, case.id) == [0, None]
        assert flusher.appended == 1
    finally:
        if backend == "postgresql":
            from zhichao.service.db import drop_schema
            drop_schema(app.state.engine)
        app.state.engine.dispose()


def test_a_locked_log_is_survived_and_caught_up(tmp_path: Path, sealed: Sealed,
                                                caplog: pytest.LogCaptureFixture) -> None:
    api = make_api("sqlite", tmp_path, sealed, **log_settings(tmp_path))
    app = api.client.app
    log_dir = tmp_path / "center-log"
    case = new_case(api.sessions, sealed)
    holder = MerkleLog(log_dir, origin=ORIGIN, create=True)  # another writer holds the lock
    try:
        with caplog.at_level("ERROR", logger="zhichao.service.events"), \
                TestClient(app) as client:
            review(client, api, case.id, case.version)
            flusher = app.state.event_flusher
            wait_for(lambda: flusher.failures >= 2, timeout_s=10, what="failed rounds")
            assert pending(api, case.id) == [None]  # nothing marked that was not appended
            holder.close()
            wait_for(lambda: pending(api, case.id) == [0], timeout_s=10,
                     what="the event appended once the lock is free")
        assert "another process holds the log lock" in caplog.text
        assert logged(log_dir, case.manifest_sha256) == [("technical_review", "approved")]
    finally:
        holder.close()
        app.state.engine.dispose()


def test_no_flusher_without_a_log_and_bad_settings_are_refused(tmp_path: Path) -> None:
    from zhichao.service.app import create_app

    url = f"sqlite:///{tmp_path / 'x.db'}"
    app = create_app(Settings(database_url=url))
    assert app.state.event_flusher is None
    app.state.engine.dispose()
    off = create_app(Settings(database_url=url, **log_settings(tmp_path, interval_s=0)))
    assert off.state.event_flusher is None  # configured, but turned off
    off.state.engine.dispose()
    with pytest.raises(ConfigError, match="evidence_log_key_path"):
        Settings(evidence_log_dir=str(tmp_path / "log"))
    with pytest.raises(ConfigError, match="events_flush_interval_s"):
        Settings(events_flush_interval_s=-1)
    no_origin = {**log_settings(tmp_path), "evidence_log_origin": None}
    with pytest.raises(ConfigError, match="does not exist"):
        create_app(Settings(database_url=url, **no_origin))
    bad_key = {**log_settings(tmp_path), "evidence_log_key_path": str(tmp_path / "none.key")}
    with pytest.raises(ConfigError, match="key"):
        create_app(Settings(database_url=url, **bad_key))


def test_zhichao_serve_appends_review_events_and_stops_on_sigterm(tmp_path: Path,
                                                                  sealed: Sealed) -> None:
    db_url = f"sqlite:///{tmp_path / 'serve.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    sessions = session_factory(engine)
    case = new_case(sessions, sealed)
    reviewer = new_user(sessions, "technical_reviewer")
    conf = log_settings(tmp_path, interval_s=0.3)
    port = free_port()
    out_path = tmp_path / "serve.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zhichao", "serve", "--db", db_url, "--port", str(port),
             "--evidence-log", conf["evidence_log_dir"],
             "--evidence-key", conf["evidence_log_key_path"],
             "--evidence-key-name", conf["evidence_log_key_name"],
             "--evidence-log-origin", ORIGIN, "--events-flush-interval-s", "0.3"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ,
                                                       "ZHICHAO_SECRET_KEY": "k" * 40})
    base = f"http://127.0.0.1:{port}/api/v1"

    def call(method: str, path: str, body: dict[str, Any], token: str | None = None
             ) -> dict[str, Any]:
        req = urllib.request.Request(base + path, method=method,
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"}
                                                 if token else {})})
        with urllib.request.urlopen(req, timeout=10) as r:
            answer: dict[str, Any] = json.loads(r.read())
            return answer

    def up() -> bool:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return True
        except OSError:
            assert proc.poll() is None, out_path.read_text()[-3000:]
            return False

    try:
        wait_for(up, timeout_s=90, what="zhichao serve")
        token = call("POST", "/auth/login", {"username": reviewer.username,
                                             "password": PASSWORD})["token"]
        call("POST", f"/cases/{case.id}/technical-review",
             {"approve": True, "expected_version": case.version}, token)
        wait_for(lambda: logged(tmp_path / "center-log", case.manifest_sha256) != [],
                 timeout_s=15, what="the review event appended by the server")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    # uvicorn re-raises SIGTERM after its graceful shutdown (the lifespan's end ran)
    output = out_path.read_text()
    assert rc in (0, -signal.SIGTERM) and "Application shutdown complete" in output, output
    assert "Traceback" not in output, output
    assert logged(tmp_path / "center-log", case.manifest_sha256) == [
        ("technical_review", "approved")]
    with MerkleLog(tmp_path / "center-log") as merkle:  # the lock was released on shutdown
        assert merkle.size == 1
    engine.dispose()
